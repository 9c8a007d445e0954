// The ring protocol's interleavings, forced: a RingWriter and RingReaders
// over a ring in ordinary memory, driven step by step where timing alone
// would make a test flaky. Each test pins one fault of issue 16 (the model in
// tests/model/ checks the same steps under every interleaving).
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "flowbus/detail/ring.hpp"

using namespace flowbus;
using namespace flowbus::detail;

namespace {

struct FreeDeleter {
  void operator()(void* p) const noexcept { std::free(p); }
};

// One ring's data, control and bell segments in ordinary memory, its writer,
// and its readers' segments. The writer's door (ring.hpp, ReaderDoor) stands
// in for the kernel: it admits an announcement whose token and line match a
// reader segment here (the real door, reader_admission.cpp, is tested on its
// own, with real segments, processes and uids).
struct LocalRing {
  static constexpr uint64_t kPublisherId = 0x5eed;
  static constexpr uint32_t kRingSlot = 3;
  std::unique_ptr<uint8_t, FreeDeleter> data;
  std::unique_ptr<uint8_t, FreeDeleter> ctl;
  std::unique_ptr<uint8_t, FreeDeleter> bell_bytes;
  RingHeader* header = nullptr;
  uint8_t* records = nullptr;
  ControlHeader* control = nullptr;
  BellHeader* bell = nullptr;
  uint64_t capacity;
  Policy policy;
  RingWriter w;
  std::vector<std::unique_ptr<ReaderHeader, FreeDeleter>> segments =
      std::vector<std::unique_ptr<ReaderHeader, FreeDeleter>>(256);  // by pid (aligned_alloc: freed with free)
  std::vector<bool> alive = std::vector<bool>(256, true);            // by pid
  std::vector<bool> damaged = std::vector<bool>(256, false);         // by pid: its segment was cut short
  std::function<void()> in_admit;                                    // called as the door starts attesting

  LocalRing(uint64_t capacity_bytes, Policy p) : capacity(capacity_bytes), policy(p) {
    data.reset(static_cast<uint8_t*>(std::aligned_alloc(128, kRecordsOffset + capacity)));
    ctl.reset(static_cast<uint8_t*>(std::aligned_alloc(128, sizeof(ControlHeader))));
    std::memset(data.get(), 0, kRecordsOffset + capacity);
    std::memset(ctl.get(), 0, sizeof(ControlHeader));
    bell_bytes.reset(static_cast<uint8_t*>(std::aligned_alloc(128, sizeof(BellHeader))));
    std::memset(bell_bytes.get(), 0, sizeof(BellHeader));
    bell = reinterpret_cast<BellHeader*>(bell_bytes.get());
    header = reinterpret_cast<RingHeader*>(data.get());
    records = data.get() + kRecordsOffset;
    control = reinterpret_cast<ControlHeader*>(ctl.get());
    header->capacity = capacity;
    header->publisher_id = kPublisherId;
    control->attachment_count = kAttachments;
    w = make_writer();
    w.recover();
  }

  RingWriter make_writer() {
    RingWriter writer;
    writer.header = header;
    writer.records = records;
    writer.control = control;
    writer.bell = bell;
    writer.capacity = capacity;
    writer.mask = capacity - 1;
    writer.policy = policy;
    writer.slow_timeout_ns = UINT64_MAX;
    writer.publisher_id = kPublisherId;
    writer.ring_slot = kRingSlot;
    writer.door.context = this;
    writer.door.admit = [](void* self, const ReaderAnnouncement& a, FollowedReader& out) noexcept {
      auto* ring = static_cast<LocalRing*>(self);
      if (ring->in_admit) ring->in_admit();
      if (a.pid >= ring->segments.size() || !ring->segments[a.pid] || ring->segments[a.pid]->token != a.token ||
          !ring->alive[a.pid])
        return false;
      out = {};
      out.pid = a.pid;
      out.token = a.token;
      out.n = a.n;
      out.line_index = a.line;
      out.subscription = ring->segments[a.pid]->subscription.load();
      if (a.line == kNoLine) return true;
      if (a.line >= kReaderLines) return false;
      const CursorLine& line = ring->segments[a.pid]->line[a.line];
      const uint64_t position = line.position.load(std::memory_order_acquire);
      if (position == kLineLeft || line.publisher_id.load() != kPublisherId || line.ring_slot.load() != kRingSlot)
        return false;
      out.line = &line;
      return true;
    };
    writer.door.damaged = [](void* self, const FollowedReader& r) noexcept -> bool {
      return static_cast<LocalRing*>(self)->damaged[r.pid];
    };
    writer.door.alive = [](void* self, uint32_t pid, uint64_t) noexcept -> bool {
      return static_cast<LocalRing*>(self)->alive[pid];
    };
    writer.door.subscription_alive = [](void* self, const FollowedReader& r, uint32_t) noexcept -> bool {
      return static_cast<LocalRing*>(self)->alive[r.pid];
    };
    return writer;
  }

  /// Process `pid`'s reader segment (one per process here), made on first need.
  ReaderHeader& segment(uint32_t pid) {
    if (!segments[pid]) {
      segments[pid].reset(static_cast<ReaderHeader*>(std::aligned_alloc(128, sizeof(ReaderHeader))));
      std::memset(static_cast<void*>(segments[pid].get()), 0, sizeof(ReaderHeader));
      segments[pid]->token = 1000 + pid;
      segments[pid]->pid = pid;
    }
    return *segments[pid];
  }

  /// A reader of process `pid`, with a line of its own in that process's segment.
  RingReader reader(uint32_t pid = 1) {
    segment(pid);
    RingReader r;
    r.header = header;
    r.records = records;
    r.control = control;
    r.bell = bell;
    r.capacity = capacity;
    r.mask = capacity - 1;
    r.policy = policy;
    for (uint32_t i = 0; i < kReaderLines; ++i) {
      CursorLine& line = segments[pid]->line[i];
      if (line.publisher_id.load() != 0) continue;
      line.position.store(kLineLeft);
      line.ring_slot.store(kRingSlot);
      line.publisher_id.store(kPublisherId);
      r.line = &line;
      r.announcement = {segments[pid]->token, pid, 0, i, 0};
      break;
    }
    return r;
  }

