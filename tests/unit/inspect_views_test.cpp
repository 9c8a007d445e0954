// The inspector's dump (RingTap) and invariant check (check_bus), against
// rings whose every byte the test knows, and damaged on purpose.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <thread>

#include "bus_state.hpp"
#include "flowbus/detail/ring.hpp"
#include "flowbus/error.hpp"
#include "flowbus/inspect.hpp"
#include "test_bus.hpp"

using namespace flowbus;
using namespace flowbus::testing;
using namespace std::chrono_literals;

namespace {

void publish_n(Publisher& pub, uint64_t n, uint64_t first_seq = 0, std::string_view subject = {}) {
  flatbuffers::FlatBufferBuilder fbb;
  for (uint64_t i = 0; i < n; ++i) {
    build_reading(fbb, first_seq + i);
    ASSERT_EQ(pub.try_publish({fbb.GetBufferPointer(), fbb.GetSize()}, subject), PublishStatus::Ok);
  }
}

/// The `seq` field of the SensorReading in a record.
uint64_t reading_seq(const TapRecord& r) {
  const Event e = r.event();
  return flatbuffers::GetRoot<examples::SensorReading>(e.data())->seq();
}

std::vector<uint8_t> bytes_of(const std::string& segment) {
  detail::Segment s = detail::Segment::open(segment, detail::Access::ReadOnly);
  return {s.data(), s.data() + s.size()};
}

bool has_finding(const CheckReport& r, const std::string& where, const std::string& problem) {
  for (const auto& f : r.findings)
    if (f.where.find(where) != std::string::npos && f.problem.find(problem) != std::string::npos) return true;
  return false;
}

std::string findings_text(const CheckReport& r) {
  std::string out;
  for (const auto& f : r.findings) out += f.where + ": " + f.problem + "\n";
  return out.empty() ? "(no findings)" : out;
}

}  // namespace

// ---------------------------------------------------------------------------
// --dump
// ---------------------------------------------------------------------------

TEST(RingTapTest, ReadsTheOldestAndTheNewestEventsExactlyWithTheirContext) {
  ScopedBusName name("tap");
  Bus bus = Bus::open(name.name);
  bus.create_topic(sensor_topic("sensor.temp"));
  Publisher pub = bus.publisher("sensor.temp", {"line1"});
  publish_n(pub, 40, 100, "hall-a");

  RingTap tap(name.name, "sensor.temp", "line1");
  TapRecord r;
  for (uint64_t i = 0; i < 40; ++i) {
    ASSERT_EQ(tap.next(r), RingTap::Status::Ok) << i;
    EXPECT_EQ(r.sequence, i);
    EXPECT_EQ(reading_seq(r), 100 + i);
    EXPECT_EQ(r.subject, "hall-a");
  }
  EXPECT_EQ(tap.next(r), RingTap::Status::Empty);
  const Event e = r.event();
  EXPECT_EQ(e.type(), "examples.SensorReading");
  EXPECT_EQ(e.source(), "flowbus://" + detail::host_name() + "/" + name.name + "/line1");
  EXPECT_EQ(e.subject(), "hall-a");

  tap.start_latest(3);
  for (uint64_t seq : {37u, 38u, 39u}) {
    ASSERT_EQ(tap.next(r), RingTap::Status::Ok);
    EXPECT_EQ(r.sequence, seq);
  }
  EXPECT_EQ(tap.next(r), RingTap::Status::Empty);
  publish_n(pub, 1, 140);  // --follow: the tap goes on from where it stopped
  ASSERT_EQ(tap.next(r), RingTap::Status::Ok);
  EXPECT_EQ(r.sequence, 40u);
  tap.start_latest(1000);  // more than there are: from the oldest retained
  ASSERT_EQ(tap.next(r), RingTap::Status::Ok);
  EXPECT_EQ(r.sequence, 0u);
}

