// The hot path allocates nothing: 1M publish/poll pairs, and 100k bursts, with a counting operator new.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>
#include <span>
#include <vector>

#include "test_bus.hpp"

#include "counting_new.hpp"

using flowbus::testing::g_allocations;

using namespace flowbus;
using namespace flowbus::testing;

namespace {

// Past the subscriber's join: the writer attests a new reader at its next
// limit refresh (system calls and allocation, once per join), a sixteenth
// of the ring after it; 1000 events of ~100 B are more than a 64 KiB ring.
void warm_up(Publisher& pub, Subscriber& sub, flatbuffers::FlatBufferBuilder& fbb) {
  for (uint64_t i = 0; i < 1000; ++i) {
    build_reading(fbb, i);
    ASSERT_EQ(pub.try_publish({fbb.GetBufferPointer(), fbb.GetSize()}), PublishStatus::Ok);
    ASSERT_EQ(sub.poll([](const Event&) {}).delivered, 1u);
  }
}

}  // namespace

TEST(AllocTest, PublishAndPollAllocateNothing) {
  ScopedBusName name("alloc");
  Bus bus = Bus::open(name.name);
  bus.create_topic(sensor_topic("t", Policy::Block, 1 << 16));
  Subscriber sub = bus.subscribe("t");
  Publisher pub = bus.publisher("t");
  flatbuffers::FlatBufferBuilder fbb(256);
  build_reading(fbb, 0);  // warm up: the builder's buffer, the subscriber's discovery of the ring
  ASSERT_EQ(pub.try_publish({fbb.GetBufferPointer(), fbb.GetSize()}), PublishStatus::Ok);
  ASSERT_EQ(sub.poll([](const Event&) {}).delivered, 1u);
  warm_up(pub, sub, fbb);
  const uint64_t first = pub.next_sequence();
  uint64_t sum = 0;
  const uint64_t before = g_allocations.load();
  for (uint64_t i = 0; i < 1000000; ++i) {
    build_reading(fbb, i);
    ASSERT_EQ(pub.try_publish({fbb.GetBufferPointer(), fbb.GetSize()}), PublishStatus::Ok);
    (void)sub.poll([&](const Event& e) { sum += e.sequence(); });
  }
  const uint64_t after = g_allocations.load();
  EXPECT_EQ(after - before, 0u);
  EXPECT_EQ(sum, 1000000ull * first + 999999ull * 1000000ull / 2);  // sequences first..first + 999999
}

TEST(AllocTest, PublishingABurstAllocatesNothing) {
  ScopedBusName name("alloc");
  Bus bus = Bus::open(name.name);
  bus.create_topic(sensor_topic("t", Policy::Block, 1 << 16));
  Subscriber sub = bus.subscribe("t");
  Publisher pub = bus.publisher("t");
  flatbuffers::FlatBufferBuilder fbb(256);
  std::vector<std::vector<uint8_t>> buffers;
  for (uint64_t i = 0; i < 16; ++i) {
    build_reading(fbb, i);
    buffers.emplace_back(fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize());
  }
  const std::vector<std::span<const uint8_t>> burst(buffers.begin(), buffers.end());
  ASSERT_EQ(pub.try_publish_batch(burst).published, burst.size());  // warm up, as above
  ASSERT_EQ(sub.poll([](const Event&) {}).delivered, burst.size());
  for (int round = 0; round < 100; ++round) {  // past the join, as in warm_up
    ASSERT_EQ(pub.try_publish_batch(burst).published, burst.size());
    ASSERT_EQ(sub.poll([](const Event&) {}).delivered, burst.size());
  }
  uint64_t delivered = 0;
  const uint64_t before = g_allocations.load();
  for (int round = 0; round < 100000; ++round) {
    const BatchResult r = pub.try_publish_batch(burst);
    ASSERT_EQ(r.published, burst.size());
    delivered += sub.poll([](const Event&) {}).delivered;
  }
  EXPECT_EQ(g_allocations.load() - before, 0u);
  EXPECT_EQ(delivered, 100000u * burst.size());
}

// Untrusted topics copy and verify each event: into a buffer the subscriber
// made when it attached the ring, with a verifier made then too. Rejected
// events (raw bytes that are no FlatBuffer) take the same path.
TEST(AllocTest, ReadingAnUntrustedTopicAllocatesNothing) {
  ScopedBusName name("alloc");
  Bus bus = Bus::open(name.name);
  TopicSpec spec = sensor_topic("t", Policy::Block, 1 << 16);
  spec.untrusted = true;
  bus.create_topic(spec);
  Subscriber sub = bus.subscribe("t");
  Publisher pub = bus.publisher("t");
  flatbuffers::FlatBufferBuilder fbb(256);
  const std::vector<uint8_t> junk(64, 0xff);
  build_reading(fbb, 0);  // warm up, as above
  ASSERT_EQ(pub.try_publish({fbb.GetBufferPointer(), fbb.GetSize()}), PublishStatus::Ok);
  ASSERT_EQ(sub.poll([](const Event&) {}).delivered, 1u);
  ASSERT_TRUE(sub.ring_untrusted(0));
  warm_up(pub, sub, fbb);
  uint64_t sum = 0, rejected = 0;
  const uint64_t before = g_allocations.load();
  for (uint64_t i = 0; i < 200000; ++i) {
    build_reading(fbb, i);
    ASSERT_EQ(pub.try_publish({fbb.GetBufferPointer(), fbb.GetSize()}), PublishStatus::Ok);
    if (i % 16 == 0) {
      ASSERT_EQ(pub.try_publish(junk), PublishStatus::Ok);
    }
    const PollResult r = sub.poll([&](const Event& e) { sum += examples::GetSensorReading(e.data())->seq(); });
    rejected += r.rejected;
  }
  const uint64_t after = g_allocations.load();
  EXPECT_EQ(after - before, 0u);
  EXPECT_EQ(sum, 199999ull * 200000ull / 2);  // seq fields 0..199999, each verified
  EXPECT_EQ(rejected, 200000u / 16);
}
