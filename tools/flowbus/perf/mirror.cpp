#include "mirror.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <mutex>
#include <optional>
#include <thread>

#include "flowbus/bus.hpp"
#include "flowbus/error.hpp"
#include "flowbus/perf_generated.h"
#include "flowbus/sidecar.hpp"
#include "transports.hpp"

namespace flowbus::perf {

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

double ns_since(Clock::time_point t0) { return double(std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count()); }

std::string mirror_topic(size_t bytes) { return "perf.mirror.s" + std::to_string(bytes); }

uint64_t ring_for(size_t bytes) {
  uint64_t ring = 4u << 20;
  while (ring < 256 * (bytes + 256)) ring <<= 1;  // 64 KiB events: 32 MiB, 256 of them
  return ring;
}

TopicSpec perf_topic(const std::string& name, size_t bytes) {
  TopicSpec spec{name, "flowbus.perf.Payload", perf_schema(), Policy::Block, ring_for(bytes)};
  spec.slow_consumer_timeout = 60s;  // a busy sidecar on 2 shared cores is slow, not stuck
  return spec;
}

/// A finished Payload FlatBuffer of `bytes` payload bytes, stamped in place.
struct Message {
  flatbuffers::FlatBufferBuilder fbb;
  uint8_t* payload = nullptr;
  size_t bytes;
  explicit Message(size_t n) : fbb(n + 256), bytes(n) {
    fbb.Finish(flowbus::perf::CreatePayload(fbb, fbb.CreateUninitializedVector(n, 1, &payload)));
    std::memset(payload, 0x5a, n);
  }
  std::span<const uint8_t> stamped(uint64_t i) {
    stamp(payload, bytes, i);
    return {fbb.GetBufferPointer(), fbb.GetSize()};
  }
};

bool payload_ok(const Event& e, size_t bytes, uint64_t i) {
  const auto* p = flatbuffers::GetRoot<flowbus::perf::Payload>(e.data());
  return p && p->bytes() && p->bytes()->size() == bytes && check_stamp(p->bytes()->data(), bytes, i);
}

/// Publishes `m` stamped with `i`, waiting as Block makes it; false if `stop` was raised meanwhile.
bool publish_blocking(Publisher& pub, Message& m, uint64_t i, const std::atomic<bool>& stop) {
  for (;;) {
    const PublishStatus s = pub.publish(m.stamped(i), 100ms);
    if (s == PublishStatus::Ok) return true;
    if (s != PublishStatus::Full) fail(std::string("publish on bus A: ") + to_string(s));
    if (stop.load(std::memory_order_relaxed)) return false;
  }
}

/// Waits for the next event on `sub`: true with it, false after `timeout`.
/// Throws on anything but Ok and Empty (a gap the bus saw).
bool next_event(Subscriber& sub, Event& e, Clock::duration timeout, const char* where) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    const ReadResult r = sub.read(e);
    if (r.status == ReadStatus::Ok) return true;
    if (r.status != ReadStatus::Empty)
      fail(std::string(where) + ": read " + to_string(r.status) + ", " + std::to_string(r.missed) + " events missed");
    if (Clock::now() > deadline) return false;
    sub.wait(10ms);
  }
}

}  // namespace

struct MirrorRig::Impl {
  // Not "perf-...": the other perf tests look for leftovers under that
  // prefix, and ctest runs them alongside this one.
  std::string name_a = "perfmirror-" + std::to_string(getpid()) + "-a";
  std::string name_b = "perfmirror-" + std::to_string(getpid()) + "-b";
  size_t rtt_bytes;
  mutable std::mutex log_mutex;
  std::string log;
  std::unique_ptr<Sidecar> side_a, side_b;
  std::atomic<bool> stop_a{false}, stop_b{false};
  std::thread thread_a, thread_b;
  std::optional<Bus> bus_a, bus_b;

