// Access control: segment modes whatever the umask, and what another user
// can and cannot do with a topic of mode 0640 and a group (a forked child
// that drops to an unused uid and gid; needs root, skipped otherwise).
// That a subscriber's data mapping is read-only, so a write through it
// faults, is RingTest.SubscriberMapsRingReadOnlySoAWriteFaults.
#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <pwd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "as_stranger.hpp"
#include "flowbus/error.hpp"
#include "flowbus/inspect.hpp"
#include "reader_lines.hpp"
#include "reader_segment.hpp"
#include "segment.hpp"
#include "test_bus.hpp"

using namespace flowbus;
using namespace flowbus::testing;

namespace {

std::map<std::string, unsigned> modes_of(const std::string& bus) {
  std::map<std::string, unsigned> out;
  for (const std::string& s : detail::list_shm_segments()) {
    if (s != "flowbus." + bus && s.rfind("flowbus." + bus + ".", 0) != 0) continue;
    struct stat st{};
    if (::stat(("/dev/shm/" + s).c_str(), &st) == 0) out[s.substr(("flowbus." + bus).size())] = st.st_mode & 07777;
  }
  return out;
}

}  // namespace

TEST(AccessTest, SegmentsGetTheRequestedModeWhateverTheUmask) {
  for (const mode_t mask : {mode_t(0), mode_t(077)}) {
    const mode_t old = ::umask(mask);
    ScopedBusName name("umask");
    {
      Bus bus = Bus::open(name.name);
      bus.create_topic(sensor_topic("private"));  // default mode 0600
      TopicSpec shared = sensor_topic("shared");
      shared.mode = 0640;
      bus.create_topic(shared);
      Publisher a = bus.publisher("private"), b = bus.publisher("shared");
    }
    ::umask(old);
    const std::map<std::string, unsigned> expected{
        {"", 0600},  // directory
        {".private@main", 0600},
        {".private@main.ctl", 0600},
        {".private@main.bell", 0600},
        {".shared@main", 0640},
        {".shared@main.ctl", 0640},   // the writer's alone: readers map it read-only
        {".shared@main.bell", 0660},  // readers post wake requests and announce themselves
    };
    EXPECT_EQ(modes_of(name.name), expected) << "umask " << std::oct << mask;
  }
}

