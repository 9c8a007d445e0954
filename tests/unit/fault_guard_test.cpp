// The fault guard (core/src/fault_guard.hpp) against real truncation: /dev/shm
// files mapped here and truncated by another process. The scenarios that need
// a process of their own (one that must die, or one whose order of SIGBUS
// handlers matters) run in a fresh exec of this binary, chosen by
// `--fault-guard-child NAME` (see run_child below).
//
// Sanitizers: ASan (and UBSan with it) install their own SIGBUS handler before
// main when handle_sigbus=1 (the default), and let ours go over it
// (handle_sigbus=2 drops our sigaction silently: guard_mapping then throws;
// handle_sigbus=0 leaves SIG_DFL, and all tests pass). Faults outside every
// guarded range are then chained to ASan's handler, which reports and exits 1
// instead of dying of SIGBUS: the tests that expect a death accept that when the
// process started with a SIGBUS handler already there. TSan hands the
// synchronous SIGBUS to our handler at once; the tests pass under it too
// (.ci/run runs them there for the stress test's sake).
#include "fault_guard.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "child_process.hpp"
#include "flowbus/error.hpp"

using namespace flowbus;
using namespace flowbus::detail;
using namespace std::chrono_literals;

namespace {

const size_t kPage = size_t(::sysconf(_SC_PAGESIZE));
constexpr uint64_t kPattern = 0xabababababababab;

uint64_t load(const void* p) { return *static_cast<const volatile uint64_t*>(p); }
char* page(void* base, size_t i) { return static_cast<char*>(base) + i * kPage; }

/// A /dev/shm file of `pages` pages of kPattern, mapped shared read-write.
/// Unlinked at once, so a child that dies leaves nothing behind; another
/// process opens it through /proc/<pid>/fd.
class ShmFile {
 public:
  explicit ShmFile(size_t pages, void* at = nullptr) : size_(pages * kPage) {
    static std::atomic<int> counter{0};
    name_ = "/fault_guard_test." + std::to_string(::getpid()) + "." + std::to_string(counter++);
    fd_ = ::shm_open(name_.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd_ >= 0) ::shm_unlink(name_.c_str());
    if (fd_ < 0 || ::ftruncate(fd_, off_t(size_)) != 0) throw std::runtime_error("shm " + name_);
    data_ = ::mmap(at, size_, PROT_READ | PROT_WRITE, MAP_SHARED | (at ? MAP_FIXED : 0), fd_, 0);
    if (data_ == MAP_FAILED) throw std::runtime_error("mmap " + name_);
    for (size_t i = 0; i < size_ / 8; ++i) static_cast<uint64_t*>(data_)[i] = kPattern;
  }
  ~ShmFile() {
    ::munmap(data_, size_);
    ::close(fd_);
  }
  ShmFile(const ShmFile&) = delete;
  ShmFile& operator=(const ShmFile&) = delete;

  std::string path() const { return "/proc/" + std::to_string(::getpid()) + "/fd/" + std::to_string(fd_); }
  void* data() const { return data_; }
  size_t size() const { return size_; }
  int fd() const { return fd_; }
  /// Maps the file again over the same addresses: the pages a repair replaced are the file's again.
  void remap() const {
    if (::mmap(data_, size_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd_, 0) != data_)
      throw std::runtime_error("remap");
  }

