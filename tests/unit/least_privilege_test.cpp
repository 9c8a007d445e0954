// Least privilege (issue 15 item 10; docs/proposals/least-privilege.md,
// section 8): what a member of a topic's group may do on a bus whose
// directory is 0640 in that group, across real uids (a forked child that
// drops to an unused uid; needs root, skipped otherwise). A member reads and
// writes only its own reader state; it cannot write the directory, the
// ring's data or control segments, or another reader's segment.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "as_stranger.hpp"
#include "flowbus/error.hpp"
#include "flowbus/inspect.hpp"
#include "reader_segment.hpp"
#include "segment.hpp"
#include "test_bus.hpp"

using namespace flowbus;
using namespace flowbus::testing;
using namespace std::chrono_literals;

namespace {

/// A bus as `flowbus topic create BUS lp.t --mode 0640 --group G` makes it:
/// directory and topic 0640 in group kTopicGroup, a `block` ring of 64 KiB.
struct GroupBus {
  ScopedBusName name{"lp"};
  Bus bus = Bus::open(name.name, {.mode = 0640, .group = kTopicGroup});
  GroupBus() {
    TopicSpec spec = sensor_topic("lp.t", Policy::Block, 64 * 1024);
    spec.mode = 0640;
    spec.group = kTopicGroup;
    bus.create_topic(spec);
  }
  /// Waits until a subscription of `uid` to `pattern` shows.
  bool wait_for_subscription(const std::string& pattern, uid_t uid) const {
    for (const auto until = std::chrono::steady_clock::now() + 20s; std::chrono::steady_clock::now() < until;) {
      for (const SubscriptionSnapshot& sub : inspect_bus(name.name).subscriptions)
        if (sub.pattern == pattern && sub.uid == uid && sub.alive) return true;
      std::this_thread::sleep_for(5ms);
    }
    return false;
  }
};

std::string open_error(const std::string& segment, int flags) {
  const int fd = ::shm_open(segment.c_str(), flags, 0);
  if (fd >= 0) {
    ::close(fd);
    return "opened";
  }
  return std::strerror(errno);
}

}  // namespace

// Test 1 of the proposal: the recipe. The member subscribes (its
// Bus opens the directory read-only), before the publisher exists, and gets
// every event of the new ring; what needs writing the directory is refused
// with a message that says why. An outsider cannot open the bus at all.
TEST(LeastPrivilegeTest, AGroupMemberSubscribesToA0640TopicOnA0640BusAndLosesNothing) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to become another user";
  GroupBus g;
  struct stat st {};
  ASSERT_EQ(::stat(("/dev/shm/flowbus." + g.name.name).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0640u);
  EXPECT_EQ(st.st_gid, kTopicGroup);
  constexpr uint64_t kEvents = 20'000;  // about 20 laps of the ring
  std::string member;
  std::thread child([&] {
    member = as_stranger({kTopicGroup}, [&] {
      std::string out;
      Bus b = Bus::open(g.name.name);  // exists: opened read-only, no error
      Subscriber s = b.subscribe("lp.*", {StartAt::Earliest});
      uint64_t next = 0, lost = 0;
      for (const auto until = std::chrono::steady_clock::now() + 60s;
           next < kEvents && std::chrono::steady_clock::now() < until;) {
        Event e;
        const ReadResult r = s.read(e);
        if (r.status == ReadStatus::Ok) {
          if (e.sequence() != next) out += "out of order at " + std::to_string(next) + "\n";
          next = e.sequence() + 1;
          (void)s.release(e);
        } else if (r.status != ReadStatus::Empty) {
          lost += r.missed;
          out += std::string(to_string(r.status)) + "\n";
        }
      }
      out += "got " + std::to_string(next) + " lost " + std::to_string(lost) + "\n";
      try {
        Publisher p = b.publisher("lp.t", {"main"});
        out += "publish ok\n";
      } catch (const Error& e) {
        out += std::string("publish ") + to_string(e.code()) + ": " + e.what() + "\n";
      }
      try {
        TopicSpec other = sensor_topic("lp.other");
        b.create_topic(other);
        out += "create ok\n";
      } catch (const Error& e) {
        out += std::string("create ") + to_string(e.code()) + ": " + e.what() + "\n";
      }
      return out;
    });
  });
  EXPECT_TRUE(g.wait_for_subscription("lp.*", kStrangerUid));
  {
    Publisher pub = g.bus.publisher("lp.t", {"main"});
    const auto until = std::chrono::steady_clock::now() + 60s;
    for (uint64_t i = 0; i < kEvents && std::chrono::steady_clock::now() < until;)
      if (publish_reading(pub, i) == PublishStatus::Ok) ++i;
  }
  child.join();
  EXPECT_NE(member.find("got " + std::to_string(kEvents) + " lost 0\n"), std::string::npos) << member;
  EXPECT_EQ(member.find("out of order"), std::string::npos) << member;
  EXPECT_NE(member.find("publish permission-denied"), std::string::npos) << member;
  EXPECT_NE(member.find("may only read it"), std::string::npos) << member;
  EXPECT_NE(member.find("rw-r-----"), std::string::npos) << "names the directory's mode:\n" << member;
  EXPECT_NE(member.find("create permission-denied"), std::string::npos) << member;

  const std::string outsider = as_stranger({}, [&] {
    try {
      Bus b = Bus::open_existing(g.name.name);
      return std::string("opened");
    } catch (const Error& e) {
      return std::string(to_string(e.code())) + ": " + e.what();
    }
  });
  EXPECT_NE(outsider.find("permission-denied"), std::string::npos) << outsider;
  EXPECT_NE(outsider.find("group"), std::string::npos) << "says what to ask for:\n" << outsider;
}

