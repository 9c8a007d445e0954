// The ring protocol: one writer, many readers, one shared-memory byte log.
//
// This file is the whole protocol. Layouts are in layout.hpp; who creates and
// maps the segments is in core/src (segment.cpp, bus.cpp).
//
// Positions are absolute byte counts since the ring was created; a position P
// lives at offset P & mask. The writer owns write_position W; each reader owns
// one cursor slot holding its position C (the start of its next record).
//
// Publish:   reserve(len) -> fill payload -> commit(): header fields, then the
//            next record's commit word is zeroed, then this record's commit
//            word is set to P + 1 with a release store. A reader polls the
//            commit word at its cursor: one cache line carries "is it there?"
//            and the event's header together. The zeroing keeps a stale byte
//            pattern from an older lap from ever passing for a commit.
// Space:     the writer may write below `limit` and may destroy bytes below
//            limit - capacity. It refreshes limit only when it reaches it:
//            limit = min(slowest live cursor + capacity, W + capacity / 4)
//            under Block, W + capacity / 4 under Latest. Before it destroys
//            anything it moves tail_position (the oldest intact record) past
//            the bytes it may destroy, so tail is the retention window.
// Joining:   a reader claims a cursor slot, then re-reads tail (both seq_cst);
//            the writer stores tail, then re-scans cursors (both seq_cst). One
//            of the two sees the other, so a joiner can never sit on bytes the
//            writer is about to reuse.
// Eviction:  under Block, a cursor whose owner is dead, or that has not moved
//            for the slow-consumer timeout while the writer is blocked on it,
//            is freed by the writer with a CAS that bumps the slot's epoch.
//            The owner's next CAS fails: it learns Evicted, and rejoins at tail.
// Latest:    readers validate after the fact: read the record, acquire fence,
//            re-read tail; a record below tail may have been torn and is
//            dropped and counted as lost.
// Wake-up:   after W is stored (seq_cst) the writer reads `waiters` (seq_cst);
//            a reader increments waiters (seq_cst), then re-reads W before it
//            sleeps. One of them sees the other: no lost wake-up, and no
//            syscall while nobody sleeps.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>

#include "flowbus/detail/layout.hpp"
#include "flowbus/detail/platform.hpp"
#include "flowbus/event.hpp"
#include "flowbus/topic.hpp"

namespace flowbus {

/// Result of a publish. Hot path: returned, never thrown.
enum class [[nodiscard]] PublishStatus {
  Ok,
  Full,      ///< Block policy: a live reader has not freed the space yet
  TooLarge,  ///< the event can never fit this ring (more than half its size)
};

/// Result of reading or releasing an event.
enum class [[nodiscard]] ReadStatus {
  Ok,
  Empty,     ///< nothing new
  Evicted,   ///< this reader was evicted (too slow or stopped); `missed` tells how many events
  Lost,      ///< Latest policy: the writer lapped this reader; `missed` tells how many events
  Corrupt,   ///< the ring failed a consistency check; it is quarantined
};

const char* to_string(PublishStatus status) noexcept;
const char* to_string(ReadStatus status) noexcept;

namespace detail {

/// Tells the writer whether the process behind a participant index lives.
struct LivenessProbe {
  bool (*alive)(const void* context, uint32_t participant) noexcept = nullptr;
  const void* context = nullptr;
  bool operator()(uint32_t participant) const noexcept {
    return alive == nullptr || alive(context, participant);
  }
};

inline RecordHeader* record_at(uint8_t* records, uint64_t mask, uint64_t position) noexcept {
  return reinterpret_cast<RecordHeader*>(records + (position & mask));
}

// ===========================================================================
// Writer side. Thread: the publisher's owner only.
// ===========================================================================
struct RingWriter {
  RingHeader* header = nullptr;
  uint8_t* records = nullptr;
  ControlHeader* control = nullptr;
  uint64_t capacity = 0;
  uint64_t mask = 0;
  Policy policy = Policy::Block;
  uint64_t slow_timeout_ns = 0;
  LivenessProbe liveness;

