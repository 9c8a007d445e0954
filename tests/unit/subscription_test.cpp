// Subscriptions recorded in reader segments, and the attachments new rings reserve
// for them: the cases an attack on the first version found (issue 15 item 1;
// the multi-process start-up races are tests/process/startup_order_test.cpp).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "cursor_slots.hpp"
#include "flowbus/bus.hpp"
#include "flowbus/error.hpp"
#include "flowbus/internal/mirroring.hpp"
#include "test_bus.hpp"

using namespace flowbus;
using namespace flowbus::testing;
using namespace std::chrono_literals;

namespace {

std::vector<uint8_t> reading(uint64_t seq) {
  flatbuffers::FlatBufferBuilder fbb;
  build_reading(fbb, seq);
  return {fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize()};
}

}  // namespace

// A subscriber destroyed before it ever looked at a ring reserved for it must
// not hold that ring's writer (for good, with the timeout "never").
TEST(SubscriptionTest, AReservationWhoseSubscriberIsGoneHoldsNoWriterBack) {
  ScopedBusName name("subs");
  Bus bus = Bus::open(name.name);
  bus.create_topic(never_evicting("t.a"));
  std::optional<Subscriber> sub(bus.subscribe("t.>"));
  Publisher pub = bus.publisher("t.a", {"p"});
  EXPECT_EQ(owned_cursors(name.name, "t.a", "p"), 1);  // reserved for it
  sub.reset();                                          // never read
  for (uint64_t i = 0; i < 2000; ++i) ASSERT_EQ(pub.try_publish(reading(i)), PublishStatus::Ok) << i;
  EXPECT_EQ(owned_cursors(name.name, "t.a", "p"), 0);
  EXPECT_EQ(pub.evictions(), 1u);
}

// A mirror ring starts at its origin's sequence: a subscriber that existed
// before it and attaches late counts what was overwritten, not zero.
TEST(SubscriptionTest, AMirrorRingCreatedAfterASubscriberCountsWhatItOverwrote) {
  ScopedBusName name("subs");
  Bus bus = Bus::open(name.name);
  bus.create_topic(never_evicting("t.m", Policy::Latest));
  Subscriber sub = bus.subscribe("t.>");
  mirroring::MirrorOrigin origin{0x1234, "flowbus://elsewhere/plant/p", "node-b", 5000};
  Publisher mirror = mirroring::mirror_publisher(bus, "t.m", origin);
  for (uint64_t s = 5000; s < 6000; ++s)
    ASSERT_EQ(mirroring::publish_mirrored(mirror, reading(s), s, 1, {}, 0s), PublishStatus::Ok);
  uint64_t delivered = 0, missed = 0, first = UINT64_MAX;
  Event e;
  for (;;) {
    const ReadResult r = sub.read(e);
    if (r.status == ReadStatus::Empty) break;
    missed += r.missed;
    if (r.status != ReadStatus::Ok) continue;
    first = std::min(first, e.sequence());
    ++delivered;
    (void)sub.release(e);
  }
  EXPECT_LT(delivered, 1000u);
  EXPECT_EQ(delivered + missed, 1000u) << "first delivered " << first;
}

// The sidecar's `>` subscription reserves nothing: a parked export must not
// hold new writers back. Losses before it attaches are counted.
TEST(SubscriptionTest, ASubscriberThatAsksForNoReservationsHoldsNoNewWriterAndCountsWhatItMissed) {
  ScopedBusName name("subs");
  Bus bus = Bus::open(name.name);
  bus.create_topic(never_evicting("t.a"));
  Subscriber sub = mirroring::export_subscriber(bus, ">", {}, {.reserve_new_rings = false});
  Publisher pub = bus.publisher("t.a", {"p"});
  EXPECT_EQ(owned_cursors(name.name, "t.a", "p"), 0);
  for (uint64_t i = 0; i < 1000; ++i) ASSERT_EQ(pub.try_publish(reading(i)), PublishStatus::Ok) << i;
  const PollResult r = sub.poll([](const Event&) {});
  EXPECT_EQ(r.delivered + r.missed, 1000u);
}

// Latest: a reader asleep while the writer laps it by whole laps finds the
// commit word at its cursor reading 0 again (a later lap's frontier); it must
// still wake.
TEST(SubscriptionTest, ALatestSleeperLappedByWholeLapsWakes) {
  ScopedBusName name("subs");
  Bus bus = Bus::open(name.name);
  bus.create_topic(never_evicting("t.l", Policy::Latest));
  Publisher pub = bus.publisher("t.l", {"p"});
  SubscriberOptions options;
  options.spin = 0ns;
  Subscriber sub = bus.subscribe("t.l", options);
  // Events of exactly 128 bytes in all, 32 to a 4 KiB lap.
  std::vector<uint8_t> payload(128 - sizeof(detail::RecordHeader), 0);
  std::vector<std::span<const uint8_t>> lap(32, payload);
  for (int round = 0; round < 5; ++round) {
    std::atomic<bool> woke{false};
    std::thread waiter([&] { woke = sub.wait(3s); });
    std::this_thread::sleep_for(50ms);  // asleep by now
    ASSERT_EQ(pub.try_publish_batch(lap).published, 32u);
    waiter.join();
    EXPECT_TRUE(woke) << "round " << round;
    (void)sub.poll([](const Event&) {});
  }
}

