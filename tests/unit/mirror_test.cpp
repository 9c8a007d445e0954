// What the sidecar builds on: mirror rings that keep their origin's identity
// and declare gaps, and readers that hold the writer back until a peer
// acknowledged (so a lost connection can be replayed).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <thread>

#include "bus_state.hpp"
#include "flowbus/bus.hpp"
#include "flowbus/error.hpp"
#include "flowbus/inspect.hpp"
#include "flowbus/internal/mirroring.hpp"
#include "segment.hpp"
#include "test_bus.hpp"

using namespace flowbus;
using namespace flowbus::mirroring;
using namespace flowbus::testing;
using namespace std::chrono_literals;

namespace {

constexpr uint64_t kOriginId = 0x0123456789abcdefull;

MirrorOrigin origin_a() {
  return MirrorOrigin{kOriginId, "flowbus://host-a/plant/line1", "node-a"};
}

uint64_t seq_field(const Event& e) { return examples::GetSensorReading(e.data())->seq(); }

PublishStatus mirror(Publisher& pub, flatbuffers::FlatBufferBuilder& fbb, uint64_t sequence, uint64_t time_ns) {
  build_reading(fbb, sequence);
  return publish_mirrored(pub, {fbb.GetBufferPointer(), fbb.GetSize()}, sequence, time_ns, "line1/t1", 0s);
}

std::string hex_id(uint64_t id, uint64_t sequence) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%016llx-%llu", static_cast<unsigned long long>(id), static_cast<unsigned long long>(sequence));
  return buf;
}

}  // namespace

TEST(MirrorTest, MirroredEventsKeepTheirOriginsIdSourceAndTime) {
  ScopedBusName name("mirror");
  Bus bus = Bus::open(name.name);
  bus.create_topic(sensor_topic("sensor.temp"));
  Subscriber sub = bus.subscribe("sensor.temp", {.from = StartAt::Earliest});
  Publisher pub = mirror_publisher(bus, "sensor.temp", origin_a());
  EXPECT_EQ(pub.publisher_id(), kOriginId);
  EXPECT_EQ(pub.context().origin_node, "node-a");
  flatbuffers::FlatBufferBuilder fbb;
  const uint64_t t0 = 1'700'000'000'123'456'789ull;
  for (uint64_t s = 0; s < 10; ++s) ASSERT_EQ(mirror(pub, fbb, s, t0 + s), PublishStatus::Ok);
  uint64_t expected = 0;
  const PollResult r = sub.poll([&](const Event& e) {
    EXPECT_EQ(e.sequence(), expected);
    EXPECT_EQ(seq_field(e), expected);
    EXPECT_EQ(e.id(), hex_id(kOriginId, expected));
    EXPECT_EQ(e.source(), "flowbus://host-a/plant/line1");
    EXPECT_EQ(e.time_ns(), t0 + expected);
    EXPECT_EQ(e.subject(), "line1/t1");
    EXPECT_TRUE(e.context().mirrored());
    EXPECT_EQ(e.context().origin_node, "node-a");
    ++expected;
  });
  EXPECT_EQ(r.delivered, 10u);
  EXPECT_EQ(r.missed, 0u);

  const BusSnapshot snap = inspect_bus(name.name);
  ASSERT_EQ(snap.rings.size(), 1u);
  EXPECT_EQ(snap.rings[0].publisher, "m-0123456789abcdef");
  EXPECT_EQ(snap.rings[0].origin_node, "node-a");
  EXPECT_EQ(snap.rings[0].origin_source, "flowbus://host-a/plant/line1");
}

