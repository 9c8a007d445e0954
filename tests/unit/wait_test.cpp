// Subscriber::wait under WaitStrategy::Backoff: an event is seen in each
// phase (spinning, yielding, sleeping), a wait never outlasts its timeout,
// one with an event there returns at once, and its settings are checked.
// And the kernel fact that least privilege rests on: a futex works on a
// mapping that is read-only to the process that waits or wakes.
// Times here only tell phases apart (a phase that missed the event would wait
// out a 1 s sleep); nothing is asserted about speed.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <random>
#include <string>
#include <thread>

#include "flowbus/detail/platform.hpp"
#include "flowbus/error.hpp"
#include "test_bus.hpp"

namespace flowbus::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

/// Only `phase` can see an event within the test: the others are empty, and
/// every sleep lasts a second (`long_sleep`).
enum class Phase { Spinning, Yielding, Sleeping };
constexpr auto long_sleep = 1s;

SubscriberOptions backoff_in(Phase phase) {
  SubscriberOptions options;
  options.wait_strategy = WaitStrategy::Backoff;
  options.backoff.spins = phase == Phase::Spinning ? BackoffOptions::kMaxSpins : 0;
  options.backoff.yields = phase == Phase::Yielding ? BackoffOptions::kMaxYields : 0;
  options.backoff.min_park = options.backoff.max_park = long_sleep;
  if (phase == Phase::Sleeping) options.backoff.min_park = 1ms;  // 1, 2, 4... ms: asleep when the event comes
  return options;
}

const char* name_of(Phase phase) {
  return phase == Phase::Spinning ? "spinning" : phase == Phase::Yielding ? "yielding" : "sleeping";
}

// Every test makes its publisher (so its ring) before it subscribes: a ring
// made after would be news to the subscriber, and its first wait would return
// at once for that reason alone.
class BackoffWaitTest : public ::testing::TestWithParam<Phase> {
 protected:
  ScopedBusName name{"wait"};
  Bus bus = Bus::open(name.name);

  void SetUp() override { bus.create_topic(sensor_topic("t")); }

  void publish_one(Publisher& pub, uint64_t seq = 0) {
    flatbuffers::FlatBufferBuilder fbb;
    build_reading(fbb, seq);
    ASSERT_EQ(pub.try_publish({fbb.GetBufferPointer(), fbb.GetSize()}), PublishStatus::Ok);
  }
};

TEST_P(BackoffWaitTest, SeesAnEventPublishedWhileItIsInThatPhase) {
  Publisher pub = bus.publisher("t", {"p"});
  Subscriber sub = bus.subscribe("t", backoff_in(GetParam()));
  std::thread publisher([&] {
    std::this_thread::sleep_for(20ms);  // well into the phase: spins and yields last far longer
    publish_one(pub);
  });
  const auto start = Clock::now();
  const bool woke = sub.wait(10s);
  const auto waited = Clock::now() - start;
  publisher.join();
  EXPECT_TRUE(woke);
  EXPECT_LT(waited, long_sleep) << "the event was not seen while " << name_of(GetParam());
  EXPECT_EQ(sub.poll([](const Event&) {}).delivered, 1u);
}

TEST_P(BackoffWaitTest, NeverWaitsPastItsTimeout) {
  SubscriberOptions options = backoff_in(GetParam());
  options.backoff.min_park = long_sleep;  // sleeping: the first sleep alone would outlast the timeout
  Subscriber sub = bus.subscribe("t", options);
  const auto start = Clock::now();
  EXPECT_FALSE(sub.wait(30ms));
  const auto waited = Clock::now() - start;
  EXPECT_GE(waited, 30ms);
  EXPECT_LT(waited, long_sleep) << "a wait of 30 ms while " << name_of(GetParam()) << " ran out a 1 s phase";
}

TEST_P(BackoffWaitTest, AWaitWithAnEventThereReturnsAtOnce) {
  Publisher pub = bus.publisher("t", {"p"});
  Subscriber sub = bus.subscribe("t", backoff_in(GetParam()));
  publish_one(pub);
  EXPECT_TRUE(sub.wait(0ns));  // looks before it reads the clock: a zero timeout still finds it
  const auto start = Clock::now();
  EXPECT_TRUE(sub.wait(10s));
  EXPECT_LT(Clock::now() - start, long_sleep);
  EXPECT_EQ(sub.poll([](const Event&) {}).delivered, 1u);
}

INSTANTIATE_TEST_SUITE_P(EachPhase, BackoffWaitTest,
                         ::testing::Values(Phase::Spinning, Phase::Yielding, Phase::Sleeping),
                         [](const auto& info) { return std::string(name_of(info.param)); });

