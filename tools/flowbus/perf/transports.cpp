#include "transports.hpp"

#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <vector>

#include <flatbuffers/idl.h>

#include "flowbus/bus.hpp"
#include "flowbus/error.hpp"
#include "flowbus/perf_generated.h"

namespace flowbus::perf {

void stamp(uint8_t* payload, size_t bytes, uint64_t i) noexcept {
  std::memcpy(payload, &i, sizeof i);
  std::memcpy(payload + bytes - 64, &i, sizeof i);
}

bool check_stamp(const uint8_t* payload, size_t bytes, uint64_t i) noexcept {
  uint64_t first, last;
  std::memcpy(&first, payload, sizeof first);
  std::memcpy(&last, payload + bytes - 64, sizeof last);
  return first == i && last == i;
}

namespace {

[[noreturn]] void fail(const std::string& what) { throw std::runtime_error("perf: " + what); }

// --- floor: a cache-line flag per direction plus the payload write ----------
class Floor : public PingPong {
 public:
  Floor(size_t bytes, WaitMode) : bytes_(bytes) {
    size_ = 256 + 2 * ((bytes + 127) & ~size_t(127));
    void* m = mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) fail("cannot map the floor's shared memory");
    base_ = static_cast<uint8_t*>(m);
    new (base_) std::atomic<uint64_t>(UINT64_MAX);
    new (base_ + 128) std::atomic<uint64_t>(UINT64_MAX);
  }
  ~Floor() override { munmap(base_, size_); }
  void start_echo_side() override {}
  void start_ping_side() override {}
  void round_trip(uint64_t i) override {
    stamp(ping_payload(), bytes_, i);
    flag(0)->store(i, std::memory_order_release);  // publishes the payload written above
    while (flag(128)->load(std::memory_order_acquire) != i) {
    }
    if (!check_stamp(pong_payload(), bytes_, i)) fail("floor: echo damaged");
  }
  void echo(uint64_t count) override {
    for (uint64_t i = 0; i < count; ++i) {
      while (flag(0)->load(std::memory_order_acquire) != i) {
      }
      if (!check_stamp(ping_payload(), bytes_, i)) fail("floor: ping damaged");
      stamp(pong_payload(), bytes_, i);
      flag(128)->store(i, std::memory_order_release);
    }
  }

 private:
  std::atomic<uint64_t>* flag(size_t offset) { return reinterpret_cast<std::atomic<uint64_t>*>(base_ + offset); }
  uint8_t* ping_payload() { return base_ + 256; }
  uint8_t* pong_payload() { return base_ + 256 + ((bytes_ + 127) & ~size_t(127)); }
  size_t bytes_, size_ = 0;
  uint8_t* base_ = nullptr;
};

// --- uds and pipe: copying transports through the kernel ---------------------
class FdPair : public PingPong {
 public:
  FdPair(bool unix_socket, size_t bytes) : buffer_(bytes) {
    if (unix_socket) {
      int sv[2];
      if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) fail("socketpair failed");
      ping_read_ = pong_write_ = sv[1];
      ping_write_ = pong_read_ = sv[0];
    } else {
      int a[2], b[2];
      if (pipe(a) != 0 || pipe(b) != 0) fail("pipe failed");
      ping_read_ = a[0], ping_write_ = a[1], pong_read_ = b[0], pong_write_ = b[1];
    }
  }
  void start_echo_side() override {}
  void start_ping_side() override {}
  void round_trip(uint64_t i) override {
    stamp(buffer_.data(), buffer_.size(), i);
    write_all(ping_write_);
    read_all(pong_read_);
    if (!check_stamp(buffer_.data(), buffer_.size(), i)) fail("echo damaged");
  }
  void echo(uint64_t count) override {
    for (uint64_t i = 0; i < count; ++i) {
      read_all(ping_read_);
      if (!check_stamp(buffer_.data(), buffer_.size(), i)) fail("ping damaged");
      stamp(buffer_.data(), buffer_.size(), i);
      write_all(pong_write_);
    }
  }

 private:
  void write_all(int fd) {
    for (size_t done = 0; done < buffer_.size();) {
      const ssize_t n = ::write(fd, buffer_.data() + done, buffer_.size() - done);
      if (n <= 0) fail("write failed");
      done += size_t(n);
    }
  }
  void read_all(int fd) {
    for (size_t done = 0; done < buffer_.size();) {
      const ssize_t n = ::read(fd, buffer_.data() + done, buffer_.size() - done);
      if (n <= 0) fail("read failed");
      done += size_t(n);
    }
  }
  std::vector<uint8_t> buffer_;
  int ping_read_ = -1, ping_write_ = -1, pong_read_ = -1, pong_write_ = -1;
};