// Test 2: a member may open for reading what it reads, and may write
// nothing but its own segment: not the directory, not the ring's data or
// control segment, not another member's reader segment.
TEST(LeastPrivilegeTest, AGroupMemberCannotOpenForWritingTheDirectoryDataControlOrAnotherReadersSegment) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to become another user";
  GroupBus g;
  Publisher pub = g.bus.publisher("lp.t", {"main"});
  ASSERT_EQ(publish_reading(pub, 0), PublishStatus::Ok);
  // Another member reads, and keeps its segment while we look.
  int ready[2], done[2];
  ASSERT_EQ(::pipe(ready), 0);
  ASSERT_EQ(::pipe(done), 0);
  std::thread other([&] {
    (void)as_stranger(
        {kTopicGroup},
        [&] {
          Bus b = Bus::open(g.name.name);
          Subscriber s = b.subscribe("lp.t", {StartAt::Earliest});
          Event e;
          while (s.read(e).status != ReadStatus::Ok) {
          }
          (void)s.release(e);
          const std::string pid = std::to_string(::getpid());
          (void)!::write(ready[1], pid.data(), pid.size());
          char c;
          (void)!::read(done[0], &c, 1);
          return std::string();
        },
        kOtherStrangerUid);
  });
  char buf[32] = {};
  ASSERT_GT(::read(ready[0], buf, sizeof buf - 1), 0);
  const std::string other_segment = detail::reader_segment_prefix(g.name.name) + "r." + buf + ".0";
  ASSERT_TRUE(detail::Segment::exists(other_segment)) << other_segment;

  const std::string data = "flowbus." + g.name.name + ".lp.t@main";
  const std::string tried = as_stranger({kTopicGroup}, [&] {
    std::string out;
    for (const std::string& segment : {"flowbus." + g.name.name, data, data + ".ctl", other_segment})
      out += open_error(segment, O_RDWR) + "/" + open_error(segment, O_RDONLY) + "\n";
    return out;
  });
  EXPECT_EQ(tried,
            "Permission denied/opened\n"   // directory
            "Permission denied/opened\n"   // data
            "Permission denied/opened\n"   // control
            "Permission denied/opened\n")  // another member's segment
      << tried;
  (void)!::write(done[1], "x", 1);
  other.join();
  for (int fd : {ready[0], ready[1], done[0], done[1]}) ::close(fd);
}