// Events at random gaps, some inside the spin, some after a sleep or two:
// every wait before the last event returns true, and every event arrives.
TEST(BackoffWait, LosesNoEventAtAnyGap) {
  ScopedBusName name("wait");
  Bus bus = Bus::open(name.name);
  bus.create_topic(sensor_topic("t"));
  SubscriberOptions options;
  options.wait_strategy = WaitStrategy::Backoff;
  options.backoff.spins = 100;
  options.backoff.yields = 2;
  options.backoff.max_park = 200us;
  Publisher pub = bus.publisher("t", {"p"});
  Subscriber sub = bus.subscribe("t", options);
  constexpr uint64_t kEvents = 300;
  std::thread publisher([&] {
    std::mt19937 random(19);
    flatbuffers::FlatBufferBuilder fbb;
    for (uint64_t i = 0; i < kEvents; ++i) {
      std::this_thread::sleep_for(std::chrono::microseconds(random() % 2000));
      build_reading(fbb, i);
      while (pub.try_publish({fbb.GetBufferPointer(), fbb.GetSize()}) != PublishStatus::Ok) {
      }
    }
  });
  uint64_t next = 0, timeouts = 0;
  while (next < kEvents && timeouts == 0) {
    const PollResult r = sub.poll([&](const Event& e) { EXPECT_EQ(e.sequence(), next++); });
    EXPECT_EQ(r.missed, 0u);
    if (r.delivered == 0 && !sub.wait(5s)) ++timeouts;
  }
  publisher.join();
  EXPECT_EQ(timeouts, 0u);
  EXPECT_EQ(next, kEvents);
}

// It never asks to be woken: a publish while it sleeps makes no futex_wake
// (a SpinThenSleep subscriber's would; ring_test checks that side).
TEST(BackoffWait, PublishersMakeNoWakeCallForIt) {
  ScopedBusName name("wait");
  Bus bus = Bus::open(name.name);
  bus.create_topic(sensor_topic("t"));
  SubscriberOptions options = backoff_in(Phase::Sleeping);
  options.backoff.max_park = 5ms;
  Publisher pub = bus.publisher("t", {"p"});
  Subscriber sub = bus.subscribe("t", options);
  const uint64_t before = detail::futex_wake_calls();
  std::thread waiter([&] { EXPECT_TRUE(sub.wait(10s)); });
  std::this_thread::sleep_for(50ms);  // asleep by now, in 5 ms slices
  flatbuffers::FlatBufferBuilder fbb;
  build_reading(fbb, 0);
  ASSERT_EQ(pub.try_publish({fbb.GetBufferPointer(), fbb.GetSize()}), PublishStatus::Ok);
  waiter.join();
  EXPECT_EQ(detail::futex_wake_calls(), before);
  EXPECT_EQ(sub.poll([](const Event&) {}).delivered, 1u);
}

// A ring created while the subscriber sleeps is attached and read.
TEST(BackoffWait, ANewRingWakesASleepingSubscriber) {
  ScopedBusName name("wait");
  Bus bus = Bus::open(name.name);
  bus.create_topic(sensor_topic("t.a"));
  SubscriberOptions options = backoff_in(Phase::Sleeping);
  options.backoff.max_park = 5ms;
  Subscriber sub = bus.subscribe("t.*", options);
  std::thread creator([&] {
    std::this_thread::sleep_for(20ms);
    bus.create_topic(sensor_topic("t.b"));
  });
  EXPECT_TRUE(sub.wait(10s));
  creator.join();
  Publisher pub = bus.publisher("t.b", {"p"});
  flatbuffers::FlatBufferBuilder fbb;
  build_reading(fbb, 0);
  ASSERT_EQ(pub.try_publish({fbb.GetBufferPointer(), fbb.GetSize()}), PublishStatus::Ok);
  EXPECT_TRUE(sub.wait(10s));
  EXPECT_EQ(sub.poll([](const Event&) {}).delivered, 1u);
}

TEST(BackoffWait, TheDefaultIsStillSpinThenSleep) {
  EXPECT_EQ(SubscriberOptions{}.wait_strategy, WaitStrategy::SpinThenSleep);
}

/// subscribe() with `options` throws InvalidArgument naming `setting`.
void expect_refused(const SubscriberOptions& options, const std::string& setting) {
  ScopedBusName name("wait");
  Bus bus = Bus::open(name.name);
  bus.create_topic(sensor_topic("t"));
  try {
    (void)bus.subscribe("t", options);
    ADD_FAILURE() << setting << ": accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::InvalidArgument);
    EXPECT_NE(std::string(e.what()).find("SubscriberOptions::backoff." + setting), std::string::npos) << e.what();
  }
}

