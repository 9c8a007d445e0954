// Cleanup after dead processes, across real processes (flowbus_test_worker
// and the flowbus CLI): after kill -9 of everything, after pid reuse, and
// after a cleanup or a creation killed half-way. Labels: process, torture.
//   FLOWBUS_CLEANUP_ROUNDS   rounds of the kill-at-random-moments test (default 200)
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <cinttypes>
#include <cstdlib>
#include <cstring>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "bus_state.hpp"
#include "child_process.hpp"
#include "flowbus/bus.hpp"
#include "flowbus/error.hpp"
#include "flowbus/inspect.hpp"
#include "liveness.hpp"
#include "process/payload.hpp"
#include "process/worker_reports.hpp"
#include "test_bus.hpp"

using namespace flowbus;
using namespace flowbus::testing;
using namespace std::chrono_literals;

namespace {

std::set<std::string> segments_of(const std::string& bus) {
  std::set<std::string> out;
  for (const std::string& s : detail::list_shm_segments())
    if (s == "flowbus." + bus || s.rfind("flowbus." + bus + ".", 0) == 0) out.insert(s);
  return out;
}

uint64_t cleanup_rounds() {
  const char* v = std::getenv("FLOWBUS_CLEANUP_ROUNDS");
  return v != nullptr && *v != 0 ? std::strtoull(v, nullptr, 10) : 200;
}

/// Everything a dead process could have left in the directory, as text ("" if nothing).
/// With `retention_zero`, a Ready ring nobody owns is a leftover too (its retention is over).
std::string leftovers(const std::string& bus, bool retention_zero = true) {
  using namespace detail;
  const Segment seg = Segment::open(directory_segment_name(bus), Access::ReadOnly, sizeof(DirectoryLayout));
  const auto* dir = reinterpret_cast<const DirectoryLayout*>(seg.data());
  std::string out;
  for (uint32_t i = 0; i < kParticipants; ++i) {
    const uint64_t w = dir->participants[i].state.load();
    const uint32_t st = SlotWord::state(w);
    if (st == kClaiming || st == kCleaning)
      out += "participant " + std::to_string(i) + (st == kCleaning ? " cleaning" : " claiming") + "\n";
    if (st == kReady && !process_alive(pid_t(SlotWord::who(w)), dir->participants[i].start_time))
      out += "participant " + std::to_string(i) + " of dead pid " + std::to_string(SlotWord::who(w)) + "\n";
  }
  for (uint32_t i = 0; i < kTopics; ++i)
    if (SlotWord::state(dir->topics[i].state.load()) == kClaiming) out += "topic slot " + std::to_string(i) + " claiming\n";
  std::set<std::string> expected{directory_segment_name(bus)};
  for (uint32_t i = 0; i < kRings; ++i) {
    const RingSlot& r = dir->rings[i];
    const uint32_t st = SlotWord::state(r.state.load());
    if (st == kClaiming) out += "ring slot " + std::to_string(i) + " claiming\n";
    if (st != kReady) continue;
    const uint64_t owner = r.owner.load();
    if (is_removing_owner(owner)) out += "ring slot " + std::to_string(i) + " tombstoned by pid " + std::to_string(SlotWord::who(owner)) + "\n";
    else if (owner != 0) out += "ring slot " + std::to_string(i) + " still owned\n";
    else if (retention_zero) out += "ring slot " + std::to_string(i) + " ready, unowned, retention 0\n";
    const std::string topic = read_name(r.topic, kNameBytes), pub = read_name(r.publisher, kPublisherNameBytes);
    for (const std::string& s : ring_segment_names(bus, topic, pub)) expected.insert(s);
  }
  for (const std::string& s : segments_of(bus))
    if (!expected.count(s)) out += "segment " + s + " belongs to no ring\n";
  return out;
}

}  // namespace

class CleanupTest : public ::testing::Test {
 protected:
  void SetUp() override { ::signal(SIGPIPE, SIG_IGN); }
};