  /// One record of `length` bytes in all (header included); `end` ends the burst.
  PublishStatus publish(uint64_t length, bool end = true) {
    RingWriter::Reservation res;
    const uint64_t size = length - sizeof(RecordHeader);
    const PublishStatus s = w.reserve(sizeof(RecordHeader), size, res);
    if (s != PublishStatus::Ok) return s;
    w.commit_record(res, uint32_t(sizeof(RecordHeader)), uint32_t(size), 1);
    if (end) w.end_burst(1);
    return s;
  }

  /// Makes the writer refresh its limit at its next reserve: it answers the
  /// bell and looks at every reader then.
  void refresh_at_next_publish() { w.limit = w.write_position; }

  /// The writer answers the bell now (a publish that refreshes its limit),
  /// and `r` looks for its admission (an empty read); true if admitted.
  bool admit(RingReader& r) {
    refresh_at_next_publish();
    if (publish(kRecordAlign) != PublishStatus::Ok) return false;
    Event e;
    while (r.peek(e) == ReadStatus::Ok) (void)r.release(e);
    return r.attachment >= 0;
  }
};

/// Reads until the ring is empty; returns the sequences read. Stops at any
/// status other than Ok and Empty, which it stores in `stopped`.
std::vector<uint64_t> drain(RingReader& r, ReadStatus* stopped = nullptr) {
  std::vector<uint64_t> got;
  Event e;
  for (;;) {
    const ReadStatus s = r.peek(e);
    if (s != ReadStatus::Ok) {
      if (stopped) *stopped = s;
      return got;
    }
    got.push_back(e.sequence());
    if (r.release(e) != ReadStatus::Ok) {
      if (stopped) *stopped = ReadStatus::Evicted;
      return got;
    }
  }
}

}  // namespace

// Fault 1: the writer stores next_sequence, then W, after a burst. A reader
// that joins between the two stores used to expect the burst's end at the
// burst's start, take the ring for damaged (sequences went backwards) and
// quarantine it for good.
TEST(RingProtocolTest, AJoinBetweenABurstsSequenceAndItsWriteStoreKnowsTheExactSequence) {
  for (Policy policy : {Policy::Block, Policy::Latest}) {
    LocalRing ring(64 * 1024, policy);
    for (int i = 0; i < 3; ++i) ASSERT_EQ(ring.publish(64), PublishStatus::Ok);
    for (int i = 0; i < 8; ++i) ASSERT_EQ(ring.publish(64, /*end=*/false), PublishStatus::Ok);
    // publish_position's first store, and no more: W still says 3 records.
    ring.header->next_sequence.store(ring.w.next_sequence);
    RingReader r = ring.reader();
    ASSERT_TRUE(r.join_latest());
    ring.w.end_burst(1);
    ReadStatus stopped = ReadStatus::Ok;
    const std::vector<uint64_t> got = drain(r, &stopped);
    EXPECT_EQ(stopped, ReadStatus::Empty);
    ASSERT_EQ(got.size(), 8u);
    EXPECT_EQ(got.front(), 3u);
    EXPECT_EQ(r.missed, 0u);
  }
}

// Fault 2: in a burst longer than the ring, tail moves in reserve while W is
// stored only at the burst's end. tail must never pass the stored W (a
// reader takes that for damage), and a writer that restarts after a crash
// mid-burst continues the sequence instead of rewinding it.
TEST(RingProtocolTest, ALongBurstNeverMovesTailPastTheStoredWriteAndRecoveryKeepsItsSequences) {
  for (Policy policy : {Policy::Block, Policy::Latest}) {
    LocalRing ring(64 * 1024, policy);
    for (int i = 0; i < 2048; ++i) {
      ASSERT_EQ(ring.publish(256, /*end=*/false), PublishStatus::Ok);
      ASSERT_LE(ring.header->tail_position.load(), ring.header->write_position.load()) << "record " << i;
    }
    // The writer dies here, before end_burst; its successor recovers.
    RingWriter successor = ring.make_writer();
    successor.recover();
    EXPECT_EQ(successor.next_sequence, 2048u);
    EXPECT_EQ(successor.write_position, 2048u * 256);
    RingReader r = ring.reader();
    ASSERT_TRUE(r.join_earliest());
    ReadStatus stopped = ReadStatus::Ok;
    const std::vector<uint64_t> got = drain(r, &stopped);
    EXPECT_EQ(stopped, ReadStatus::Empty);
    ASSERT_FALSE(got.empty());
    EXPECT_EQ(got.back(), 2047u);
  }
}

// Fault 3: a reader publishes its cursor once per eighth of the ring, never
// on an empty poll. A reader that has read everything must still never hold
// a block writer back, whatever the record size (up to the largest the ring
// takes) and wherever W stands (padding at the lap's end included). The
// issue's case: 4 KiB ring, 2016 B and 32 B read, then 2016 B: Full forever.
TEST(RingProtocolTest, AReaderThatHasReadEverythingNeverHoldsABlockWriterBack) {
  const uint64_t capacity = 4096;
  const uint64_t largest = max_record_length(capacity);
  EXPECT_EQ(largest, 1792u);
  for (uint64_t offset = 0; offset < capacity; offset += kRecordAlign) {
    for (uint64_t length = kRecordAlign; length <= largest; length += kRecordAlign) {
      LocalRing ring(capacity, Policy::Block);
      RingReader r = ring.reader();
      ASSERT_TRUE(r.join_latest());
      // Bring W to `offset` of the second lap, reading as we go.
      for (uint64_t at = 0; at < capacity + offset;) {
        const uint64_t step = std::min<uint64_t>(std::min(largest, capacity + offset - at), capacity - (at % capacity));
        ASSERT_EQ(ring.publish(step), PublishStatus::Ok);
        drain(r);
        at += step;
      }
      ASSERT_EQ(ring.publish(length), PublishStatus::Ok) << "offset " << offset << " length " << length;
    }
  }
  LocalRing ring(capacity, Policy::Block);
  EXPECT_EQ(ring.publish(largest + kRecordAlign), PublishStatus::TooLarge);
}

