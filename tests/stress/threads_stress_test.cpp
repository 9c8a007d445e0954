// Many threads on one bus: publishers and subscribers join and leave while
// events flow. Built for TSan in CI (more threads than cores, bounded time).
#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "test_bus.hpp"

using namespace flowbus;
using namespace flowbus::testing;
using namespace std::chrono_literals;

TEST(ThreadsStressTest, BlockTopicDeliversEverythingInOrderToEveryReader) {
  ScopedBusName name("stress");
  Bus bus = Bus::open(name.name);
  bus.create_topic(sensor_topic("s.t", Policy::Block, 8192));
  constexpr uint64_t kEvents = 200000;
  constexpr int kReaders = 3;
  Publisher pub = bus.publisher("s.t", {"w"});
  std::vector<Subscriber> subs;
  for (int i = 0; i < kReaders; ++i) subs.push_back(bus.subscribe("s.*", {StartAt::Earliest, 20us}));
  std::vector<uint64_t> received(kReaders, 0), disorder(kReaders, 0);
  std::vector<std::thread> readers;
  for (int i = 0; i < kReaders; ++i)
    readers.emplace_back([&, i] {
      uint64_t expected = 0;
      const auto deadline = std::chrono::steady_clock::now() + 60s;
      while (expected < kEvents && std::chrono::steady_clock::now() < deadline) {
        const PollResult r = subs[i].poll([&](const Event& e) {
          disorder[i] += examples::GetSensorReading(e.data())->seq() != expected;
          ++expected;
        });
        if (r.delivered == 0) subs[i].wait(10ms);
      }
      received[i] = expected;
    });
  flatbuffers::FlatBufferBuilder fbb;
  for (uint64_t n = 0; n < kEvents; ++n) {
    build_reading(fbb, n);
    ASSERT_EQ(pub.publish({fbb.GetBufferPointer(), fbb.GetSize()}, 10s), PublishStatus::Ok) << n;
  }
  for (auto& t : readers) t.join();
  for (int i = 0; i < kReaders; ++i) {
    EXPECT_EQ(received[i], kEvents) << "reader " << i;
    EXPECT_EQ(disorder[i], 0u) << "reader " << i;
  }
}

TEST(ThreadsStressTest, PublishersAndSubscribersJoinAndLeaveWhileEventsFlow) {
  ScopedBusName name("stress");
  Bus bus = Bus::open(name.name);
  for (int t = 0; t < 4; ++t) bus.create_topic(sensor_topic("churn.t" + std::to_string(t), Policy::Block, 4096));
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> published{0}, delivered{0}, out_of_order{0};
  std::vector<std::thread> threads;
  for (int p = 0; p < 4; ++p)
    threads.emplace_back([&, p] {
      flatbuffers::FlatBufferBuilder fbb;
      const std::string index = std::to_string(p);  // (GCC 12 warns falsely on "literal" + to_string)
      for (int round = 0; !stop; ++round) {
        Publisher pub = bus.publisher(std::string("churn.t").append(index), {std::string("p").append(index)});
        for (int i = 0; i < 2000 && !stop; ++i) {
          build_reading(fbb, pub.next_sequence());
          if (pub.publish({fbb.GetBufferPointer(), fbb.GetSize()}, 50ms) == PublishStatus::Ok) ++published;
        }
      }
    });
  for (int s = 0; s < 4; ++s)
    threads.emplace_back([&] {
      while (!stop) {
        Subscriber sub = bus.subscribe("churn.>", {StartAt::Earliest, 10us});
        for (int i = 0; i < 200 && !stop; ++i) {
          sub.poll([&](const Event& e) {
            const uint64_t seq = examples::GetSensorReading(e.data())->seq();
            out_of_order += seq != e.sequence();  // payload and record agree
            ++delivered;
          });
          sub.wait(1ms);
        }
      }
    });
  std::this_thread::sleep_for(3s);
  stop = true;
  for (auto& t : threads) t.join();
  EXPECT_GT(published.load(), 0u);
  EXPECT_GT(delivered.load(), 0u);
  EXPECT_EQ(out_of_order.load(), 0u);
}