// /dev/shm is sticky: a name another user took is not ours to remove. A
// reader's segment names must not be ones another user can take first and
// so stop it from subscribing (its drafts were "~d.<pid>.<counter>").
TEST(LeastPrivilegeTest, AnotherUserSquattingAReadersSegmentNamesCannotStopItSubscribing) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to become another user";
  GroupBus g;
  int pid_pipe[2], go[2];
  ASSERT_EQ(::pipe(pid_pipe), 0);
  ASSERT_EQ(::pipe(go), 0);
  std::string result;
  // A member (not root, who could remove any name): a fresh process, whose
  // draft counter would start at 0.
  std::thread member([&] {
    result = as_stranger(
        {kTopicGroup},
        [&] {
          const std::string pid = std::to_string(::getpid());
          (void)!::write(pid_pipe[1], pid.data(), pid.size());
          char c;
          (void)!::read(go[0], &c, 1);
          Bus b = Bus::open_existing(g.name.name);
          Subscriber s = b.subscribe("lp.t", {StartAt::Earliest});
          return std::string("subscribed");
        },
        kOtherStrangerUid);
  });
  char buf[32] = {};
  ASSERT_GT(::read(pid_pipe[0], buf, sizeof buf - 1), 0);
  const std::string reader = buf;
  const std::string stem = detail::reader_segment_prefix(g.name.name);
  const std::string squatted = as_stranger({}, [&] {
    int n = 0;
    for (int i = 0; i < 64; ++i)
      for (const std::string& name :
           {stem + "d." + reader + "." + std::to_string(i), stem + "r." + reader + "." + std::to_string(i)}) {
        const int fd = ::shm_open(name.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
        if (fd >= 0) {
          ++n;
          ::close(fd);
        }
      }
    return std::to_string(n);
  });
  EXPECT_EQ(squatted, "128");
  (void)!::write(go[1], "x", 1);
  member.join();
  EXPECT_EQ(result, "subscribed");
  for (int i = 0; i < 64; ++i)
    for (const char* kind : {"d.", "r."}) detail::Segment::remove(stem + kind + reader + "." + std::to_string(i));
  for (int fd : {pid_pipe[0], pid_pipe[1], go[0], go[1]}) ::close(fd);
}

// A member that subscribes again and again would take every attachment of
// every new ring of the group (each holds the writer until its timeout):
// another user gets at most 16 of the 64 reservations; the writer's own
// subscribers still get theirs.
TEST(LeastPrivilegeTest, AnotherUserGetsOnlyAShareOfANewRingsReservations) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to become another user";
  GroupBus g;
  int ready[2], done[2];
  ASSERT_EQ(::pipe(ready), 0);
  ASSERT_EQ(::pipe(done), 0);
  std::thread member([&] {
    (void)as_stranger({kTopicGroup}, [&] {
      Bus b = Bus::open_existing(g.name.name);
      std::vector<Subscriber> many;
      for (int i = 0; i < 40; ++i) many.push_back(b.subscribe("lp.>"));
      (void)!::write(ready[1], "r", 1);
      char c;
      (void)!::read(done[0], &c, 1);
      return std::string();
    });
  });
  char c;
  ASSERT_EQ(::read(ready[0], &c, 1), 1);
  Subscriber own = g.bus.subscribe("lp.t");
  Publisher pub = g.bus.publisher("lp.t", {"main"});
  int of_member = 0, of_root = 0;
  auto ctl = detail::Segment::open("flowbus." + g.name.name + ".lp.t@main.ctl", detail::Access::ReadOnly);
  for (const detail::Attachment& a : reinterpret_cast<const detail::ControlHeader*>(ctl.data())->attachments) {
    if (detail::AttachmentState::kind(a.state.load()) != detail::AttachmentState::kReserved) continue;
    of_member += a.uid.load() == kStrangerUid;
    of_root += a.uid.load() == 0;
  }
  EXPECT_EQ(of_member, 16);
  EXPECT_EQ(of_root, 1);
  (void)!::write(done[1], "x", 1);
  member.join();
  for (int fd : {ready[0], ready[1], done[0], done[1]}) ::close(fd);
}