  void add_log(const char* node, const std::string& line) {
    std::lock_guard lock(log_mutex);
    log += std::string(node) + ": " + line + "\n";
  }

  std::thread run(Sidecar& s, const std::atomic<bool>& stop, const char* node) {
    return std::thread([this, &s, &stop, node] {
      try {
        s.run(stop);
      } catch (const std::exception& e) {
        add_log(node, std::string("stopped by an error: ") + e.what());
      }
    });
  }

  void stop_all() noexcept {
    stop_a = true;
    stop_b = true;
    if (thread_a.joinable()) thread_a.join();
    if (thread_b.joinable()) thread_b.join();
    side_a.reset();
    side_b.reset();
    bus_a.reset();
    bus_b.reset();
    try {
      Bus::destroy(name_a);
    } catch (...) {
    }
    try {
      Bus::destroy(name_b);
    } catch (...) {
    }
  }
};

MirrorRig::MirrorRig(const std::vector<size_t>& sizes, size_t rtt_bytes) : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.rtt_bytes = rtt_bytes;
  try {
    m.bus_a.emplace(Bus::open(m.name_a));
    m.bus_b.emplace(Bus::open(m.name_b));
    // Both sides made up front, so B's mirror rings get our ring sizes and
    // timeouts (a sidecar creates a missing imported topic with defaults).
    for (Bus* bus : {&*m.bus_a, &*m.bus_b}) {
      for (size_t bytes : sizes) bus->create_topic(perf_topic(mirror_topic(bytes), bytes));
      bus->create_topic(perf_topic("perf.ping", rtt_bytes));
      bus->create_topic(perf_topic("perf.pong", rtt_bytes));
    }
    SidecarOptions a;
    a.bus = m.name_a;
    a.node = "perf-a";
    a.listen = "127.0.0.1:0";
    a.exports = {"perf.ping", "perf.mirror.>"};
    a.imports = {"perf.pong"};
    a.log = [this](const std::string& line) { impl_->add_log("sidecar A", line); };
    m.side_a = std::make_unique<Sidecar>(a);
    m.side_a->start();
    SidecarOptions b;
    b.bus = m.name_b;
    b.node = "perf-b";
    b.peers = {"127.0.0.1:" + std::to_string(m.side_a->listen_port())};
    b.exports = {"perf.pong"};
    b.imports = {"perf.ping", "perf.mirror.>"};
    b.log = [this](const std::string& line) { impl_->add_log("sidecar B", line); };
    m.side_b = std::make_unique<Sidecar>(b);
    m.side_b->start();
    m.thread_a = m.run(*m.side_a, m.stop_a, "sidecar A");
    m.thread_b = m.run(*m.side_b, m.stop_b, "sidecar B");
  } catch (...) {
    m.stop_all();
    throw;
  }
}

MirrorRig::~MirrorRig() { impl_->stop_all(); }

std::string MirrorRig::logs() const {
  std::lock_guard lock(impl_->log_mutex);
  return impl_->log;
}

