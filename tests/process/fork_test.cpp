// Handles and fork() (issue 15 item 2): a handle belongs to the process that
// made it. A fork() child is refused on every inherited handle and its
// destructors leave the parent's ring, cursors and participant slot alone;
// a daemon (parent exits, child goes on) opens the bus again in the child and
// continues the ring's sequence; a live ring is never given to a second writer.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>
#include <utility>
#include <vector>

#include "flowbus/flowbus.hpp"
#include "test_bus.hpp"

using namespace flowbus;
using namespace flowbus::testing;
using namespace std::chrono_literals;

namespace {

ErrorCode code_of(auto&& call) {
  try {
    call();
  } catch (const Error& e) {
    return e.code();
  }
  return ErrorCode(-1);
}

int exit_code_of(pid_t pid) {
  int status = 0;
  if (::waitpid(pid, &status, 0) != pid) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/// Every sequence `sub` can read now, in order; `missed` adds what it reported lost.
std::vector<uint64_t> drain(Subscriber& sub, uint64_t& missed) {
  std::vector<uint64_t> seen;
  Event e;
  for (ReadResult r = sub.read(e); r.status != ReadStatus::Empty; r = sub.read(e)) {
    missed += r.missed;
    if (r.status != ReadStatus::Ok) continue;
    seen.push_back(e.sequence());
    (void)sub.release(e);
  }
  return seen;
}

std::vector<uint64_t> range(uint64_t from, uint64_t to) {
  std::vector<uint64_t> v;
  for (uint64_t s = from; s < to; ++s) v.push_back(s);
  return v;
}

}  // namespace

TEST(ForkTest, AChildIsRefusedOnInheritedHandlesAndItsDestructorsLeaveTheParentsRingAndCursors) {
  ScopedBusName name("fork");
  Bus bus = Bus::open(name.name);
  bus.create_topic(never_evicting("t"));
  Subscriber sub = bus.subscribe("t", {.from = StartAt::Earliest});
  Publisher pub = bus.publisher("t", {"svc"});
  for (uint64_t s = 0; s < 5; ++s) ASSERT_EQ(publish_reading(pub, s), PublishStatus::Ok);

  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    int failures = 0;
    failures += publish_reading(pub, 99) != PublishStatus::WrongProcess;
    Loan loan;
    failures += pub.loan(64, loan) != PublishStatus::WrongProcess;
    Event e;
    failures += sub.read(e).status != ReadStatus::WrongProcess;
    failures += code_of([&] { (void)bus.publisher("t", {"other"}); }) != ErrorCode::WrongProcess;
    failures += code_of([&] { (void)bus.subscribe("t"); }) != ErrorCode::WrongProcess;
    failures += code_of([&] { bus.create_topic(never_evicting("u")); }) != ErrorCode::WrongProcess;
    {  // The destructors run here, in the child: they must touch nothing shared.
      Publisher p = std::move(pub);
      Subscriber s = std::move(sub);
      Bus b = std::move(bus);
    }
    ::_exit(failures);
  }
  ASSERT_EQ(exit_code_of(child), 0) << "calls on inherited handles that were not refused";

  // The parent's handles work as before: its ring is still its own, its
  // cursor still in place, its participant slot still Ready.
  ASSERT_EQ(publish_reading(pub, 5), PublishStatus::Ok);
  uint64_t missed = 0;
  EXPECT_EQ(drain(sub, missed), range(0, 6));
  EXPECT_EQ(missed, 0u);
  const BusSnapshot snap = inspect_bus(name.name);
  ASSERT_EQ(snap.rings.size(), 1u);
  EXPECT_TRUE(snap.rings[0].writer_alive);
  ASSERT_EQ(snap.rings[0].cursors.size(), 1u);
  EXPECT_TRUE(snap.rings[0].cursors[0].alive);
  // Filling the ring: the writer waits for our cursor only (nothing freed it).
  uint64_t s = 6;
  while (publish_reading(pub, s) == PublishStatus::Ok) ++s;
  EXPECT_EQ(drain(sub, missed), range(6, s));
  EXPECT_EQ(missed, 0u);
}