TEST(MirrorTest, ASkippedSequenceIsADeclaredGapReadersCountAndCheckAccepts) {
  ScopedBusName name("mirror");
  Bus bus = Bus::open(name.name);
  bus.create_topic(sensor_topic("sensor.temp"));
  Subscriber sub = bus.subscribe("sensor.temp", {.from = StartAt::Earliest});
  Publisher pub = mirror_publisher(bus, "sensor.temp", origin_a());
  flatbuffers::FlatBufferBuilder fbb;
  ASSERT_EQ(mirror(pub, fbb, 0, 1), PublishStatus::Ok);
  ASSERT_EQ(mirror(pub, fbb, 1, 2), PublishStatus::Ok);
  ASSERT_EQ(mirror(pub, fbb, 5, 3), PublishStatus::Ok);  // 2, 3, 4 lost upstream
  EXPECT_EQ(mirror(pub, fbb, 3, 4), PublishStatus::Duplicate);
  EXPECT_EQ(mirror(pub, fbb, 5, 4), PublishStatus::Duplicate);
  EXPECT_EQ(pub.next_sequence(), 6u);

  std::vector<uint64_t> seen;
  uint64_t missed = 0;
  Event e;
  for (int i = 0; i < 10; ++i) {
    const ReadResult r = sub.read(e);
    if (r.status == ReadStatus::Empty) break;
    if (r.status == ReadStatus::Lost) {
      missed += r.missed;
      continue;
    }
    ASSERT_EQ(r.status, ReadStatus::Ok);
    seen.push_back(e.sequence());
    ASSERT_EQ(sub.release(e), ReadStatus::Ok);
  }
  EXPECT_EQ(seen, (std::vector<uint64_t>{0, 1, 5}));
  EXPECT_EQ(missed, 3u);
  const CheckReport report = check_bus(name.name);
  EXPECT_TRUE(report.findings.empty()) << (report.findings.empty() ? "" : report.findings[0].problem);
}

TEST(MirrorTest, ReopeningTheMirrorOfAnOriginContinuesWhereItStopped) {
  ScopedBusName name("mirror");
  Bus bus = Bus::open(name.name);
  bus.create_topic(sensor_topic("sensor.temp"));
  flatbuffers::FlatBufferBuilder fbb;
  {
    Publisher pub = mirror_publisher(bus, "sensor.temp", origin_a());
    for (uint64_t s = 40; s < 50; ++s) ASSERT_EQ(mirror(pub, fbb, s, s), PublishStatus::Ok);
  }
  Publisher again = mirror_publisher(bus, "sensor.temp", origin_a());
  EXPECT_EQ(again.next_sequence(), 50u);
  // Another origin gets a ring of its own.
  Publisher other = mirror_publisher(bus, "sensor.temp", {kOriginId + 1, "flowbus://host-b/plant/x", "node-b"});
  EXPECT_EQ(other.next_sequence(), 0u);
  EXPECT_EQ(inspect_bus(name.name).rings.size(), 2u);
}

TEST(MirrorTest, BadOriginsAndALocalPublisherOnTheMirrorsNameAreRefused) {
  ScopedBusName name("mirror");
  Bus bus = Bus::open(name.name);
  bus.create_topic(sensor_topic("sensor.temp"));
  const auto code_of = [&](const MirrorOrigin& o) {
    try {
      mirror_publisher(bus, "sensor.temp", o);
    } catch (const Error& e) {
      return e.code();
    }
    return ErrorCode::System;
  };
  EXPECT_EQ(code_of({1, "flowbus://h/b/p", ""}), ErrorCode::InvalidArgument);
  EXPECT_EQ(code_of({1, "flowbus://h/b/p", "node a"}), ErrorCode::InvalidArgument);
  EXPECT_EQ(code_of({1, "", "node-a"}), ErrorCode::InvalidArgument);
  EXPECT_EQ(code_of({1, std::string(300, 's'), "node-a"}), ErrorCode::InvalidArgument);
  Publisher squatter = bus.publisher("sensor.temp", {"m-0123456789abcdef"});
  EXPECT_EQ(code_of(origin_a()), ErrorCode::NameInUse);
}

