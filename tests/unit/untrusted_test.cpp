// Untrusted topics (DESIGN.md invariant 8, issue 15 item 11): readers copy
// each event out of the ring, check the copy is what the writer committed,
// verify it against the schema, and hand over only the verified copy.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

#include "bus_state.hpp"
#include "flowbus/bus.hpp"
#include "flowbus/error.hpp"
#include "flowbus/inspect.hpp"
#include "test_bus.hpp"

using namespace flowbus;
using namespace flowbus::testing;
using namespace std::chrono_literals;

namespace {

TopicSpec untrusted_topic(const std::string& name, Policy policy = Policy::Block, uint64_t ring = 64 * 1024) {
  TopicSpec spec = sensor_topic(name, policy, ring);
  spec.untrusted = true;
  return spec;
}

/// The file mapped at `p` in this process ("" for anonymous memory, the heap).
std::string mapping_of(const void* p) {
  std::ifstream maps("/proc/self/maps");
  const auto at = reinterpret_cast<uintptr_t>(p);
  for (std::string line; std::getline(maps, line);) {
    unsigned long long lo = 0, hi = 0;
    if (std::sscanf(line.c_str(), "%llx-%llx", &lo, &hi) != 2 || at < lo || at >= hi) continue;
    const size_t slash = line.find('/');
    return slash == std::string::npos ? std::string() : line.substr(slash);
  }
  return "<unmapped>";
}

uint64_t seq_of(const Event& e) { return examples::GetSensorReading(e.data())->seq(); }

/// Bytes that are no SensorReading: a root offset far past the end.
std::vector<uint8_t> not_a_flatbuffer() { return std::vector<uint8_t>(64, 0xff); }

/// The records of ring `publisher` of topic `topic`, writable: a rogue writer's view.
struct RogueView {
  detail::Segment segment;
  RogueView(const std::string& bus, const std::string& topic, const std::string& publisher)
      : segment(detail::Segment::open(detail::data_segment_name(bus, topic, publisher), detail::Access::ReadWrite)) {}
  /// The payload of the record at ring position `position`.
  uint8_t* payload_at(uint64_t position) {
    uint8_t* record = segment.data() + detail::kRecordsOffset + position;
    uint32_t offset_and_flags = 0;
    std::memcpy(&offset_and_flags, record + 12, sizeof offset_and_flags);
    return record + (offset_and_flags & detail::kOffsetMask);
  }
};

uint64_t inspected_rejected(const std::string& bus) {
  uint64_t total = 0;
  for (const RingSnapshot& r : inspect_bus(bus).rings)
    for (const CursorSnapshot& c : r.cursors) total += c.rejected;
  return total;
}

}  // namespace

TEST(UntrustedTopicTest, TheFlagIsStoredWithTheTopicAndShown) {
  ScopedBusName name("untrusted");
  Bus bus = Bus::open(name.name);
  EXPECT_TRUE(bus.create_topic(untrusted_topic("t")).untrusted);
  EXPECT_FALSE(bus.create_topic(sensor_topic("plain")).untrusted);
  Bus other = Bus::open_existing(name.name);  // read back from shared memory
  EXPECT_TRUE(other.find_topic("t")->untrusted);
  EXPECT_FALSE(other.find_topic("plain")->untrusted);
}

TEST(UntrustedTopicTest, ARecreateWithAnotherUntrustedSettingIsRefusedNamingIt) {
  ScopedBusName name("untrusted");
  Bus bus = Bus::open(name.name);
  bus.create_topic(untrusted_topic("t"));
  bus.create_topic(sensor_topic("plain"));
  for (const auto& [spec, says] : {std::pair{sensor_topic("t"), "untrusted yes, asked no"},
                                   std::pair{untrusted_topic("plain"), "untrusted no, asked yes"}}) {
    try {
      bus.create_topic(spec);
      ADD_FAILURE() << spec.name << ": a different untrusted setting was accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::AlreadyExists);
      EXPECT_NE(std::string(e.what()).find(says), std::string::npos) << e.what();
    }
  }
  EXPECT_NO_THROW(bus.create_topic(untrusted_topic("t")));  // the same settings: fine
}