TEST(AccessTest, AUserOutsideTheTopicsGroupIsRefusedAndToldWhyAMemberMayReadButNotPublish) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to become another user";
  ASSERT_EQ(::getpwuid(kStrangerUid), nullptr);
  ASSERT_EQ(::getgrgid(kStrangerGid), nullptr);
  ASSERT_EQ(::getgrgid(kTopicGroup), nullptr);
  ScopedBusName name("acl");
  // The directory must be writable by every participant (they claim slots
  // in it); the topic's own segments are what mode and group protect.
  Bus bus = Bus::open(name.name, {.mode = 0666});
  TopicSpec spec = sensor_topic("acl.t");
  spec.mode = 0640;
  spec.group = kTopicGroup;
  bus.create_topic(spec);
  TopicSpec writable = spec;  // the same, but its group may write
  writable.name = "acl.w";
  writable.mode = 0660;
  bus.create_topic(writable);
  {
    Publisher pub = bus.publisher("acl.t", {"main"});
    flatbuffers::FlatBufferBuilder fbb;
    build_reading(fbb, 7);
    ASSERT_EQ(pub.try_publish({fbb.GetBufferPointer(), fbb.GetSize()}), PublishStatus::Ok);
  }  // released: a writer could take the ring over, if the mode let it

  auto attempt = [&] {
    std::string out;
    Bus b = Bus::open_existing(name.name);
    try {
      Subscriber s = b.subscribe("acl.t", {StartAt::Earliest});
      Event e;
      const ReadResult r = s.read(e);
      out += std::string("subscribe ok read ") + to_string(r.status) + "\n";
      if (r.status == ReadStatus::Ok) (void)s.release(e);
    } catch (const Error& e) {
      out += std::string("subscribe ") + to_string(e.code()) + ": " + e.what() + "\n";
    }
    try {
      Publisher p = b.publisher("acl.t", {"main"});  // take the ring over
      out += "publish ok\n";
    } catch (const Error& e) {
      out += std::string("publish ") + to_string(e.code()) + ": " + e.what() + "\n";
    }
    try {
      Publisher p = b.publisher("acl.t", {"other"});  // a ring of its own, in the topic's group
      out += "new ring ok\n";
    } catch (const Error& e) {
      out += std::string("new ring ") + to_string(e.code()) + ": " + e.what() + "\n";
    }
    try {
      Publisher p = b.publisher("acl.w", {"other"});  // mode 0660: the group may write
      out += "writable topic ok\n";
    } catch (const Error& e) {
      out += std::string("writable topic ") + to_string(e.code()) + ": " + e.what() + "\n";
    }
    return out;
  };

  const std::string outsider = as_stranger({}, attempt);
  EXPECT_NE(outsider.find("subscribe permission-denied"), std::string::npos) << outsider;
  EXPECT_NE(outsider.find("rw-r-----"), std::string::npos) << "names the mode:\n" << outsider;
  EXPECT_NE(outsider.find("owner uid 0"), std::string::npos) << "names the owner:\n" << outsider;
  EXPECT_NE(outsider.find("group " + std::to_string(kTopicGroup)), std::string::npos) << "names the group:\n" << outsider;
  EXPECT_NE(outsider.find("publish permission-denied"), std::string::npos) << outsider;
  // It cannot add a ring of its own either, to either topic.
  EXPECT_NE(outsider.find("new ring permission-denied"), std::string::npos) << outsider;
  EXPECT_NE(outsider.find("writable topic permission-denied"), std::string::npos) << outsider;
  EXPECT_NE(outsider.find("(outside its group) may not publish"), std::string::npos) << outsider;

  const std::string member = as_stranger({kTopicGroup}, attempt);
  EXPECT_NE(member.find("subscribe ok read ok"), std::string::npos) << member;
  EXPECT_NE(member.find("publish permission-denied"), std::string::npos) << member;
  EXPECT_NE(member.find("rw-r-----"), std::string::npos) << member;
  // Nor add a ring of its own: 0640 gives the group read only. Under 0660 it may.
  EXPECT_NE(member.find("new ring permission-denied"), std::string::npos) << member;
  EXPECT_NE(member.find("(in its group) may not publish"), std::string::npos) << member;
  EXPECT_NE(member.find("writable topic ok"), std::string::npos) << member;
}

// Least privilege, step 5: a group member's reader segment, where it
// publishes its positions, is its own (its uid), in the topic's group, mode
// 0640: another member, even of the same group, may read it and not write
// it; an outsider may not even read it. Its process killed, the next open of
// the bus (here by root) removes it.
TEST(AccessTest, AMembersReaderSegmentIsItsOwnInTheTopicsGroupAndNoOtherReaderMayWriteIt) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to become another user";
  ASSERT_EQ(::getpwuid(kOtherStrangerUid), nullptr);
  ScopedBusName name("aclrdr");
  Bus bus = Bus::open(name.name, {.mode = 0666});
  TopicSpec spec = sensor_topic("acl.t");
  spec.mode = 0640;
  spec.group = kTopicGroup;
  bus.create_topic(spec);
  Publisher pub = bus.publisher("acl.t", {"main"});
  ASSERT_EQ(publish_reading(pub, 7), PublishStatus::Ok);

  const std::string reader = as_stranger({kTopicGroup}, [&] {
    Bus b = Bus::open_existing(name.name);
    // Never destroyed: the child ends with _exit, as a killed reader does.
    auto* s = new Subscriber(b.subscribe("acl.t", {StartAt::Earliest}));
    Event e;
    if (s->read(e).status != ReadStatus::Ok) return std::string("no event");
    (void)s->release(e);
    (void)s->wait(std::chrono::milliseconds(1));
    return std::to_string(::getpid());
  });
  const pid_t reader_pid = pid_t(std::atol(reader.c_str()));
  ASSERT_GT(reader_pid, 0) << reader;
  // The segment holding its line for the ring (it also has one of its own group).
  const std::vector<detail::FoundReaderLine> lines =
      detail::find_reader_lines(name.name, inspect_bus(name.name).rings.at(0).publisher_id, detail::kAnyRingSlot);
  ASSERT_EQ(lines.size(), 1u);
  ASSERT_EQ(lines[0].pid, uint32_t(reader_pid));
  const std::string segment =
      detail::reader_segment_prefix(name.name) + "r." + reader + "." + std::to_string(lines[0].n);
  struct stat st {};
  ASSERT_EQ(::stat(("/dev/shm/" + segment).c_str(), &st), 0) << segment;
  EXPECT_EQ(st.st_uid, kStrangerUid);
  EXPECT_EQ(st.st_gid, kTopicGroup) << "in the topic's group, not the reader's own";
  EXPECT_EQ(st.st_mode & 0777, 0640u);

  auto try_open = [&] {
    std::string out;
    const int rw = ::shm_open(segment.c_str(), O_RDWR, 0);
    out += rw >= 0 ? "rw ok\n" : "rw " + std::string(std::strerror(errno)) + "\n";
    const int ro = ::shm_open(segment.c_str(), O_RDONLY, 0);
    out += ro >= 0 ? "ro ok\n" : "ro " + std::string(std::strerror(errno)) + "\n";
    if (rw >= 0) ::close(rw);
    if (ro >= 0) ::close(ro);
    return out;
  };
  const std::string member = as_stranger({kTopicGroup}, try_open, kOtherStrangerUid);
  EXPECT_EQ(member, "rw Permission denied\nro ok\n");
  const std::string outsider = as_stranger({}, try_open, kOtherStrangerUid);
  EXPECT_EQ(outsider, "rw Permission denied\nro Permission denied\n");

  Bus next = Bus::open(name.name);  // the reader is dead: its segment goes
  EXPECT_FALSE(detail::Segment::exists(segment));
}