TEST(RingTapTest, ALappedTapSaysExactlyHowManyEventsItMissedAndGoesOnIntact) {
  ScopedBusName name("tap");
  Bus bus = Bus::open(name.name);
  bus.create_topic(sensor_topic("t", Policy::Latest, 4096));
  Publisher pub = bus.publisher("t", {"p"});
  publish_n(pub, 5);
  RingTap tap(name.name, "t", "p");
  TapRecord r;
  ASSERT_EQ(tap.next(r), RingTap::Status::Ok);
  EXPECT_EQ(r.sequence, 0u);
  publish_n(pub, 500, 5);  // laps the 4 KiB ring many times over

  RingTap oldest(name.name, "t", "p");
  TapRecord first;
  ASSERT_EQ(oldest.next(first), RingTap::Status::Ok);
  ASSERT_GT(first.sequence, 1u);

  ASSERT_EQ(tap.next(r), RingTap::Status::Lost);
  ASSERT_EQ(tap.next(r), RingTap::Status::Ok);  // the loss is said once, then the record after it comes
  EXPECT_EQ(r.sequence, first.sequence);
  EXPECT_EQ(tap.take_missed(), first.sequence - 1);
  EXPECT_EQ(tap.take_missed(), 0u);
  uint64_t expected = first.sequence + 1;
  while (tap.next(r) == RingTap::Status::Ok) {
    EXPECT_EQ(r.sequence, expected);
    EXPECT_EQ(reading_seq(r), expected++);  // the payload copied is the event of that sequence
  }
  EXPECT_EQ(expected, 505u);
}

TEST(RingTapTest, FromTheFirstEventSaysHowManyWereOverwrittenBeforeItCame) {
  ScopedBusName name("tap");
  Bus bus = Bus::open(name.name);
  bus.create_topic(sensor_topic("whole", Policy::Latest, 4096));
  bus.create_topic(sensor_topic("lapped", Policy::Latest, 4096));
  Publisher whole = bus.publisher("whole", {"p"});
  Publisher lapped = bus.publisher("lapped", {"p"});
  publish_n(whole, 5);
  publish_n(lapped, 300);  // about nine laps of the 4 KiB ring

  RingTap all(name.name, "whole", "p");
  all.start_from_first();
  TapRecord r;
  for (uint64_t seq = 0; seq < 5; ++seq) {
    ASSERT_EQ(all.next(r), RingTap::Status::Ok);
    EXPECT_EQ(r.sequence, seq);
  }
  EXPECT_EQ(all.take_missed(), 0u);

  RingTap late(name.name, "lapped", "p");
  late.start_from_first();
  ASSERT_EQ(late.next(r), RingTap::Status::Lost);
  const uint64_t missed = late.take_missed();
  ASSERT_EQ(late.next(r), RingTap::Status::Ok);
  EXPECT_GT(missed, 0u);
  EXPECT_EQ(r.sequence, missed);  // the first `missed` events (0 .. missed-1) were overwritten
}

TEST(RingTapTest, PaddingRecordsAreShownOnlyWhenAskedFor) {
  ScopedBusName name("tap");
  Bus bus = Bus::open(name.name);
  bus.create_topic(sensor_topic("t", Policy::Latest, 4096));
  Publisher pub = bus.publisher("t", {"p"});
  publish_n(pub, 60, 0, std::string(40, 's'));  // records that do not divide 4 KiB: each lap ends in padding
  RingTap plain(name.name, "t", "p"), raw(name.name, "t", "p");
  TapRecord r;
  uint64_t events = 0, paddings = 0;
  while (plain.next(r) == RingTap::Status::Ok) {
    EXPECT_FALSE(r.padding);
    ++events;
  }
  uint64_t raw_events = 0;
  while (raw.next(r, true) == RingTap::Status::Ok) {
    if (r.padding) {
      ++paddings;
      EXPECT_EQ((r.position + r.bytes.size()) % raw.capacity(), 0u);  // padding runs to the end of the lap
    } else {
      ++raw_events;
    }
  }
  EXPECT_GE(paddings, 1u);
  EXPECT_EQ(raw_events, events);
}

// ---------------------------------------------------------------------------
// The inspector only reads.
// ---------------------------------------------------------------------------

