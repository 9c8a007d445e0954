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
  RingHeader* header = nullptr;
  uint8_t* records = nullptr;
  ControlHeader* control = nullptr;
  uint64_t capacity;
  Policy policy;
  RingWriter w;
  std::vector<bool> alive = std::vector<bool>(256, true);  // by participant

  LocalRing(uint64_t capacity_bytes, Policy p) : capacity(capacity_bytes), policy(p) {
    data.reset(static_cast<uint8_t*>(std::aligned_alloc(128, kRecordsOffset + capacity)));
    ctl.reset(static_cast<uint8_t*>(std::aligned_alloc(128, sizeof(ControlHeader))));
    std::memset(data.get(), 0, kRecordsOffset + capacity);
    std::memset(ctl.get(), 0, sizeof(ControlHeader));
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

// Fault 4: a slot's asleep mark belongs to its owner. Reader A is evicted, B
// takes the slot and sleeps; A waking or leaving must not take B out of the
// waiter count (the writer would then skip B's wake-up).
TEST(RingProtocolTest, AnEvictedReaderCannotWakeOrFreeTheNextOwnerOfItsSlot) {
  LocalRing ring(4096, Policy::Block);
  RingReader a = ring.reader(1);
  ASSERT_TRUE(a.join_latest());
  ASSERT_FALSE(a.begin_sleep());  // a sleeps (full fence: returns false)
  EXPECT_EQ(ring.control->waiters.load(), 1u);
  // The writer evicts A (as slowest_cursor does for a dead or stuck owner).
  CursorSlot& slot = ring.control->slots[a.slot];
  uint64_t word = slot.word.load();
  ASSERT_TRUE(slot.word.compare_exchange_strong(word, CursorWord::freed(word)));
  count_out_sleeper(ring.control, word);
  EXPECT_EQ(ring.control->waiters.load(), 0u);
  RingReader b = ring.reader(2);
  ASSERT_TRUE(b.join_latest());
  ASSERT_EQ(b.slot, a.slot);  // the first free slot: A's
  b.begin_sleep();
  EXPECT_EQ(ring.control->waiters.load(), 1u);
  a.end_sleep();
  a.leave();
  EXPECT_EQ(ring.control->waiters.load(), 1u) << "A took B out of the waiter count";
  EXPECT_TRUE(CursorWord::asleep(slot.word.load()));
  EXPECT_EQ(CursorWord::participant(slot.word.load()), 2u);
  b.end_sleep();
  EXPECT_EQ(ring.control->waiters.load(), 0u);
  b.leave();
}

// Found by the model (tests/model, scenario 9): a sleeper the writer evicts
// is woken, and sees that it was evicted although the commit word at its
// cursor reads 0 again (the writer lapped it to the frontier); otherwise it
// slept on, counted nowhere, until its own timeout.
TEST(RingProtocolTest, AnEvictedSleeperIsWokenAndSeesItWasEvicted) {
  LocalRing ring(4096, Policy::Block);
  RingReader a = ring.reader(5);
  ASSERT_TRUE(a.join_latest());
  ASSERT_EQ(ring.publish(1024), PublishStatus::Ok);
  ASSERT_EQ(drain(a).size(), 1u);
  a.begin_sleep();  // publishes its cursor (1024) first
  EXPECT_EQ(ring.control->waiters.load(), 1u);
  EXPECT_FALSE(a.has_data());
  ring.alive[5] = false;  // stopped for good, as far as the writer can tell
  for (int i = 0; i < 3; ++i) ASSERT_EQ(ring.publish(1024), PublishStatus::Ok);
  ASSERT_EQ(ring.publish(1024), PublishStatus::Ok);  // needs A's bytes: evicts it
  EXPECT_EQ(ring.w.evictions, 1u);
  EXPECT_EQ(ring.control->waiters.load(), 0u);
  EXPECT_EQ(ring.records[1024 % 4096], 0);  // the commit word at A's cursor reads 0 again
  EXPECT_TRUE(a.has_data()) << "asleep and evicted, it would sleep on";
  a.end_sleep();
  EXPECT_EQ(ring.control->waiters.load(), 0u);
  Event e;
  (void)a.peek(e);
  EXPECT_TRUE(a.evicted_pending);
}

// Fault 5: a reader evicted while every other slot is taken cannot rejoin.
// begin_sleep used to index slots[-1] then (byte 152 of the control header)
// and count itself in waiters for good.
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
  const std::vector<uint8_t> before(ring.ctl.get(), ring.ctl.get() + offsetof(ControlHeader, slots));
  EXPECT_FALSE(a.begin_sleep());
  const std::vector<uint8_t> after(ring.ctl.get(), ring.ctl.get() + offsetof(ControlHeader, slots));
  EXPECT_EQ(before, after) << "the control header was written through slot -1";
  EXPECT_EQ(ring.control->waiters.load(), 0u);
  EXPECT_TRUE(a.has_data());  // so wait() does not sleep on it: the next read reports the eviction
  a.end_sleep();
  EXPECT_EQ(ring.control->waiters.load(), 0u);
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
// asleep must not keep `waiters` up (a futex call on every publish, for good).
TEST(RingProtocolTest, ALatestReaderThatDiedAsleepStopsCostingTheWriterAWakeUp) {
  LocalRing ring(4096, Policy::Latest);
  {
    RingReader r = ring.reader(7);
    ASSERT_TRUE(r.join_latest());
    r.begin_sleep();
    EXPECT_EQ(ring.control->waiters.load(), 1u);
  }  // it dies asleep
  ring.alive[7] = false;
  for (int i = 0; i < 200; ++i) ASSERT_EQ(ring.publish(64), PublishStatus::Ok);  // three ring laps
  EXPECT_EQ(ring.control->waiters.load(), 0u);
  const uint64_t wakes = futex_wake_calls();
  for (int i = 0; i < 200; ++i) ASSERT_EQ(ring.publish(64), PublishStatus::Ok);
  EXPECT_EQ(futex_wake_calls(), wakes);
  // A live sleeper is kept, however long it sleeps.
  RingReader live = ring.reader(8);
  ASSERT_TRUE(live.join_latest());
  live.begin_sleep();
  for (int i = 0; i < 200; ++i) ASSERT_EQ(ring.publish(64), PublishStatus::Ok);
  EXPECT_EQ(ring.control->waiters.load(), 1u);
  EXPECT_TRUE(CursorWord::owned(ring.control->slots[live.slot].word.load()));
  live.end_sleep();
  live.leave();
}