  uint64_t write_position = 0;  // local copy of header->write_position
  uint64_t next_sequence = 0;
  uint64_t limit = 0;           // cached: may write below it without looking at cursors
  uint64_t tail = 0;            // local copy of header->tail_position

  // Per cursor slot: the word last seen and since when (monotonic ns). A word
  // that stays the same while the writer is blocked on it is a stuck reader.
  struct SlotWatch { uint64_t word = 0; uint64_t since_ns = 0; };
  SlotWatch watch[kCursorSlots];
  uint64_t evictions = 0;

  struct Reservation {
    uint8_t* record = nullptr;  // record start; payload goes at record + data_offset
    uint64_t position = 0;
    uint64_t length = 0;        // whole record, header included
  };

  /// Recovers W and the sequence after a restart: walks forward over records
  /// committed after the last stored write_position (a crash between commit
  /// and the store of write_position leaves such records).
  void recover() noexcept {
    write_position = header->write_position.load(std::memory_order_acquire);
    next_sequence = header->next_sequence.load(std::memory_order_relaxed);
    tail = header->tail_position.load(std::memory_order_relaxed);
    for (uint64_t walked = 0; walked < capacity;) {
      RecordHeader* rec = record_at(records, mask, write_position);
      if (rec->commit.load(std::memory_order_acquire) != write_position + 1) break;
      const uint64_t len = record_length(rec->offset_and_flags & kOffsetMask, rec->size);
      if (len == 0 || len > capacity - (write_position & mask)) break;
      if (!(rec->offset_and_flags & kFlagPadding)) next_sequence = rec->sequence + 1;
      write_position += len;
      walked += len;
    }
    limit = write_position;  // forces a refresh (and a cursor scan) on the first publish
    header->next_sequence.store(next_sequence, std::memory_order_relaxed);
    header->write_position.store(write_position, std::memory_order_release);
  }

  /// Reserves room for a record with `data_offset` header bytes and `size`
  /// payload bytes. Never blocks. Thread: owner only.
  PublishStatus reserve(uint64_t data_offset, uint64_t size, Reservation& out) noexcept {
    const uint64_t len = record_length(data_offset, size);
    if (len > capacity / 2 || data_offset > kOffsetMask) return PublishStatus::TooLarge;
    uint64_t position = write_position;
    const uint64_t room_to_end = capacity - (position & mask);
    const uint64_t padding = len > room_to_end ? room_to_end : 0;
    // + kRecordAlign: the next record's commit word is zeroed at commit.
    const uint64_t needed_end = position + padding + len + kRecordAlign;
    if (needed_end > limit && !refresh_limit(needed_end)) return PublishStatus::Full;
    if (padding != 0) {
      write_padding(position, padding);
      position += padding;
    }
    out.record = records + (position & mask);
    out.position = position;
    out.length = len;
    return PublishStatus::Ok;
  }

  /// Makes the reserved record visible to readers. Thread: owner only.
  void commit(const Reservation& r, uint32_t data_offset_and_flags, uint32_t size,
              uint64_t time_ns) noexcept {
    auto* rec = reinterpret_cast<RecordHeader*>(r.record);
    rec->size = size;
    rec->offset_and_flags = data_offset_and_flags;
    rec->sequence = next_sequence;
    rec->time_ns = time_ns;
    // Relaxed is enough: the release store of this record's commit below
    // publishes it, and a reader only looks here after acquiring that commit.
    record_at(records, mask, r.position + r.length)->commit.store(0, std::memory_order_relaxed);
    // SYNC POINT: pairs with the reader's acquire load of commit. Everything
    // written above (payload, header, the next zeroed commit) is visible to a
    // reader that sees P + 1 here; without release it could see a torn record.
    rec->commit.store(r.position + 1, std::memory_order_release);
    ++next_sequence;
    write_position = r.position + r.length;
    publish_position(time_ns);
  }

