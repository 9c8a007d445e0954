// Creating a bus is atomic to others (issue 15 items 3 and 4): two processes
// creating the same new bus at once both get a working bus, and a creator
// killed at any moment leaves nothing the next open cannot use or clean up.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <random>
#include <thread>

#include "flowbus/bus.hpp"
#include "flowbus/error.hpp"
#include "segment.hpp"
#include "test_bus.hpp"

using namespace flowbus;
using namespace flowbus::testing;

namespace {

/// A child that waits for a byte on `go`, then opens (creates) the bus.
/// Exit 0 when it worked; 1 and the message on stderr when it threw.
pid_t start_creator(const std::string& bus, int go) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    char c;
    if (::read(go, &c, 1) != 1) ::_exit(3);
    try {
      Bus b = Bus::open(bus);
      ::_exit(0);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "creator %d: %s\n", int(::getpid()), e.what());
      ::_exit(1);
    }
  }
  return pid;
}

int exit_code_of(pid_t pid) {
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

size_t drafts_of(const std::string& bus) {
  size_t n = 0;
  for (const std::string& seg : detail::list_shm_segments()) n += seg.rfind("flowbus." + bus + "@new.", 0) == 0;
  return n;
}

}  // namespace

TEST(BusCreationTest, TwoProcessesCreatingANewBusAtTheSameMomentBothGetIt) {
  int failed_rounds = 0;
  for (int round = 0; round < 60; ++round) {
    ScopedBusName name("create");
    int go[2];
    ASSERT_EQ(::pipe(go), 0);
    const pid_t a = start_creator(name.name, go[0]);
    const pid_t b = start_creator(name.name, go[0]);
    ASSERT_EQ(::write(go[1], "ab", 2), 2);  // both at once
    const int ea = exit_code_of(a), eb = exit_code_of(b);
    ::close(go[0]);
    ::close(go[1]);
    failed_rounds += ea != 0 || eb != 0;
    EXPECT_EQ(ea, 0) << "round " << round;
    EXPECT_EQ(eb, 0) << "round " << round;
    EXPECT_EQ(drafts_of(name.name), 0u);
  }
  EXPECT_EQ(failed_rounds, 0);
}

TEST(BusCreationTest, ACreatorKilledAtAnyMomentLeavesABusTheNextOpenUses) {
  std::mt19937 rng(12345);
  int half_made = 0;
  for (int round = 0; round < 100; ++round) {
    ScopedBusName name("create");
    int go[2];
    ASSERT_EQ(::pipe(go), 0);
    const pid_t creator = start_creator(name.name, go[0]);
    ASSERT_EQ(::write(go[1], "a", 1), 1);
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % 4000));
    ::kill(creator, SIGKILL);
    exit_code_of(creator);
    ::close(go[0]);
    ::close(go[1]);
    half_made += drafts_of(name.name) != 0;
    // No --force, no gc: the next open works and removes the dead draft.
    try {
      Bus bus = Bus::open(name.name);
      bus.create_topic(sensor_topic("t"));
    } catch (const Error& e) {
      ADD_FAILURE() << "round " << round << ": " << e.what();
    }
    EXPECT_EQ(drafts_of(name.name), 0u) << "round " << round;
  }
  std::printf("rounds killed with a half-made directory: %d of 100\n", half_made);
}
