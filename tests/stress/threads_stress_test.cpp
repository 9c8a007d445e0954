// Many threads on one bus: publishers and subscribers join and leave while
// events flow. Built for TSan in CI (more threads than cores, bounded time).
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cinttypes>
#include <map>
#include <thread>
#include <vector>

#include "process/payload.hpp"
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

// 4 publisher threads and 6 (at least twice the cores) churning subscriber
// threads (10 threads on 2 cores) join and leave in loops while events flow; a
// steady reader stays throughout. Every event is checked: its payload
// (checksum, publisher, counter == sequence), and per ring and per
// subscription that sequences go up by one; the steady reader must get
// every event of every publisher once, in order, across all their restarts.
TEST(ThreadsStressTest, PublishersAndSubscribersJoinAndLeaveWhileEventsFlow) {
  constexpr int kPublishers = 4;
  const int kChurners = std::max(6, int(2 * std::thread::hardware_concurrency()));
  ScopedBusName name("stress");
  Bus bus = Bus::open(name.name);
  for (int t = 0; t < kPublishers; ++t) bus.create_topic(sensor_topic("churn.t" + std::to_string(t), Policy::Block, 4096));
  // The rings exist (at sequence 0) before the steady reader joins.
  for (int p = 0; p < kPublishers; ++p)
    bus.publisher("churn.t" + std::to_string(p), {"p" + std::to_string(p)});
  Subscriber steady = bus.subscribe("churn.>", {StartAt::Earliest, 10us});
  ASSERT_EQ(steady.ring_count(), size_t(kPublishers));
  std::atomic<bool> stop{false}, publishers_done{false};
  std::atomic<uint64_t> published{0}, publisher_joins{0}, subscriber_joins{0}, churn_delivered{0}, bad_events{0},
      gaps{0};
  // Block, live readers, 5 s timeout: no loss, eviction or damage. Counted per
  // status (and per where it was seen) so a failure says which one came.
  std::array<std::atomic<uint64_t>, 8> unexpected_read{}, unexpected_release{};
  auto unexpected = [](std::array<std::atomic<uint64_t>, 8>& counts, ReadStatus status) {
    ++counts[std::min(size_t(status), counts.size() - 1)];
  };
  std::vector<uint64_t> final_sequence(kPublishers, 0);
  std::vector<std::thread> threads;
  for (int p = 0; p < kPublishers; ++p)
    threads.emplace_back([&, p] {
      flatbuffers::FlatBufferBuilder fbb;
      const std::string index = std::to_string(p);  // (GCC 12 warns falsely on "literal" + to_string)
      const std::string who = std::string("p").append(index);
      while (!stop) {
        Publisher pub = bus.publisher(std::string("churn.t").append(index), {who});
        ++publisher_joins;
        for (int i = 0; i < 500 && !stop; ++i) {
          build_payload(fbb, who.c_str(), pub.next_sequence());
          if (pub.publish({fbb.GetBufferPointer(), fbb.GetSize()}, 50ms) == PublishStatus::Ok) ++published;
        }
        final_sequence[size_t(p)] = pub.next_sequence();
      }
    });
  auto check = [&](const Event& e) {
    uint64_t counter = 0, value = 0;
    if (check_payload(e.data(), e.size(), e.context().publisher_name, counter, value) != nullptr ||
        counter != e.sequence())
      ++bad_events;
  };
  for (int s = 0; s < kChurners; ++s)
    threads.emplace_back([&] {
      while (!stop) {
        Subscriber sub = bus.subscribe("churn.>", {StartAt::Earliest, 10us});
        ++subscriber_joins;
        std::map<std::string, uint64_t> next;  // per ring, in this subscription
        Event e;
        for (int i = 0; i < 300 && !stop; ++i) {
          const ReadResult r = sub.read(e);
          if (r.status == ReadStatus::Empty) {
            (void)sub.wait(1ms);
            continue;
          }
          if (r.status != ReadStatus::Ok) {
            unexpected(unexpected_read, r.status);
            continue;
          }
          check(e);
          auto [it, first] = next.try_emplace(e.context().publisher_name, e.sequence());
          if (!first && e.sequence() != it->second) ++gaps;
          it->second = e.sequence() + 1;
          ++churn_delivered;
          if (const ReadStatus released = sub.release(e); released != ReadStatus::Ok)
            unexpected(unexpected_release, released);
        }
      }
    });
  // The steady reader, on this thread, until the publishers stopped and it drained.
  std::map<std::string, uint64_t> steady_next;
  uint64_t steady_delivered = 0;
  const auto start = std::chrono::steady_clock::now();
  auto last_event = start;
  Event e;
  for (;;) {
    if (!stop && std::chrono::steady_clock::now() - start >= 3s) {
      stop = true;
      for (auto& t : threads) t.join();
      publishers_done = true;
    }
    const ReadResult r = steady.read(e);
    if (r.status == ReadStatus::Ok) {
      check(e);
      uint64_t& expected = steady_next[e.context().publisher_name];
      if (e.sequence() != expected) ++gaps;
      expected = e.sequence() + 1;
      ++steady_delivered;
      last_event = std::chrono::steady_clock::now();
      if (const ReadStatus released = steady.release(e); released != ReadStatus::Ok)
        unexpected(unexpected_release, released);
      continue;
    }
    if (r.status != ReadStatus::Empty) unexpected(unexpected_read, r.status);
    if (publishers_done && std::chrono::steady_clock::now() - last_event >= 200ms) break;
    (void)steady.wait(1ms);
  }
  std::printf("%u threads on %u cores for 3 s: %" PRIu64 " publisher and %" PRIu64 " subscriber joins, %" PRIu64
              " events published, %" PRIu64 " checked by the steady reader, %" PRIu64 " by churning readers\n",
              unsigned(kPublishers + kChurners + 1), std::thread::hardware_concurrency(), publisher_joins.load(),
              subscriber_joins.load(), published.load(), steady_delivered, churn_delivered.load());
  EXPECT_GT(kPublishers + kChurners + 1, int(std::thread::hardware_concurrency())) << "more threads than cores";
  EXPECT_GT(publisher_joins.load(), uint64_t(kPublishers));
  EXPECT_GT(subscriber_joins.load(), uint64_t(kChurners));
  EXPECT_GT(churn_delivered.load(), 0u);
  EXPECT_EQ(bad_events.load(), 0u);
  EXPECT_EQ(gaps.load(), 0u);
  for (size_t status = 0; status < unexpected_read.size(); ++status) {
    const char* name = to_string(ReadStatus(status));
    EXPECT_EQ(unexpected_read[status].load(), 0u) << "read() returned " << name;
    EXPECT_EQ(unexpected_release[status].load(), 0u) << "release() returned " << name;
  }
  uint64_t total = 0;
  for (int p = 0; p < kPublishers; ++p) {
    EXPECT_EQ(steady_next["p" + std::to_string(p)], final_sequence[size_t(p)]) << "publisher " << p;
    total += final_sequence[size_t(p)];
  }
  EXPECT_EQ(steady_delivered, published.load());
  EXPECT_EQ(total, published.load());
}
