// Event time (core/src/event_clock.hpp): first on a made-up host whose CPUs'
// TSCs count from different offsets, then on this machine.
#include <gtest/gtest.h>
#include <sched.h>

#include <atomic>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "event_clock.hpp"
#include "flowbus/bus.hpp"
#include "flowbus/detail/platform.hpp"
#include "test_bus.hpp"

using namespace flowbus;
using namespace flowbus::testing;
using namespace std::chrono_literals;

namespace {

/// A host with two CPUs whose TSCs tick at 2.5 GHz from offsets of their own.
/// Time moves only when something reads a clock, so every figure is exact.
struct FakeHost {
  static constexpr uint64_t kUnixAtBoot = 1'796'000'000'000'000'000;
  static inline uint64_t mono_ns = 0;       // CLOCK_MONOTONIC
  static inline int64_t realtime_step = 0;  // what `date -s` or NTP made of CLOCK_REALTIME
  static inline int64_t tsc_offset[2] = {0, 0};
  static inline uint32_t cpu = 0;
  static inline int ticks_until_move = -1;  // >0: the thread moves to the other CPU after that many readings
  static inline bool next_tick_straddles = false;
  static inline uint64_t realtime_reads = 0;

  static void reset() {
    mono_ns = 5'000'000'000;
    realtime_step = 0;
    tsc_offset[0] = 0;
    tsc_offset[1] = 0;
    cpu = 0;
    ticks_until_move = -1;
    next_tick_straddles = false;
    realtime_reads = 0;
  }
  static uint64_t true_unix_ns() { return uint64_t(int64_t(kUnixAtBoot + mono_ns) + realtime_step); }

  static detail::Tick tick() noexcept {
    mono_ns += 4;
    if (ticks_until_move > 0 && --ticks_until_move == 0) cpu ^= 1;
    const uint64_t tsc = uint64_t(int64_t(mono_ns * 5 / 2) + tsc_offset[cpu]);
    if (next_tick_straddles) {
      next_tick_straddles = false;
      return {tsc, detail::Tick::kNoCpu};
    }
    return {tsc, cpu};
  }
  static uint64_t monotonic_ns() noexcept { return mono_ns += 20; }
  static uint64_t realtime_ns() noexcept {
    ++realtime_reads;
    mono_ns += 20;
    return true_unix_ns();
  }
};

using FakeClock = detail::EventClock<FakeHost>;

class EventClockTest : public ::testing::Test {
 protected:
  void SetUp() override { FakeHost::reset(); }
  uint64_t now(FakeClock& clock, detail::ClockBase& base) {
    return FakeClock::now(base, [&] { return clock.rebase(base); });
  }
  /// |event time - system time| for one reading, in ns.
  int64_t error_of(FakeClock& clock, detail::ClockBase& base) {
    const uint64_t t = now(clock, base);
    return int64_t(t) - int64_t(FakeHost::true_unix_ns());
  }
};

constexpr int64_t k480usInTicks = 480'000 * 5 / 2;

TEST_F(EventClockTest, TimeStaysOnTheSystemClockAcrossCpusWhoseTscsCountFromDifferentOffsets) {
  FakeHost::tsc_offset[1] = k480usInTicks;  // as CI's vCPUs were on 2026-12-04
  FakeClock clock;
  detail::ClockBase base;
  for (int move = 0; move < 40; ++move) {
    FakeHost::cpu = uint32_t(move % 2);
    for (int i = 0; i < 100; ++i) {
      ASSERT_LE(std::abs(error_of(clock, base)), 100) << "move " << move << " event " << i;
      FakeHost::mono_ns += 3'000;  // 3 us between events: 40 moves span several rebases and refinements
    }
  }
}

TEST_F(EventClockTest, AThreadStaysOnItsCpuWithoutRebasingUntilTheRebaseIsDue) {
  FakeClock clock;
  detail::ClockBase base;
  (void)now(clock, base);
  const uint64_t rebases = FakeHost::realtime_reads;
  for (int i = 0; i < 1000; ++i) (void)now(clock, base);  // ~4 us of events, far below the first 16 ms span
  EXPECT_EQ(FakeHost::realtime_reads, rebases);
  FakeHost::cpu = 1;
  (void)now(clock, base);
  EXPECT_GT(FakeHost::realtime_reads, rebases) << "a reading from another CPU must rebase";
}

TEST_F(EventClockTest, MovingWhileTheRateIsFirstLearntStartsTheLearningAgainOnTheNewCpu) {
  FakeHost::tsc_offset[1] = k480usInTicks;
  FakeHost::ticks_until_move = 500;  // a few µs into the 2 ms of learning
  FakeClock clock;
  detail::ClockBase base;
  // A rate learnt across the move would be off by 480 µs in 2 ms and drift
  // ~4 ms from the system clock within the first 16 ms span.
  (void)now(clock, base);
  FakeHost::mono_ns += 15'000'000;
  EXPECT_LE(std::abs(error_of(clock, base)), 100);
}

TEST_F(EventClockTest, TheRateIsNotRefinedFromAPairOnAnotherCpu) {
  FakeHost::tsc_offset[1] = -k480usInTicks;
  FakeClock clock;
  detail::ClockBase base;
  FakeHost::cpu = 1;
  // Rebases on CPU 1 at 16, 32, 64... ms: each would refine the rate from
  // CPU 0's first pair if allowed, and the offset would skew it.
  for (int i = 0; i < 400; ++i) {
    ASSERT_LE(std::abs(error_of(clock, base)), 100) << "at " << i << " ms";
    FakeHost::mono_ns += 1'000'000;
  }
}

TEST_F(EventClockTest, AReadingTakenAcrossAMoveRebasesInsteadOfTrustingEitherCpu) {
  FakeHost::tsc_offset[1] = k480usInTicks;
  FakeClock clock;
  detail::ClockBase base;
  (void)now(clock, base);
  const uint64_t rebases = FakeHost::realtime_reads;
  FakeHost::next_tick_straddles = true;
  EXPECT_LE(std::abs(error_of(clock, base)), 100);
  EXPECT_GT(FakeHost::realtime_reads, rebases);
}

TEST_F(EventClockTest, EventTimeFollowsASteppedSystemClockAtTheNextRebase) {
  FakeClock clock;
  detail::ClockBase base;
  (void)now(clock, base);
  FakeHost::realtime_step = 2'000'000'000;  // someone set the clock 2 s ahead
  FakeHost::mono_ns += detail::EventClock<FakeHost>::kRebaseNs;
  EXPECT_LE(std::abs(error_of(clock, base)), 100);
}

bool cpu_has_invariant_tsc() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  for (std::string line; std::getline(cpuinfo, line);)
    if (line.rfind("flags", 0) == 0)
      return line.find(" constant_tsc") != std::string::npos && line.find(" nonstop_tsc") != std::string::npos;
  return false;
}