TEST(InspectorTest, LookingChangesNoByteOfTheBus) {
  ScopedBusName name("quiet");
  Bus bus = Bus::open(name.name);
  bus.create_topic(sensor_topic("t"));
  Publisher pub = bus.publisher("t", {"p"});
  Subscriber sub = bus.subscribe("t", {StartAt::Earliest, 0ns});
  publish_n(pub, 30);
  ASSERT_EQ(sub.poll([](const Event&) {}).delivered, 30u);
  EXPECT_FALSE(sub.wait(1ms));  // asleep once: its cursor is published
  publish_n(pub, 5);

  const std::vector<std::string> segments{detail::directory_segment_name(name.name),
                                          detail::data_segment_name(name.name, "t", "p"),
                                          detail::control_segment_name(name.name, "t", "p")};
  std::vector<std::vector<uint8_t>> before;
  for (const auto& s : segments) before.push_back(bytes_of(s));

  const BusSnapshot snap = inspect_bus(name.name);
  EXPECT_EQ(snap.rings.at(0).cursors.size(), 1u);
  const CheckReport report = check_bus(name.name);
  EXPECT_TRUE(report.ok()) << findings_text(report);
  RingTap tap(name.name, "t", "p");
  tap.start_latest(10);
  TapRecord r;
  while (tap.next(r) == RingTap::Status::Ok) {
  }

  for (size_t i = 0; i < segments.size(); ++i) EXPECT_TRUE(before[i] == bytes_of(segments[i])) << segments[i] << " changed";
}

namespace {

struct Figures {
  uint64_t published = 0, full = 0, delivered = 0, missed = 0, evictions = 0;
  bool operator==(const Figures&) const = default;
};

/// A single-threaded exchange whose figures depend only on the ring's state:
/// publish until Full, drain, again. A hidden reader would change them.
Figures run_exchange(const std::string& bus_name, const std::string& topic) {
  Bus bus = Bus::open(bus_name);
  Publisher pub = bus.publisher(topic, {"p"});
  Subscriber sub = bus.subscribe(topic, {StartAt::Latest, 0ns});
  flatbuffers::FlatBufferBuilder fbb;
  Figures f;
  while (f.published < 20000) {
    build_reading(fbb, f.published);
    if (pub.try_publish({fbb.GetBufferPointer(), fbb.GetSize()}) == PublishStatus::Ok) {
      ++f.published;
      continue;
    }
    ++f.full;
    const PollResult p = sub.poll([](const Event&) {});
    f.delivered += p.delivered;
    f.missed += p.missed;
    f.evictions += p.evictions;
  }
  for (PollResult p; (p = sub.poll([](const Event&) {})).delivered > 0;) f.delivered += p.delivered;
  f.evictions += pub.evictions();
  return f;
}

}  // namespace

TEST(InspectorTest, PublishersAndSubscribersShowTheSameFiguresWithAndWithoutIt) {
  ScopedBusName name("undisturbed");
  {
    Bus bus = Bus::open(name.name);
    bus.create_topic(sensor_topic("alone", Policy::Block, 16 * 1024));
    bus.create_topic(sensor_topic("watched", Policy::Block, 16 * 1024));
  }
  const Figures alone = run_exchange(name.name, "alone");

  std::atomic<bool> stop{false};
  std::atomic<uint64_t> looks{0};
  std::thread inspector([&] {
    while (!stop.load()) {
      (void)inspect_bus(name.name);
      (void)check_bus(name.name);
      try {
        RingTap tap(name.name, "watched", "p");
        TapRecord r;
        for (int i = 0; i < 100 && tap.next(r) == RingTap::Status::Ok; ++i) {
        }
      } catch (const Error&) {
        // the ring does not exist yet
      }
      looks.fetch_add(1);
    }
  });
  while (looks.load() < 2) std::this_thread::yield();
  const Figures watched = run_exchange(name.name, "watched");
  stop.store(true);
  inspector.join();

  EXPECT_GT(looks.load(), 2u);
  EXPECT_EQ(alone.published, 20000u);
  EXPECT_EQ(alone.delivered, 20000u);
  EXPECT_GT(alone.full, 0u);
  EXPECT_TRUE(alone == watched) << "full " << alone.full << " vs " << watched.full << ", delivered " << alone.delivered
                                << " vs " << watched.delivered;
}

