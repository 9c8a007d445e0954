// flowbus inspect against a bus whose state the test knows exactly.
#include "flowbus/inspect.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "flowbus/error.hpp"
#include "reader_lines.hpp"
#include "reader_segment.hpp"
#include "test_bus.hpp"

using namespace flowbus;
using namespace flowbus::testing;
using namespace std::chrono_literals;

namespace {

void publish_n(Publisher& pub, uint64_t n) {
  flatbuffers::FlatBufferBuilder fbb;
  for (uint64_t i = 0; i < n; ++i) {
    build_reading(fbb, i);
    ASSERT_EQ(pub.try_publish({fbb.GetBufferPointer(), fbb.GetSize()}), PublishStatus::Ok);
  }
}

}  // namespace

TEST(InspectTest, ShowsWritersReadersLagAndTheDeadWithoutTouchingTheBus) {
  ScopedBusName name("inspect");
  Bus bus = Bus::open(name.name);
  bus.create_topic(sensor_topic("sensor.temp.line1", Policy::Block, 64 * 1024));
  Publisher pub = bus.publisher("sensor.temp.line1", {"line1"});
  Subscriber live = bus.subscribe("sensor.>", {StartAt::Earliest, 0ns});
  publish_n(pub, 10);
  ASSERT_EQ(live.poll([](const Event&) {}).delivered, 10u);
  EXPECT_FALSE(live.wait(10ms));  // asleep once: that publishes its cursor
  publish_n(pub, 7);              // so it lags by exactly 7

  const pid_t child = fork();
  if (child == 0) {
    Bus b = Bus::open(name.name);
    Subscriber s = b.subscribe("sensor.temp.line1", {StartAt::Earliest});
    kill(getpid(), SIGKILL);
  }
  waitpid(child, nullptr, 0);  // its participant and cursor stay behind until someone cleans up

  const BusSnapshot a = inspect_bus(name.name);
  const BusSnapshot b = inspect_bus(name.name);
  EXPECT_EQ(a.generation, b.generation);  // looking changes nothing
  ASSERT_EQ(a.topics.size(), 1u);
  EXPECT_EQ(a.topics[0].info.type, "examples.SensorReading");
  EXPECT_EQ(a.topics[0].info.policy, Policy::Block);
  EXPECT_EQ(a.topics[0].info.ring_size, 64u * 1024);
  ASSERT_EQ(a.participants.size(), 2u);
  EXPECT_EQ(a.live_participants(), 1u);
  ASSERT_EQ(a.rings.size(), 1u);
  const RingSnapshot& r = a.rings[0];
  EXPECT_TRUE(r.error.empty()) << r.error;
  EXPECT_EQ(r.publisher, "line1");
  EXPECT_EQ(r.writer_pid, getpid());
  EXPECT_TRUE(r.writer_alive);
  EXPECT_EQ(r.next_sequence, 17u);
  EXPECT_EQ(r.retained_events, 17u);
  ASSERT_EQ(r.cursors.size(), 2u);  // ours and the dead child's; the inspector claimed none
  const CursorSnapshot& mine = r.cursors[0].pid == getpid() ? r.cursors[0] : r.cursors[1];
  const CursorSnapshot& dead = r.cursors[0].pid == getpid() ? r.cursors[1] : r.cursors[0];
  EXPECT_TRUE(mine.alive);
  EXPECT_EQ(mine.lag_events, 7);
  EXPECT_FALSE(dead.alive);
  EXPECT_EQ(dead.pid, child);
  EXPECT_EQ(dead.lag_events, 17);
  bool warned_dead_cursor = false, warned_dead_process = false;
  for (const auto& w : a.warnings) {
    warned_dead_cursor |= w.find("dead process (pid " + std::to_string(child) + ")") != std::string::npos;
    warned_dead_process |= w.find("process " + std::to_string(child) + " died") != std::string::npos;
  }
  EXPECT_TRUE(warned_dead_cursor);
  EXPECT_TRUE(warned_dead_process);
}

TEST(InspectTest, AGonePublisherWithAnUndrainedRingIsNamedWithTheFix) {
  ScopedBusName name("inspect");
  Bus bus = Bus::open(name.name);
  bus.create_topic(sensor_topic("t"));
  Subscriber sub = bus.subscribe("t", {StartAt::Earliest});
  {
    Publisher pub = bus.publisher("t", {"gone"});
    sub.refresh();
    publish_n(pub, 3);
  }
  const BusSnapshot s = inspect_bus(name.name);
  ASSERT_EQ(s.rings.size(), 1u);
  EXPECT_FALSE(s.rings[0].writer_alive);
  bool named = false;
  for (const auto& w : s.warnings)
    named |= w.find("publisher") != std::string::npos && w.find("'gone'") != std::string::npos;
  EXPECT_TRUE(named);
}

namespace {

bool any_warning_has(const BusSnapshot& s, const std::string& text) {
  for (const auto& w : s.warnings)
    if (w.find(text) != std::string::npos) return true;
  return false;
}

std::string warnings_text(const BusSnapshot& s) {
  std::string out;
  for (const auto& w : s.warnings) out += w + "\n";
  return out.empty() ? "(no warnings)" : out;
}

}  // namespace