// (a) kill -9 of every process of a bus: publishers holding loans,
// subscribers holding views. The next process to open the bus frees their
// participant slots and cursors, drops their ring ownership, and removes
// the ring whose retention (0 s) is over; the retained one stays readable.
TEST_F(CleanupTest, AfterEveryProcessOfABusIsKilledTheNextOpenFreesWhatTheyLeft) {
  ScopedBusName name("cleanall");
  {
    Bus bus = Bus::open(name.name);
    bus.create_topic(sensor_topic("c.kept"));  // retention 1 h
    TopicSpec gone = sensor_topic("c.gone");
    gone.retention = 0s;
    bus.create_topic(gone);
  }  // this process is no participant from here on
  ChildProcess kept_pub({kWorker, "crashpub", name.name, "c.kept", "pk", "3"});
  ChildProcess gone_pub({kWorker, "crashpub", name.name, "c.gone", "pg", "3"});
  for (ChildProcess* p : {&kept_pub, &gone_pub}) {
    expect_line(*p, "ready");
    expect_line(*p, "loaned");
  }
  ChildProcess pattern_holder({kWorker, "hold", name.name, "c.>"});
  ChildProcess topic_holder({kWorker, "hold", name.name, "c.gone"});
  for (ChildProcess* p : {&pattern_holder, &topic_holder}) {
    expect_line(*p, "ready");
    expect_line(*p, "holding");
  }
  const BusSnapshot before = inspect_bus(name.name);
  EXPECT_EQ(before.live_participants(), 4u);
  size_t cursors_before = 0;
  for (const auto& r : before.rings) cursors_before += r.cursors.size();
  EXPECT_EQ(cursors_before, 3u) << "two holders on c.gone's ring, one on c.kept's";
  for (ChildProcess* p : {&kept_pub, &gone_pub, &pattern_holder, &topic_holder}) p->kill_and_reap();
  EXPECT_EQ(segments_of(name.name).size(), 7u) << "directory and two rings of three segments";

  Bus next = Bus::open(name.name);  // the next process: no rm, no gc
  const BusSnapshot after = inspect_bus(name.name);
  EXPECT_EQ(after.participants.size(), 1u) << "only this process";
  EXPECT_EQ(after.live_participants(), 1u);
  ASSERT_EQ(after.rings.size(), 1u) << "the ring past its retention is removed";
  const RingSnapshot& kept = after.rings[0];
  EXPECT_EQ(kept.publisher, "pk");
  EXPECT_FALSE(kept.writer_alive);
  EXPECT_TRUE(kept.cursors.empty()) << "the dead holders' cursors are freed";
  EXPECT_EQ(kept.retained_events, 3u);
  const std::set<std::string> expected{"flowbus." + name.name, "flowbus." + name.name + ".c.kept@pk",
                                       "flowbus." + name.name + ".c.kept@pk.ctl",
                                       "flowbus." + name.name + ".c.kept@pk.bell"};
  EXPECT_EQ(segments_of(name.name), expected);
  EXPECT_EQ(leftovers(name.name, false), "");

  // The retained events are still there, the name is free again, and no
  // stale cursor holds the writer back: a whole ring's worth goes in at once.
  Subscriber sub = next.subscribe("c.kept", {StartAt::Earliest});
  Publisher pub = next.publisher("c.kept", {"pk"});
  EXPECT_EQ(pub.next_sequence(), 3u);
  uint64_t got = 0;
  (void)sub.poll([&](const Event& e) { got += e.sequence() < 3; });
  EXPECT_EQ(got, 3u);
}