TEST(InspectorTest, AReaderThatWasLappedShowsItsLossesAndItsIdleTime) {
  ScopedBusName name("losses");
  Bus bus = Bus::open(name.name);
  bus.create_topic(sensor_topic("t", Policy::Latest, 4096));
  Publisher pub = bus.publisher("t", {"p"});
  Subscriber sub = bus.subscribe("t", {StartAt::Earliest, 0ns});
  publish_n(pub, 1);
  ASSERT_EQ(sub.poll([](const Event&) {}).delivered, 1u);
  publish_n(pub, 300);
  uint64_t missed = 0;
  for (int i = 0; i < 10; ++i) missed += sub.poll([](const Event&) {}).missed;
  ASSERT_GT(missed, 0u);
  EXPECT_FALSE(sub.wait(1ms));  // publishes its cursor
  std::this_thread::sleep_for(30ms);
  const BusSnapshot s = inspect_bus(name.name);
  ASSERT_EQ(s.rings.at(0).cursors.size(), 1u);
  EXPECT_EQ(s.rings[0].cursors[0].losses, missed);
  EXPECT_GE(s.rings[0].cursors[0].idle_ns, 30'000'000u);
}

TEST(InspectorTest, APermissionDeniedNamesTheOwnerAndTheMode) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to drop to another uid";
  ScopedBusName name("perm");
  Bus bus = Bus::open(name.name, BusOptions{.mode = 0644});
  bus.create_topic(sensor_topic("private.t"));  // mode 0600
  Publisher pub = bus.publisher("private.t", {"p"});
  int out[2];
  ASSERT_EQ(::pipe(out), 0);
  const pid_t child = ::fork();
  if (child == 0) {
    ::close(out[0]);
    std::string said;
    if (::setgid(65534) != 0 || ::setuid(65534) != 0) _exit(3);
    const BusSnapshot s = inspect_bus(name.name);  // the directory is 0644: readable
    said = s.rings.at(0).error + "\n";
    for (const auto& w : s.warnings) said += w + "\n";
    try {
      RingTap tap(name.name, "private.t", "p");
      said += "tap opened\n";
    } catch (const Error& e) {
      said += std::string("tap: ") + to_string(e.code()) + "\n";
    }
    (void)!::write(out[1], said.data(), said.size());
    _exit(0);
  }
  ::close(out[1]);
  std::string said;
  char buf[4096];
  for (ssize_t n; (n = ::read(out[0], buf, sizeof buf)) > 0;) said.append(buf, size_t(n));
  ::close(out[0]);
  int status = 0;
  ::waitpid(child, &status, 0);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << said;
  EXPECT_NE(said.find("permission denied (rw-------, owner uid 0"), std::string::npos) << said;
  EXPECT_NE(said.find("ring private.t@p: "), std::string::npos) << said;  // also a health warning
  EXPECT_NE(said.find("tap: permission-denied"), std::string::npos) << said;
}

// ---------------------------------------------------------------------------
// --check
// ---------------------------------------------------------------------------

TEST(CheckTest, AHealthyWrappedBusPassesAndEveryRecordIsCounted) {
  ScopedBusName name("check");
  Bus bus = Bus::open(name.name);
  bus.create_topic(sensor_topic("a", Policy::Block, 4096));
  bus.create_topic(sensor_topic("b", Policy::Latest, 4096));
  Publisher pa = bus.publisher("a", {"p"});
  Publisher pb = bus.publisher("b", {"p"});
  Subscriber sub = bus.subscribe("a", {StartAt::Earliest, 0ns});
  for (int lap = 0; lap < 20; ++lap) {  // many laps, padding records included
    publish_n(pa, 20, 0, lap % 2 ? "with-subject" : "");
    ASSERT_EQ(sub.poll([](const Event&) {}).delivered, 20u);
  }
  publish_n(pb, 500);
  const CheckReport r = check_bus(name.name);
  EXPECT_TRUE(r.ok()) << findings_text(r);
  EXPECT_EQ(r.topics, 2u);
  EXPECT_EQ(r.rings, 2u);
  EXPECT_EQ(r.cursors, 1u);
  const BusSnapshot s = inspect_bus(name.name);
  EXPECT_EQ(r.records, s.rings[0].retained_events + s.rings[1].retained_events);
  EXPECT_GT(r.records, 0u);
}