TEST(InspectTest, ALatestReaderIsShownLappedNotAboutToBeEvictedAndItsLagIsExactOnceItCatchesUp) {
  ScopedBusName name("inspect");
  Bus bus = Bus::open(name.name);
  bus.create_topic(sensor_topic("t", Policy::Latest, 4096));
  Publisher pub = bus.publisher("t", {"p"});
  Subscriber sub = bus.subscribe("t", {StartAt::Earliest, 0ns});
  publish_n(pub, 1);
  ASSERT_EQ(sub.poll([](const Event&) {}).delivered, 1u);
  EXPECT_FALSE(sub.wait(1ms));  // publishes its cursor
  publish_n(pub, 300);          // 128-byte records: about nine laps of the 4 KiB ring

  const BusSnapshot lapped = inspect_bus(name.name);
  const RingSnapshot& r = lapped.rings.at(0);
  EXPECT_EQ(r.policy, Policy::Latest);
  EXPECT_EQ(r.fill, 1.0);  // capped: what the reader has yet to read is at most the ring
  ASSERT_EQ(r.cursors.size(), 1u);
  EXPECT_TRUE(r.cursors[0].lapped);
  EXPECT_EQ(r.cursors[0].lag_events, -1);  // more than the ring retains: the exact count is not in the ring any more
  EXPECT_GT(r.cursors[0].lag_bytes, r.capacity);
  EXPECT_TRUE(any_warning_has(lapped, "reader pid " + std::to_string(getpid()) + " was lapped"))
      << warnings_text(lapped);
  EXPECT_FALSE(any_warning_has(lapped, "evicted")) << warnings_text(lapped);

  uint64_t missed = 0;
  for (PollResult p; (p = sub.poll([](const Event&) {})).delivered > 0 || p.missed > 0;) missed += p.missed;
  ASSERT_GT(missed, 0u);
  EXPECT_FALSE(sub.wait(1ms));  // caught up: its cursor is published here
  publish_n(pub, 3);
  const BusSnapshot behind = inspect_bus(name.name);
  const CursorSnapshot& c = behind.rings.at(0).cursors.at(0);
  EXPECT_FALSE(c.lapped);
  EXPECT_EQ(c.lag_events, 3);
  EXPECT_EQ(c.losses, missed);
  EXPECT_LT(behind.rings[0].fill, 0.5);
  EXPECT_TRUE(behind.warnings.empty()) << warnings_text(behind);
}

TEST(InspectTest, AReaderHoldingBackABlockTopicThatNeverEvictsIsNotSaidToBeEvicted) {
  ScopedBusName name("inspect");
  Bus bus = Bus::open(name.name);
  TopicSpec never = sensor_topic("never", Policy::Block, 4096);
  never.slow_consumer_timeout = kNever;
  bus.create_topic(never);
  TopicSpec timed = sensor_topic("timed", Policy::Block, 4096);
  timed.slow_consumer_timeout = 30s;
  bus.create_topic(timed);
  std::vector<Subscriber> readers;
  for (const char* topic : {"never", "timed"}) {
    Publisher pub = bus.publisher(topic, {"p"});
    readers.push_back(bus.subscribe(topic, {StartAt::Earliest, 0ns}));
    flatbuffers::FlatBufferBuilder fbb;
    build_reading(fbb, 0);
    while (pub.try_publish({fbb.GetBufferPointer(), fbb.GetSize()}) == PublishStatus::Ok) {
    }
  }
  const BusSnapshot s = inspect_bus(name.name);
  bool never_warned = false, timed_warned = false;
  for (const auto& w : s.warnings) {
    if (w.rfind("ring never@p: reader", 0) == 0) {
      never_warned = true;
      EXPECT_NE(w.find("slow-consumer timeout is never, so it is not evicted"), std::string::npos) << w;
      EXPECT_EQ(w.find("will be evicted"), std::string::npos) << w;
    }
    if (w.rfind("ring timed@p: reader", 0) == 0) {
      timed_warned = true;
      EXPECT_NE(w.find("will be evicted after the topic's slow-consumer timeout (30s)"), std::string::npos) << w;
    }
  }
  EXPECT_TRUE(never_warned) << warnings_text(s);
  EXPECT_TRUE(timed_warned) << warnings_text(s);
}

TEST(InspectTest, AMissingBusIsAClearError) {
  try {
    inspect_bus("no-such-bus-" + std::to_string(getpid()));
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::NotFound);
    EXPECT_NE(std::string(e.what()).find("flowbus inspect"), std::string::npos);
  }
}

// A reader may truncate its own segment at any time; tools map every reader
// segment they can read (inspect, check, the Prometheus exporter, which runs
// for weeks). A segment cut short while a tool reads it must cost the tool
// nothing but that segment's lines: no SIGBUS.
TEST(InspectTest, AReaderSegmentCutShortWhileToolsReadItKillsNoTool) {
  ScopedBusName bus("cutseg");
  auto segment = detail::ReaderSegment::create(bus.name, -1, 77, "t.>");
  ASSERT_NE(segment->claim_line(7, 0), nullptr);
  const std::string path = "/dev/shm/" + segment->name();
  std::atomic<bool> stop{false};
  std::thread cutter([&] {
    const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    while (!stop.load()) {
      (void)!::ftruncate(fd, 0);
      (void)!::ftruncate(fd, sizeof(detail::ReaderHeader));
    }
    ::close(fd);
  });
  size_t scans = 0;
  for (const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(1);
       std::chrono::steady_clock::now() < until; ++scans) {
    (void)detail::find_reader_lines(bus.name, 7, detail::kAnyRingSlot);
    (void)detail::find_subscriptions(bus.name);
  }
  stop = true;
  cutter.join();
  EXPECT_GT(scans, 100u);
}