MirrorThroughput MirrorRig::throughput(size_t bytes, double seconds) {
  Impl& m = *impl_;
  const std::string topic = mirror_topic(bytes);
  SubscriberOptions from_start;
  from_start.from = StartAt::Earliest;
  Subscriber on_b = m.bus_b->subscribe(topic, from_start);
  Publisher pub = m.bus_a->publisher(topic, PublisherOptions{"perf-mirror", {}});
  Message msg(bytes);
  std::atomic<bool> stop{false};
  // Event 0 first: once it is read on B the connection is up, B's mirror
  // ring exists and our reader holds a cursor on it. Not timed.
  if (!publish_blocking(pub, msg, 0, stop)) fail("unreachable");
  Event e;
  if (!next_event(on_b, e, 20s, "bus B"))
    fail("the first event on " + topic + " did not reach bus B within 20 s; sidecar log:\n" + logs());
  if (e.sequence() != 0 || !payload_ok(e, bytes, 0)) fail("the first event on bus B is not event 0");
  (void)on_b.release(e);

  std::atomic<uint64_t> published{1};  // events 0..published-1 are in A
  std::atomic<bool> done{false};
  std::string publisher_error;
  const auto t0 = Clock::now();
  std::thread writer([&] {
    try {
      const auto end = t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
      uint64_t i = 1;
      while (Clock::now() < end && publish_blocking(pub, msg, i, stop)) published.store(++i, std::memory_order_release);
    } catch (const std::exception& ex) {
      publisher_error = ex.what();
    }
    done.store(true, std::memory_order_release);
  });
  uint64_t next = 1;
  std::string problem;
  auto last_progress = Clock::now();
  double elapsed_ns = 0;
  try {
    for (;;) {
      const ReadResult r = on_b.read(e);
      if (r.status == ReadStatus::Empty) {
        if (done.load(std::memory_order_acquire) && next == published.load(std::memory_order_acquire)) break;
        if (Clock::now() - last_progress > 20s) {
          problem = "no event for 20 s on bus B after event " + std::to_string(next - 1);
          break;
        }
        on_b.wait(10ms);
        continue;
      }
      if (r.status != ReadStatus::Ok) {
        problem = std::string("bus B: read ") + to_string(r.status) + " after event " + std::to_string(next - 1) + ", " +
                  std::to_string(r.missed) + " missed";
        break;
      }
      if (e.sequence() != next || !payload_ok(e, bytes, next)) {
        problem = "expected event " + std::to_string(next) + " on bus B, got sequence " + std::to_string(e.sequence()) +
                  (e.sequence() < next ? " (doubled)" : e.sequence() > next ? " (gap)" : " (damaged payload)");
        break;
      }
      (void)on_b.release(e);
      ++next;
      last_progress = Clock::now();
      elapsed_ns = ns_since(t0);
    }
  } catch (const std::exception& ex) {
    problem = ex.what();
  }
  stop = true;
  writer.join();
  if (!publisher_error.empty()) fail(publisher_error);
  if (!problem.empty()) fail(topic + ": " + problem + "\nsidecar log:\n" + logs());
  MirrorThroughput out;
  out.bytes = bytes;
  out.events = next - 1;
  out.seconds = elapsed_ns / 1e9;
  return out;
}

std::vector<double> MirrorRig::round_trips(uint64_t iters, uint64_t warmup) {
  Impl& m = *impl_;
  const size_t bytes = m.rtt_bytes;
  SubscriberOptions quiet;  // both ends sleep on the futex while they wait, as a blocking recv() does
  quiet.from = StartAt::Earliest;
  quiet.spin = std::chrono::nanoseconds(0);
  // The echo on B: perf.ping in, the same stamp out on perf.pong.
  std::atomic<bool> stop{false};
  std::string echo_error;
  Subscriber pings = m.bus_b->subscribe("perf.ping", quiet);
  Publisher pong = m.bus_b->publisher("perf.pong", PublisherOptions{"perf-echo", {}});
  const uint64_t total = 1 + warmup + iters;
  std::thread echo([&] {
    try {
      Message out(bytes);
      Event e;
      for (uint64_t i = 0; i < total && !stop.load(std::memory_order_relaxed);) {
        const ReadResult r = pings.read(e);
        if (r.status == ReadStatus::Empty) {
          pings.wait(100ms);
          continue;
        }
        if (r.status != ReadStatus::Ok) fail(std::string("echo on bus B: read ") + to_string(r.status));
        if (e.sequence() != i || !payload_ok(e, bytes, i)) fail("echo on bus B: expected ping " + std::to_string(i));
        (void)pings.release(e);
        if (!publish_blocking(pong, out, i, stop)) return;
        ++i;
      }
    } catch (const std::exception& ex) {
      echo_error = ex.what();
    }
  });
  std::vector<double> rtt;
  std::string problem;
  try {
    Subscriber pongs = m.bus_a->subscribe("perf.pong", quiet);
    Publisher ping = m.bus_a->publisher("perf.ping", PublisherOptions{"perf-ping", {}});
    Message msg(bytes);
    Event e;
    rtt.reserve(iters);
    for (uint64_t i = 0; i < total; ++i) {
      const auto t = Clock::now();
      if (!publish_blocking(ping, msg, i, stop)) break;
      // Round trip 0 waits for the connection and B's mirror ring: 20 s; then 5 s each.
      if (!next_event(pongs, e, i == 0 ? 20s : 5s, "bus A"))
        fail("no pong " + std::to_string(i) + " on bus A");  // the echo's error, if any, is added below
      const double ns = ns_since(t);
      if (e.sequence() != i || !payload_ok(e, bytes, i)) fail("bus A: expected pong " + std::to_string(i));
      (void)pongs.release(e);
      if (i > warmup) rtt.push_back(ns);
    }
  } catch (const std::exception& ex) {
    problem = ex.what();
  }
  stop = true;
  echo.join();
  if (!problem.empty()) fail(problem + (echo_error.empty() ? "" : "; echo: " + echo_error) + "\nsidecar log:\n" + logs());
  if (!echo_error.empty()) fail(echo_error);
  return rtt;
}

