#include <unistd.h>

#include <optional>

#include <flatbuffers/idl.h>

#include "flowbus/bus.hpp"
#include "flowbus/detail/platform.hpp"
#include "flowbus/error.hpp"
#include "flowbus/perf_generated.h"
#include "transports.hpp"

namespace flowbus::perf {

// --- flowbus: the real API, a topic each way; loan() from 64 KiB up ----------
namespace {

const char* kPerfSchema =
    "namespace flowbus.perf;\n"
    "table Payload { bytes: [ubyte]; }\n"
    "root_type Payload;\n";

}  // namespace

std::vector<uint8_t> perf_schema() {
  flatbuffers::Parser parser;
  if (!parser.Parse(kPerfSchema)) fail("the embedded perf schema does not parse: " + parser.error_);
  parser.Serialize();
  return {parser.builder_.GetBufferPointer(), parser.builder_.GetBufferPointer() + parser.builder_.GetSize()};
}

namespace {

class Flowbus : public PingPong {
 public:
  Flowbus(size_t bytes, WaitMode wait, const BackoffOptions& backoff, bool untrusted)
      : bytes_(bytes), wait_(wait), backoff_(backoff), bus_name_("perf-" + std::to_string(getpid())) {
    Bus bus = Bus::open(bus_name_);
    uint64_t ring = 1 << 22;
    while (ring < 8 * (bytes + 4096)) ring <<= 1;
    for (const char* topic : {"perf.ping", "perf.pong"}) {
      TopicSpec spec{topic, "flowbus.perf.Payload", perf_schema(), Policy::Block, ring};
      spec.untrusted = untrusted;  // both ways: a round trip verifies two copies
      bus.create_topic(spec);
    }
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
  void echo(uint64_t first, uint64_t count) override {
    for (uint64_t i = first; i < first + count; ++i) {
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
    options.spin = std::chrono::nanoseconds(0);  // futex: straight to sleep
    if (wait_ == WaitMode::Backoff) {
      options.wait_strategy = WaitStrategy::Backoff;
      options.backoff = backoff_;
    }
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
      (void)pub_->commit(loan);  // Ok: nothing was published since the loan
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
      // spin: a pause between looks, as a spinning service would; each look
      // pulls the commit line the writer is filling away from it (measured:
      // 64 B p50 -6%, lower in 10 of 10 interleaved rounds, bench/README.md).
      if (wait_ == WaitMode::Spin)
        detail::cpu_relax();
      else
        sub_->wait(std::chrono::seconds(1));
    }
    const auto* payload = flatbuffers::GetRoot<flowbus::perf::Payload>(e.data());
    if (!check_stamp(payload->bytes()->data(), bytes_, i)) fail("flowbus: message damaged");
    (void)sub_->release(e);
  }

  size_t bytes_;
  WaitMode wait_;
  BackoffOptions backoff_;
  std::string bus_name_;
  pid_t owner_pid_ = 0;
  std::optional<Bus> bus_;
  std::optional<Publisher> pub_;
  std::optional<Subscriber> sub_;
  flatbuffers::FlatBufferBuilder fbb_;
  uint8_t* prebuilt_bytes_ = nullptr;
};

}  // namespace

std::unique_ptr<PingPong> make_flowbus(size_t bytes, WaitMode wait, const BackoffOptions& backoff, bool untrusted) {
  return std::make_unique<Flowbus>(bytes, wait, backoff, untrusted);
}

}  // namespace flowbus::perf