// --- flowbus: the real API, a topic each way; loan() from 64 KiB up ----------
const char* kPerfSchema =
    "namespace flowbus.perf;\n"
    "table Payload { bytes: [ubyte]; }\n"
    "root_type Payload;\n";

std::vector<uint8_t> perf_schema() {
  flatbuffers::Parser parser;
  if (!parser.Parse(kPerfSchema)) fail("the embedded perf schema does not parse: " + parser.error_);
  parser.Serialize();
  return {parser.builder_.GetBufferPointer(), parser.builder_.GetBufferPointer() + parser.builder_.GetSize()};
}

class Flowbus : public PingPong {
 public:
  Flowbus(size_t bytes, WaitMode wait) : bytes_(bytes), wait_(wait), bus_name_("perf-" + std::to_string(getpid())) {
    Bus bus = Bus::open(bus_name_);
    uint64_t ring = 1 << 22;
    while (ring < 8 * (bytes + 4096)) ring <<= 1;
    for (const char* topic : {"perf.ping", "perf.pong"})
      bus.create_topic(TopicSpec{topic, "flowbus.perf.Payload", perf_schema(), Policy::Block, ring});
  }
  ~Flowbus() override {
    sub_.reset();
    pub_.reset();
    bus_.reset();
    if (owner_pid_ == getpid()) Bus::destroy(bus_name_);
  }
  void start_echo_side() override { attach("perf.pong", "perf.ping", "echo"); }
  void start_ping_side() override {
    owner_pid_ = getpid();
    attach("perf.ping", "perf.pong", "ping");
  }
  void round_trip(uint64_t i) override {
    send(i);
    receive(i);
  }
  void echo(uint64_t count) override {
    for (uint64_t i = 0; i < count; ++i) {
      receive(i);
      send(i);
    }
  }

 private:
  void attach(const char* out, const char* in, const char* name) {
    bus_.emplace(Bus::open_existing(bus_name_));
    pub_.emplace(bus_->publisher(out, PublisherOptions{name, {}}));
    SubscriberOptions options;
    options.from = StartAt::Earliest;
    options.spin = std::chrono::nanoseconds(0);
    sub_.emplace(bus_->subscribe(in, options));
    // Small payloads: build once, then stamp and publish (one copy) per message.
    uint8_t* bytes = nullptr;
    fbb_.Finish(flowbus::perf::CreatePayload(fbb_, fbb_.CreateUninitializedVector(bytes_, 1, &bytes)));
    prebuilt_bytes_ = bytes;
  }
  void send(uint64_t i) {
    if (bytes_ >= 64 * 1024) {  // zero copy: build in place in the ring
      Loan loan;
      while (pub_->loan(bytes_ + 256, loan) != PublishStatus::Ok) {
      }
      auto& b = loan.builder();
      uint8_t* bytes = nullptr;
      const auto vec = b.CreateUninitializedVector(bytes_, 1, &bytes);
      stamp(bytes, bytes_, i);
      b.Finish(flowbus::perf::CreatePayload(b, vec));
      pub_->commit(loan);
      return;
    }
    stamp(prebuilt_bytes_, bytes_, i);
    while (pub_->try_publish({fbb_.GetBufferPointer(), fbb_.GetSize()}) != PublishStatus::Ok) {
    }
  }
  void receive(uint64_t i) {
    Event e;
    for (;;) {
      const ReadResult r = sub_->read(e);
      if (r.status == ReadStatus::Ok) break;
      if (r.status != ReadStatus::Empty) fail(std::string("read: ") + to_string(r.status));
      if (wait_ == WaitMode::Futex) sub_->wait(std::chrono::seconds(1));
    }
    const auto* payload = flatbuffers::GetRoot<flowbus::perf::Payload>(e.data());
    if (!check_stamp(payload->bytes()->data(), bytes_, i)) fail("flowbus: message damaged");
    (void)sub_->release(e);
  }

  size_t bytes_;
  WaitMode wait_;
  std::string bus_name_;
  pid_t owner_pid_ = 0;
  std::optional<Bus> bus_;
  std::optional<Publisher> pub_;
  std::optional<Subscriber> sub_;
  flatbuffers::FlatBufferBuilder fbb_;
  uint8_t* prebuilt_bytes_ = nullptr;
};

}  // namespace

std::unique_ptr<PingPong> make_transport(const std::string& name, size_t bytes, WaitMode wait) {
  if (bytes < 64) fail("a payload is at least 64 bytes (one cache line)");
  if (name == "floor") return std::make_unique<Floor>(bytes, wait);
  if (name == "uds") return std::make_unique<FdPair>(true, bytes);
  if (name == "pipe") return std::make_unique<FdPair>(false, bytes);
  if (name == "flowbus") return std::make_unique<Flowbus>(bytes, wait);
  fail("unknown transport '" + name + "': use flowbus, floor, uds or pipe");
}

}  // namespace flowbus::perf