// Fault 4 (layout 3: a slot's asleep mark belonged to its owner, and an
// evicted reader waking or leaving could take the next owner out of the
// waiter count). Since layout 4 there is no count: a sleeper asks for a
// wake-up in one shared word that only the writer clears; since layout 5 a
// reader writes nothing but its own line. Reader A is evicted, B is admitted
// to A's attachment and sleeps; whatever A does must leave B's request and
// attachment alone.
TEST(RingProtocolTest, AnEvictedReaderCannotTakeAwayTheWakeRequestOrAttachmentOfTheNextReader) {
  LocalRing ring(4096, Policy::Block);
  RingReader a = ring.reader(1);
  ASSERT_TRUE(a.join_latest());
  ASSERT_TRUE(ring.admit(a));
  uint32_t seen_a = 0;
  ASSERT_FALSE(a.begin_sleep(seen_a));  // a sleeps (full fence: returns false)
  EXPECT_EQ(ring.bell->wake_request.load(), 1u);
  EXPECT_EQ(a.line->sleeping.load(), 1u);
  // The writer evicts A (its segment was cut short, say) at its next refresh.
  ring.damaged[1] = true;
  ring.refresh_at_next_publish();
  ASSERT_EQ(ring.publish(64), PublishStatus::Ok);
  EXPECT_EQ(ring.w.evictions, 1u);
  const int a_attachment = a.attachment;
  RingReader b = ring.reader(2);
  ASSERT_TRUE(b.join_latest());
  ASSERT_TRUE(ring.admit(b));
  ASSERT_EQ(b.attachment, a_attachment);  // the first free attachment: A's
  uint32_t seen_b = 0;
  b.begin_sleep(seen_b);
  a.end_sleep();
  a.leave();
  EXPECT_EQ(ring.bell->wake_request.load(), 1u) << "A took B's wake request away";
  EXPECT_EQ(b.line->sleeping.load(), 1u);
  // The next publish grants the request: one wake-up, for both.
  const uint64_t wakes = futex_wake_calls();
  ASSERT_EQ(ring.publish(64), PublishStatus::Ok);
  EXPECT_EQ(futex_wake_calls(), wakes + 1);
  EXPECT_NE(ring.control->wake_word.load(), seen_b) << "B would sleep through the publish";
  EXPECT_EQ(ring.bell->wake_request.load(), 0u);
  b.end_sleep();
  EXPECT_EQ(b.line->sleeping.load(), 0u);
  ring.refresh_at_next_publish();
  ASSERT_EQ(ring.publish(64), PublishStatus::Ok);
  Event e;
  EXPECT_EQ(b.peek(e), ReadStatus::Ok) << "B was evicted with A";
  EXPECT_EQ(b.release(e), ReadStatus::Ok);
  b.leave();
}

// The wake request is granted once: the publish that finds it clears it and
// wakes; later publishes, with nobody asleep, make no system call.
TEST(RingProtocolTest, APublishGrantsAWakeRequestOnceAndTheNextPublishesMakeNoSystemCall) {
  LocalRing ring(1 << 16, Policy::Block);
  RingReader r = ring.reader(1);
  ASSERT_TRUE(r.join_latest());
  const uint64_t wakes = futex_wake_calls();
  for (int i = 0; i < 100; ++i) ASSERT_EQ(ring.publish(64), PublishStatus::Ok);
  EXPECT_EQ(futex_wake_calls(), wakes) << "nobody sleeps";
  ASSERT_EQ(drain(r).size(), 100u);
  uint32_t seen = 0;
  r.begin_sleep(seen);
  EXPECT_FALSE(r.has_data());
  ASSERT_EQ(ring.publish(64), PublishStatus::Ok);
  EXPECT_EQ(futex_wake_calls(), wakes + 1);
  EXPECT_NE(ring.control->wake_word.load(), seen);
  EXPECT_TRUE(r.has_data());
  r.end_sleep();
  for (int i = 0; i < 100; ++i) ASSERT_EQ(ring.publish(64), PublishStatus::Ok);
  EXPECT_EQ(futex_wake_calls(), wakes + 1) << "a granted request was granted again";
  r.leave();
}

// Found by the model (tests/model, scenario 9): a sleeper the writer evicts
// is woken, and sees that it was evicted although the commit word at its
// cursor reads 0 again (the writer lapped it to the frontier); otherwise it
// slept on until its own timeout. The eviction itself wakes: the publish
// that follows may find the request already granted.
TEST(RingProtocolTest, AnEvictedSleeperIsWokenAndSeesItWasEvicted) {
  LocalRing ring(4096, Policy::Block);
  RingReader a = ring.reader(5);
  ASSERT_TRUE(a.join_latest());
  ASSERT_EQ(ring.publish(1024), PublishStatus::Ok);
  ASSERT_EQ(drain(a).size(), 1u);
  uint32_t seen = 0;
  a.begin_sleep(seen);  // publishes its cursor (1024) first
  EXPECT_FALSE(a.has_data());
  ring.bell->wake_request.store(0);  // granted by a publish a's sleep did not need (the worst case)
  ring.alive[5] = false;  // stopped for good, as far as the writer can tell
  for (int i = 0; i < 3; ++i) ASSERT_EQ(ring.publish(1024), PublishStatus::Ok);
  const uint64_t wakes = futex_wake_calls();
  ASSERT_EQ(ring.publish(1024), PublishStatus::Ok);  // needs A's bytes: evicts it
  EXPECT_EQ(ring.w.evictions, 1u);
  EXPECT_EQ(futex_wake_calls(), wakes + 1) << "the eviction woke nobody";
  EXPECT_NE(ring.control->wake_word.load(), seen);
  EXPECT_EQ(ring.records[1024 % 4096], 0);  // the commit word at A's cursor reads 0 again
  EXPECT_TRUE(a.has_data()) << "asleep and evicted, it would sleep on";
  a.end_sleep();
  Event e;
  (void)a.peek(e);
  EXPECT_TRUE(a.evicted_pending);
}