TEST(BackoffWait, OutOfRangeSettingsAreRefusedByName) {
  SubscriberOptions options;
  options.wait_strategy = WaitStrategy::Backoff;
  SubscriberOptions o = options;
  o.backoff.spins = BackoffOptions::kMaxSpins + 1;
  expect_refused(o, "spins");
  o = options;
  o.backoff.yields = BackoffOptions::kMaxYields + 1;
  expect_refused(o, "yields");
  o = options;
  o.backoff.min_park = 999ns;
  expect_refused(o, "min_park");
  o = options;
  o.backoff.min_park = 2ms;
  o.backoff.max_park = 1ms;
  expect_refused(o, "max_park");
  o = options;
  o.backoff.max_park = 1001ms;
  expect_refused(o, "max_park");
}

TEST(BackoffWait, TheLimitsThemselvesAreAccepted) {
  ScopedBusName name("wait");
  Bus bus = Bus::open(name.name);
  bus.create_topic(sensor_topic("t"));
  SubscriberOptions options;
  options.wait_strategy = WaitStrategy::Backoff;
  options.backoff = {BackoffOptions::kMaxSpins, BackoffOptions::kMaxYields, 1us, 1s};
  EXPECT_NO_THROW((void)bus.subscribe("t", options));
  options.backoff = {0, 0, 1us, 1us};
  EXPECT_NO_THROW((void)bus.subscribe("t", options));
}

// Readers will sleep on a wake word in a segment they map read-only
// (docs/proposals/least-privilege.md, section 1): FUTEX_WAIT and FUTEX_WAKE
// take a FUTEX_READ key on shared mappings. A process with a read-only
// mapping sleeps until woken (not at once with EFAULT), and wakes a process
// sleeping on its own read-write mapping of the same word.
TEST(FutexTest, AWordMappedReadOnlyCanBeSleptOnAndWoken) {
  ScopedBusName name("futex");
  const std::string path = "/" + name.name + ".word";
  const int fd = ::shm_open(path.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, 4096), 0);
  auto* rw = static_cast<std::atomic<uint32_t>*>(::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
  ASSERT_NE(rw, MAP_FAILED);
  // role 0: the child sleeps on its read-only mapping, we wake it;
  // role 1: we sleep on ours, the child wakes us through its read-only mapping.
  for (int role = 0; role < 2; ++role) {
    rw[1].store(0);  // the child's "about to sleep" / "about to wake" flag (a second word)
    const pid_t child = ::fork();
    if (child == 0) {
      const int ro_fd = ::shm_open(path.c_str(), O_RDONLY, 0);
      void* ro = ro_fd < 0 ? MAP_FAILED : ::mmap(nullptr, 4096, PROT_READ, MAP_SHARED, ro_fd, 0);
      if (ro == MAP_FAILED) ::_exit(2);
      auto* word = static_cast<std::atomic<uint32_t>*>(ro);
      if (role == 0) {
        rw[1].store(1);
        std::atomic<uint32_t>* words[] = {word};
        const uint32_t expected[] = {word->load()};
        const auto t0 = std::chrono::steady_clock::now();
        detail::futex_wait_any(words, expected, 1, 10'000'000'000);
        const auto slept = std::chrono::steady_clock::now() - t0;
        ::_exit(slept >= 200ms && slept < 9s ? 0 : 3);  // woken by us, not EFAULT at once, not the timeout
      }
      std::this_thread::sleep_for(300ms);  // we are asleep by then
      detail::futex_wake_all(word);
      ::_exit(0);
    }
    ASSERT_GT(child, 0);
    if (role == 0) {
      while (rw[1].load() == 0) std::this_thread::sleep_for(1ms);
      std::this_thread::sleep_for(300ms);
      detail::futex_wake_all(rw);  // the word is unchanged: only the wake can end its sleep
    } else {
      std::atomic<uint32_t>* words[] = {rw};
      const uint32_t expected[] = {rw->load()};
      const auto t0 = std::chrono::steady_clock::now();
      detail::futex_wait_any(words, expected, 1, 10'000'000'000);
      const auto slept = std::chrono::steady_clock::now() - t0;
      EXPECT_GE(slept, 200ms);
      EXPECT_LT(slept, 9s) << "the wake through a read-only mapping reached nobody";
    }
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "role " << role << " status " << status;
  }
  ::munmap(rw, 4096);
  ::close(fd);
  ::shm_unlink(path.c_str());
}

}  // namespace
}  // namespace flowbus::testing
