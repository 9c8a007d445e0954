// The bell segment (layout 4): the ring's wake request, which every reader
// may write. Whoever may write it may forge it or truncate it. Here a forked
// child plays that reader, and the writer and the sleeping readers must lose
// time at most: never an event, never the process.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "bus_state.hpp"
#include "flowbus/detail/platform.hpp"
#include "flowbus/inspect.hpp"
#include "test_bus.hpp"

namespace flowbus::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

/// Runs `body` in a forked child, a process of its own as a hostile reader
/// is; returns its exit status (the child's return value, or 100 + signal).
template <class F>
int in_child(F body) {
  const pid_t child = ::fork();
  if (child == 0) ::_exit(body());
  int status = 0;
  if (child < 0 || ::waitpid(child, &status, 0) != child) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 100 + WTERMSIG(status);
}

std::string bell_name(const std::string& bus) {
  std::string name = "/";  // shm_open's form (appended: GCC 12 warns of "/" + string, falsely)
  name += detail::bell_segment_name(bus, "t", "p");
  return name;
}

/// Publishes `n` readings `gap` apart while a subscriber that sleeps at once
/// (no spin) waits for each with a 5 s timeout; returns the sequences it got
/// and the longest it waited for one.
struct Delivery {
  std::vector<uint64_t> sequences;
  Clock::duration longest_wait{};
};
Delivery publish_to_a_sleeper(Publisher& pub, Subscriber& sub, int n, Clock::duration gap) {
  Delivery got;
  std::atomic<bool> listening{false};
  std::thread reader([&] {
    listening = true;
    while (got.sequences.size() < size_t(n)) {
      const auto t0 = Clock::now();
      if (!sub.wait(5s)) break;  // a lost wake-up: only the timeout ends the sleep
      got.longest_wait = std::max(got.longest_wait, Clock::now() - t0);
      (void)sub.poll([&](const Event& e) { got.sequences.push_back(e.sequence()); });
    }
  });
  while (!listening) std::this_thread::yield();
  for (int i = 0; i < n; ++i) {
    std::this_thread::sleep_for(gap);  // the reader is asleep again by now
    EXPECT_EQ(publish_reading(pub, uint64_t(i)), PublishStatus::Ok);
  }
  reader.join();
  return got;
}

/// first, first + 1, ..., first + n - 1: every sequence, in order.
std::vector<uint64_t> sequences_from(uint64_t first, int n) {
  std::vector<uint64_t> v;
  for (int i = 0; i < n; ++i) v.push_back(first + uint64_t(i));
  return v;
}

SubscriberOptions sleeps_at_once() {
  SubscriberOptions options;
  options.spin = 0ns;
  return options;
}

/// Truncates the ring's bell to `bytes` from another process.
bool cut_bell(const std::string& bus, off_t bytes = 0) {
  return in_child([&] {
           const int fd = ::shm_open(bell_name(bus).c_str(), O_RDWR, 0);
           return fd >= 0 && ::ftruncate(fd, bytes) == 0 ? 0 : 1;
         }) == 0;
}

bool check_names_the_bell(const std::string& bus) {
  bool named = false;
  for (const CheckFinding& f : check_bus(bus).findings) named |= f.problem.find("bell") != std::string::npos;
  return named;
}

/// The bell's size in /dev/shm (-1: not there).
off_t bell_size(const std::string& bus) {
  struct stat st {};
  return ::stat(("/dev/shm" + bell_name(bus)).c_str(), &st) == 0 ? st.st_size : -1;
}

// Truncated to 0 bytes by a process that may write it, the bell would kill
// the writer (its next publish loads the wake request: SIGBUS) and every
// sleeping reader. Through the fault guard, the lost page reads 0 in each,
// the readers sleep in slices, and `check` names the damage.
TEST(BellTest, ATruncatedBellCrashesNobodyAndASleepingReaderStillGetsEveryEvent) {
  ScopedBusName name("bell");
  Bus bus = Bus::open(name.name);
  bus.create_topic(sensor_topic("t"));  // 0600: a bell only we may write (no slices: the guard must tell)
  Publisher pub = bus.publisher("t", {"p"});
  Subscriber sub = bus.subscribe("t", sleeps_at_once());
  ASSERT_TRUE(cut_bell(name.name));
  // Before the writer's next look at the bell, which makes it whole again.
  EXPECT_TRUE(check_names_the_bell(name.name)) << "check did not report the truncated bell";
  const Delivery got = publish_to_a_sleeper(pub, sub, 20, 30ms);
  EXPECT_EQ(got.sequences, sequences_from(0, 20));
  EXPECT_LT(got.longest_wait, 1s) << "a reader slept through an event";
}