// Layout 5: a reader is protected only once the writer admitted it, and the
// writer admits at most kAttachments readers. The next one (or one whose
// announcement a hostile reader erased from the bell) reads as a joiner: it
// holds nothing back, checks every read against the reuse floor, and is
// told exactly what the writer overwrote before it read it. Never a silent
// loss, never a torn read.
TEST(RingProtocolTest, AReaderTheWriterCannotAdmitHoldsNothingBackAndCountsWhatItMissed) {
  LocalRing ring(4096, Policy::Block);
  std::vector<RingReader> admitted;
  for (uint32_t i = 0; i < kAttachments; ++i) {
    admitted.push_back(ring.reader(10 + i % 100));
    ASSERT_TRUE(admitted.back().join_latest());
  }
  RingReader late = ring.reader(200);
  ASSERT_TRUE(late.join_latest());  // its announcement waits in the bell: every attachment will be taken
  // Answered four a refresh: refresh until every attachment is taken.
  for (int i = 0; i < 64; ++i) {
    ring.refresh_at_next_publish();
    ASSERT_EQ(ring.publish(kRecordAlign), PublishStatus::Ok);
    for (RingReader& r : admitted) drain(r);
  }
  for (RingReader& r : admitted) ASSERT_GE(r.attachment, 0);
  EXPECT_LT(late.attachment, 0);
  EXPECT_TRUE(late.joining);
  // The writer laps the late reader (the admitted ones keep up).
  for (int i = 0; i < 200; ++i) {
    ASSERT_EQ(ring.publish(256), PublishStatus::Ok) << i;
    for (RingReader& r : admitted) drain(r);
  }
  ReadStatus stopped = ReadStatus::Ok;
  const std::vector<uint64_t> got = drain(late, &stopped);
  ASSERT_FALSE(got.empty());
  EXPECT_GT(late.missed, 0u) << "lapped before it read, and told nothing";
  // Every sequence it skipped is counted: what it read plus what it missed
  // is everything published since it joined.
  EXPECT_EQ(late.missed + got.size(), ring.w.next_sequence);
  for (size_t i = 1; i < got.size(); ++i) EXPECT_EQ(got[i], got[i - 1] + 1);
  for (RingReader& r : admitted) r.leave();
}

// A reader not admitted holds nothing back while it reads an event in
// place: if the writer reuses those bytes meanwhile (its reuse floor passes
// the event), release() says so (Evicted, as for a Block reader whose bytes
// were reused under it), so the caller knows what it read may be torn.
TEST(RingProtocolTest, AJoinerWhoseEventIsOverwrittenWhileItReadsItIsTold) {
  LocalRing ring(4096, Policy::Block);
  RingReader r = ring.reader(9);
  ring.alive[9] = false;  // the door refuses it: never admitted
  ASSERT_TRUE(r.join_latest());
  ASSERT_EQ(ring.publish(64), PublishStatus::Ok);
  Event e;
  ASSERT_EQ(r.peek(e), ReadStatus::Ok);
  EXPECT_TRUE(r.joining);
  for (int i = 0; i < 100; ++i) ASSERT_EQ(ring.publish(64), PublishStatus::Ok);  // laps it
  EXPECT_GT(ring.header->reuse_floor.load(), e.position());
  EXPECT_EQ(r.release(e), ReadStatus::Evicted) << "bytes reused under a read, and the reader not told";
}

// A reader claims a bell slot, fills it in a few stores, then marks it
// rung. One stopped in between (preempted under load, or dead, or a forger
// that leaves slots half filled) keeps the slot filling. The writer frees it
// only once it has seen it neither free nor rung for the grace period: freed
// after two answers in a row (the rule before), a live reader preempted for
// a time slice lost its announcement and then events (TSan's thread stress
// test). A forger who writes a new value at every answer holds it no longer.
// A reader whose slot was freed under it fails its CAS to rung (its filling
// value is its claim's own) and rings in another slot.
TEST(RingProtocolTest, ABellSlotLeftHalfFilledIsFreedOnlyAfterAGracePeriod) {
  LocalRing ring(4096, Policy::Block);
  const auto grace = std::chrono::nanoseconds(RingWriter::kBellFillingGraceNs);
  const uint64_t stopped_claim = bell_filling_value(77, 1);
  ASSERT_TRUE(bell_slot_filling(stopped_claim));
  ring.bell->slot[0].seq.store(stopped_claim);
  ring.bell->rings.fetch_add(1);
  RingReader honest = ring.reader(1);
  ASSERT_TRUE(honest.join_latest());  // rings in slot 1: slot 0 is taken
  ASSERT_TRUE(ring.admit(honest)) << "a half-filled slot stops no other joiner";
  const auto first_seen = std::chrono::steady_clock::now();
  for (int i = 0; i < 4; ++i) {  // answers in a row, as fast as publishes come
    ring.refresh_at_next_publish();
    ASSERT_EQ(ring.publish(kRecordAlign), PublishStatus::Ok);
  }
  EXPECT_EQ(ring.bell->slot[0].seq.load(), stopped_claim)
      << "freed within answers of each other: a preempted reader loses its announcement";
  // A forger writes other values (another claim's, then garbage) at each
  // answer: the slot stays neither free nor rung, and its time runs on.
  std::this_thread::sleep_for(grace / 2);
  for (const uint64_t forged : {bell_filling_value(77, 2), uint64_t(6)}) {
    ring.bell->slot[0].seq.store(forged);
    ring.refresh_at_next_publish();
    ASSERT_EQ(ring.publish(kRecordAlign), PublishStatus::Ok);
    if (std::chrono::steady_clock::now() - first_seen < grace) {
      EXPECT_EQ(ring.bell->slot[0].seq.load(), forged) << "freed before the grace period";
    }
  }
  std::this_thread::sleep_for(grace * 3 / 4);
  ring.refresh_at_next_publish();
  ASSERT_EQ(ring.publish(kRecordAlign), PublishStatus::Ok);
  EXPECT_EQ(ring.bell->slot[0].seq.load(), 0u) << "a forger renewing its values held the slot past the grace period";
  honest.leave();
}