TEST(UntrustedTopicTest, AWellFormedEventReadsBackIntactFromACopyOutsideTheRing) {
  ScopedBusName name("untrusted");
  Bus bus = Bus::open(name.name);
  bus.create_topic(untrusted_topic("t"));
  bus.create_topic(sensor_topic("plain"));
  Subscriber sub = bus.subscribe(">", {StartAt::Earliest});
  Publisher pub = bus.publisher("t", {"p"});
  Publisher plain = bus.publisher("plain", {"p"});
  flatbuffers::FlatBufferBuilder fbb;
  build_reading(fbb, 41, 22.5);
  ASSERT_EQ(pub.try_publish({fbb.GetBufferPointer(), fbb.GetSize()}, "line1/t1"), PublishStatus::Ok);
  ASSERT_EQ(plain.try_publish({fbb.GetBufferPointer(), fbb.GetSize()}, "line1/t1"), PublishStatus::Ok);
  sub.refresh();
  bool saw_untrusted = false, saw_plain = false;
  for (int i = 0; i < 2; ++i) {
    Event e;
    ASSERT_EQ(sub.read(e).status, ReadStatus::Ok);
    EXPECT_EQ(seq_of(e), 41u);
    EXPECT_EQ(examples::GetSensorReading(e.data())->celsius(), 22.5);
    EXPECT_EQ(e.size(), fbb.GetSize());
    EXPECT_EQ(std::memcmp(e.data(), fbb.GetBufferPointer(), e.size()), 0);
    EXPECT_EQ(e.subject(), "line1/t1");
    EXPECT_EQ(e.sequence(), 0u);
    EXPECT_EQ(e.type(), "examples.SensorReading");
    EXPECT_NE(e.source().find("/" + name.name + "/p"), std::string::npos) << e.source();
    const std::string data_file = mapping_of(e.data()), subject_file = mapping_of(e.subject().data());
    if (e.topic() == "t") {
      saw_untrusted = true;
      EXPECT_TRUE(sub.ring_untrusted(e.ring()));
      EXPECT_EQ(data_file.find("/dev/shm/"), std::string::npos) << "data() points into " << data_file;
      EXPECT_EQ(subject_file.find("/dev/shm/"), std::string::npos) << "subject() points into " << subject_file;
      EXPECT_EQ(reinterpret_cast<uintptr_t>(e.data()) % 16, 0u) << "the copy is aligned for FlatBuffers";
    } else {
      saw_plain = true;  // trusted: still read in place, zero copy
      EXPECT_FALSE(sub.ring_untrusted(e.ring()));
      EXPECT_NE(data_file.find("/dev/shm/flowbus." + name.name + ".plain@p"), std::string::npos) << data_file;
    }
    EXPECT_EQ(sub.release(e), ReadStatus::Ok);
  }
  EXPECT_TRUE(saw_untrusted && saw_plain);
}

class UntrustedPolicyTest : public ::testing::TestWithParam<Policy> {};