TEST(MirrorTest, AnotherOriginAnnouncingTheSamePublisherIdCannotWriteIntoTheMirrorRing) {
  ScopedBusName name("mirror");
  Bus bus = Bus::open(name.name);
  bus.create_topic(sensor_topic("sensor.temp"));
  flatbuffers::FlatBufferBuilder fbb;
  {
    Publisher first = mirror_publisher(bus, "sensor.temp", origin_a());
    build_reading(fbb, 0, 1.0);
    ASSERT_EQ(publish_mirrored(first, {fbb.GetBufferPointer(), fbb.GetSize()}, 0, 1000, {}, {}), PublishStatus::Ok);
  }  // closed: the ring stays for its retention, as after a sidecar restart
  const auto refusal = [&](const MirrorOrigin& o) -> std::string {
    try {
      mirror_publisher(bus, "sensor.temp", o);
    } catch (const Error& e) {
      return std::string(e.code() == ErrorCode::NameInUse ? "NameInUse: " : "other: ") + e.what();
    }
    return "accepted";
  };
  EXPECT_THAT(refusal({kOriginId, origin_a().source, "node-b"}),
              ::testing::HasSubstr("NameInUse: the mirror ring 'm-0123456789abcdef' on topic 'sensor.temp' belongs to "
                                   "origin node-a (source flowbus://host-a/plant/line1), not to node-b"));
  EXPECT_THAT(refusal({kOriginId, "flowbus://host-b/plant/line1", "node-a"}), ::testing::HasSubstr("NameInUse: "));
  // The real origin still continues its ring.
  Publisher again = mirror_publisher(bus, "sensor.temp", origin_a());
  EXPECT_EQ(again.next_sequence(), 1u);
}

TEST(MirrorTest, AHoldingReaderKeepsUnacknowledgedEventsAndCanReadThemAgain) {
  ScopedBusName name("mirror");
  Bus bus = Bus::open(name.name);
  bus.create_topic(sensor_topic("sensor.temp", Policy::Block, 4096));
  SubscriberOptions options;
  options.from = StartAt::Earliest;
  Subscriber sub = export_subscriber(bus, "sensor.temp", options, {.hold_until_acknowledged = true});
  Publisher pub = bus.publisher("sensor.temp", {"probe"});
  flatbuffers::FlatBufferBuilder fbb;

  // Read (and release) everything the publisher manages to write: without
  // acknowledgements the ring still fills up.
  uint64_t published = 0, read = 0;
  Event e;
  uint64_t ack_position = 0;
  for (int round = 0; round < 1000; ++round) {
    build_reading(fbb, published);
    if (pub.try_publish({fbb.GetBufferPointer(), fbb.GetSize()}) == PublishStatus::Ok) ++published;
    while (sub.read(e).status == ReadStatus::Ok) {
      EXPECT_EQ(e.sequence(), read);
      if (read == 9) ack_position = e.next_position();
      ++read;
      ASSERT_EQ(sub.release(e), ReadStatus::Ok);
    }
  }
  EXPECT_EQ(read, published);
  ASSERT_GT(published, 10u);
  ASSERT_LT(published, 1000u) << "the ring never filled: the hold did not hold the writer back";
  build_reading(fbb, published);
  EXPECT_EQ(pub.try_publish({fbb.GetBufferPointer(), fbb.GetSize()}), PublishStatus::Full);

  // Read again from the start: the same events, intact.
  rewind(sub, e.ring());
  for (uint64_t s = 0; s < published; ++s) {
    ASSERT_EQ(sub.read(e).status, ReadStatus::Ok) << s;
    EXPECT_EQ(e.sequence(), s);
    EXPECT_EQ(seq_field(e), s);
    ASSERT_EQ(sub.release(e), ReadStatus::Ok);
  }
  EXPECT_EQ(sub.read(e).status, ReadStatus::Empty);

  // Acknowledging the first ten frees their space; rewinding now starts at 10.
  acknowledge(sub, 0, ack_position);
  EXPECT_EQ(pub.try_publish({fbb.GetBufferPointer(), fbb.GetSize()}), PublishStatus::Ok);
  rewind(sub, 0);
  ASSERT_EQ(sub.read(e).status, ReadStatus::Ok);
  EXPECT_EQ(e.sequence(), 10u);
  ASSERT_EQ(sub.release(e), ReadStatus::Ok);
}