  /// Writer bookkeeping after a commit, and the wake-up of sleeping readers.
  void publish_position(uint64_t time_ns) noexcept {
    // Relaxed: only read after a crash (recover) or by tools; ordered before
    // write_position's store so a crash between the two is recoverable.
    header->next_sequence.store(next_sequence, std::memory_order_relaxed);
    header->last_publish_ns.store(time_ns, std::memory_order_relaxed);
    // seq_cst, paired with the reader's seq_cst increment of waiters and its
    // re-read of write_position (Dekker): either we see its waiter count, or it
    // sees our new position and does not sleep. Release alone would let the
    // waiters load below move ahead of this store and lose a wake-up.
    header->write_position.store(write_position, std::memory_order_seq_cst);
    if (control->waiters.load(std::memory_order_seq_cst) != 0) wake_readers();
  }

  void wake_readers() noexcept {
    // Release: a woken reader re-reads positions anyway; this just changes the
    // futex word so a reader about to sleep on the old value returns at once.
    control->wake_word.fetch_add(1, std::memory_order_release);
    futex_wake_all(&control->wake_word);
  }

  /// Bytes free for the writer before it would block (Block) or overwrite.
  uint64_t free_bytes() const noexcept { return limit > write_position ? limit - write_position : 0; }

 private:
  void write_padding(uint64_t position, uint64_t padding) noexcept {
    auto* rec = record_at(records, mask, position);
    rec->size = uint32_t(padding - sizeof(RecordHeader));
    rec->offset_and_flags = uint32_t(sizeof(RecordHeader)) | kFlagPadding;
    rec->sequence = next_sequence;
    rec->time_ns = 0;
    // The record after the padding starts the next lap at offset 0; zero its
    // commit word first (relaxed: published by the release store below).
    record_at(records, mask, position + padding)->commit.store(0, std::memory_order_relaxed);
    // SYNC POINT: as in commit(): readers acquire this and then skip the padding.
    rec->commit.store(position + 1, std::memory_order_release);
    write_position = position + padding;
  }

  /// Slowest owned cursor, or UINT64_MAX when there is none. Frees cursors of
  /// dead owners and, when `blocked_below` is set, cursors that block the
  /// writer and have not moved for the slow-consumer timeout.
  uint64_t slowest_cursor(uint64_t blocked_below, uint64_t now_ns) noexcept {
    uint64_t slowest = UINT64_MAX;
    for (uint32_t i = 0; i < kCursorSlots; ++i) {
      CursorSlot& slot = control->slots[i];
      // Acquire: pairs with the reader's release CAS when it moves its cursor,
      // so the reader's reads of the bytes it passed happen before we reuse them.
      const uint64_t word = slot.word.load(std::memory_order_acquire);
      if (!CursorWord::owned(word)) continue;
      const uint64_t position = CursorWord::position(word, write_position);
      if (position > write_position) continue;  // a lying cursor cannot hold us back
      if (blocked_below != 0 && position < blocked_below && policy == Policy::Block) {
        if (watch[i].word != word) watch[i] = {word, now_ns};
        const bool stuck = slow_timeout_ns != UINT64_MAX && now_ns - watch[i].since_ns >= slow_timeout_ns;
        if (stuck || !liveness(CursorWord::participant(word))) {
          evict(slot, word);
          continue;
        }
      }
      slowest = std::min(slowest, position);
    }
    return slowest;
  }

  void evict(CursorSlot& slot, uint64_t word) noexcept {
    const uint64_t freed = CursorWord::pack(CursorWord::epoch(word) + 1, 0, 0);
    uint64_t expected = word;
    // acq_rel: acquire pairs with the owner's last release CAS (we are about to
    // reuse what it read); release publishes the free slot to claimers. If the
    // owner moved meanwhile the CAS fails and the cursor stays.
    if (slot.word.compare_exchange_strong(expected, freed, std::memory_order_acq_rel)) {
      slot.evictions.fetch_add(1, std::memory_order_relaxed);  // statistics only
      ++evictions;
    }
  }