/// The ring's shared memory at one moment: what a writer killed -9 then leaves.
struct SharedMemoryCopy {
  std::vector<uint8_t> data, ctl, bell;
  void take(const LocalRing& ring) {
    data.assign(ring.data.get(), ring.data.get() + kRecordsOffset + ring.capacity);
    ctl.assign(ring.ctl.get(), ring.ctl.get() + sizeof(ControlHeader));
    bell.assign(ring.bell_bytes.get(), ring.bell_bytes.get() + sizeof(BellHeader));
  }
  /// Puts it back and starts the writer's successor on it.
  void restore_for_successor(LocalRing& ring) const {
    std::memcpy(ring.data.get(), data.data(), data.size());
    std::memcpy(ring.ctl.get(), ctl.data(), ctl.size());
    std::memcpy(ring.bell_bytes.get(), bell.data(), bell.size());
    ring.w = ring.make_writer();
    ring.w.recover();
  }
};

// A writer killed while it answered the bell (inside the door's system
// calls, tens of us) must leave the announcement to the next writer of the
// ring. It used to free the slot first: the announcement died with the
// writer, its reader read unprotected, never admitted, and lost events
// (counted) once a later writer lapped it (TSan's torture test of a
// publisher killed mid-burst). The kill is a copy of the shared memory taken
// at that moment, put back after the writer went on.
TEST(RingProtocolTest, AWriterKilledWhileAnsweringTheBellLeavesTheAnnouncementToItsSuccessor) {
  LocalRing ring(4096, Policy::Block);
  RingReader r = ring.reader(1);
  ASSERT_TRUE(r.join_earliest());  // announced at 0
  SharedMemoryCopy killed;
  ring.in_admit = [&] { killed.take(ring); };
  ring.refresh_at_next_publish();
  ASSERT_EQ(ring.publish(kRecordAlign), PublishStatus::Ok);
  ring.in_admit = nullptr;
  ASSERT_FALSE(killed.bell.empty()) << "the writer did not answer the announcement";
  killed.restore_for_successor(ring);
  uint64_t published = 0;
  while (published < 200 && ring.publish(64) == PublishStatus::Ok) ++published;
  EXPECT_LT(published, ring.capacity / 64) << "the successor wrote over a live reader it never admitted";
  ReadStatus stopped = ReadStatus::Ok;
  const std::vector<uint64_t> got = drain(r, &stopped);
  EXPECT_EQ(stopped, ReadStatus::Empty);
  EXPECT_EQ(got.size(), published);
  EXPECT_EQ(r.missed, 0u);
  EXPECT_GE(r.attachment, 0) << "never admitted";
}

// A writer that admitted a joiner (its attachment stored) and died before
// it bumped `admissions`: the joiner looks for its admission only when that
// count moves, and the successor's repeat of its announcement is a no-op. So
// the successor bumps the count once: the reader finds its attachment.
TEST(RingProtocolTest, AnAdmissionAWriterDiedBeforeAnnouncingIsFoundByItsReader) {
  LocalRing ring(4096, Policy::Block);
  RingReader r = ring.reader(1);
  ASSERT_TRUE(r.join_earliest());
  const uint64_t before = ring.control->admissions.load();
  ring.refresh_at_next_publish();
  ASSERT_EQ(ring.publish(64), PublishStatus::Ok);  // admitted, and announced
  ASSERT_EQ(AttachmentState::kind(ring.control->attachments[0].state.load()), AttachmentState::kAdmitted);
  ring.control->admissions.store(before);  // as if it died before announcing
  ring.w = ring.make_writer();
  ring.w.recover();
  ring.refresh_at_next_publish();
  ASSERT_EQ(ring.publish(64), PublishStatus::Ok);
  EXPECT_EQ(drain(r).size(), 2u);
  EXPECT_EQ(r.attachment, 0) << "still joining: reading unprotected, as if never admitted";
}

// An honest joiner the writer admits after its next tail store (the joining
// Dekker: the writer stored tail, then saw the bell) is held from where it
// stood, below that tail: it reads everything, and nothing is counted lost.
TEST(RingProtocolTest, AJoinerAdmittedBelowTheTailTheWriterHadStoredLosesNothing) {
  LocalRing ring(4096, Policy::Block);
  for (int i = 0; i < 52; ++i) ASSERT_EQ(ring.publish(64), PublishStatus::Ok);  // 3328 B: tail still 0
  RingReader r = ring.reader(1);
  ASSERT_TRUE(r.join_earliest());  // at 0, announced; the writer has not looked yet
  ASSERT_EQ(r.position, 0u);
  // The writer's next refresh stores a tail past 0 (its run wants W + 1/4
  // ring), then answers the bell and admits r at 0: its limit goes no
  // further than 0 + capacity.
  ring.refresh_at_next_publish();
  ASSERT_EQ(ring.publish(64), PublishStatus::Ok);
  EXPECT_GT(ring.header->tail_position.load(), 0u) << "the scenario needs tail past the joiner";
  EXPECT_LE(ring.header->reuse_floor.load(), 0u);
  EXPECT_LE(ring.header->limit.load(), ring.capacity);
  ReadStatus stopped = ReadStatus::Ok;
  const std::vector<uint64_t> got = drain(r, &stopped);
  EXPECT_EQ(stopped, ReadStatus::Empty);
  EXPECT_EQ(got.size(), 53u);
  EXPECT_EQ(r.missed, 0u);
  EXPECT_GE(r.attachment, 0);
  // And it holds the writer from now on: a full ring is Full, not overwritten.
  while (ring.publish(64) == PublishStatus::Ok) {
  }
  EXPECT_EQ(drain(r).front(), 53u);
  EXPECT_EQ(r.missed, 0u);
}