// ---- the baseline: a plain loopback TCP echo ------------------------------------

namespace {

void set_nodelay(int fd) {
  const int one = 1;
  if (::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0) fail("setsockopt TCP_NODELAY failed");
}

bool send_all(int fd, const uint8_t* p, size_t n) {
  while (n > 0) {
    const ssize_t k = ::send(fd, p, n, MSG_NOSIGNAL);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return false;
    p += k;
    n -= size_t(k);
  }
  return true;
}

bool recv_all(int fd, uint8_t* p, size_t n) {
  while (n > 0) {
    const ssize_t k = ::recv(fd, p, n, 0);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return false;
    p += k;
    n -= size_t(k);
  }
  return true;
}

struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

std::vector<double> tcp_round_trips(size_t bytes, uint64_t iters, uint64_t warmup) {
  Fd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (listener.fd < 0) fail("socket failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (::bind(listener.fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(listener.fd, 1) != 0 ||
      ::getsockname(listener.fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0)
    fail("cannot listen on loopback");
  const uint64_t total = warmup + iters;
  std::thread echo([&] {
    Fd conn(::accept(listener.fd, nullptr, nullptr));
    if (conn.fd < 0) return;
    set_nodelay(conn.fd);
    std::vector<uint8_t> buf(bytes);
    for (uint64_t i = 0; i < total; ++i)
      if (!recv_all(conn.fd, buf.data(), bytes) || !send_all(conn.fd, buf.data(), bytes)) return;
  });
  std::vector<double> rtt;
  std::string problem;
  {
    Fd conn(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (conn.fd < 0 || ::connect(conn.fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      problem = "cannot connect to the TCP echo";
      ::shutdown(listener.fd, SHUT_RDWR);
    } else {
      set_nodelay(conn.fd);
      std::vector<uint8_t> out(bytes, 0x5a), in(bytes);
      rtt.reserve(iters);
      for (uint64_t i = 0; i < total; ++i) {
        stamp(out.data(), bytes, i);
        const auto t = Clock::now();
        if (!send_all(conn.fd, out.data(), bytes) || !recv_all(conn.fd, in.data(), bytes)) {
          problem = "the TCP echo closed the connection";
          break;
        }
        const double ns = ns_since(t);
        if (!check_stamp(in.data(), bytes, i)) {
          problem = "the TCP echo sent back damaged bytes";
          break;
        }
        if (i >= warmup) rtt.push_back(ns);
      }
    }
  }  // closing our end ends the echo
  echo.join();
  if (!problem.empty()) fail(problem);
  return rtt;
}

}  // namespace flowbus::perf
