// Publisher::try_publish_batch and publish_batch: a burst of events with one
// time, their own sequences, one wake-up, and an exact account of where it stopped.
#include <gtest/gtest.h>

#include <chrono>
#include <span>
#include <thread>
#include <vector>

#include "flowbus/detail/platform.hpp"
#include "test_bus.hpp"

using namespace flowbus;
using namespace flowbus::testing;
using namespace std::chrono_literals;

namespace {

/// `n` finished SensorReadings whose seq fields are first, first + 1, ...
struct Readings {
  std::vector<std::vector<uint8_t>> buffers;
  std::vector<std::span<const uint8_t>> spans;
  Readings(uint64_t first, size_t n) {
    flatbuffers::FlatBufferBuilder fbb;
    for (size_t i = 0; i < n; ++i) {
      build_reading(fbb, first + i);
      buffers.emplace_back(fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize());
    }
    spans.assign(buffers.begin(), buffers.end());
  }
};

uint64_t seq_field(const Event& e) { return examples::GetSensorReading(e.data())->seq(); }

}  // namespace

TEST(BatchTest, ABurstArrivesWholeAndInOrderWithOneTimeAndItsOwnSequences) {
  ScopedBusName name("batch");
  Bus bus = Bus::open(name.name);
  bus.create_topic(sensor_topic("t"));
  Subscriber sub = bus.subscribe("t");
  Publisher pub = bus.publisher("t", {"burst"});
  const Readings first(0, 3);
  ASSERT_EQ(pub.try_publish(first.spans[0]), PublishStatus::Ok);  // a single publish before: sequences go on from it
  const Readings burst(1, 100);
  const uint64_t before = detail::unix_now_ns();
  const BatchResult r = pub.try_publish_batch(burst.spans);
  const uint64_t after = detail::unix_now_ns();
  EXPECT_EQ(r.published, 100u);
  EXPECT_EQ(r.status, PublishStatus::Ok);
  EXPECT_EQ(pub.next_sequence(), 101u);
  uint64_t expected = 0, burst_time = 0;
  (void)sub.poll([&](const Event& e) {
    EXPECT_EQ(e.sequence(), expected);
    EXPECT_EQ(seq_field(e), expected);
    EXPECT_NE(e.source().find("/burst"), std::string::npos) << e.source();
    if (expected == 1) burst_time = e.time_ns();
    if (expected >= 1) {
      EXPECT_EQ(e.time_ns(), burst_time) << "event " << expected;  // one clock read per burst
    }
    ++expected;
  });
  EXPECT_EQ(expected, 101u);
  EXPECT_GE(burst_time, before);
  EXPECT_LE(burst_time, after);
}

TEST(BatchTest, AnEmptyBurstWritesNothing) {
  ScopedBusName name("batch");
  Bus bus = Bus::open(name.name);
  bus.create_topic(sensor_topic("t"));
  Subscriber sub = bus.subscribe("t");
  Publisher pub = bus.publisher("t");
  const BatchResult r = pub.try_publish_batch({});
  EXPECT_EQ(r.published, 0u);
  EXPECT_EQ(r.status, PublishStatus::Ok);
  EXPECT_EQ(pub.next_sequence(), 0u);
  EXPECT_EQ(sub.poll([](const Event&) {}).delivered, 0u);
}

TEST(BatchTest, ABurstStopsWhereTheRingIsFullAndTheRestFollowsOnceThereIsRoom) {
  ScopedBusName name("batch");
  Bus bus = Bus::open(name.name);
  bus.create_topic(sensor_topic("t", Policy::Block, 4096));
  Publisher pub = bus.publisher("t");
  Subscriber sub = bus.subscribe("t");  // holds the ring: nothing is read yet
  const Readings burst(0, 1000);
  const BatchResult r = pub.try_publish_batch(burst.spans);
  EXPECT_EQ(r.status, PublishStatus::Full);
  ASSERT_GT(r.published, 10u);
  ASSERT_LT(r.published, 1000u);
  EXPECT_EQ(pub.next_sequence(), r.published);
  uint64_t seen = 0;
  EXPECT_EQ(sub.poll([&](const Event& e) { EXPECT_EQ(seq_field(e), seen++); }).missed, 0u);
  EXPECT_EQ(seen, r.published);  // exactly the ones it said, none of the others
  const BatchResult rest = pub.try_publish_batch(std::span(burst.spans).subspan(r.published, 10));
  EXPECT_EQ(rest.published, 10u);
  (void)sub.poll([&](const Event& e) { EXPECT_EQ(seq_field(e), seen++); });
  EXPECT_EQ(seen, r.published + 10);
}

