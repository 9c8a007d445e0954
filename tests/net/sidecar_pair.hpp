// The sidecar tests' common rig: two buses on this host, A exporting
// sensor.> through a listening `flowbus sidecar`, B importing it through one
// that connects; publishing and collecting sensor readings.
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "flowbus/bus.hpp"
#include "sidecar_helpers.hpp"
#include "test_bus.hpp"

namespace flowbus::testing {

using namespace std::chrono_literals;

inline uint64_t seq_field(const Event& e) { return examples::GetSensorReading(e.data())->seq(); }

/// Bus A exports sensor.> through a listening sidecar; bus B's sidecar
/// connects to it and imports sensor.>.
struct Pair {
  ScopedBusName a{"sidecar-a"}, b{"sidecar-b"};
  uint16_t port = free_port();
  std::string log_a, log_b;
  Bus bus_a = Bus::open(a.name);
  Bus bus_b = Bus::open(b.name);
  std::unique_ptr<SidecarProcess> side_a, side_b;

  explicit Pair(const char* test) {
    const std::string dir = ::testing::TempDir();
    log_a = dir + "/" + test + "-a.log";
    log_b = dir + "/" + test + "-b.log";
    std::remove(log_a.c_str());
    std::remove(log_b.c_str());
    TopicSpec spec = sensor_topic("sensor.temp", Policy::Block, 1 << 20);
    spec.slow_consumer_timeout = 20s;  // a sidecar restart is not a stuck reader
    bus_a.create_topic(spec);
  }
  void start_a(std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"--bus", a.name, "--node", "node-a", "--listen", "127.0.0.1:" + std::to_string(port),
                                     "--export", "sensor.>"};
    args.insert(args.end(), extra.begin(), extra.end());
    side_a = std::make_unique<SidecarProcess>(log_a, args);
  }
  void start_b(std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"--bus", b.name, "--node", "node-b", "--peer", "127.0.0.1:" + std::to_string(port),
                                     "--import", "sensor.>"};
    args.insert(args.end(), extra.begin(), extra.end());
    side_b = std::make_unique<SidecarProcess>(log_b, args);
  }
  std::string logs() const { return "--- A:\n" + read_file(log_a) + "--- B:\n" + read_file(log_b); }
};

/// A subscriber that starts at the oldest retained event of each ring.
inline Subscriber subscribe_earliest(Bus& bus, const std::string& pattern) {
  SubscriberOptions options;
  options.from = StartAt::Earliest;
  return bus.subscribe(pattern, options);
}

/// Publishes sensor readings seq = first..first+count-1 on `bus` (its own thread).
inline std::thread publish_readings(Bus& bus, uint64_t first, uint64_t count, std::atomic<uint64_t>& published) {
  return std::thread([&bus, first, count, &published] {
    Publisher pub = bus.publisher("sensor.temp", {"line1"});
    flatbuffers::FlatBufferBuilder fbb;
    for (uint64_t i = first; i < first + count; ++i) {
      build_reading(fbb, i, double(i % 1000));
      if (pub.publish(fbb, 30s) != PublishStatus::Ok) return;
      published.store(i + 1, std::memory_order_relaxed);
    }
  });
}

/// Reads B until `count` events arrived or `timeout` passed; checks order
/// and content as it goes. Returns how many arrived in order.
struct Collected {
  uint64_t in_order = 0;
  uint64_t problems = 0;  // out of order, doubled, lost, corrupt, wrong content
  std::string first_problem;
  std::vector<uint64_t> time_ns;
  std::string id_of_first, source;
};

inline Collected collect(Subscriber& sub, uint64_t count, std::chrono::milliseconds timeout, uint64_t first = 0) {
  Collected c;
  c.in_order = first;
  count += first;
  c.time_ns.reserve(count);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  Event e;
  while (c.in_order < count && std::chrono::steady_clock::now() < deadline) {
    const ReadResult r = sub.read(e);
    if (r.status == ReadStatus::Empty) {
      sub.wait(10ms);
      continue;
    }
    if (r.status != ReadStatus::Ok) {
      if (c.problems++ == 0) c.first_problem = std::string("read status ") + to_string(r.status) + " missed " + std::to_string(r.missed);
      continue;
    }
    if (e.sequence() != c.in_order || seq_field(e) != c.in_order ||
        examples::GetSensorReading(e.data())->celsius() != double(c.in_order % 1000)) {
      if (c.problems++ == 0)
        c.first_problem = "expected event " + std::to_string(c.in_order) + ", got sequence " + std::to_string(e.sequence()) +
                          " holding " + std::to_string(seq_field(e));
    } else {
      if (c.in_order == first) {
        c.id_of_first = e.id();
        c.source = e.source();
      }
      c.time_ns.push_back(e.time_ns());
      ++c.in_order;
    }
    (void)sub.release(e);
  }
  c.in_order -= first;
  return c;
}

/// The mirror ring on B is made by B's sidecar when the first event comes;
/// like any ring it is read from when a reader is attached. So: one event
/// first, read on B (the reader now holds a cursor there), then the rest.
inline void prime(Pair& p, Subscriber& on_b, std::atomic<uint64_t>& published) {
  publish_readings(p.bus_a, 0, 1, published).join();
  const Collected first = collect(on_b, 1, 30s);
  ASSERT_EQ(first.in_order, 1u) << first.first_problem << p.logs();
}

/// The next Refuse the sidecar sends (skipping its Hello, Auth, ...).
inline std::optional<wire::RefuseView> next_refusal(HandPeer& peer) {
  for (;;) {
    std::optional<wire::FrameView> f = peer.next_frame(5s);
    if (!f) return std::nullopt;
    if (auto* r = std::get_if<wire::RefuseView>(&*f)) return *r;
  }
}

}  // namespace flowbus::testing