// A bell cut short admits nobody: a subscriber could not even open the ring
// (the bell is shorter than a bell), and a joiner's ring went to the zero
// page. The writer, the bell's owner, gives it its page back at its next
// look at the bell (a limit refresh; within 100 ms for a cut inside the
// page, which faults nobody), and a new subscriber is then admitted: the
// writer waits for it (Full) rather than lapping it, and it reads every
// event. Under Latest nobody is admitted, but a subscriber must still be
// able to open the ring. Without the repair the file stays cut, and
// subscribe throws.
struct CutCase {
  Policy policy;
  off_t cut_to;
};
void PrintTo(const CutCase& c, std::ostream* os) {
  *os << (c.policy == Policy::Block ? "block" : "latest") << ", cut to " << c.cut_to << " bytes";
}
class BellRepairTest : public ::testing::TestWithParam<CutCase> {};

TEST_P(BellRepairTest, TheWriterMakesABellCutShortWholeAgainAndNewReadersAreAdmitted) {
  const CutCase c = GetParam();
  ScopedBusName name("bell");
  Bus bus = Bus::open(name.name);
  bus.create_topic(sensor_topic("t", c.policy, 4096));  // a small ring: a refresh every few events
  Publisher pub = bus.publisher("t", {"p"});
  ASSERT_EQ(publish_reading(pub, 0), PublishStatus::Ok);
  ASSERT_TRUE(cut_bell(name.name, c.cut_to));
  ASSERT_EQ(bell_size(name.name), c.cut_to);
  uint64_t published = 1;
  const auto give_up = Clock::now() + 5s;
  for (; Clock::now() < give_up && bell_size(name.name) == c.cut_to; ++published) {  // no reader: never Full
    ASSERT_EQ(publish_reading(pub, published), PublishStatus::Ok);
    std::this_thread::sleep_for(1ms);
  }
  ASSERT_EQ(bell_size(name.name), off_t(detail::kBellSegmentSize)) << "after " << published << " events";
  EXPECT_FALSE(check_names_the_bell(name.name));
  SubscriberOptions latest;
  latest.from = StartAt::Latest;
  Subscriber sub = bus.subscribe("t", latest);
  ASSERT_EQ(sub.ring_count(), 1u);
  uint64_t ahead = 0;
  PublishStatus s = PublishStatus::Ok;
  if (c.policy == Policy::Block) {
    // Admitted: the writer stops a ring's worth ahead of it (a joiner it did
    // not know of would be lapped, and lose events).
    for (; ahead < 200 && (s = publish_reading(pub, published + ahead)) == PublishStatus::Ok; ++ahead) {
    }
    EXPECT_EQ(s, PublishStatus::Full) << "the writer passed a reader it should follow, after " << ahead << " events";
  } else {
    for (; ahead < 10; ++ahead) ASSERT_EQ(publish_reading(pub, published + ahead), PublishStatus::Ok);
  }
  uint64_t got = 0, missed = 0;
  PollResult r;
  do {
    r = sub.poll([&](const Event& e) { got += e.sequence() >= published ? 1 : 0; });
    missed += r.missed;
  } while (r.delivered != 0);
  EXPECT_EQ(got, ahead);
  EXPECT_EQ(missed, 0u);
}