 private:
  std::string name_;
  size_t size_;
  int fd_ = -1;
  void* data_ = MAP_FAILED;
};

/// The reader's move: truncate(1), another process, shortens the file.
void truncate_in_another_process(const ShmFile& file, size_t size) {
  flowbus::testing::ChildProcess truncate({"/usr/bin/truncate", "-s", std::to_string(size), file.path()});
  const auto outcome = truncate.communicate(10s);
  ASSERT_EQ(outcome.exit_code, 0) << outcome.err;
}

// --- the child scenarios ------------------------------------------------------

void say(const char* line) { (void)!::write(1, line, std::strlen(line)); }

std::atomic<uintptr_t> g_app_fault_addr{0};
std::atomic<int> g_app_fault_code{0};
std::atomic<int> g_app_faults{0};

// An application's own handler, there before the guard: records the fault and
// repairs it as the guard would (so the process can go on and report).
void app_handler(int, siginfo_t* info, void*) {
  g_app_fault_addr.store(reinterpret_cast<uintptr_t>(info->si_addr));
  g_app_fault_code.store(info->si_code);
  g_app_faults.fetch_add(1);
  char* p = static_cast<char*>(info->si_addr) - (reinterpret_cast<uintptr_t>(info->si_addr) & (kPage - 1));
  (void)::mmap(p, kPage, PROT_READ | PROT_WRITE, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
}

int run_child(const std::string& scenario) {
  if (scenario == "unguarded") {  // the guard installed, a fault elsewhere
    ShmFile guarded(1), unguarded(1);
    GuardedRange range = guard_mapping(guarded.data(), guarded.size());
    if (::ftruncate(unguarded.fd(), 0) != 0) return 2;
    say("loading\n");
    const uint64_t v = load(unguarded.data());
    say(v == 0 ? "survived\n" : "survived, read the old data\n");
    return 0;
  }
  if (scenario == "sent") {  // the guard installed, SIGBUS sent by kill()
    ShmFile guarded(1);
    GuardedRange range = guard_mapping(guarded.data(), guarded.size());
    say("loading\n");
    ::kill(::getpid(), SIGBUS);
    say("survived\n");
    return 0;
  }
  if (scenario == "blocked") {  // a limit: a thread that blocks SIGBUS is not protected
    ShmFile guarded(1);
    GuardedRange range = guard_mapping(guarded.data(), guarded.size());
    if (::ftruncate(guarded.fd(), 0) != 0) return 2;
    sigset_t bus;
    sigemptyset(&bus);
    sigaddset(&bus, SIGBUS);
    if (::pthread_sigmask(SIG_BLOCK, &bus, nullptr) != 0) return 2;
    say("loading\n");
    (void)load(guarded.data());
    say("survived\n");
    return 0;
  }
  if (scenario == "app-handler") {  // the application's handler first, then the guard
    struct sigaction app {};
    app.sa_sigaction = app_handler;
    app.sa_flags = SA_SIGINFO;
    sigemptyset(&app.sa_mask);
    if (::sigaction(SIGBUS, &app, nullptr) != 0) return 2;
    ShmFile guarded(1), unguarded(1);
    GuardedRange range = guard_mapping(guarded.data(), guarded.size());
    if (::ftruncate(guarded.fd(), 0) != 0 || ::ftruncate(unguarded.fd(), 0) != 0) return 2;
    if (load(guarded.data()) != 0 || !range.damaged() || g_app_faults.load() != 0) {
      say("the guarded fault was not the guard's\n");
      return 1;
    }
    if (load(unguarded.data()) != 0 || g_app_faults.load() != 1 ||
        g_app_fault_addr.load() != reinterpret_cast<uintptr_t>(unguarded.data()) ||
        g_app_fault_code.load() != BUS_ADRERR) {
      say("the application's handler did not get the unguarded fault\n");
      return 1;
    }
    say("ok\n");
    return 0;
  }
  if (scenario == "unregistered") {  // guarded, absorbed; unguarded at the same addresses, not
    ShmFile first(2);
    GuardedRange range = guard_mapping(first.data(), first.size());
    if (::ftruncate(first.fd(), off_t(kPage)) != 0) return 2;
    if (load(first.data()) != kPattern || load(page(first.data(), 1)) != 0 || range.repairs() != 1) return 1;
    say("absorbed\n");
    range.reset();
    ShmFile second(2, first.data());  // MAP_FIXED over the same pages, now unguarded
    if (::ftruncate(second.fd(), 0) != 0) return 2;
    say("loading\n");
    (void)load(second.data());
    say("survived\n");
    return 0;
  }
  return 3;
}

// A fresh exec of this binary with `--fault-guard-child NAME` runs scenario
// NAME before main and exits with its status.
const int g_child_dispatch = [] {
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  const std::string raw((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::string> args;
  for (size_t at = 0; at < raw.size(); at = raw.find('\0', at) + 1) args.emplace_back(raw.c_str() + at);
  if (args.size() >= 3 && args[1] == "--fault-guard-child") {
    int status = 4;
    try {
      status = run_child(args[2]);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "child %s: %s\n", args[2].c_str(), e.what());
    }
    ::_exit(status);
  }
  return 0;
}();

/// Whether SIGBUS had a handler when this process started (a sanitizer's): a
/// fault chained to it ends the process the sanitizer's way, not by SIGBUS.
bool started_with_sigbus_handler() {
  struct sigaction sa {};
  ::sigaction(SIGBUS, nullptr, &sa);
  return (sa.sa_flags & SA_SIGINFO) || (sa.sa_handler != SIG_DFL && sa.sa_handler != SIG_IGN);
}
const bool g_started_with_handler = started_with_sigbus_handler();

struct ChildResult {
  std::vector<std::string> lines;
  std::optional<int> status;  // nullopt: it hung (a fault re-executed for ever) and was killed
};

ChildResult run_scenario(const char* scenario) {
  flowbus::testing::ChildProcess child({"/proc/self/exe", "--fault-guard-child", scenario});
  ChildResult r;
  child.close_stdin();
  while (auto line = child.read_line(10s)) r.lines.push_back(*line);
  r.status = child.wait(10s);
  return r;
}

std::string lines_of(const ChildResult& r) {
  std::string s;
  for (const std::string& l : r.lines) s += l + "; ";
  return s;
}

/// The child died of the fault as it would have without the guard.
void expect_died_of_sigbus(const ChildResult& r) {
  ASSERT_TRUE(r.status.has_value()) << "the child hung: " << lines_of(r);
  EXPECT_EQ(r.lines, std::vector<std::string>{"loading"}) << "it should have died at the load";
  if (!g_started_with_handler) {
    EXPECT_TRUE(WIFSIGNALED(*r.status) && WTERMSIG(*r.status) == SIGBUS) << "wait status " << *r.status;
  } else {  // chained to the sanitizer's handler, which reports and exits
    EXPECT_FALSE(WIFEXITED(*r.status) && WEXITSTATUS(*r.status) == 0) << "wait status " << *r.status;
  }
}

}  // namespace

TEST(FaultGuardTest, ATruncatedGuardedMappingReadsZeroesAndIsFlaggedButTheProcessGoesOn) {
  constexpr size_t kPages = 4;
  ShmFile file(kPages);
  GuardedRange range = guard_mapping(file.data(), file.size());
  EXPECT_EQ(load(page(file.data(), kPages - 1)), kPattern);
  EXPECT_FALSE(range.damaged());

  truncate_in_another_process(file, 0);
  errno = EDOM;
  for (int pass = 0; pass < 2; ++pass) {  // the second pass faults no more
    for (size_t i = 0; i < kPages; ++i) {
      uint64_t sum = 0;
      for (size_t w = 0; w < kPage / 8; ++w) sum |= load(page(file.data(), i) + w * 8);
      EXPECT_EQ(sum, 0u) << "page " << i << ", pass " << pass;
    }
    EXPECT_TRUE(range.damaged());
    EXPECT_EQ(range.repairs(), kPages) << "one repair per page, pass " << pass;
  }
  EXPECT_EQ(errno, EDOM) << "the handler must leave errno as it was";

  // A repaired page is private and writable: the store stays here, not in the file.
  *reinterpret_cast<volatile uint64_t*>(file.data()) = 42;
  EXPECT_EQ(load(file.data()), 42u);
  struct stat st {};
  ASSERT_EQ(::fstat(file.fd(), &st), 0);
  EXPECT_EQ(st.st_size, 0);
}

TEST(FaultGuardTest, AFaultOutsideEveryGuardedRangeStillKillsTheProcess) {
  expect_died_of_sigbus(run_scenario("unguarded"));
}

TEST(FaultGuardTest, ASigbusSentByKillStillKillsTheProcess) { expect_died_of_sigbus(run_scenario("sent")); }

// A known limit, pinned: a fault in a thread that blocks SIGBUS makes the
// kernel reset SIGBUS to SIG_DFL, whatever handlers there are.
TEST(FaultGuardTest, AThreadThatBlocksSigbusIsNotProtected) {
  const ChildResult r = run_scenario("blocked");
  ASSERT_TRUE(r.status.has_value()) << "the child hung: " << lines_of(r);
  EXPECT_EQ(r.lines, std::vector<std::string>{"loading"});
  EXPECT_TRUE(WIFSIGNALED(*r.status) && WTERMSIG(*r.status) == SIGBUS) << "wait status " << *r.status;
}

TEST(FaultGuardTest, AnApplicationsEarlierHandlerStillGetsTheFaultsOutsideGuardedRanges) {
  const ChildResult r = run_scenario("app-handler");
  ASSERT_TRUE(r.status.has_value()) << "the child hung: " << lines_of(r);
  EXPECT_TRUE(WIFEXITED(*r.status) && WEXITSTATUS(*r.status) == 0)
      << "wait status " << *r.status << ": " << lines_of(r);
  EXPECT_EQ(r.lines, std::vector<std::string>{"ok"});
}

TEST(FaultGuardTest, AfterUnregisteringAFaultThereIsNoLongerAbsorbed) {
  ChildResult r = run_scenario("unregistered");
  ASSERT_FALSE(r.lines.empty()) << "the guarded fault was not absorbed; wait status " << r.status.value_or(-1);
  EXPECT_EQ(r.lines.front(), "absorbed");
  r.lines.erase(r.lines.begin());
  expect_died_of_sigbus(r);
}

// Ranges registered and unregistered in other threads, in slots below and
// above the one faulted in, while one thread faults page after page: each
// fault is absorbed and counted, none is missed or taken for another range.
TEST(FaultGuardTest, FaultsAreAbsorbedWhileOtherThreadsRegisterAndUnregister) {
  constexpr size_t kPages = 16;
  constexpr size_t kThreads = 3, kRangesPerThread = 4;
  ShmFile file(kPages);
  // Dummy ranges to register: a reserved region away from the file.
  const size_t dummy_size = kThreads * kRangesPerThread * kPage;
  void* dummies = ::mmap(nullptr, dummy_size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(dummies, MAP_FAILED);
  GuardedRange range;
  {
    std::vector<GuardedRange> below;  // free slots before the file's once these go
    for (size_t i = 0; i < kThreads * kRangesPerThread; ++i) below.push_back(guard_mapping(page(dummies, i), kPage));
    range = guard_mapping(file.data(), file.size());
  }
  ASSERT_EQ(::ftruncate(file.fd(), 0), 0);

  std::atomic<bool> stop{false};
  std::atomic<uint64_t> registrations{0};
  std::vector<std::thread> threads;
  for (size_t t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::vector<GuardedRange> mine;
      mine.reserve(kRangesPerThread);
      while (!stop.load(std::memory_order_relaxed)) {
        for (size_t i = 0; i < kRangesPerThread; ++i)
          mine.push_back(guard_mapping(page(dummies, t * kRangesPerThread + i), kPage));
        registrations.fetch_add(kRangesPerThread, std::memory_order_relaxed);
        mine.clear();
      }
    });
  }
  uint64_t rounds = 0, nonzero = 0;
  const auto t0 = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() - t0 < 1s) {
    file.remap();  // the file's pages again, all past its end
    for (size_t i = 0; i < kPages; ++i) nonzero += load(page(file.data(), i)) != 0;
    ++rounds;
  }
  stop = true;
  for (std::thread& t : threads) t.join();
  ::munmap(dummies, dummy_size);
  RecordProperty("rounds", std::to_string(rounds));
  RecordProperty("registrations", std::to_string(registrations.load()));
  EXPECT_EQ(nonzero, 0u);
  EXPECT_EQ(range.repairs(), rounds * kPages) << "every fault repaired and counted to this range";
  EXPECT_GT(rounds, 10u);
  EXPECT_GT(registrations.load(), 100u);
}