// Least privilege, step 7: a member of the topic's group that subscribes
// before the publisher exists loses nothing of the new ring. Its subscription
// is in its own reader segment, whose group (the topic's) the kernel vouches
// for, so the ring's creator reserves an attachment for it. Before, a
// subscription in the directory told the creator only the subscriber's uid,
// and a group reader got no reservation: the first laps were overwritten
// before it attached (counted as lost).
TEST(AccessTest, AGroupMemberSubscribedBeforeThePublisherGetsAReservationAndLosesNothing) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to become another user";
  ScopedBusName name("aclres");
  Bus bus = Bus::open(name.name, {.mode = 0666});
  TopicSpec spec = sensor_topic("acl.r", Policy::Block, 64 * 1024);
  spec.mode = 0640;
  spec.group = kTopicGroup;
  bus.create_topic(spec);
  constexpr uint64_t kEvents = 20'000;  // about 20 laps of the ring
  std::string reader;
  std::thread child([&] {
    reader = as_stranger({kTopicGroup}, [&] {
      Bus b = Bus::open_existing(name.name);
      Subscriber s = b.subscribe("acl.r", {StartAt::Earliest});
      uint64_t next = 0, lost = 0;
      std::string problems;
      const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
      while (next < kEvents && std::chrono::steady_clock::now() < until) {
        Event e;
        const ReadResult r = s.read(e);
        if (r.status == ReadStatus::Ok) {
          if (e.sequence() != next && problems.empty()) problems = " first out of order at " + std::to_string(next);
          next = e.sequence() + 1;
          (void)s.release(e);
        } else if (r.status != ReadStatus::Empty) {
          lost += r.missed;
          if (problems.empty()) problems = std::string(" ") + to_string(r.status);
        }
      }
      return "got " + std::to_string(next) + " lost " + std::to_string(lost) + problems;
    });
  });
  // Its subscription shows (inspect reads it from the member's segment).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  bool subscribed = false;
  while (!subscribed && std::chrono::steady_clock::now() < deadline) {
    for (const SubscriptionSnapshot& sub : inspect_bus(name.name).subscriptions)
      subscribed |= sub.pattern == "acl.r" && sub.uid == kStrangerUid && sub.alive;
    if (!subscribed) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_TRUE(subscribed);
  {
    Publisher pub = bus.publisher("acl.r", {"main"});
    for (uint64_t i = 0; i < kEvents && std::chrono::steady_clock::now() < deadline + std::chrono::seconds(40);) {
      if (publish_reading(pub, i) == PublishStatus::Ok) ++i;
    }
  }
  child.join();
  EXPECT_EQ(reader, "got " + std::to_string(kEvents) + " lost 0");
}