TEST(MirrorTest, AHoldThatIsNeverAcknowledgedIsEvictedAfterTheTimeoutAndStopsHolding) {
  ScopedBusName name("mirror");
  Bus bus = Bus::open(name.name);
  TopicSpec spec = sensor_topic("sensor.temp", Policy::Block, 4096);
  spec.slow_consumer_timeout = 100ms;
  bus.create_topic(spec);
  SubscriberOptions options;
  options.from = StartAt::Earliest;
  Publisher pub = bus.publisher("sensor.temp", {"probe"});
  Subscriber sub = export_subscriber(bus, "sensor.temp", options, {.hold_until_acknowledged = true});  // the ring exists: its cursor is taken now
  flatbuffers::FlatBufferBuilder fbb;
  Event e;
  uint64_t published = 0;
  for (;; ++published) {
    build_reading(fbb, published);
    if (pub.try_publish({fbb.GetBufferPointer(), fbb.GetSize()}) != PublishStatus::Ok) break;
  }
  while (sub.read(e).status == ReadStatus::Ok) ASSERT_EQ(sub.release(e), ReadStatus::Ok);
  // The publisher waits past the timeout: the holding cursor is evicted.
  EXPECT_EQ(pub.publish({fbb.GetBufferPointer(), fbb.GetSize()}, 2s), PublishStatus::Ok);
  EXPECT_EQ(pub.evictions(), 1u);
  // The reader learns it when it next moves (the protocol's release), then
  // its next read reports the eviction.
  ASSERT_EQ(sub.read(e).status, ReadStatus::Ok);
  EXPECT_EQ(sub.release(e), ReadStatus::Evicted);
  EXPECT_EQ(sub.read(e).status, ReadStatus::Evicted);
  // Rejoined where it was: nothing held below it any more, so the writer
  // goes on without waiting for another timeout.
  for (uint64_t i = 0; i < 20; ++i) {
    uint64_t next = 0;
    while (sub.read(e).status == ReadStatus::Ok) {
      next = e.next_position();
      ASSERT_EQ(sub.release(e), ReadStatus::Ok);
    }
    acknowledge(sub, 0, next);
    build_reading(fbb, ++published);
    ASSERT_EQ(pub.publish({fbb.GetBufferPointer(), fbb.GetSize()}, 50ms), PublishStatus::Ok) << i;
  }
  EXPECT_EQ(pub.evictions(), 1u);
}

TEST(MirrorTest, ASubscriberReadsOnlyTheRingsItAcceptsAndHoldsNoCursorOnTheOthers) {
  ScopedBusName name("mirror");
  Bus bus = Bus::open(name.name);
  bus.create_topic(sensor_topic("sensor.temp"));
  Publisher local = bus.publisher("sensor.temp", {"probe"});
  Publisher mirrored = mirror_publisher(bus, "sensor.temp", origin_a());
  SubscriberOptions options;
  options.from = StartAt::Earliest;
  ExportOptions locals_only;
  locals_only.accept_ring = [](const RingContext& c) { return !c.mirrored(); };
  Subscriber sub = export_subscriber(bus, ">", options, locals_only);
  flatbuffers::FlatBufferBuilder fbb;
  ASSERT_EQ(mirror(mirrored, fbb, 0, 1), PublishStatus::Ok);
  build_reading(fbb, 7);
  ASSERT_EQ(local.try_publish({fbb.GetBufferPointer(), fbb.GetSize()}), PublishStatus::Ok);
  std::vector<std::string> sources;
  (void)sub.poll([&](const Event& e) { sources.push_back(e.source()); });
  ASSERT_EQ(sources.size(), 1u);
  EXPECT_EQ(sources[0], local.source());
  EXPECT_EQ(sub.ring_count(), 1u);
  for (const RingSnapshot& ring : inspect_bus(name.name).rings)
    EXPECT_EQ(ring.cursors.size(), ring.origin_node.empty() ? 1u : 0u) << ring.publisher;
}