TEST_P(UntrustedPolicyTest, APayloadThatIsNoFlatBufferIsCountedNotHandedOverAndTheNextEventIsRead) {
  ScopedBusName name("untrusted");
  Bus bus = Bus::open(name.name);
  bus.create_topic(untrusted_topic("t", GetParam()));
  Subscriber sub = bus.subscribe("t", {StartAt::Earliest});
  Publisher pub = bus.publisher("t", {"rogue"});
  const std::vector<uint8_t> junk = not_a_flatbuffer();
  ASSERT_EQ(publish_reading(pub, 1), PublishStatus::Ok);
  ASSERT_EQ(pub.try_publish(junk), PublishStatus::Ok);  // publishing checks nothing: raw bytes go in
  ASSERT_EQ(publish_reading(pub, 3), PublishStatus::Ok);
  sub.refresh();
  Event e;
  ASSERT_EQ(sub.read(e).status, ReadStatus::Ok);
  EXPECT_EQ(seq_of(e), 1u);
  (void)sub.release(e);
  const ReadResult rejected = sub.read(e);
  ASSERT_EQ(rejected.status, ReadStatus::Rejected);
  EXPECT_EQ(rejected.missed, 1u);
  EXPECT_NE(std::string(rejected.ring).find("t@rogue"), std::string::npos) << rejected.ring;
  EXPECT_EQ(e.data(), nullptr) << "a rejected event must not be handed over";
  const ReadResult next = sub.read(e);
  ASSERT_EQ(next.status, ReadStatus::Ok) << to_string(next.status);
  EXPECT_EQ(seq_of(e), 3u);
  EXPECT_EQ(e.sequence(), 2u);  // the rejected one consumed sequence 1: no loss is reported for it
  EXPECT_EQ(sub.release(e), ReadStatus::Ok);
  EXPECT_EQ(sub.read(e).status, ReadStatus::Empty);
  EXPECT_EQ(sub.ring_rejected(0), 1u);
  EXPECT_EQ(inspected_rejected(name.name), 1u);  // what `flowbus inspect` shows

  // poll() counts them apart from losses, and delivers the good ones.
  ASSERT_EQ(pub.try_publish(junk), PublishStatus::Ok);
  ASSERT_EQ(publish_reading(pub, 5), PublishStatus::Ok);
  ASSERT_EQ(pub.try_publish(junk), PublishStatus::Ok);
  std::vector<uint64_t> seen;
  const PollResult r = sub.poll([&](const Event& ev) { seen.push_back(seq_of(ev)); });
  EXPECT_EQ(r.rejected, 2u);
  EXPECT_EQ(r.missed, 0u);
  EXPECT_EQ(seen, std::vector<uint64_t>{5});
  EXPECT_EQ(sub.ring_rejected(0), 3u);
}

INSTANTIATE_TEST_SUITE_P(BothPolicies, UntrustedPolicyTest, ::testing::Values(Policy::Block, Policy::Latest),
                         [](const auto& info) { return std::string(to_string(info.param)); });

TEST(UntrustedTopicTest, APayloadScribbledInTheRingAfterCommitIsRejectedAndTheRingGoesOn) {
  ScopedBusName name("untrusted");
  Bus bus = Bus::open(name.name);
  bus.create_topic(untrusted_topic("t"));
  Subscriber sub = bus.subscribe("t", {StartAt::Earliest});
  Publisher pub = bus.publisher("t", {"victim"});
  ASSERT_EQ(publish_reading(pub, 1), PublishStatus::Ok);
  ASSERT_EQ(publish_reading(pub, 2), PublishStatus::Ok);
  sub.refresh();
  RogueView rogue(name.name, "t", "victim");
  uint8_t* payload = rogue.payload_at(0);
  const uint32_t far_away = 0x7ffffff0;
  std::memcpy(payload, &far_away, sizeof far_away);  // the root offset now points far out of the buffer
  Event e;
  const ReadResult r = sub.read(e);
  ASSERT_EQ(r.status, ReadStatus::Rejected);
  EXPECT_NE(std::string(r.ring).find("t@victim"), std::string::npos) << r.ring;
  ASSERT_EQ(sub.read(e).status, ReadStatus::Ok);
  EXPECT_EQ(seq_of(e), 2u);
  EXPECT_EQ(sub.release(e), ReadStatus::Ok);
  EXPECT_EQ(inspected_rejected(name.name), 1u);
}

TEST(UntrustedTopicTest, AChangeToTheRingAfterTheCopyNeverReachesTheApplication) {
  ScopedBusName name("untrusted");
  Bus bus = Bus::open(name.name);
  bus.create_topic(untrusted_topic("t"));
  Subscriber sub = bus.subscribe("t", {StartAt::Earliest});
  Publisher pub = bus.publisher("t", {"victim"});
  ASSERT_EQ(publish_reading(pub, 7), PublishStatus::Ok);
  sub.refresh();
  Event e;
  ASSERT_EQ(sub.read(e).status, ReadStatus::Ok);
  const std::vector<uint8_t> verified(e.data(), e.data() + e.size());
  // The writer (or anyone who can write the ring) changes the payload now,
  // after it was verified: the application must still see what was verified.
  RogueView rogue(name.name, "t", "victim");
  std::memset(rogue.payload_at(0), 0xff, e.size());
  EXPECT_EQ(std::vector<uint8_t>(e.data(), e.data() + e.size()), verified);
  EXPECT_TRUE(SchemaCodec(sensor_topic("t").schema, "examples.SensorReading").verify(e.data(), e.size()));
  EXPECT_EQ(seq_of(e), 7u);
  EXPECT_EQ(sub.release(e), ReadStatus::Ok);
}

