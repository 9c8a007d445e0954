// The ring protocol's interleavings, forced: a RingWriter and RingReaders
// over a ring in ordinary memory, driven step by step where timing alone
// would make a test flaky. Each test pins one fault of issue 16 (the model in
// tests/model/ checks the same steps under every interleaving).
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
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

// One ring's data and control segments in ordinary memory, and its writer.
struct LocalRing {
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
  std::vector<bool> alive = std::vector<bool>(256, true);  // by participant

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
    control->slot_count = kCursorSlots;
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
    writer.liveness = LivenessProbe{[](const void* self, uint32_t participant, uint32_t, uint32_t) noexcept {
                                      return static_cast<const LocalRing*>(self)->alive[participant];
                                    },
                                    this};
    return writer;
  }

  RingReader reader(uint32_t participant = 1) const {
    RingReader r;
    r.header = header;
    r.records = records;
    r.control = control;
    r.bell = bell;
    r.capacity = capacity;
    r.mask = capacity - 1;
    r.policy = policy;
    r.participant = participant;
    r.participant_epoch = 1;
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
// waiter count). Layout 4 has no count and no mark: a sleeper asks for a
// wake-up in one shared word that only the writer clears. Reader A is
// evicted, B takes the slot and sleeps; whatever A does must leave B's
// request and its slot's sleeping flag alone.
TEST(RingProtocolTest, AnEvictedReaderCannotTakeAwayTheWakeRequestOrSlotOfTheNextOwner) {
  LocalRing ring(4096, Policy::Block);
  RingReader a = ring.reader(1);
  ASSERT_TRUE(a.join_latest());
  uint32_t seen_a = 0;
  ASSERT_FALSE(a.begin_sleep(seen_a));  // a sleeps (full fence: returns false)
  EXPECT_EQ(ring.bell->wake_request.load(), 1u);
  // The writer evicts A (as slowest_cursor does for a dead or stuck owner).
  CursorSlot& slot = ring.control->slots[a.slot];
  uint64_t word = slot.word.load();
  ASSERT_TRUE(slot.word.compare_exchange_strong(word, CursorWord::freed(word)));
  RingReader b = ring.reader(2);
  ASSERT_TRUE(b.join_latest());
  ASSERT_EQ(b.slot, a.slot);  // the first free slot: A's
  uint32_t seen_b = 0;
  b.begin_sleep(seen_b);
  EXPECT_EQ(slot.sleeping.load(), 1u);
  a.end_sleep();
  a.leave();
  EXPECT_EQ(ring.bell->wake_request.load(), 1u) << "A took B's wake request away";
  EXPECT_EQ(slot.sleeping.load(), 1u) << "A marked B's slot awake";
  EXPECT_EQ(CursorWord::participant(slot.word.load()), 2u);
  // The next publish grants the request: one wake-up, for both.
  const uint64_t wakes = futex_wake_calls();
  ASSERT_EQ(ring.publish(64), PublishStatus::Ok);
  EXPECT_EQ(futex_wake_calls(), wakes + 1);
  EXPECT_NE(ring.control->wake_word.load(), seen_b) << "B would sleep through the publish";
  EXPECT_EQ(ring.bell->wake_request.load(), 0u);
  b.end_sleep();
  EXPECT_EQ(slot.sleeping.load(), 0u);
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

// Fault 5: a reader evicted while every other slot is taken cannot rejoin.
// begin_sleep used to index slots[-1] then (byte 152 of the control header)
// and count itself in waiters for good; its tools flag would land there now.
TEST(RingProtocolTest, AReaderThatLostItsSlotAndCannotRejoinNeverSleepsOnSlotMinusOne) {
  LocalRing ring(4096, Policy::Block);
  RingReader a = ring.reader(1);
  ASSERT_TRUE(a.join_latest());
  ASSERT_EQ(ring.publish(64), PublishStatus::Ok);
  ASSERT_EQ(drain(a).size(), 1u);  // moved, not yet published (less than an eighth)
  CursorSlot& slot = ring.control->slots[a.slot];
  uint64_t word = slot.word.load();
  ASSERT_TRUE(slot.word.compare_exchange_strong(word, CursorWord::freed(word)));  // evicted
  std::vector<RingReader> others;
  for (uint32_t i = 0; i < kCursorSlots; ++i) {
    others.push_back(ring.reader(2));
    ASSERT_TRUE(others.back().join_latest());
  }
  ring.bell->wake_request.store(1);  // what begin_sleep stores there: the rest must stay as it is
  const std::vector<uint8_t> before(ring.ctl.get(), ring.ctl.get() + offsetof(ControlHeader, slots));
  uint32_t seen = 0;
  EXPECT_FALSE(a.begin_sleep(seen));
  EXPECT_TRUE(a.has_data());  // so wait() does not sleep on it: the next read reports the eviction
  a.end_sleep();
  const std::vector<uint8_t> after(ring.ctl.get(), ring.ctl.get() + offsetof(ControlHeader, slots));
  EXPECT_EQ(before, after) << "the control header was written through slot -1";
  Event e;
  EXPECT_EQ(a.peek(e), ReadStatus::Corrupt);  // no slot to read with: quarantined, reported once
  for (RingReader& o : others) o.leave();
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
  EXPECT_EQ(ring.w.evictions, 0u) << "Latest writers free no slot";
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
  CursorSlot* slot = nullptr;
  uint64_t word = 0;

  explicit HeldWriter(uint64_t slow_timeout_ns) {
    ring.w.slow_timeout_ns = slow_timeout_ns;
    EXPECT_TRUE(r.join_latest());
    slot = &ring.control->slots[r.slot];
    while (ring.publish(kRecord) == PublishStatus::Ok) {
    }
    stand_at(4 * kRecord);
    while (ring.publish(kRecord) == PublishStatus::Ok) {
    }
  }
  /// Writes our own cursor word as a hostile reader would (it may: the slot is its own).
  void stand_at(uint64_t position, uint32_t epoch_step = 0) {
    word = slot->word.load();
    word = CursorWord::pack(CursorWord::epoch(word) + epoch_step, CursorWord::participant(word),
                            CursorWord::participant_epoch(word), position);
    slot->word.store(word);
  }
  bool evicted() const { return slot->word.load() != word; }
};

using std::chrono::milliseconds;
using std::chrono::steady_clock;

}  // namespace

// Before: every move started a new watch, so stepping between two record
// starts (one back, one forward) held the writer for good.
TEST(RingProtocolTest, AReaderThatStepsItsCursorBackAndForthIsEvictedAtOnce) {
  HeldWriter h(UINT64_MAX);  // never evict a live reader for being slow: a step back is not slowness
  bool forward = false;
  for (int i = 0; i < 1000 && !h.evicted(); ++i) {
    h.stand_at(forward ? 4 * kRecord : 3 * kRecord);
    forward = !forward;
    (void)h.ring.publish(kRecord);
  }
  EXPECT_TRUE(h.evicted()) << "a cursor that moved back within its claim still holds the writer";
  EXPECT_EQ(h.ring.w.evictions, 1u);
  EXPECT_EQ(h.ring.publish(kRecord), PublishStatus::Ok);
}

// Stepping back with a new claim each time (the slot's epoch moved on, as a
// new subscriber of the same process would): the timer goes on from the
// highest position, so the reader is evicted after the timeout, not before.
TEST(RingProtocolTest, AReaderThatReclaimsItsSlotBelowWhereItStoodIsEvictedAfterTheTimeout) {
  const auto timeout = milliseconds(50);
  HeldWriter h(uint64_t(std::chrono::nanoseconds(timeout).count()));
  const auto start = steady_clock::now();
  bool forward = false;
  while (!h.evicted() && steady_clock::now() - start < std::chrono::seconds(5)) {
    h.stand_at(forward ? 4 * kRecord : 3 * kRecord, /*epoch_step=*/2);
    forward = !forward;
    const auto before = steady_clock::now();
    if (h.ring.publish(kRecord) == PublishStatus::Ok) break;
    EXPECT_FALSE(h.evicted() && before - start < timeout) << "evicted before its timeout";
    std::this_thread::sleep_for(milliseconds(1));
  }
  EXPECT_TRUE(h.evicted()) << "a reader re-claiming its slot below its mark kept its timer young for 5 s";
  EXPECT_GE(steady_clock::now() - start, timeout);
}

// A cursor between record starts is no reader's: a reader only ever stands
// on a record start. Evicted at once, even with a timeout of never.
TEST(RingProtocolTest, ACursorOffTheRecordStartsIsEvictedAtOnce) {
  HeldWriter h(UINT64_MAX);
  h.stand_at(3 * kRecord + 32);  // inside record 3
  EXPECT_EQ(h.ring.publish(kRecord), PublishStatus::Ok);
  EXPECT_TRUE(h.evicted());
  EXPECT_EQ(h.ring.w.evictions, 1u);
}

// What must still hold: a reader that moves on, however slowly, is never
// evicted; and a reader that holds the writer again, or takes a slot, after an
// earlier blocked stretch starts with a timer of its own (watches do not outlive the stretch).
TEST(RingProtocolTest, AReaderThatMovesOnKeepsItsSlotAndANewOneInheritsNoTimer) {
  const auto timeout = milliseconds(200);
  HeldWriter h(uint64_t(std::chrono::nanoseconds(timeout).count()));
  for (int i = 0; i < 10; ++i) {  // one record every 10 ms: slow, not stuck
    EXPECT_EQ(h.ring.publish(kRecord), PublishStatus::Full);
    std::this_thread::sleep_for(milliseconds(10));
    h.stand_at(uint64_t(5 + i) * kRecord);
    EXPECT_EQ(h.ring.publish(kRecord), PublishStatus::Ok) << i;
  }
  EXPECT_FALSE(h.evicted());
  EXPECT_EQ(h.ring.w.evictions, 0u);
  // Held by it again where the writer last saw it, in a later stretch: a
  // large record does not fit, a small one does (the stretch ends), and
  // after a pause the large one is tried again. A new stretch, a new timer.
  h.stand_at(15 * kRecord);
  EXPECT_EQ(h.ring.publish(8 * kRecord), PublishStatus::Full);
  EXPECT_EQ(h.ring.publish(kRecord), PublishStatus::Ok);
  std::this_thread::sleep_for(timeout + milliseconds(50));
  EXPECT_EQ(h.ring.publish(8 * kRecord), PublishStatus::Full);
  EXPECT_FALSE(h.evicted()) << "evicted at once, with the timer of an earlier stretch";
  // The reader leaves; another of
  // the same participant takes the slot at the oldest event, below where the
  // first one stood, well after the first stretch's watch began.
  const int first_slot = h.r.slot;
  h.slot->word.store(CursorWord::freed(h.word));  // it leaves (we wrote its word: its own leave() would not know it)
  std::this_thread::sleep_for(timeout + milliseconds(50));
  RingReader again = h.ring.reader(1);
  ASSERT_TRUE(again.join_earliest());
  ASSERT_EQ(again.slot, first_slot);
  while (h.ring.publish(kRecord) == PublishStatus::Ok) {
  }
  EXPECT_TRUE(CursorWord::owned(h.ring.control->slots[again.slot].word.load()))
      << "a new reader was evicted at once with the timer of the one before";
  EXPECT_EQ(h.ring.w.evictions, 0u);
  again.leave();
}