void expect_within_20us_of_the_system_clock() {
  const uint64_t before = detail::realtime_ns();
  const uint64_t t = detail::unix_now_ns();
  const uint64_t after = detail::realtime_ns();
  EXPECT_GE(t + 20000, before);
  EXPECT_LE(t, after + 20000);
}

}  // namespace

TEST(ClockTest, EventTimeFollowsTheSystemClock) {
  for (int i = 0; i < 20; ++i) {
    expect_within_20us_of_the_system_clock();
    std::this_thread::sleep_for(10ms);  // spans the early rebases, refinements of the rate, and ~100 ms ones
  }
}

TEST(ClockTest, EventTimeFollowsTheSystemClockOnEveryCpuTheThreadIsMovedTo) {
  cpu_set_t allowed;
  ASSERT_EQ(sched_getaffinity(0, sizeof allowed, &allowed), 0);
  std::vector<int> cpus;
  for (int c = 0; c < CPU_SETSIZE; ++c)
    if (CPU_ISSET(c, &allowed)) cpus.push_back(c);
  if (cpus.size() < 2) GTEST_SKIP() << "one CPU: nothing to move between";
  for (int round = 0; round < 10; ++round)
    for (int c : cpus) {
      cpu_set_t one;
      CPU_ZERO(&one);
      CPU_SET(c, &one);
      ASSERT_EQ(sched_setaffinity(0, sizeof one, &one), 0);
      for (int i = 0; i < 100; ++i) expect_within_20us_of_the_system_clock();
    }
  ASSERT_EQ(sched_setaffinity(0, sizeof allowed, &allowed), 0);
}

TEST(ClockTest, ThreadsReadingTogetherWhileTheRateIsRefinedAllStayOnTheSystemClock) {
  // Several threads rebase and refine the shared rate estimate at once.
  std::atomic<int> off{0};
  std::vector<std::thread> threads;
  for (int n = 0; n < 4; ++n)
    threads.emplace_back([&] {
      for (int i = 0; i < 200; ++i) {
        const uint64_t before = detail::realtime_ns();
        const uint64_t t = detail::unix_now_ns();
        const uint64_t after = detail::realtime_ns();
        if (t + 20000 < before || t > after + 20000) off.fetch_add(1);
        std::this_thread::sleep_for(1ms);
      }
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(off.load(), 0);
}

// Each runs in a fresh process (the threadsafe death-test style re-executes
// this binary), where nothing has read the clock yet.
TEST(ClockTest, TheFirstEventTimeAlreadyComesFromTheTsc) {
  if (!cpu_has_invariant_tsc()) GTEST_SKIP() << "no invariant TSC: event time is CLOCK_REALTIME";
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        const uint64_t t = detail::unix_now_ns();
        const uint64_t after = detail::realtime_ns();
        // A learning time that reads clock_gettime per event would show here.
        if (!detail::event_clock_uses_tsc()) _exit(1);
        if (t > after || after - t > 20000) _exit(2);
        _exit(0);
      },
      ::testing::ExitedWithCode(0), "");
}

TEST(ClockTest, CreatingAPublisherLearnsTheClockBeforeTheFirstPublish) {
  if (!cpu_has_invariant_tsc()) GTEST_SKIP() << "no invariant TSC: event time is CLOCK_REALTIME";
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        bool learnt = false;
        {
          ScopedBusName name("clock");
          Bus bus = Bus::open(name.name);
          bus.create_topic(sensor_topic("t", Policy::Block, 1 << 16));
          Publisher pub = bus.publisher("t");
          learnt = detail::event_clock_uses_tsc();
        }
        _exit(learnt ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "");
}