/// What a ring's creator does for subscription `tag` of process `pid` found
/// in a reader segment: attachment k Reserved (epoch 1) at position 0.
Attachment& reserve_for(LocalRing& ring, uint32_t pid, uint32_t tag, uint32_t k = 0) {
  ring.segment(pid).subscription.store(tag);  // the subscription the creator found in it
  Attachment& a = ring.control->attachments[k];
  a.subscription.store(tag);
  a.token.store(1000 + pid);
  a.pid.store(pid);
  a.n.store(0);
  a.line.store(kNoLine);
  a.state.store(AttachmentState::pack(1, AttachmentState::kReserved));
  return a;
}

// A reservation (the ring's creator found a subscription made before the
// ring) holds the writer at its start until its subscriber adopts it; the
// adoption keeps the attachment's epoch, so the subscriber's ownership holds
// across, and from then on the subscriber's line holds the writer.
TEST(RingProtocolTest, AReservationHoldsTheWriterUntilAdoptedAndTheAdopterKeepsIt) {
  LocalRing ring(4096, Policy::Block);
  Attachment& a = reserve_for(ring, 5, 77);
  ring.w = ring.make_writer();
  ring.w.recover();  // a new ring's writer takes over what its creator reserved
  while (ring.publish(64) == PublishStatus::Ok) {
  }
  EXPECT_EQ(ring.w.write_position, ring.capacity - 64 - 0) << "held at 0 by the reservation";
  RingReader r = ring.reader(5);
  uint64_t state = 0;
  const int k = r.find_attachment(77, 5, state);
  ASSERT_EQ(k, 0);
  r.adopt(k, state, 0, 0, 77);
  const std::vector<uint64_t> got = drain(r);
  ASSERT_FALSE(got.empty());
  EXPECT_EQ(got.front(), 0u);
  EXPECT_EQ(r.missed, 0u);
  r.publish_progress();
  // The next refresh answers the adoption (the reservation's 0 still holds
  // it); the one after obeys the adopter's line.
  ring.refresh_at_next_publish();
  (void)ring.publish(64);
  EXPECT_EQ(AttachmentState::kind(a.state.load()), AttachmentState::kAdmitted);
  ASSERT_EQ(ring.publish(64), PublishStatus::Ok) << "the adopter's line, not 0, holds the writer now";
  EXPECT_EQ(AttachmentState::epoch(a.state.load()), 1u);
  Event e;
  ASSERT_EQ(r.peek(e), ReadStatus::Ok);
  EXPECT_EQ(r.release(e), ReadStatus::Ok) << "adoption took its attachment away";
}

// A writer killed while it answered an adoption leaves it to its
// successor: the slot stays rung until answered, and an adoption is written
// while the attachment still says Reserved (recovery frees one that says
// Writing, and the adopter, whose epoch it was, would be evicted).
TEST(RingProtocolTest, AWriterKilledWhileAnsweringAnAdoptionLeavesItToItsSuccessor) {
  LocalRing ring(4096, Policy::Block);
  Attachment& a = reserve_for(ring, 5, 77);
  ring.w = ring.make_writer();
  ring.w.recover();
  for (int i = 0; i < 8; ++i) ASSERT_EQ(ring.publish(64), PublishStatus::Ok);
  RingReader r = ring.reader(5);
  uint64_t state = 0;
  const int k = r.find_attachment(77, 5, state);
  ASSERT_EQ(k, 0);
  r.adopt(k, state, 0, 0, 77);  // rings the bell with its tag
  SharedMemoryCopy killed;
  ring.in_admit = [&] { killed.take(ring); };
  ring.refresh_at_next_publish();
  ASSERT_EQ(ring.publish(64), PublishStatus::Ok);
  ring.in_admit = nullptr;
  ASSERT_FALSE(killed.bell.empty()) << "the writer did not answer the adoption";
  killed.restore_for_successor(ring);
  ring.refresh_at_next_publish();
  ASSERT_EQ(ring.publish(64), PublishStatus::Ok);
  EXPECT_EQ(a.state.load(), AttachmentState::pack(1, AttachmentState::kAdmitted)) << "the adoption was lost";
  ReadStatus stopped = ReadStatus::Ok;
  EXPECT_EQ(drain(r, &stopped).size(), 9u);
  EXPECT_EQ(stopped, ReadStatus::Empty);
  EXPECT_EQ(r.missed, 0u);
}

// Only the process a reservation was made for may adopt or give it up: an
// announcement from another reader naming its tag changes nothing.
TEST(RingProtocolTest, AnotherProcessCannotAdoptOrGiveUpAReservation) {
  LocalRing ring(4096, Policy::Block);
  Attachment& a = reserve_for(ring, 5, 77);
  ring.w = ring.make_writer();
  ring.w.recover();
  RingReader thief = ring.reader(6);
  thief.adopt(0, a.state.load(), 0, 0, 77);  // claims the reservation on the bell
  thief.ring_bell(77, kNoLine);              // gives it up with no line (once accepted: bell only)
  thief.give_up(77);                         // and with its own line
  ring.refresh_at_next_publish();
  ASSERT_EQ(ring.publish(64), PublishStatus::Ok);
  EXPECT_EQ(a.state.load(), AttachmentState::pack(1, AttachmentState::kReserved));
  // The subscriber itself gives it up, its line saying so: freed.
  RingReader owner = ring.reader(5);
  owner.give_up(77);
  ring.refresh_at_next_publish();
  ASSERT_EQ(ring.publish(64), PublishStatus::Ok);
  EXPECT_EQ(AttachmentState::kind(a.state.load()), AttachmentState::kFree);
}