// (b) A dead participant whose pid now belongs to an unrelated live process
// is still seen as dead: liveness compares the process start time.
TEST_F(CleanupTest, ADeadParticipantWhosePidNowBelongsToAnotherProcessIsStillDead) {
  using namespace detail;
  ScopedBusName name("pidreuse");
  Bus bus = Bus::open(name.name);
  bus.create_topic(sensor_topic("t", Policy::Block, 4096));
  ChildProcess victim({kWorker, "crashpub", name.name, "t", "gone", "1"});
  expect_line(victim, "ready");
  expect_line(victim, "loaned");
  ChildProcess holder({kWorker, "hold", name.name, "t"});
  expect_line(holder, "ready");
  expect_line(holder, "holding");
  const pid_t dead[] = {victim.pid(), holder.pid()};
  victim.kill_and_reap();
  holder.kill_and_reap();

  // An unrelated live process takes the dead pids' place in their slots, as
  // if the kernel had given it one of their pids.
  ChildProcess sleeper({"/bin/sleep", "60"}, {.pipe_stdin = false});
  const uint64_t sleeper_start = process_start_time(sleeper.pid());
  ASSERT_NE(sleeper_start, 0u);
  Segment seg = Segment::open(directory_segment_name(name.name), Access::ReadWrite, sizeof(DirectoryLayout));
  auto* dir = reinterpret_cast<DirectoryLayout*>(seg.data());
  std::vector<uint32_t> slots;
  for (uint32_t i = 0; i < kParticipants; ++i) {
    ParticipantSlot& p = dir->participants[i];
    const uint64_t w = p.state.load();
    if (SlotWord::state(w) != kReady || (pid_t(SlotWord::who(w)) != dead[0] && pid_t(SlotWord::who(w)) != dead[1])) continue;
    p.state.store(SlotWord::pack(SlotWord::epoch(w), uint32_t(sleeper.pid()), kReady));
    p.start_time = sleeper_start;  // first the control: with its true start time it is alive
    slots.push_back(i);
  }
  ASSERT_EQ(slots.size(), 2u);
  auto sleeper_slots_alive = [&] {
    size_t n = 0;
    for (const auto& p : inspect_bus(name.name).participants) n += p.pid == sleeper.pid() && p.alive;
    return n;
  };
  EXPECT_EQ(sleeper_slots_alive(), 2u) << "the control: same pid, same start time is alive";
  for (uint32_t i : slots) dir->participants[i].start_time = sleeper_start + 1;  // another process's start time
  EXPECT_EQ(sleeper_slots_alive(), 0u) << "same pid, another start time: dead";

  Bus next = Bus::open(name.name);  // frees what the dead participants left
  for (const auto& p : inspect_bus(name.name).participants) EXPECT_NE(p.pid, sleeper.pid()) << "slot " << p.slot;
  Publisher pub = next.publisher("t", {"gone"});  // not NameInUse naming the sleeper's pid
  flatbuffers::FlatBufferBuilder fbb;
  for (uint64_t i = 0; i < 200; ++i) {  // a few rings' worth: the dead holder's cursor is gone
    build_payload(fbb, "gone", pub.next_sequence());
    ASSERT_EQ(pub.try_publish({fbb.GetBufferPointer(), fbb.GetSize()}), PublishStatus::Ok) << i;
  }
  EXPECT_EQ(::kill(sleeper.pid(), 0), 0) << "the unrelated process is untouched";
}