TEST(UntrustedTopicTest, AWriterFlippingPayloadsWhileTheyAreReadNeverGetsAnUnverifiedEventThrough) {
  ScopedBusName name("untrusted");
  Bus bus = Bus::open(name.name);
  bus.create_topic(untrusted_topic("t", Policy::Block, 1 << 20));
  Subscriber sub = bus.subscribe("t", {StartAt::Earliest});
  Publisher pub = bus.publisher("t", {"victim"});
  const SchemaCodec codec(sensor_topic("t").schema, "examples.SensorReading");
  flatbuffers::FlatBufferBuilder fbb;
  build_reading(fbb, 0);
  const uint64_t record = detail::record_length(sizeof(detail::RecordHeader), fbb.GetSize());
  constexpr uint64_t kEvents = 2000;
  for (uint64_t i = 0; i < kEvents; ++i) ASSERT_EQ(publish_reading(pub, i), PublishStatus::Ok);
  sub.refresh();
  RogueView rogue(name.name, "t", "victim");
  std::vector<uint32_t> good_roots(kEvents);
  for (uint64_t i = 0; i < kEvents; ++i) std::memcpy(&good_roots[i], rogue.payload_at(i * record), 4);
  // A rogue process flips each payload's root offset between good and far
  // out of bounds, as fast as it can, while the subscriber reads them.
  int started[2];
  ASSERT_EQ(::pipe(started), 0);
  const pid_t flipper = ::fork();
  ASSERT_GE(flipper, 0);
  if (flipper == 0) {
    ::close(started[0]);
    RogueView mine(name.name, "t", "victim");  // segments are not inherited through fork (MADV_DONTFORK)
    const uint32_t bad = 0x7ffffff0;
    for (uint64_t round = 0;; ++round) {
      for (uint64_t i = 0; i < kEvents; ++i) {
        auto* root = reinterpret_cast<std::atomic<uint32_t>*>(mine.payload_at(i * record));
        root->store(round % 2 ? bad : good_roots[i], std::memory_order_relaxed);
      }
      if (round == 0 && ::write(started[1], "x", 1) != 1) ::_exit(1);
    }
  }
  ::close(started[1]);
  char byte = 0;
  const bool flipping = ::read(started[0], &byte, 1) == 1;  // EOF: the flipper died
  ::close(started[0]);
  if (!flipping) ::waitpid(flipper, nullptr, 0);
  ASSERT_TRUE(flipping) << "the flipper process died before it flipped";
  uint64_t delivered = 0, rejected = 0, unverified = 0;
  for (int spins = 0; delivered + rejected < kEvents && spins < 1'000'000; ++spins) {
    Event e;
    const ReadResult r = sub.read(e);
    if (r.status == ReadStatus::Rejected) rejected += r.missed;
    if (r.status != ReadStatus::Ok) continue;
    std::this_thread::yield();  // give the flipper time to change what the application holds, if it can
    if (!codec.verify(e.data(), e.size())) ++unverified;
    ++delivered;
    (void)sub.release(e);
  }
  ::kill(flipper, SIGKILL);
  ::waitpid(flipper, nullptr, 0);
  EXPECT_EQ(unverified, 0u) << "events that fail verification reached the application";
  EXPECT_EQ(delivered + rejected, kEvents);
  EXPECT_GT(rejected, 0u) << "the flipper never raced the reader: the test proves nothing";
  EXPECT_EQ(sub.ring_rejected(0), rejected);
}