// Two Subscribers of one process: the writer must not take a line of the
// other one's for the reservation's subscriber. A forger (any reader may
// ring the bell, and read tokens, tags and line numbers) names, under the
// reservation's tag and pid, a line of the process's other subscription:
// one it gave up (the reservation would be given up) or one it reads (the
// reservation would follow that line; its own reader, whose ownership check
// holds across an adoption, would read bytes the writer reuses).
TEST(RingProtocolTest, AnotherSubscriptionOfTheSameProcessCannotAdoptOrGiveUpAReservation) {
  for (const bool given_up : {true, false}) {
    LocalRing ring(4096, Policy::Block);
    Attachment& a = reserve_for(ring, 5, 77);
    ring.w = ring.make_writer();
    ring.w.recover();
    ring.segment(5).subscription.store(88);  // the process's segment is another subscription's
    RingReader other = ring.reader(5);
    ASSERT_TRUE(other.join_latest());  // reads the ring: its line is live
    if (given_up) other.line->position.store(kLineGivenUp);
    other.ring_bell(77, other.announcement.line);  // the forger's announcement, under tag 77
    ring.refresh_at_next_publish();
    ASSERT_EQ(ring.publish(64), PublishStatus::Ok);
    EXPECT_EQ(a.state.load(), AttachmentState::pack(1, AttachmentState::kReserved))
        << (given_up ? "given up" : "adopted") << " through another subscription's line";
    // Its own subscriber (the segment says 77) adopts it.
    ring.segment(5).subscription.store(77);
    other.ring_bell(77, other.announcement.line);
    ring.refresh_at_next_publish();
    ASSERT_EQ(ring.publish(64), PublishStatus::Ok);
    EXPECT_EQ(AttachmentState::kind(a.state.load()), given_up ? AttachmentState::kFree : AttachmentState::kAdmitted);
  }
}

// Tags are readable by whoever may read a segment: another process may
// subscribe under the victim's tag and get a reservation of its own, below
// the victim's. The victim's adoption must still find its own.
TEST(RingProtocolTest, AReservationOfAnotherProcessUnderTheSameTagDoesNotStopTheAdoption) {
  LocalRing ring(4096, Policy::Block);
  reserve_for(ring, 6, 77, 0);  // the copycat's, first in the table
  Attachment& mine = reserve_for(ring, 5, 77, 1);
  ring.w = ring.make_writer();
  ring.w.recover();
  RingReader r = ring.reader(5);
  uint64_t state = 0;
  ASSERT_EQ(r.find_attachment(77, 5, state), 1);
  r.adopt(1, state, 0, 0, 77);
  ring.refresh_at_next_publish();
  ASSERT_EQ(ring.publish(64), PublishStatus::Ok);
  EXPECT_EQ(AttachmentState::kind(mine.state.load()), AttachmentState::kAdmitted) << "the adoption was answered";
  // And giving up finds its own too.
  RingReader copycat = ring.reader(6);
  copycat.give_up(77);
  ring.refresh_at_next_publish();
  ASSERT_EQ(ring.publish(64), PublishStatus::Ok);
  EXPECT_EQ(AttachmentState::kind(ring.control->attachments[0].state.load()), AttachmentState::kFree);
  EXPECT_EQ(AttachmentState::kind(mine.state.load()), AttachmentState::kAdmitted);
}

// Fault 6: a Latest reader joining at the oldest event while the writer laps
// the ring must learn the sequence where it starts (or it would count
// nothing for a lap that overtakes it before its first read).
TEST(RingProtocolTest, ALatestJoinAtTheOldestEventAlwaysLearnsItsSequenceUnderALappingWriter) {
  LocalRing ring(4096, Policy::Latest);
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    while (!stop.load(std::memory_order_relaxed)) (void)ring.publish(96);
  });
  uint64_t joins = 0, unknown = 0;
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (std::chrono::steady_clock::now() < until) {
    for (int i = 0; i < 1000; ++i, ++joins) {
      RingReader r = ring.reader();
      ASSERT_TRUE(r.join_earliest());
      unknown += !r.sequence_known;
      r.leave();
    }
  }
  stop = true;
  writer.join();
  EXPECT_EQ(unknown, 0u) << "of " << joins << " joins";
}

// Fault 7: Latest writers never evict slow readers, but a reader that died
// asleep must not cost every publish a futex call for good (layout 3 kept
// it counted in `waiters`, and freed it only after a liveness probe). Now
// it costs one wake-up: the publish that grants its request.
TEST(RingProtocolTest, ALatestReaderThatDiedAsleepCostsTheWriterOneWakeUp) {
  LocalRing ring(4096, Policy::Latest);
  const uint64_t wakes = futex_wake_calls();
  {
    RingReader r = ring.reader(7);
    ASSERT_TRUE(r.join_latest());
    uint32_t seen = 0;
    r.begin_sleep(seen);
  }  // it dies asleep
  ring.alive[7] = false;
  for (int i = 0; i < 400; ++i) ASSERT_EQ(ring.publish(64), PublishStatus::Ok);  // six ring laps
  EXPECT_EQ(futex_wake_calls(), wakes + 1);
  EXPECT_EQ(ring.w.evictions, 0u) << "Latest writers admit and evict nobody";
}

// Issue 15 item 9: the writer judges a reader that holds it back by progress
// alone: by the highest position the reader was seen at. A member of the
// topic's group may write its own cursor word at will; whatever it writes,
// it cannot hold a block writer past the slow-consumer timeout.
namespace {

constexpr uint64_t kRecord = 64;  // every record of these tests, header included

/// A block ring of 4 KiB whose writer is held by reader `r` standing at
/// record 4 (position 256; tail is below, at 128): the ring is then filled up to it.
struct HeldWriter {
  LocalRing ring{4096, Policy::Block};
  RingReader r = ring.reader(1);