// (c) Cleanups and creations killed at random moments: each round a
// publisher process (attaching, creating its ring, publishing) and a
// `flowbus gc` (cleaning dead participants, removing expired rings) are
// SIGKILLed after a random delay, leaving whatever half-done state they were
// in. The next Bus::open must always converge: no half-claimed or cleaning
// slot, no dead participant, no tombstone, no ring left, no segment that
// belongs to no ring.
TEST_F(CleanupTest, CleanupsAndCreationsKilledAtRandomMomentsAreFinishedByTheNextOpen) {
  const uint64_t rounds = cleanup_rounds();
  ScopedBusName name("cleankill");
  // This process stays a participant, so gc keeps the bus (it removes a bus
  // with no live participant whole, which is another test's business).
  Bus bus = Bus::open(name.name);
  TopicSpec t = sensor_topic("k.t", Policy::Block, 4096);
  t.retention = 0s;
  bus.create_topic(t);
  // Kill moments are drawn over how long each process really takes here (a
  // sanitizer build starts several times slower), measured once.
  int64_t pub_us = 0, gc_us = 0;
  {
    const auto t0 = std::chrono::steady_clock::now();
    ChildProcess pub({kWorker, "crashpub", name.name, "k.t", "calibrate", "2"});
    expect_line(pub, "ready");
    expect_line(pub, "loaned");
    pub_us = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0).count();
    pub.kill_and_reap();
    const auto t1 = std::chrono::steady_clock::now();
    ChildProcess gc({FLOWBUS_BINARY_DIR "/bin/flowbus", "gc", name.name}, {.pipe_stdin = false});
    gc.wait(30s);
    gc_us = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t1).count();
    Bus next = Bus::open(name.name);
  }
  std::mt19937 rng(uint32_t(::getpid()));
  // The one calibration can be off by several times once the other core is
  // busy (CI runs two tests at once): killed before it attached, every
  // publisher would leave nothing. So the kill window stretches after a round
  // that left nothing and shrinks after one that left something, settling
  // where half the rounds leave nothing: near the moment of attaching, where
  // the half-done states are.
  double stretch = 1.0;
  uint64_t rounds_with_leftovers = 0;
  std::map<std::string, uint64_t> kinds;  // what the killed processes left, by kind
  for (uint64_t round = 0; round < rounds; ++round) {
    {
      ChildProcess pub({kWorker, "crashpub", name.name, "k.t", "p" + std::to_string(round), "2"});
      ChildProcess gc({FLOWBUS_BINARY_DIR "/bin/flowbus", "gc", name.name}, {.pipe_stdin = false});
      // Most of each span is exec and start-up; the later part is the work.
      const uint64_t pub_kill_us = uint64_t(pub_us) / 2 + rng() % uint64_t(pub_us / 2 + 1);
      std::this_thread::sleep_for(std::chrono::microseconds(uint64_t(double(pub_kill_us) * stretch)));
      pub.kill_and_reap();
      std::this_thread::sleep_for(std::chrono::microseconds(rng() % uint64_t(gc_us / 2 + 1)));
      gc.kill_and_reap();
    }
    const std::string left = leftovers(name.name);
    stretch = left.empty() ? std::min(stretch * 1.1, 16.0) : std::max(stretch / 1.1, 0.5);
    if (!left.empty()) {
      ++rounds_with_leftovers;
      std::istringstream in(left);
      std::string line;
      while (std::getline(in, line)) {
        std::string kind = line.substr(0, line.find_first_of("0123456789"));
        if (line.find("claiming") != std::string::npos) kind += "claiming";
        if (line.find("tombstoned") != std::string::npos) kind += "tombstoned";
        if (line.find("cleaning") != std::string::npos) kind += "cleaning";
        if (line.find("belongs to no ring") != std::string::npos) kind = "orphan segment";
        ++kinds[kind];
      }
    }
    { Bus next = Bus::open(name.name); }  // the next process; it leaves again at once
    const std::string still = leftovers(name.name);
    ASSERT_EQ(still, "") << "round " << round << ": the next open did not finish what was left:\n" << left;
  }
  EXPECT_GT(rounds_with_leftovers, 0u) << "no round left anything to clean: the test tried nothing";
  std::string summary;
  for (const auto& [k, n] : kinds) summary += "  " + k + ": " + std::to_string(n) + "\n";
  std::printf("%" PRIu64 " rounds (a publisher takes %" PRId64 " us to attach and loan, gc %" PRId64
              " us; kill window stretched x%.2f at the end), %" PRIu64
              " left something half-done for the next open, all finished:\n%s",
              rounds, pub_us, gc_us, stretch, rounds_with_leftovers, summary.c_str());
}