  /// Recomputes limit so that needed_end fits, if the readers allow it.
  bool refresh_limit(uint64_t needed_end) noexcept {
    const uint64_t run = std::max(capacity / 4, needed_end - write_position);
    uint64_t wanted = write_position + run;
    if (policy == Policy::Block) {
      const uint64_t now = monotonic_now_ns();
      const uint64_t slowest = slowest_cursor(needed_end > capacity ? needed_end - capacity : 0, now);
      if (slowest != UINT64_MAX) wanted = std::min(wanted, slowest + capacity);
    }
    if (wanted < needed_end) return false;
    advance_tail(wanted > capacity ? wanted - capacity : 0);
    // Dekker with joining readers: tail was stored seq_cst; now re-scan. A
    // reader that claimed a slot below the new tail before our store is seen
    // here; one that claims after it will see the new tail and jump past it.
    if (policy == Policy::Block) {
      const uint64_t slowest = slowest_cursor(0, 0);
      if (slowest != UINT64_MAX) wanted = std::min(wanted, slowest + capacity);
      if (wanted < needed_end) return false;
    }
    limit = wanted;
    header->limit.store(limit, std::memory_order_relaxed);  // tools only
    return true;
  }

  /// Moves tail to the first record boundary at or above `bound`, walking our
  /// own committed records, and publishes it before any byte below it is reused.
  void advance_tail(uint64_t bound) noexcept {
    if (tail >= bound) return;
    while (tail < bound && tail < write_position) {
      const RecordHeader* rec = record_at(records, mask, tail);
      tail += record_length(rec->offset_and_flags & kOffsetMask, rec->size);
    }
    // seq_cst: the store half of the joiner Dekker (see refresh_limit), and,
    // for Latest readers, the fence-fence pairing: a reader that sees bytes we
    // write after this store sees this tail too (its acquire fence + load).
    header->tail_position.store(tail, std::memory_order_seq_cst);
    std::atomic_thread_fence(std::memory_order_release);
  }
};

// ===========================================================================
// Reader side. Thread: the subscriber's owner only.
// ===========================================================================
struct RingReader {
  const RingHeader* header = nullptr;
  const uint8_t* records = nullptr;
  ControlHeader* control = nullptr;
  uint64_t capacity = 0;
  uint64_t mask = 0;
  Policy policy = Policy::Block;
  const RingContext* context = nullptr;
  uint32_t participant = 0;
  uint32_t ring_index = 0;

  int slot = -1;             // our cursor slot, -1 when we hold none
  uint64_t cursor_word = 0;  // what we last stored in it
  uint64_t position = 0;     // start of our next record
  uint64_t expected_sequence = 0;
  bool sequence_known = false;
  bool sequence_estimated = false;  // expected_sequence may be one too high (set at join)
  bool quarantined = false;
  bool evicted_pending = false;  // report Evicted on the next read
  uint64_t missed = 0;           // events skipped, not yet reported

  static const RecordHeader* record_at(const uint8_t* records, uint64_t mask, uint64_t p) noexcept {
    return reinterpret_cast<const RecordHeader*>(records + (p & mask));
  }

  /// Claims a free cursor slot at `at` (then moves it up to tail if needed).
  /// False when every slot is taken.
  bool join_at(uint64_t at) noexcept {
    for (uint32_t i = 0; i < kCursorSlots; ++i) {
      CursorSlot& s = control->slots[i];
      uint64_t word = s.word.load(std::memory_order_relaxed);
      if (CursorWord::owned(word)) continue;
      const uint64_t mine = CursorWord::pack(CursorWord::epoch(word) + 1, participant, at);
      // seq_cst: the claim half of the joiner Dekker (see the writer's refresh_limit).
      if (!s.word.compare_exchange_strong(word, mine, std::memory_order_seq_cst)) continue;
      s.last_moved_ns.store(monotonic_now_ns(), std::memory_order_relaxed);  // tools only
      slot = int(i);
      cursor_word = mine;
      position = at;
      return catch_up_with_tail();
    }
    return false;
  }

  bool join_latest() noexcept {
    // W first, then the sequence (the writer stores them in the other order),
    // so the estimate is the sequence at W or one above it (see peek).
    const uint64_t at = header->write_position.load(std::memory_order_acquire);
    expected_sequence = header->next_sequence.load(std::memory_order_acquire);
    sequence_known = true;
    sequence_estimated = true;
    return join_at(at);
  }
  bool join_earliest() noexcept {
    sequence_known = false;
    return join_at(header->tail_position.load(std::memory_order_acquire));
  }