// Found by the review: poll() in a child spun for ever (WrongProcess is
// neither an event nor "empty"), wait() said "readable" for ever, and a
// loan's builder wrote into the parent's ring before commit refused it.
TEST(ForkTest, AChildsPollStopsItsWaitThrowsAndItsLoanCannotWriteIntoTheParentsRing) {
  ScopedBusName name("fork");
  Bus bus = Bus::open(name.name);
  bus.create_topic(never_evicting("t"));
  Subscriber sub = bus.subscribe("t", {.from = StartAt::Earliest});
  Publisher pub = bus.publisher("t", {"svc"});
  ASSERT_EQ(publish_reading(pub, 0), PublishStatus::Ok);
  Loan loan;
  ASSERT_EQ(pub.loan(256, loan), PublishStatus::Ok);

  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::alarm(5);  // a hang fails the test as SIGALRM
    int failures = 0;
    const PollResult r = sub.poll([](const Event&) {});
    failures += r.delivered != 0;
    failures += code_of([&] { (void)sub.wait(1s); }) != ErrorCode::WrongProcess;
    ::_exit(failures);
  }
  ASSERT_EQ(exit_code_of(child), 0) << "1: poll delivered in the child; 128+14: poll or wait hung";

  child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    flatbuffers::FlatBufferBuilder& b = loan.builder();  // the ring's memory, as the parent lent it
    b.Clear();
    build_reading(b, 666);  // must fault: the ring is not mapped in the child
    ::_exit(0);
  }
  const int code = exit_code_of(child);
  EXPECT_EQ(code, 128 + SIGSEGV) << "the child wrote through an inherited loan";
  // The parent's loan is intact and commits what the parent builds.
  build_reading(loan.builder(), 1);
  ASSERT_EQ(pub.commit(loan), PublishStatus::Ok);
  uint64_t missed = 0;
  EXPECT_EQ(drain(sub, missed), range(0, 2));
  EXPECT_EQ(missed, 0u);
}

// The daemon's way: open the bus, fork, the parent exits. The child opens the
// bus again and takes the ring over once its parent is gone; the sequence
// goes on (no id issued twice), and while the child lives no other process
// gets the ring.
TEST(ForkTest, ADaemonizedChildOpensTheBusAgainAndContinuesTheRingsSequence) {
  ScopedBusName name("fork");
  Bus bus = Bus::open(name.name);
  bus.create_topic(never_evicting("t"));
  Subscriber sub = bus.subscribe("t", {.from = StartAt::Earliest});

  int ready[2], done[2];
  ASSERT_EQ(::pipe(ready), 0);
  ASSERT_EQ(::pipe(done), 0);
  const pid_t parent = ::fork();  // the daemon's parent
  ASSERT_GE(parent, 0);
  if (parent == 0) {
    Bus mine = Bus::open(name.name);
    Publisher pub = mine.publisher("t", {"svc"});
    for (uint64_t s = 0; s < 10; ++s)
      if (publish_reading(pub, s) != PublishStatus::Ok) ::_exit(10);
    const pid_t before_fork = ::getpid();
    const pid_t daemon = ::fork();
    if (daemon < 0) ::_exit(11);
    if (daemon > 0) ::_exit(0);  // as a daemon's parent does: no destructors
    ::close(ready[0]);
    ::close(done[1]);  // so that the read below ends if the test dies
    // The daemon: its parent is gone once it is reparented.
    while (::getppid() == before_fork) std::this_thread::sleep_for(1ms);
    char byte = 0;
    if (publish_reading(pub, 10) != PublishStatus::WrongProcess) byte = 1;
    {
      Publisher inherited = std::move(pub);  // let go of the copies: local memory only
      Bus old = std::move(mine);
    }
    try {
      Bus again = Bus::open(name.name);
      Publisher svc = again.publisher("t", {"svc"});
      if (svc.next_sequence() != 10) byte = 2;
      for (uint64_t s = 10; s < 20 && byte == 0; ++s)
        if (publish_reading(svc, s) != PublishStatus::Ok) byte = 3;
      (void)::write(ready[1], &byte, 1);
      (void)::read(done[0], &byte, 1);  // holds the ring until told
    } catch (const Error&) {
      byte = 4;
      (void)::write(ready[1], &byte, 1);
    }
    ::_exit(0);
  }
  ::close(ready[1]);  // the read below ends if the daemon dies without a word
  ::close(done[0]);
  ASSERT_EQ(exit_code_of(parent), 0);
  char byte = 9;
  ASSERT_EQ(::read(ready[0], &byte, 1), 1);
  ASSERT_EQ(byte, 0) << "1: an inherited publisher was not refused; 2: the sequence did not go on at 10; "
                        "3: a publish failed; 4: the child could not take the ring over";
  // The daemon lives and holds the ring: nobody else gets it.
  EXPECT_EQ(code_of([&] { (void)bus.publisher("t", {"svc"}); }), ErrorCode::NameInUse);
  uint64_t missed = 0;
  EXPECT_EQ(drain(sub, missed), range(0, 20)) << "each id once, in order";
  EXPECT_EQ(missed, 0u);
  (void)::write(done[1], &byte, 1);
}