TEST(FaultGuardTest, AFullTableIsAClearErrorAndAFreedSlotIsUsedAgain) {
  void* region = ::mmap(nullptr, kPage, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(region, MAP_FAILED);
  std::vector<GuardedRange> ranges;
  try {
    for (;;) ranges.push_back(guard_mapping(region, kPage));
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::NoSpace);
    EXPECT_NE(std::string(e.what()).find(std::to_string(kGuardedRangeCapacity) + " mappings are guarded already"),
              std::string::npos)
        << e.what();
  }
  EXPECT_EQ(ranges.size(), kGuardedRangeCapacity);
  ranges.pop_back();
  EXPECT_NO_THROW(ranges.push_back(guard_mapping(region, kPage)));

  GuardedRange moved = std::move(ranges.back());  // move-only: one owner, one unregistration
  EXPECT_FALSE(ranges.back().active());
  EXPECT_TRUE(moved.active());
  ranges.pop_back();  // the moved-from one frees nothing
  EXPECT_THROW(guard_mapping(region, kPage), Error) << "the moved-to range still holds the last slot";
  moved.reset();
  EXPECT_NO_THROW(guard_mapping(region, kPage));
  ranges.clear();
  ::munmap(region, kPage);

  try {
    guard_mapping(region, 0);
    ADD_FAILURE() << "an empty range was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::InvalidArgument);
  }
}
