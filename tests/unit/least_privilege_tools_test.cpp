// Least privilege, the tools (docs/proposals/least-privilege.md, section 8,
// test 10): inspect, check and gc on a bus whose directory and topic are
// 0640 in a group, read by members of two other uids (forked children that
// drop to unused uids; needs root, skipped otherwise). Root sees every
// reader; a member sees the bus read-only and may clean up nothing; an
// outsider is refused with the reason; gc as root removes what dead
// members left.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <thread>

#include "as_stranger.hpp"
#include "flowbus/error.hpp"
#include "flowbus/gc.hpp"
#include "flowbus/inspect.hpp"
#include "reader_segment.hpp"
#include "segment.hpp"
#include "test_bus.hpp"

using namespace flowbus;
using namespace flowbus::testing;

namespace {

/// How many readers `snap`'s ring of lp.t shows, and how many of them with a known position.
std::string readers_seen(const BusSnapshot& snap) {
  for (const RingSnapshot& r : snap.rings) {
    if (r.topic != "lp.t") continue;
    size_t known = 0;
    for (const CursorSnapshot& c : r.cursors) known += !c.position_unknown && c.pid != 0;
    return std::to_string(r.cursors.size()) + " readers, " + std::to_string(known) + " known";
  }
  return "no ring";
}

}  // namespace

TEST(LeastPrivilegeToolsTest, RootSeesEveryReaderAMemberLooksReadOnlyAnOutsiderIsRefusedAndGcCleansUpTheDead) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to become another user";
  ScopedBusName name("lptools");
  Bus bus = Bus::open(name.name, {.mode = 0640, .group = kTopicGroup});
  TopicSpec spec = sensor_topic("lp.t", Policy::Block, 64 * 1024);
  spec.mode = 0640;
  spec.group = kTopicGroup;
  bus.create_topic(spec);
  Publisher pub = bus.publisher("lp.t", {"main"});
  for (uint64_t i = 0; i < 10; ++i) ASSERT_EQ(publish_reading(pub, i), PublishStatus::Ok);

  // Two members of the group, of two uids, read and stay until told; they
  // end with _exit (as_stranger), leaving their segments as a killed
  // reader would (the Subscriber is never destroyed).
  int ready[2], done[2];
  ASSERT_EQ(::pipe(ready), 0);
  ASSERT_EQ(::pipe(done), 0);
  const auto member = [&] {
    Bus b = Bus::open_existing(name.name);
    auto* s = new Subscriber(b.subscribe("lp.t", {StartAt::Earliest}));
    for (int got = 0; got < 10;) {
      Event e;
      if (s->read(e).status == ReadStatus::Ok) {
        ++got;
        (void)s->release(e);
      }
    }
    (void)!::write(ready[1], "r", 1);
    char c;
    (void)!::read(done[0], &c, 1);
    return std::string();
  };
  std::thread one([&] { (void)as_stranger({kTopicGroup}, member); });
  std::thread two([&] { (void)as_stranger({kTopicGroup}, member, kOtherStrangerUid); });
  char c;
  ASSERT_EQ(::read(ready[0], &c, 1), 1);
  ASSERT_EQ(::read(ready[0], &c, 1), 1);

  // Root: every reader, with its position; both subscriptions with their
  // uids; the bus checks clean; gc keeps everything.
  const BusSnapshot snap = inspect_bus(name.name);
  EXPECT_EQ(readers_seen(snap), "2 readers, 2 known");
  std::vector<uint32_t> uids;
  for (const SubscriptionSnapshot& s : snap.subscriptions) uids.push_back(s.uid);
  std::sort(uids.begin(), uids.end());
  EXPECT_EQ(uids, (std::vector<uint32_t>{kStrangerUid, kOtherStrangerUid}));
  const CheckReport check = check_bus(name.name);
  EXPECT_TRUE(check.ok()) << (check.findings.empty() ? "" : check.findings[0].where + ": " + check.findings[0].problem);
  GcReport gc = collect_garbage(name.name, false);
  EXPECT_TRUE(gc.removed_segments.empty());
  EXPECT_EQ(gc.kept_buses.size(), 1u);

  // A member: the bus read-only (both members' segments are in the group,
  // so it sees both readers), a clean check, and a gc that removes nothing
  // and says why.
  const std::string as_member = as_stranger({kTopicGroup}, [&] {
    std::string out = readers_seen(inspect_bus(name.name));
    out += check_bus(name.name).ok() ? "; check ok" : "; check FAILED";
    const GcReport g = collect_garbage(name.name, false);
    out += "; gc removed " + std::to_string(g.removed_segments.size() + g.removed_buses.size());
    for (const std::string& e : g.errors) out += "; gc: " + e;
    return out;
  });
  EXPECT_NE(as_member.find("2 readers, 2 known; check ok; gc removed 0"), std::string::npos) << as_member;
  EXPECT_NE(as_member.find("permission denied"), std::string::npos) << "gc says why:\n" << as_member;

  // An outsider: refused, told the mode and the group to ask for.
  const std::string outsider = as_stranger({}, [&] {
    try {
      (void)inspect_bus(name.name);
      return std::string("inspected");
    } catch (const Error& e) {
      return std::string(to_string(e.code())) + ": " + e.what();
    }
  });
  EXPECT_NE(outsider.find("permission-denied"), std::string::npos) << outsider;
  EXPECT_NE(outsider.find("rw-r-----"), std::string::npos) << outsider;

  // The members end without cleaning up: root's gc removes their segments.
  (void)!::write(done[1], "xx", 2);
  one.join();
  two.join();
  gc = collect_garbage(name.name, false);
  size_t reader_segments = 0;
  for (const std::string& s : gc.removed_segments)
    reader_segments += s.rfind(detail::reader_segment_prefix(name.name), 0) == 0;
  EXPECT_GE(reader_segments, 2u) << "each member's segments";
  EXPECT_EQ(readers_seen(inspect_bus(name.name)), "0 readers, 0 known");
  for (int fd : {ready[0], ready[1], done[0], done[1]}) ::close(fd);
}