// A reader scribbles on the header at full size (zeroes its magic): no
// fault, no short file, but openers wait. The writer's look every 100 ms
// finds it and writes the header again; a subscriber waiting meanwhile
// then opens the ring.
TEST(BellTest, AHeaderScribbledOnIsWrittenAgainByTheWriter) {
  ScopedBusName name("bell");
  Bus bus = Bus::open(name.name);
  bus.create_topic(sensor_topic("t", Policy::Block, 4096));
  Publisher pub = bus.publisher("t", {"p"});
  ASSERT_EQ(publish_reading(pub, 0), PublishStatus::Ok);
  ASSERT_EQ(in_child([&] {
              const int fd = ::shm_open(bell_name(name.name).c_str(), O_RDWR, 0);
              if (fd < 0) return 1;
              void* m = ::mmap(nullptr, detail::kBellSegmentSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
              if (m == MAP_FAILED) return 2;
              static_cast<detail::BellHeader*>(m)->magic.store(0, std::memory_order_relaxed);
              return 0;
            }),
            0);
  Subscriber sub = bus.subscribe("t");
  EXPECT_EQ(sub.ring_count(), 0u) << "opened a ring whose bell has no magic";
  uint64_t published = 1;
  for (const auto until = Clock::now() + 5s; sub.ring_count() == 0 && Clock::now() < until; ++published) {
    ASSERT_EQ(publish_reading(pub, published), PublishStatus::Ok);  // no reader admitted yet: never Full
    (void)sub.poll([](const Event&) {});                            // looks for the ring again every 10 ms
    std::this_thread::sleep_for(1ms);
  }
  EXPECT_EQ(sub.ring_count(), 1u) << "the writer did not write the bell's header again";
}

INSTANTIATE_TEST_SUITE_P(Cuts, BellRepairTest,
                         ::testing::Values(CutCase{Policy::Block, 0}, CutCase{Policy::Block, 1},
                                           CutCase{Policy::Latest, 0}),
                         [](const ::testing::TestParamInfo<CutCase>& info) {
                           return std::string(info.param.policy == Policy::Block ? "Block" : "Latest") + "CutTo" +
                                  std::to_string(info.param.cut_to);
                         });

// A writer that takes a ring over (its last writer gone) while the bell is
// cut, as a restarted service does (a fresh Bus::open, which first removes
// rings past their retention): the ring is kept (its retention counts from
// its data, not its bell), and the bell is the new writer's to make whole,
// at once. Until some writer does, a subscriber waits for the ring (it looks
// again every 10 ms, as for a ring being made) and `check` says what is wrong.
TEST(BellTest, AWriterTakingARingOverMakesItsCutBellWhole) {
  ScopedBusName name("bell");
  Bus bus = Bus::open(name.name);
  bus.create_topic(sensor_topic("t"));
  uint64_t next = 0;
  {
    Publisher first = bus.publisher("t", {"p"});
    for (; next < 5; ++next) ASSERT_EQ(publish_reading(first, next), PublishStatus::Ok);
  }
  ASSERT_TRUE(cut_bell(name.name));
  SubscriberOptions earliest;
  earliest.from = StartAt::Earliest;
  Subscriber sub = bus.subscribe("t", earliest);
  EXPECT_EQ(sub.ring_count(), 0u) << "opened a ring whose bell is cut";
  bool told = false;
  for (const CheckFinding& f : check_bus(name.name).findings)
    told |= f.problem.find("cut short") != std::string::npos && f.problem.find("try again") != std::string::npos;
  EXPECT_TRUE(told) << "check did not say the bell is cut short";
  Bus restarted = Bus::open(name.name);
  Publisher second = restarted.publisher("t", {"p"});
  EXPECT_EQ(second.next_sequence(), next) << "not the same ring: nothing was taken over";
  EXPECT_EQ(bell_size(name.name), off_t(detail::kBellSegmentSize));
  ASSERT_EQ(publish_reading(second, next), PublishStatus::Ok);
  uint64_t got = 0;
  for (const auto until = Clock::now() + 5s; got < next + 1 && Clock::now() < until;) {
    const PollResult r = sub.poll([&](const Event&) { ++got; });
    EXPECT_EQ(r.missed, 0u);
    if (r.delivered == 0) (void)sub.wait(10ms);
  }
  EXPECT_EQ(got, next + 1) << "the waiting subscriber did not read the ring once it was whole";
}

// Where others may write the bell (a 0640 topic: its bell is 0660), a member
// of the group can erase every wake request (a forged 0) or hold one up (a
// forged 1). Erased, sleepers wake at their next 20 ms slice: late, never
// asleep for good. Held up, the writer calls the kernel on every publish.
// Either way every event arrives, in order.
TEST(BellTest, ForgedWakeRequestsCostTimeAndNeverAnEvent) {
  ScopedBusName name("bell");
  Bus bus = Bus::open(name.name);
  TopicSpec spec = sensor_topic("t");
  spec.mode = 0640;
  bus.create_topic(spec);
  Publisher pub = bus.publisher("t", {"p"});
  Subscriber sub = bus.subscribe("t", sleeps_at_once());
  struct stat st {};
  ASSERT_EQ(::stat(("/dev/shm" + bell_name(name.name)).c_str(), &st), 0);
  ASSERT_EQ(st.st_mode & 0777, 0660u) << "readers of a 0640 topic may write its bell";
  for (const uint32_t forged : {0u, 1u}) {
    SCOPED_TRACE("forging " + std::to_string(forged));
    const int fd = ::shm_open(bell_name(name.name).c_str(), O_RDWR, 0);
    ASSERT_GE(fd, 0);
    auto* bell = static_cast<detail::BellHeader*>(
        ::mmap(nullptr, detail::kBellSegmentSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
    ::close(fd);
    ASSERT_NE(bell, MAP_FAILED);
    const pid_t forger = ::fork();
    if (forger == 0) {
      for (;;) bell->wake_request.store(forged, std::memory_order_relaxed);  // until killed
    }
    ASSERT_GT(forger, 0);
    const uint64_t wakes = detail::futex_wake_calls();
    Subscriber fresh = bus.subscribe("t", sleeps_at_once());
    const Delivery got = publish_to_a_sleeper(pub, fresh, 20, 30ms);
    ::kill(forger, SIGKILL);
    ::waitpid(forger, nullptr, 0);
    ::munmap(bell, detail::kBellSegmentSize);
    EXPECT_EQ(got.sequences, sequences_from(forged == 0 ? 0 : 20, 20));
    EXPECT_LT(got.longest_wait, 1s) << "a reader slept through an event";
    if (forged == 1) {
      EXPECT_GE(detail::futex_wake_calls(), wakes + 10) << "the forged request cost the writer nothing?";
    }
    (void)sub.poll([](const Event&) {});
  }
}

}  // namespace
}  // namespace flowbus::testing