namespace {

/// A bus with one ring of 40 events (retained, its publisher gone) and a live
/// reader 10 events behind; `damage` scribbles on it; then check.
CheckReport check_after(const std::function<void(detail::RingHeader*, uint8_t* records, detail::ControlHeader*,
                                                 detail::DirectoryLayout*)>& damage) {
  ScopedBusName name("damaged");
  Bus bus = Bus::open(name.name);
  bus.create_topic(sensor_topic("t", Policy::Block, 4096));
  Subscriber sub = bus.subscribe("t", {StartAt::Earliest, 0ns});
  {
    Publisher pub = bus.publisher("t", {"p"});
    sub.refresh();
    publish_n(pub, 30);
    EXPECT_EQ(sub.poll([](const Event&) {}).delivered, 30u);
    EXPECT_FALSE(sub.wait(1ms));
    publish_n(pub, 10);
  }
  EXPECT_TRUE(check_bus(name.name).ok()) << "not damaged yet";
  auto data = detail::Segment::open(detail::data_segment_name(name.name, "t", "p"), detail::Access::ReadWrite);
  auto ctl = detail::Segment::open(detail::control_segment_name(name.name, "t", "p"), detail::Access::ReadWrite);
  auto dir = detail::Segment::open(detail::directory_segment_name(name.name), detail::Access::ReadWrite);
  damage(reinterpret_cast<detail::RingHeader*>(data.data()), data.data() + detail::kRecordsOffset,
         reinterpret_cast<detail::ControlHeader*>(ctl.data()), reinterpret_cast<detail::DirectoryLayout*>(dir.data()));
  return check_bus(name.name);
}

/// Moves every line our readers hold (in this process's reader segments) to
/// `position`, as a reader that writes its own line at will could.
void move_own_lines(uint64_t position) {
  const std::string mark = "~r." + std::to_string(::getpid()) + ".";
  for (const std::string& seg_name : detail::list_shm_segments()) {
    if (seg_name.find(mark) == std::string::npos) continue;
    auto seg = detail::Segment::open(seg_name, detail::Access::ReadWrite, sizeof(detail::ReaderHeader));
    for (detail::CursorLine& line : reinterpret_cast<detail::ReaderHeader*>(seg.data())->line)
      if (line.publisher_id.load() != 0 && line.position.load() != detail::kLineLeft) line.position.store(position);
  }
}

/// The position of the record `index` records after tail (128-byte records: 32 to a lap, no padding).
uint64_t record_position(detail::RingHeader* h, uint8_t* records, int index) {
  uint64_t p = h->tail_position.load();
  for (int i = 0; i < index; ++i) p += detail::read_fields(reinterpret_cast<detail::RecordHeader*>(records + (p & 4095))).length();
  return p;
}
detail::RecordHeader* record(detail::RingHeader* h, uint8_t* records, int index) {
  return reinterpret_cast<detail::RecordHeader*>(records + (record_position(h, records, index) & 4095));
}

}  // namespace

TEST(CheckTest, AMissingCommitWordIsReportedAtItsPosition) {
  uint64_t position = 0;
  const CheckReport r = check_after([&](detail::RingHeader* h, uint8_t* rec, detail::ControlHeader*, detail::DirectoryLayout*) {
    detail::RecordHeader* victim = record(h, rec, 5);
    position = victim->commit.load() - 1;
    victim->commit.store(0);
  });
  EXPECT_TRUE(has_finding(r, "ring t@p", "record at position " + std::to_string(position) +
                                             " (offset " + std::to_string(position & 4095) + "): commit word 0x0 is not position + 1"))
      << findings_text(r);
}

TEST(CheckTest, ARecordLongerThanTheRingIsReported) {
  const CheckReport r = check_after([](detail::RingHeader* h, uint8_t* rec, detail::ControlHeader*, detail::DirectoryLayout*) {
    record(h, rec, 3)->size = 1u << 20;
  });
  EXPECT_TRUE(has_finding(r, "ring t@p", "runs past the end of the ring")) << findings_text(r);
}

TEST(CheckTest, APaddingRecordThatStopsShortOfTheLapEndIsReported) {
  uint64_t length = 0;
  const CheckReport r = check_after([&](detail::RingHeader* h, uint8_t* rec, detail::ControlHeader*, detail::DirectoryLayout*) {
    detail::RecordHeader* victim = record(h, rec, 2);
    length = detail::read_fields(victim).length();
    victim->offset_and_flags |= detail::kFlagPadding;
  });
  EXPECT_TRUE(has_finding(r, "ring t@p", "padding record of " + std::to_string(length) + " bytes that does not reach the end of the lap"))
      << findings_text(r);
}