  void leave() noexcept {
    if (slot < 0) return;
    uint64_t expected = cursor_word;
    // Release: our reads of the ring happen before anyone reuses the slot's bytes.
    control->slots[slot].word.compare_exchange_strong(
        expected, CursorWord::pack(CursorWord::epoch(cursor_word) + 1, 0, 0), std::memory_order_release);
    slot = -1;
  }

  /// Looks at the record at our cursor; Ok fills `out`. The cursor does not
  /// move until release(). Thread: owner only.
  ReadStatus peek(Event& out) noexcept;

  /// Moves the cursor past `event`. Evicted if our slot was freed meanwhile:
  /// the bytes of `event` may have been reused while they were read.
  ReadStatus release(const Event& event) noexcept {
    position = event.next_position_;
    expected_sequence = event.sequence_ + 1;
    sequence_known = true;
    if (store_cursor()) return ReadStatus::Ok;
    rejoin_after_eviction();
    return ReadStatus::Evicted;
  }

  /// Latest policy: true if the bytes at `at` were not overwritten yet.
  bool still_valid_at(uint64_t at) const noexcept {
    // Pairs with the writer's release fence after its tail store: if what we
    // read was written after that fence, this load sees the new tail.
    std::atomic_thread_fence(std::memory_order_acquire);
    return at >= header->tail_position.load(std::memory_order_relaxed);
  }

  /// True if something may be readable (for waiting).
  bool has_data() const noexcept {
    // seq_cst: the load half of the wake-up Dekker (see publish_position).
    return header->write_position.load(std::memory_order_seq_cst) > position;
  }

 private:
  /// Publishes our position. False if the slot was taken from us.
  bool store_cursor() noexcept {
    if (slot < 0) return false;
    const uint64_t next = CursorWord::pack(CursorWord::epoch(cursor_word), participant, position);
    if (next == cursor_word) {
      // Unchanged, but still check that the slot is ours.
      return control->slots[slot].word.load(std::memory_order_relaxed) == cursor_word;
    }
    uint64_t expected = cursor_word;
    // Release, paired with the writer's acquire load of cursors: our reads of
    // the records we pass happen before the writer reuses their bytes. A
    // failure means the writer evicted us (the epoch moved on).
    if (control->slots[slot].word.compare_exchange_strong(expected, next, std::memory_order_release,
                                                          std::memory_order_relaxed)) {
      cursor_word = next;
      return true;
    }
    return false;
  }

  /// Moves the cursor to tail if the writer may reuse the bytes we sit on.
  bool catch_up_with_tail() noexcept {
    for (int round = 0; round < 1000; ++round) {
      // seq_cst: the load half of the joiner Dekker.
      const uint64_t tail = header->tail_position.load(std::memory_order_seq_cst);
      if (tail <= position) return true;
      note_jump(tail);
      if (!store_cursor()) return false;
    }
    return false;  // the writer outruns us a thousand times in a row
  }

  /// We skip to `tail`: count what we miss by the sequence found there.
  void note_jump(uint64_t tail) noexcept {
    position = tail;
    sequence_estimated = false;
    if (!sequence_known) return;
    uint64_t first = header->next_sequence.load(std::memory_order_acquire);
    const RecordHeader* rec = record_at(records, mask, tail);
    if (rec->commit.load(std::memory_order_acquire) == tail + 1 && !(rec->offset_and_flags & kFlagPadding) &&
        rec->sequence < first)
      first = rec->sequence;
    if (first > expected_sequence) {
      missed += first - expected_sequence;
      expected_sequence = first;
    }
  }