// A ring refused by accept_ring but reserved for the subscription (made
// after it subscribed) is given up once: the give-up keeps its line (the
// writer reads it when it answers), and a writer that publishes nothing
// answers never. Given up again at every directory change, each claimed
// another line, then another reader segment, until none were left.
TEST(MirrorTest, ARefusedRingReservedForUsIsGivenUpOnceWhateverChangesAfter) {
  ScopedBusName name("mirror");
  Bus bus = Bus::open(name.name);
  bus.create_topic(sensor_topic("sensor.temp"));
  ExportOptions locals_only;
  locals_only.accept_ring = [](const RingContext& c) { return !c.mirrored(); };
  Subscriber sub = export_subscriber(bus, ">", {StartAt::Earliest}, locals_only);
  Publisher mirrored = mirror_publisher(bus, "sensor.temp", origin_a());  // reserved for us; never publishes
  const std::string ours = "flowbus." + name.name + "~r." + std::to_string(::getpid()) + ".";
  auto our_segments = [&] {
    size_t n = 0;
    for (const auto& entry : std::filesystem::directory_iterator("/dev/shm"))
      n += entry.path().filename().string().rfind(ours, 0) == 0;
    return n;
  };
  const size_t before = our_segments();
  ASSERT_GE(before, 1u);
  for (int i = 0; i < 100; ++i) {  // directory changes (a segment holds 64 lines): each makes it look again
    bus.create_topic(sensor_topic("other.t" + std::to_string(i)));
    (void)sub.poll([](const Event&) {});
  }
  EXPECT_EQ(our_segments(), before) << "a reader segment per 64 looks at the refused ring";
  EXPECT_EQ(sub.ring_count(), 0u);
}

// A give-up is announced on the bell once. Erased there (by a forger, or
// lost with a full bell), the reservation used to hold the writer until the
// topic's slow-consumer timeout, and with `never` until the Subscriber
// closed. The writer's liveness probe of the reservation (its first blocked
// reserve) now reads the give-up in the subscription's own line.
TEST(MirrorTest, AGiveUpWhoseAnnouncementWasErasedStillFreesTheWriter) {
  ScopedBusName name("mirror");
  Bus bus = Bus::open(name.name);
  bus.create_topic(never_evicting("sensor.temp", Policy::Block, 4096));
  ExportOptions locals_only;
  locals_only.accept_ring = [](const RingContext& c) { return !c.mirrored(); };
  Subscriber sub = export_subscriber(bus, ">", {StartAt::Earliest}, locals_only);
  Publisher pub = mirror_publisher(bus, "sensor.temp", origin_a());  // reserved for us
  (void)sub.poll([](const Event&) {});                               // refused: given up, on the bell
  detail::Segment bell_segment =
      detail::Segment::open(detail::bell_segment_name(name.name, "sensor.temp", "m-0123456789abcdef"),
                            detail::Access::ReadWrite, sizeof(detail::BellHeader));
  auto* bell = reinterpret_cast<detail::BellHeader*>(bell_segment.data());
  size_t rung = 0;
  for (detail::BellSlot& slot : bell->slot) {
    rung += slot.seq.load() == detail::kBellSlotRung;
    slot.seq.store(0);  // a forger erases every announcement
  }
  ASSERT_EQ(rung, 1u) << "the give-up was not announced";
  flatbuffers::FlatBufferBuilder fbb;
  uint64_t full = 0;
  for (uint64_t s = 0; s < 200; ++s)  // about five rings' worth
    full += mirror(pub, fbb, s, 1) == PublishStatus::Full;
  EXPECT_EQ(full, 0u) << "a reservation given up in its line still held the writer";
  EXPECT_EQ(sub.ring_count(), 0u);
}