TEST(BatchTest, AnEventThatCanNeverFitStopsTheBurstThereAndNamesWhy) {
  ScopedBusName name("batch");
  Bus bus = Bus::open(name.name);
  bus.create_topic(sensor_topic("t", Policy::Block, 4096));
  Publisher pub = bus.publisher("t");
  Subscriber sub = bus.subscribe("t");
  Readings burst(0, 4);
  const std::vector<uint8_t> huge(4096, 0);  // more than the 7/16 of the ring a record may take
  burst.spans[2] = huge;
  const BatchResult r = pub.try_publish_batch(burst.spans);
  EXPECT_EQ(r.published, 2u);
  EXPECT_EQ(r.status, PublishStatus::TooLarge);
  EXPECT_EQ(pub.next_sequence(), 2u);
  EXPECT_EQ(sub.poll([](const Event&) {}).delivered, 2u);
  const BatchResult waited = pub.publish_batch(burst.spans, 1s);  // TooLarge is never waited for
  EXPECT_EQ(waited.published, 2u);
  EXPECT_EQ(waited.status, PublishStatus::TooLarge);
}

TEST(BatchTest, ASleepingReaderIsWokenOnceForAWholeBurst) {
  ScopedBusName name("batch");
  Bus bus = Bus::open(name.name);
  bus.create_topic(sensor_topic("t"));
  Publisher pub = bus.publisher("t");
  Subscriber sub = bus.subscribe("t", {StartAt::Latest, 0ns});
  std::atomic<bool> woke{false};
  std::thread sleeper([&] { woke = sub.wait(5s); });
  std::this_thread::sleep_for(100ms);  // let it fall asleep
  const uint64_t before = detail::futex_wake_calls();
  const Readings burst(0, 50);
  EXPECT_EQ(pub.try_publish_batch(burst.spans).published, 50u);
  EXPECT_EQ(detail::futex_wake_calls(), before + 1);  // one wake-up for 50 events
  sleeper.join();
  EXPECT_TRUE(woke);
  EXPECT_EQ(sub.poll([](const Event&) {}).delivered, 50u);
}

TEST(BatchTest, PublishBatchWaitsForAReaderAndLosesNothing) {
  ScopedBusName name("batch");
  Bus bus = Bus::open(name.name);
  bus.create_topic(sensor_topic("t", Policy::Block, 4096));
  Publisher pub = bus.publisher("t");
  Subscriber sub = bus.subscribe("t", {StartAt::Earliest, 0ns});
  constexpr uint64_t kEvents = 20000;  // many laps of a 4 KiB ring
  uint64_t seen = 0, disorder = 0;
  std::thread reader([&] {
    const auto deadline = std::chrono::steady_clock::now() + 60s;
    while (seen < kEvents && std::chrono::steady_clock::now() < deadline)
      if (sub.poll([&](const Event& e) { disorder += seq_field(e) != seen++; }).delivered == 0) sub.wait(10ms);
  });
  for (uint64_t first = 0; first < kEvents; first += 500) {
    const Readings burst(first, 500);
    const BatchResult r = pub.publish_batch(burst.spans, 30s);
    ASSERT_EQ(r.published, 500u) << "burst at " << first;
    ASSERT_EQ(r.status, PublishStatus::Ok);
  }
  reader.join();
  EXPECT_EQ(seen, kEvents);
  EXPECT_EQ(disorder, 0u);
}

TEST(BatchTest, PublishBatchGivesUpAfterItsTimeoutOnAStuckReader) {
  ScopedBusName name("batch");
  Bus bus = Bus::open(name.name);
  bus.create_topic(sensor_topic("t", Policy::Block, 4096));
  Publisher pub = bus.publisher("t");
  Subscriber sub = bus.subscribe("t");  // never reads
  const Readings burst(0, 1000);
  const auto t0 = std::chrono::steady_clock::now();
  const BatchResult r = pub.publish_batch(burst.spans, 50ms);
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 50ms);  // it did wait, then stopped
  EXPECT_EQ(r.status, PublishStatus::Full);
  EXPECT_LT(r.published, 1000u);
  uint64_t seen = 0;
  (void)sub.poll([&](const Event& e) { EXPECT_EQ(seq_field(e), seen++); });
  EXPECT_EQ(seen, r.published);
}
