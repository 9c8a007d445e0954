// Reader segments (least privilege, step 5): each Subscriber publishes its
// position on every ring it reads in a segment of its own, which only it may
// write; the segment goes with the subscriber, a killed one's with the next
// bus open, and a bus's with the bus. (Across uids: AccessTest.)
#include "reader_segment.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "bus_state.hpp"
#include "child_process.hpp"
#include "flowbus/gc.hpp"
#include "test_bus.hpp"

namespace flowbus::testing {
namespace {

using namespace std::chrono_literals;

std::string reader_segment_of(const std::string& bus, pid_t pid, int n = 0) {
  return detail::reader_segment_prefix(bus) + "r." + std::to_string(pid) + "." + std::to_string(n);
}

bool eventually_exists(const std::string& segment, bool exists = true) {
  for (int i = 0; i < 500; ++i) {
    if (detail::Segment::exists(segment) == exists) return true;
    std::this_thread::sleep_for(10ms);
  }
  return false;
}

TEST(ReaderSegmentTest, ASubscriberPublishesItsPositionInASegmentOnlyItMayWrite) {
  ScopedBusName name("rdr");
  Bus bus = Bus::open(name.name);
  bus.create_topic(sensor_topic("t"));
  Publisher pub = bus.publisher("t", {"p"});
  Subscriber sub = bus.subscribe("t", {StartAt::Earliest, 0ns});
  const std::string segment = reader_segment_of(name.name, ::getpid());
  ASSERT_TRUE(detail::Segment::exists(segment)) << "made when the subscriber attached its first ring";
  struct stat st {};
  ASSERT_EQ(::stat(("/dev/shm/" + segment).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0640u) << "others may read it, only its owner may write it";
  EXPECT_EQ(st.st_uid, ::geteuid());
  EXPECT_EQ(st.st_gid, ::getegid()) << "a topic with no group: our own";

  for (uint64_t i = 0; i < 100; ++i) ASSERT_EQ(publish_reading(pub, i), PublishStatus::Ok);
  EXPECT_EQ(sub.poll([](const Event&) {}).delivered, 100u);
  EXPECT_FALSE(sub.wait(1ms));  // on its way to sleep it publishes its position

  const detail::Segment seg = detail::Segment::open(segment, detail::Access::ReadOnly, sizeof(detail::ReaderHeader));
  const auto* h = reinterpret_cast<const detail::ReaderHeader*>(seg.data());
  EXPECT_EQ(h->magic.load(), detail::kReaderMagic);
  EXPECT_EQ(h->layout_version, detail::kLayoutVersion);
  EXPECT_EQ(h->pid, uint64_t(::getpid()));
  EXPECT_NE(h->token, 0u);
  const detail::Segment data =
      detail::Segment::open(detail::data_segment_name(name.name, "t", "p"), detail::Access::ReadOnly);
  const auto* ring = reinterpret_cast<const detail::RingHeader*>(data.data());
  int lines = 0;
  for (const detail::CursorLine& line : h->line) {
    if (line.publisher_id.load() == 0) continue;
    ++lines;
    EXPECT_EQ(line.publisher_id.load(), ring->publisher_id);
    EXPECT_EQ(line.position.load(), ring->write_position.load()) << "it read everything";
    EXPECT_NE(line.last_moved_ns.load(), 0u);
  }
  EXPECT_EQ(lines, 1) << "one line per ring read";
}

// 64 lines a segment: a subscriber on more rings of one group gets another.
TEST(ReaderSegmentTest, ASubscriberOnMoreRingsThanASegmentHoldsGetsAnotherAndEachRingItsLine) {
  ScopedBusName name("rdr");
  Bus bus = Bus::open(name.name);
  bus.create_topic(sensor_topic("t", Policy::Block, 4096));
  std::vector<Publisher> pubs;
  for (uint32_t i = 0; i < detail::kReaderLines + 6; ++i) {
    std::string publisher = "p";  // appended: GCC 12 warns of "p" + string, falsely
    publisher += std::to_string(i);
    pubs.push_back(bus.publisher("t", {publisher}));
  }
  Subscriber sub = bus.subscribe("t");
  ASSERT_EQ(sub.ring_count(), pubs.size());
  std::set<uint64_t> rings;
  for (int n = 0; n < 2; ++n) {
    const std::string segment = reader_segment_of(name.name, ::getpid(), n);
    ASSERT_TRUE(detail::Segment::exists(segment)) << segment;
    const detail::Segment seg = detail::Segment::open(segment, detail::Access::ReadOnly, sizeof(detail::ReaderHeader));
    for (const detail::CursorLine& line : reinterpret_cast<const detail::ReaderHeader*>(seg.data())->line) {
      if (line.publisher_id.load() != 0) {
        EXPECT_TRUE(rings.insert(line.publisher_id.load()).second) << "two lines for one ring";
      }
    }
  }
  EXPECT_EQ(rings.size(), pubs.size()) << "a ring without its line";
  EXPECT_FALSE(detail::Segment::exists(reader_segment_of(name.name, ::getpid(), 2)));
}

// A ring's writer admits at most 64 readers (its attachments); a 65th
// subscriber still reads the ring (reading with validation until one frees,
// see RingProtocolTest), with one line.
TEST(ReaderSegmentTest, ASubscriberBeyondTheWritersAttachmentsReadsWithOneLine) {
  ScopedBusName name("rdr");
  Bus bus = Bus::open(name.name);
  bus.create_topic(sensor_topic("a.b"));
  Publisher pub = bus.publisher("a.b", {"p"});
  std::vector<Subscriber> holders;
  for (uint32_t i = 0; i < detail::kAttachments; ++i) holders.push_back(bus.subscribe("a.b"));
  Subscriber wildcard = bus.subscribe("a.*");
  EXPECT_EQ(wildcard.ring_count(), 1u);
  ASSERT_EQ(publish_reading(pub, 1), PublishStatus::Ok);
  EXPECT_EQ(wildcard.poll([](const Event&) {}).delivered, 1u);
  const std::string own = reader_segment_of(name.name, ::getpid(), int(detail::kAttachments));
  ASSERT_TRUE(detail::Segment::exists(own)) << "the wildcard's segment comes after the holders'";
  const detail::Segment seg = detail::Segment::open(own, detail::Access::ReadOnly, sizeof(detail::ReaderHeader));
  int claimed = 0;
  for (const detail::CursorLine& line : reinterpret_cast<const detail::ReaderHeader*>(seg.data())->line)
    claimed += line.publisher_id.load() != 0;
  EXPECT_EQ(claimed, 1);
}

TEST(ReaderSegmentTest, TheSegmentGoesWithItsSubscriberAndNotWithAForkedChildsCopy) {
  ScopedBusName name("rdr");
  Bus bus = Bus::open(name.name);
  bus.create_topic(sensor_topic("t"));
  Publisher pub = bus.publisher("t", {"p"});
  const std::string segment = reader_segment_of(name.name, ::getpid());
  {
    Subscriber sub = bus.subscribe("t");
    ASSERT_TRUE(detail::Segment::exists(segment));
    const pid_t child = ::fork();
    if (child == 0) {
      { Subscriber copy = std::move(sub); }  // the child's copy goes: the parent's segment must stay
      ::_exit(0);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    EXPECT_TRUE(detail::Segment::exists(segment)) << "a fork() child removed its parent's reader segment";
  }
  EXPECT_FALSE(detail::Segment::exists(segment)) << "a closed subscriber left its segment behind";
}

TEST(ReaderSegmentTest, AKilledSubscribersSegmentIsRemovedByTheNextBusOpen) {
  ScopedBusName name("rdr");
  {
    Bus bus = Bus::open(name.name);
    bus.create_topic(sensor_topic("t"));
    Publisher pub = bus.publisher("t", {"p"});
    ChildProcess sub({FLOWBUS_BINARY_DIR "/bin/flowbus", "sub", name.name, "t", "--timeout", "60"},
                     {.pipe_stdin = false});
    const std::string segment = reader_segment_of(name.name, sub.pid());
    ASSERT_TRUE(eventually_exists(segment)) << segment;
    sub.kill_and_reap();
    EXPECT_TRUE(detail::Segment::exists(segment)) << "kill -9 runs no destructor";
    Bus next = Bus::open(name.name);
    EXPECT_FALSE(detail::Segment::exists(segment)) << "the next open left a dead reader's segment";
  }
}

TEST(ReaderSegmentTest, ABusIsDestroyedWithItsReadersSegmentsWhichNameNoBusOfTheirOwn) {
  ScopedBusName name("rdr");
  Bus bus = Bus::open(name.name);
  bus.create_topic(sensor_topic("t"));
  Publisher pub = bus.publisher("t", {"p"});
  Subscriber sub = bus.subscribe("t");
  const std::string segment = reader_segment_of(name.name, ::getpid());
  ASSERT_TRUE(detail::Segment::exists(segment));
  for (const std::string& b : list_buses()) EXPECT_EQ(b.find('~'), std::string::npos) << "listed as a bus: " << b;
  EXPECT_GE(Bus::destroy(name.name), 4u);
  EXPECT_FALSE(detail::Segment::exists(segment));
}

}  // namespace
}  // namespace flowbus::testing