// (c, every step) Each half-done state a killed cleaner or creator can leave,
// made directly in the directory, with pids of processes that are gone:
//  * a participant slot Cleaning (the cleaner died) whose participant still
//    owns a ring and a cursor;
//  * a ring tombstoned by a dead remover, segments still there;
//  * a ring tombstoned by a dead remover, segments already removed;
//  * a ring slot Claiming by a dead creator, its segments already made.
// One Bus::open finishes all of them.
TEST_F(CleanupTest, EachHalfDoneStateOfAKilledCleanerOrCreatorIsFinishedByTheNextOpen) {
  using namespace detail;
  ScopedBusName name("cleanstep");
  Bus bus = Bus::open(name.name);
  bus.create_topic(sensor_topic("s.kept"));  // retention 1 h
  for (const char* pub : {"tomb1", "tomb2"}) Publisher p = bus.publisher("s.kept", {pub});  // released at once
  ChildProcess owner({kWorker, "crashpub", name.name, "s.kept", "owned", "1"});
  expect_line(owner, "ready");
  expect_line(owner, "loaned");
  ChildProcess holder({kWorker, "hold", name.name, "s.kept"});
  expect_line(holder, "ready");
  expect_line(holder, "holding");
  const pid_t owner_pid = owner.pid();
  owner.kill_and_reap();
  holder.kill_and_reap();
  pid_t gone = 0;  // a pid nobody has any more
  {
    ChildProcess t({"/bin/true"}, {.pipe_stdin = false});
    gone = t.pid();
    t.wait(5s);
  }
  ASSERT_FALSE(process_alive(gone, 0));

  Segment seg = Segment::open(directory_segment_name(name.name), Access::ReadWrite, sizeof(DirectoryLayout));
  auto* dir = reinterpret_cast<DirectoryLayout*>(seg.data());
  // The crashed publisher's slot: a cleaner took it (Cleaning) and died.
  bool cleaning = false;
  for (ParticipantSlot& p : dir->participants) {
    const uint64_t w = p.state.load();
    if (SlotWord::state(w) == kReady && pid_t(SlotWord::who(w)) == owner_pid) {
      p.state.store(SlotWord::pack(SlotWord::epoch(w), uint32_t(gone), kCleaning));
      cleaning = true;
    }
  }
  ASSERT_TRUE(cleaning);
  // Two rings tombstoned by a remover that died; one had removed its segments.
  for (RingSlot& r : dir->rings) {
    if (SlotWord::state(r.state.load()) != kReady) continue;
    const std::string pub = read_name(r.publisher, kPublisherNameBytes);
    if (pub != "tomb1" && pub != "tomb2") continue;
    r.owner.store(removing_owner(uint32_t(gone)));
    if (pub == "tomb2") {
      for (const std::string& s : ring_segment_names(name.name, "s.kept", pub)) Segment::remove(s);
    }
  }
  // A ring slot claimed by a creator that died after making its segments.
  for (RingSlot& r : dir->rings) {
    const uint64_t w = r.state.load();
    if (SlotWord::state(w) != kFree) continue;
    std::memset(r.topic, 0, kNameBytes);
    std::memcpy(r.topic, "s.kept", 6);
    std::memset(r.publisher, 0, kPublisherNameBytes);
    std::memcpy(r.publisher, "half", 4);
    r.state.store(SlotWord::pack(SlotWord::epoch(w) + 1, uint32_t(gone), kClaiming));
    break;
  }
  Segment::create(data_segment_name(name.name, "s.kept", "half"), 4096 + kRecordsOffset, 0600, -1);
  Segment::create(control_segment_name(name.name, "s.kept", "half"), sizeof(ControlHeader), 0600, -1);
  const std::string before = leftovers(name.name, false);
  EXPECT_NE(before.find("cleaning"), std::string::npos) << before;  // (state 3)
  EXPECT_NE(before.find("tombstoned"), std::string::npos) << before;
  EXPECT_NE(before.find("claiming"), std::string::npos) << before;
  EXPECT_NE(before.find("half belongs to no ring"), std::string::npos) << before;

  { Bus next = Bus::open(name.name); }
  EXPECT_EQ(leftovers(name.name, false), "") << "before the open:\n" << before;
  const std::set<std::string> expected{"flowbus." + name.name, "flowbus." + name.name + ".s.kept@owned",
                                       "flowbus." + name.name + ".s.kept@owned.ctl",
                                       "flowbus." + name.name + ".s.kept@owned.bell"};
  EXPECT_EQ(segments_of(name.name), expected);
  const BusSnapshot snap = inspect_bus(name.name);
  ASSERT_EQ(snap.rings.size(), 1u);
  EXPECT_FALSE(snap.rings[0].writer_alive);
  EXPECT_TRUE(snap.rings[0].cursors.empty()) << "the dead holder's cursor";
  Publisher again = bus.publisher("s.kept", {"owned"});  // its owner is released
  for (const char* pub : {"tomb1", "tomb2", "half"}) Publisher p = bus.publisher("s.kept", {pub});  // names free again
}