TEST(CheckTest, ASequenceThatSkipsIsReported) {
  uint64_t seq = 0;
  const CheckReport r = check_after([&](detail::RingHeader* h, uint8_t* rec, detail::ControlHeader*, detail::DirectoryLayout*) {
    seq = record(h, rec, 7)->sequence;
    record(h, rec, 7)->sequence += 5;
  });
  EXPECT_TRUE(has_finding(r, "ring t@p", "sequence " + std::to_string(seq + 5) + " follows " + std::to_string(seq - 1)))
      << findings_text(r);
}

TEST(CheckTest, APayloadThatDoesNotVerifyAgainstTheTopicSchemaIsReported) {
  const CheckReport r = check_after([](detail::RingHeader* h, uint8_t* rec, detail::ControlHeader*, detail::DirectoryLayout*) {
    detail::RecordHeader* victim = record(h, rec, 4);
    auto* payload = reinterpret_cast<uint8_t*>(victim) + (victim->offset_and_flags & detail::kOffsetMask);
    const uint32_t root_beyond_end = 0x7fffffff;
    std::memcpy(payload, &root_beyond_end, 4);
  });
  EXPECT_TRUE(has_finding(r, "ring t@p", "payload does not verify as examples.SensorReading")) << findings_text(r);
}

TEST(CheckTest, PositionsOutOfOrderAreReported) {
  const CheckReport tail_past_write = check_after([](detail::RingHeader* h, uint8_t*, detail::ControlHeader*, detail::DirectoryLayout*) {
    h->tail_position.store(h->write_position.load() + 64);
  });
  EXPECT_TRUE(has_finding(tail_past_write, "ring t@p", "is past the write position")) << findings_text(tail_past_write);
  const CheckReport misaligned = check_after([](detail::RingHeader* h, uint8_t*, detail::ControlHeader*, detail::DirectoryLayout*) {
    h->write_position.fetch_add(8);
  });
  EXPECT_TRUE(has_finding(misaligned, "ring t@p", "is not a multiple of 32")) << findings_text(misaligned);
}

TEST(CheckTest, ACursorInsideARecordIsReported) {
  const CheckReport r =
      check_after([](detail::RingHeader* h, uint8_t* rec, detail::ControlHeader*, detail::DirectoryLayout*) {
        move_own_lines(record_position(h, rec, 3) + 32);  // 32 bytes into a retained record
      });
  EXPECT_TRUE(has_finding(r, "ring t@p", "is not the start of a record")) << findings_text(r);
}

TEST(CheckTest, DamagedMagicAndSchemaIdsAreReported) {
  const CheckReport ring = check_after([](detail::RingHeader* h, uint8_t*, detail::ControlHeader*, detail::DirectoryLayout*) {
    h->magic.store(0xdeadbeef);
  });
  EXPECT_TRUE(has_finding(ring, "ring t@p", "has no valid magic")) << findings_text(ring);
  const CheckReport schema = check_after([](detail::RingHeader*, uint8_t*, detail::ControlHeader*, detail::DirectoryLayout* d) {
    d->topics[0].schema_id[10] ^= 1;
  });
  EXPECT_TRUE(has_finding(schema, "topic t", "does not match its schema bytes")) << findings_text(schema);
  const CheckReport dir = check_after([](detail::RingHeader*, uint8_t*, detail::ControlHeader*, detail::DirectoryLayout* d) {
    d->header.magic.store(42);
  });
  EXPECT_TRUE(has_finding(dir, "directory", "magic 0x2a is not")) << findings_text(dir);
}

TEST(CheckTest, ALiveReaderLappedUnderBlockIsReported) {
  const CheckReport r =
      check_after([](detail::RingHeader* h, uint8_t*, detail::ControlHeader*, detail::DirectoryLayout*) {
        ASSERT_GT(h->write_position.load(), 4096u);
        move_own_lines(0);  // more than a 4 KiB ring behind W
      });
  EXPECT_TRUE(has_finding(r, "ring t@p", "has lapped a reader it admitted")) << findings_text(r);
}