  explicit HeldWriter(uint64_t slow_timeout_ns) {
    ring.w.slow_timeout_ns = slow_timeout_ns;
    EXPECT_TRUE(r.join_latest());
    EXPECT_TRUE(ring.admit(r));
    while (ring.publish(kRecord) == PublishStatus::Ok) {
    }
    stand_at(4 * kRecord);
    while (ring.publish(kRecord) == PublishStatus::Ok) {
    }
  }
  /// Writes our own line as a hostile reader would (it may: the line is its own).
  void stand_at(uint64_t position) { r.line->position.store(position); }
  /// As a hostile process would: another reader of it announces itself at
  /// `position`, below where `r` stood, and `r` leaves. The writer drops
  /// r's attachment and admits the other in one refresh, so it stays held.
  void rejoin_at(uint64_t position) {
    RingReader next = ring.reader(1);
    next.line->position.store(position);
    next.ring_bell(0, next.announcement.line);
    r.line->position.store(kLineLeft);
    r.line->publisher_id.store(0);
    r = next;
  }
  bool evicted() const { return ring.w.evictions != 0; }
};

using std::chrono::milliseconds;
using std::chrono::steady_clock;

}  // namespace

// Before: every move started a new watch, so stepping between two record
// starts (one back, one forward) held the writer for good.
TEST(RingProtocolTest, AReaderThatStepsItsPositionBackAndForthIsEvictedAtOnce) {
  HeldWriter h(UINT64_MAX);  // never evict a live reader for being slow: a step back is not slowness
  bool forward = false;
  for (int i = 0; i < 1000 && !h.evicted(); ++i) {
    h.stand_at(forward ? 4 * kRecord : 3 * kRecord);
    forward = !forward;
    (void)h.ring.publish(kRecord);
  }
  EXPECT_TRUE(h.evicted()) << "a position that moved back within one admission still holds the writer";
  EXPECT_EQ(h.ring.w.evictions, 1u);
  EXPECT_EQ(h.ring.publish(kRecord), PublishStatus::Ok);
}

// Stepping back with a new admission each time (another reader of the same
// process announces itself below the mark as the last one leaves): the timer
// goes on from the highest position, so the process is evicted after the
// timeout, not before, and not never.
TEST(RingProtocolTest, AProcessThatRejoinsBelowWhereItStoodIsEvictedAfterTheTimeout) {
  const auto timeout = milliseconds(50);
  HeldWriter h(uint64_t(std::chrono::nanoseconds(timeout).count()));
  const auto start = steady_clock::now();
  bool forward = false;
  while (!h.evicted() && steady_clock::now() - start < std::chrono::seconds(5)) {
    h.rejoin_at(forward ? 4 * kRecord : 3 * kRecord);
    forward = !forward;
    const auto before = steady_clock::now();
    h.ring.refresh_at_next_publish();
    if (h.ring.publish(kRecord) == PublishStatus::Ok && !h.evicted()) {
      ADD_FAILURE() << "the writer was not held by the rejoined reader";
      break;
    }
    EXPECT_FALSE(h.evicted() && before - start < timeout) << "evicted before its timeout";
    std::this_thread::sleep_for(milliseconds(1));
  }
  EXPECT_TRUE(h.evicted()) << "a process rejoining below its mark kept its timer young for 5 s";
  EXPECT_GE(steady_clock::now() - start, timeout);
}

// A position between record starts is no reader's: a reader only ever stands
// on a record start. Evicted at once, even with a timeout of never.
TEST(RingProtocolTest, APositionOffTheRecordStartsIsEvictedAtOnce) {
  HeldWriter h(UINT64_MAX);
  h.stand_at(3 * kRecord + 32);  // inside record 3
  EXPECT_EQ(h.ring.publish(kRecord), PublishStatus::Ok);
  EXPECT_TRUE(h.evicted());
  EXPECT_EQ(h.ring.w.evictions, 1u);
}

// What must still hold: a reader that moves on, however slowly, is never
// evicted; and a reader that holds the writer again, or a new reader, after
// an earlier blocked stretch starts with a timer of its own (watches do not
// outlive the stretch).
TEST(RingProtocolTest, AReaderThatMovesOnIsNeverEvictedAndANewOneInheritsNoTimer) {
  const auto timeout = milliseconds(200);
  HeldWriter h(uint64_t(std::chrono::nanoseconds(timeout).count()));
  for (int i = 0; i < 10; ++i) {  // one record every 10 ms: slow, not stuck
    EXPECT_EQ(h.ring.publish(kRecord), PublishStatus::Full);
    std::this_thread::sleep_for(milliseconds(10));
    h.stand_at(uint64_t(5 + i) * kRecord);
    EXPECT_EQ(h.ring.publish(kRecord), PublishStatus::Ok) << i;
  }
  EXPECT_FALSE(h.evicted());
  // Held by it again where the writer last saw it, in a later stretch: a
  // large record does not fit, a small one does (the stretch ends), and
  // after a pause the large one is tried again. A new stretch, a new timer.
  h.stand_at(15 * kRecord);
  EXPECT_EQ(h.ring.publish(8 * kRecord), PublishStatus::Full);
  EXPECT_EQ(h.ring.publish(kRecord), PublishStatus::Ok);
  std::this_thread::sleep_for(timeout + milliseconds(50));
  EXPECT_EQ(h.ring.publish(8 * kRecord), PublishStatus::Full);
  EXPECT_FALSE(h.evicted()) << "evicted at once, with the timer of an earlier stretch";
  // The reader leaves; another (of another process) joins at the oldest
  // event, below where the first one stood, well after the first stretch's
  // watch began.
  h.r.leave();
  std::this_thread::sleep_for(timeout + milliseconds(50));
  RingReader again = h.ring.reader(2);
  ASSERT_TRUE(again.join_earliest());
  ASSERT_TRUE(h.ring.admit(again));
  while (h.ring.publish(kRecord) == PublishStatus::Ok) {
  }
  EXPECT_FALSE(h.evicted()) << "a new reader was evicted at once with the timer of the one before";
  again.leave();
}