// A ring's writer admits at most 64 readers (its attachments). A 65th
// subscriber, exact or wildcard, still attaches and reads: it holds nothing
// back until an attachment frees, and what the writer overwrites before it
// reads is reported Lost, counted (RingProtocolTest pins the mechanics).
TEST(SubscriptionTest, SubscribersBeyondTheWritersAttachmentsStillAttachAndRead) {
  ScopedBusName name("subs");
  Bus bus = Bus::open(name.name);
  bus.create_topic(sensor_topic("t.a"));
  Publisher pub = bus.publisher("t.a", {"p"});
  std::vector<Subscriber> full;
  for (uint32_t i = 0; i < detail::kAttachments; ++i) full.push_back(bus.subscribe("t.a"));
  Subscriber exact = bus.subscribe("t.a");
  Subscriber late = bus.subscribe("t.*");
  EXPECT_EQ(exact.ring_count(), 1u);
  EXPECT_EQ(late.ring_count(), 1u);
  EXPECT_TRUE(late.unread_rings().empty());
  ASSERT_EQ(pub.try_publish(reading(7)), PublishStatus::Ok);
  EXPECT_EQ(exact.poll([](const Event&) {}).delivered, 1u);
  EXPECT_EQ(late.poll([](const Event&) {}).delivered, 1u);
}

// A ring whose creator listed the subscriber's segment (and so reserved for
// it) may be Ready before the subscriber's own scan reaches it: that scan
// sees it as existing at subscribe time, yet the reservation is ours, and
// must be adopted, or it holds the writer at 0 until the slow-consumer
// timeout evicts it (for good with "never"). Subscribing and creating the
// ring race here, round after round: no round may leave a reservation
// behind or evict anyone.
TEST(SubscriptionTest, ARingMadeWhileItsSubscriberSubscribesLeavesNoReservationBehind) {
  constexpr int kRounds = 100;
  constexpr uint64_t kEvents = 300;  // several laps of the ring
  int evicted_rounds = 0;
  for (int round = 0; round < kRounds; ++round) {
    ScopedBusName name("subsrace");
    Bus bus = Bus::open(name.name);
    TopicSpec spec = sensor_topic("t.a", Policy::Block, 4096);
    spec.slow_consumer_timeout = 200ms;
    bus.create_topic(spec);
    // Rings that exist already, in the slots before the new one: the
    // subscriber's scan opens and maps each before it gets to the new ring,
    // which leaves the creator time to list, reserve and make it Ready.
    bus.create_topic(sensor_topic("t.b", Policy::Block, 1 << 20));
    std::vector<Publisher> older;
    for (const char* p : {"x", "y", "z"}) older.push_back(bus.publisher("t.b", {p}));
    std::atomic<int> ready{0};
    const auto go = [&] {
      ready.fetch_add(1);
      while (ready.load() < 2) {
      }
    };
    uint64_t evictions = 0;
    std::string reader_problem;
    std::thread reader([&] {
      go();
      Subscriber s = bus.subscribe("t.>", {StartAt::Earliest});
      uint64_t next = 0;
      for (const auto until = std::chrono::steady_clock::now() + 10s;
           next < kEvents && std::chrono::steady_clock::now() < until;) {
        Event e;
        const ReadResult r = s.read(e);
        if (r.status == ReadStatus::Ok) {
          next = e.sequence() + 1;
          (void)s.release(e);
        } else if (r.status == ReadStatus::Evicted && reader_problem.empty()) {
          reader_problem = "evicted";
        }
      }
    });
    go();
    {
      Publisher pub = bus.publisher("t.a", {"p"});
      const auto until = std::chrono::steady_clock::now() + 10s;
      for (uint64_t i = 0; i < kEvents && std::chrono::steady_clock::now() < until;)
        if (pub.try_publish(reading(i)) == PublishStatus::Ok) ++i;
      reader.join();
      evictions = pub.evictions();
    }
    evicted_rounds += evictions != 0;
    EXPECT_EQ(reader_problem, "") << "round " << round;
  }
  EXPECT_EQ(evicted_rounds, 0) << "rounds in which a reservation was left to hold the writer";
}