  void rejoin_after_eviction() noexcept {
    evicted_pending = true;
    slot = -1;
    const bool known = sequence_known;
    const uint64_t expected = expected_sequence;
    if (!join_at(position)) {
      quarantined = true;  // no free slot: we cannot read this ring safely any more
      return;
    }
    if (known) sequence_known = true, expected_sequence = std::min(expected_sequence, expected);
  }
};

inline ReadStatus RingReader::peek(Event& out) noexcept {
  if (quarantined) return ReadStatus::Corrupt;
  for (uint64_t skipped = 0; skipped <= capacity;) {
    const RecordHeader* rec = record_at(records, mask, position);
    // SYNC POINT: pairs with the writer's release store of commit; after it,
    // the header fields and payload of this record are complete.
    const uint64_t commit = rec->commit.load(std::memory_order_acquire);
    if (commit != position + 1) {
      // Not written yet at this lap, or we were lapped (Latest) or evicted (Block).
      const uint64_t tail = header->tail_position.load(std::memory_order_acquire);
      const uint64_t write = header->write_position.load(std::memory_order_acquire);
      if (tail > write || write - tail > capacity || tail % kRecordAlign != 0) {
        quarantined = true;
        return ReadStatus::Corrupt;
      }
      if (tail > position) {
        if (policy == Policy::Block && !store_cursor()) {
          rejoin_after_eviction();
          if (quarantined) return ReadStatus::Corrupt;
        }
        note_jump(tail);
        if (slot >= 0 && !store_cursor()) rejoin_after_eviction();
        if (quarantined) return ReadStatus::Corrupt;
        continue;
      }
      // write_position moves after commit (release/seq_cst), so once it is past
      // us the commit must be visible: if it is not, the ring was scribbled on.
      if (write > position && rec->commit.load(std::memory_order_acquire) != position + 1) {
        quarantined = true;
        return ReadStatus::Corrupt;
      }
      return ReadStatus::Empty;
    }
    const uint32_t size = rec->size;
    const uint32_t offset_flags = rec->offset_and_flags;
    const uint64_t data_offset = offset_flags & kOffsetMask;
    const uint64_t room_to_end = capacity - (position & mask);
    const uint64_t len = record_length(data_offset, size);
    bool sane = data_offset >= sizeof(RecordHeader) && len <= room_to_end &&
                (offset_flags & ~(kOffsetMask | kKnownFlags)) == 0;
    if (sane && (offset_flags & kFlagPadding)) sane = len == room_to_end;
    if (!sane) {
      if (policy == Policy::Latest && !still_valid_at(position)) continue;  // torn by a lap: retry
      quarantined = true;
      return ReadStatus::Corrupt;
    }
    if (offset_flags & kFlagPadding) {
      position += len;
      skipped += len;
      continue;
    }
    const uint8_t* base = reinterpret_cast<const uint8_t*>(rec);
    std::string_view subject;
    if (offset_flags & kFlagHasSubject) {
      uint16_t n;
      std::memcpy(&n, base + sizeof(RecordHeader), sizeof n);
      if (sizeof(RecordHeader) + 2 + n > data_offset) {
        if (policy == Policy::Latest && !still_valid_at(position)) continue;
        quarantined = true;
        return ReadStatus::Corrupt;
      }
      subject = std::string_view(reinterpret_cast<const char*>(base + sizeof(RecordHeader) + 2), n);
    }
    const uint64_t sequence = rec->sequence;
    out.data_ = base + data_offset;
    out.size_ = size;
    out.sequence_ = sequence;
    out.time_ns_ = rec->time_ns;
    out.position_ = position;
    out.next_position_ = position + len;
    out.subject_ = subject;
    out.context_ = context;
    out.ring_index_ = ring_index;
    if (policy == Policy::Latest && !still_valid_at(position)) continue;  // torn under us: retry
    if (sequence_estimated && sequence + 1 == expected_sequence) expected_sequence = sequence;
    sequence_estimated = false;
    if (sequence_known && sequence != expected_sequence) {
      if (sequence < expected_sequence) {
        quarantined = true;
        return ReadStatus::Corrupt;
      }
      missed += sequence - expected_sequence;
      expected_sequence = sequence;
    }
    return ReadStatus::Ok;
  }
  quarantined = true;  // a full lap of padding: nothing sane is written here
  return ReadStatus::Corrupt;
}

}  // namespace detail
}  // namespace flowbus
