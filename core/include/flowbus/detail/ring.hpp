// The ring protocol: one writer, many readers, one shared-memory byte log.
//
// This file is the whole protocol. Layouts are in layout.hpp; who creates and
// maps the segments is in core/src (segment.cpp, bus.cpp). Three segments per
// ring: data (the writer's), control (cursors: readers write their own slot)
// and the bell (the wake request: anyone who reads may write it).
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
//            Then next_sequence and W are stored and sleepers are woken
//            (end_burst); a burst commits several records this way and does
//            that once, at its end.
// Space:     the writer may write below `limit` and may destroy bytes below
//            limit - capacity. It recomputes limit when it reaches it, and
//            early, after a commit, once half of the run below it is used:
//            limit = min(slowest live cursor + capacity, W + capacity / 4)
//            under Block, W + capacity / 4 under Latest. Before it destroys
//            anything it moves tail_position (the oldest intact record) past
//            the bytes it may destroy, so tail is the retention window. The
//            stored tail never passes the stored W (mid-burst, W is stored
//            first). A record is at most 7/16 of the ring (max_record_length),
//            so a reader that has read everything never holds the writer back.
// Joining:   a reader claims a cursor slot, then re-reads tail (both seq_cst);
//            the writer stores tail, then re-scans cursors (both seq_cst). One
//            of the two sees the other, so a joiner can never sit on bytes the
//            writer is about to reuse. A joiner learns the exact sequence at
//            its position (locate_write_position), so whatever the writer
//            does before its first read is counted, never skipped.
// Eviction:  under Block, a cursor whose owner is dead, or that has not moved
//            forward for the slow-consumer timeout while the writer is blocked
//            on it, is freed by the writer with a CAS that bumps the slot's
//            epoch. The owner's next CAS fails: it learns Evicted, and rejoins
//            at tail. Under Latest the writer frees no slot (a dead owner's
//            is freed by the next bus open's clean-up of dead participants).
// Latest:    readers validate after the fact: read the record, acquire fence,
//            re-read tail; a record below tail may have been torn and is
//            dropped and counted as lost.
// Untrusted: (a topic flag) the reader copies payload and subject out of the
//            ring, runs the check above (Latest) or the eviction check
//            (Block) on the copy, then verifies the copy with the schema; an
//            event that fails is passed, counted and reported (Rejected).
// Waiting:   a reader looks for data at the commit word at its cursor, never
//            at W: the writer stores W on every publish, and a reader polling
//            it would pull that line across on every event (a second line
//            per event on top of the record's own).
// Wake-up:   a reader about to sleep reads the wake word, sets the bell's
//            `wake_request`, then looks at the commit word at its cursor
//            again; after a commit the writer reads wake_request and, if set,
//            clears it, bumps the wake word and wakes everyone asleep on it.
//            A full barrier on each side between store and load (see
//            publish_position) means one of them sees the other: no lost
//            wake-up, and no syscall while nobody sleeps. Reading the wake
//            word first matters: a request erased by the clear of a publish
//            the reader had already seen is then covered by that publish's
//            bump (see begin_sleep). No count: a reader that dies or is
//            evicted asleep costs at most one wasted wake-up; an eviction
//            wakes everyone. The models in tests/model check this. Others
//            may forge the request: a 1 costs the writer a syscall per
//            publish, a 0 erases requests, so where others can write the bell
//            readers sleep in bounded slices (Subscriber::wait).
//
// Internal: publisher.hpp and subscriber.hpp include this so the hot path
// inlines. Not API: user code needs nothing from it, and it may change in any
// release (flowbus/flowbus.hpp is the API).
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <utility>

#include "flowbus/detail/layout.hpp"
#include "flowbus/detail/platform.hpp"
#include "flowbus/event.hpp"
#include "flowbus/schema.hpp"
#include "flowbus/status.hpp"
#include "flowbus/topic.hpp"

namespace flowbus {

namespace detail {

/// Tells the writer whether the owner of a cursor still lives, and, for a
/// cursor reserved for a subscription (CursorSlot::subscription != 0),
/// whether that subscription still exists.
struct LivenessProbe {
  bool (*alive)(const void* context, uint32_t participant, uint32_t participant_epoch, uint32_t subscription) noexcept =
      nullptr;
  const void* context = nullptr;
  bool operator()(uint64_t word, const CursorSlot& slot) const noexcept {
    // Relaxed: the tag was written before the word that the caller acquired.
    return alive == nullptr || alive(context, CursorWord::participant(word), CursorWord::participant_epoch(word),
                                     slot.subscription.load(std::memory_order_relaxed));
  }
};

/// The header fields after the commit word, copied once: shared memory may
/// change under us (a lapping writer, a rogue process), and a copy cannot be
/// re-read by the compiler after it was checked.
struct RecordFields {
  uint32_t size;
  uint32_t offset_and_flags;
  uint64_t sequence;
  uint64_t time_ns;
  uint64_t data_offset() const noexcept { return offset_and_flags & kOffsetMask; }
  uint64_t length() const noexcept { return record_length(data_offset(), size); }
  bool padding() const noexcept { return (offset_and_flags & kFlagPadding) != 0; }
};
static_assert(sizeof(RecordFields) == sizeof(RecordHeader) - 8);

inline RecordFields read_fields(const RecordHeader* rec) noexcept {
  RecordFields f;
  std::memcpy(&f, reinterpret_cast<const uint8_t*>(rec) + 8, sizeof f);
  return f;
}

/// Sane: starts after the header, fits before the end of the lap, known flags,
/// and a padding record runs exactly to the end.
inline bool fields_sane(const RecordFields& f, uint64_t room_to_end) noexcept {
  const uint64_t len = f.length();
  if (f.data_offset() < sizeof(RecordHeader) || len > room_to_end) return false;
  if ((f.offset_and_flags & ~(kOffsetMask | kKnownFlags)) != 0) return false;
  return !f.padding() || len == room_to_end;
}

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
  BellHeader* bell = nullptr;  // readers may write (and truncate) it: mapped through the fault guard
  uint64_t capacity = 0;
  uint64_t mask = 0;
  Policy policy = Policy::Block;
  uint64_t slow_timeout_ns = 0;  // UINT64_MAX: never evict a live reader
  LivenessProbe liveness;
  bool light_fence = false;      // sleepers run a heavy barrier, so we need no full fence (see publish_position)

  uint64_t write_position = 0;  // local copy of header->write_position
  uint64_t next_sequence = 0;
  uint64_t limit = 0;           // cached: may write below it without looking at cursors
  uint64_t next_early_refresh = 0;  // refresh_limit_early looks again once W passes this
  uint64_t tail = 0;            // local copy of header->tail_position

  // The first record start in each sixteenth of the ring (absolute positions,
  // indexed by chunk number mod 16), so advance_tail can find a record
  // boundary without walking old headers, a cache miss each.
  static constexpr uint32_t kChunks = 16;
  uint64_t chunk_first_record[kChunks] = {};
  uint64_t last_record_chunk = UINT64_MAX;

  // Per cursor slot, while the writer is blocked: the cursor's owner, the
  // highest position it was seen at and since when (monotonic ns). Only
  // progress frees the writer, so only a move past that high mark starts a
  // new watch: a reader that toggles fields (its slot epoch) or steps its
  // position back and forth keeps no timer young. A step back within one
  // claim (same slot epoch), or a cursor that is not on a record start, is no
  // reader's doing: evicted at once. A new claim by the same participant below
  // the mark (another subscriber of that process) goes on with the timer: the
  // process has held the writer that long. Watches live for one blocked
  // stretch only (reset once a reserve fits again), so no reader inherits a
  // timer from an earlier stretch; a new owner starts a new watch.
  struct SlotWatch {
    uint64_t owner = 0;
    uint32_t slot_epoch = 0;
    uint64_t high = 0;
    uint64_t since_ns = 0;
  };
  // Per cursor slot: whose liveness was last probed, and when (monotonic ns).
  // A probe reads /proc (four syscalls) and a blocked writer retries often,
  // so an owner is probed at most once per kLivenessProbeIntervalNs. Kept
  // across blocked stretches: a writer held back again and again by a reader
  // that only just keeps up probes it once per interval, not once a stretch.
  struct LivenessProbed {
    uint64_t owner = 0;
    uint64_t at_ns = 0;
  };
  static constexpr uint64_t kLivenessProbeIntervalNs = 1'000'000;
  LivenessProbed probed[kCursorSlots];
  SlotWatch watch[kCursorSlots];
  bool watching = false;  // in a blocked stretch: watch[] is current
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
    const bool w_scribbled = write_position % kRecordAlign != 0;
    if (w_scribbled)  // go on at the next record boundary (a header read at W could run past the segment)
      write_position = (write_position + kRecordAlign - 1) & ~uint64_t(kRecordAlign - 1);
    if (w_scribbled || tail > write_position || tail % kRecordAlign != 0) {
      // Scribbled: keep nothing, and say so, so that readers joining from
      // now on find the ring whole again. seq_cst, as every tail store (the
      // joiner Dekker, see refresh_limit); no cursor can be below it that
      // matters, since we keep nothing below it.
      tail = write_position;
      header->tail_position.store(tail, std::memory_order_seq_cst);
    }
    for (uint64_t walked = 0; walked < capacity;) {
      const RecordHeader* rec = record_at(records, mask, write_position);
      if (rec->commit.load(std::memory_order_acquire) != write_position + 1) break;
      const RecordFields f = read_fields(rec);
      if (!fields_sane(f, capacity - (write_position & mask))) break;
      if (!f.padding()) next_sequence = f.sequence + 1;
      write_position += f.length();
      walked += f.length();
    }
    limit = write_position;  // forces a refresh (and a cursor scan) on the first publish
    store_write_position();
  }

  /// Reserves room for a record with `data_offset` header bytes and `size`
  /// payload bytes. Never blocks. Thread: owner only.
  PublishStatus reserve(uint64_t data_offset, uint64_t size, Reservation& out) noexcept {
    const uint64_t len = record_length(data_offset, size);
    if (len > max_record_length(capacity) || data_offset + size > kOffsetMask) return PublishStatus::TooLarge;
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
    note_record_start(position);
    return PublishStatus::Ok;
  }

  /// Makes the reserved record visible to readers. Thread: owner only.
  void commit(const Reservation& r, uint32_t data_offset_and_flags, uint32_t size, uint64_t time_ns) noexcept {
    commit_record(r, data_offset_and_flags, size, time_ns);
    end_burst(time_ns);
  }

  /// One record of a burst (Publisher::try_publish_batch): readers polling its
  /// commit word see it at once, but W, the wake-up of sleepers and the
  /// prefetch wait for end_burst() after the burst's last record. Recovery
  /// already walks records committed above the stored W (a crash between the
  /// two), so a burst needs nothing new from readers. Thread: owner only.
  void commit_record(const Reservation& r, uint32_t data_offset_and_flags, uint32_t size, uint64_t time_ns) noexcept {
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
  }

  /// After a burst's last record (or a single commit): publishes W and wakes sleepers.
  void end_burst(uint64_t time_ns) noexcept {
    publish_position(time_ns);
    // Ask for the next lines in exclusive state now, while readers handle this
    // event, so the next commit's stores (the zeroed commit word above all,
    // which the release store must wait for) do not stall on a line last
    // touched a lap ago. Not W's own line: a reader polls it. (Measured:
    // 64 B round trip p50 1.36x -> 1.16x floor, p99 900 -> 600 ns.)
    __builtin_prefetch(records + ((write_position + 64) & mask), 1);
    __builtin_prefetch(records + ((write_position + 128) & mask), 1);
    refresh_limit_early();
  }

  /// Stores next_sequence, then W.
  void store_write_position() noexcept {
    // Release, and before W: a joiner that acquires a next_sequence stored
    // after W also sees the records committed before it (see
    // RingReader::locate_write_position), and a crash between the two stores
    // is recoverable (recover() walks forward from W).
    header->next_sequence.store(next_sequence, std::memory_order_release);
    // Release: tools, joiners and look_for_damage acquire W; nobody polls it.
    header->write_position.store(write_position, std::memory_order_release);
  }

  /// Bookkeeping after a commit, and the wake-up of sleeping readers.
  void publish_position(uint64_t time_ns) noexcept {
    header->last_publish_ns.store(time_ns, std::memory_order_relaxed);  // tools only
    store_write_position();
    // The wake-up Dekker: we stored the commit word, then load wake_request;
    // a sleeper stores wake_request, then re-reads the commit word at its
    // cursor (RingReader::begin_sleep, has_data). Without a barrier our load
    // could pass the store (StoreLoad) and both sides miss each other: a
    // lost wake-up.
    if (light_fence) {
      // Asymmetric: the sleeper runs membarrier(GLOBAL_EXPEDITED) between its
      // request and its re-read, which puts a full barrier into this thread
      // wherever it is; so a compiler fence here is enough, and publishing
      // costs no fence at all.
      std::atomic_signal_fence(std::memory_order_seq_cst);
    } else {
      // Symmetric: a seq_cst fence on each side (the sleeper's is in
      // begin_sleep). If ours comes first in the fences' total order the
      // sleeper sees the commit, otherwise we see its request.
      std::atomic_thread_fence(std::memory_order_seq_cst);
    }
    // Relaxed, and the load alone while nobody sleeps: the fence above orders
    // it. A clear may erase a request posted between our load and our store;
    // that sleeper read the wake word before posting (begin_sleep), so the
    // bump below, which follows our clear, still changes the word under it.
    if (bell->wake_request.load(std::memory_order_relaxed) != 0) [[unlikely]] {
      bell->wake_request.store(0, std::memory_order_relaxed);
      wake_readers();
    }
  }

  void wake_readers() noexcept {
    // Release: a woken reader re-reads positions anyway; changing the word
    // makes a reader about to sleep on the old value return at once.
    control->wake_word.fetch_add(1, std::memory_order_release);
    futex_wake_all(&control->wake_word);
  }

 private:
  // log2 of a chunk's size (capacity is a power of two of at least 4 KiB).
  uint32_t chunk_shift() const noexcept { return uint32_t(__builtin_ctzll(capacity / kChunks)); }

  void note_record_start(uint64_t position) noexcept {
    // A shift, not a division: a 64-bit div was a third of a publish.
    const uint64_t chunk = position >> chunk_shift();
    if (chunk == last_record_chunk) return;
    last_record_chunk = chunk;
    chunk_first_record[chunk % kChunks] = position;
  }

  void write_padding(uint64_t position, uint64_t padding) noexcept {
    note_record_start(position);
    auto* rec = record_at(records, mask, position);
    rec->size = uint32_t(padding - sizeof(RecordHeader));
    rec->offset_and_flags = uint32_t(sizeof(RecordHeader)) | kFlagPadding;
    rec->sequence = next_sequence;  // the sequence of the record after it
    rec->time_ns = 0;
    // The record after the padding starts the next lap at offset 0; zero its
    // commit word first (relaxed: published by the release store below).
    record_at(records, mask, position + padding)->commit.store(0, std::memory_order_relaxed);
    // SYNC POINT: as in commit(): readers acquire this and then skip the padding.
    rec->commit.store(position + 1, std::memory_order_release);
    write_position = position + padding;
  }

  /// Slowest owned cursor, or UINT64_MAX when there is none. When
  /// `blocked_below` is set, frees the cursors below it whose owner is dead,
  /// that have made no progress for the slow-consumer timeout, or that no
  /// reader could have written (see SlotWatch).
  uint64_t slowest_cursor(uint64_t blocked_below, uint64_t now_ns, std::memory_order order) noexcept {
    uint64_t slowest = UINT64_MAX;
    for (uint32_t i = 0; i < kCursorSlots; ++i) {
      CursorSlot& slot = control->slots[i];
      // Acquire (at least): pairs with the reader's release CAS when it moves
      // its cursor, so its reads of the bytes it passed happen before we reuse them.
      const uint64_t word = slot.word.load(order);
      if (!CursorWord::owned(word)) {
        if (blocked_below != 0) watch[i] = {};  // the next owner starts afresh
        continue;
      }
      const uint64_t position = CursorWord::position(word, write_position);
      if (position > write_position) continue;  // a lying cursor cannot hold us back
      if (blocked_below != 0 && position < blocked_below && policy == Policy::Block) {
        if (!progressing(i, word, position, now_ns) || !owner_alive(i, word, slot, now_ns)) {
          if (evict(slot, word)) {
            watch[i] = {};
            continue;
          }
        }
      }
      slowest = std::min(slowest, position);
    }
    return slowest;
  }

  /// Whether cursor slot `i`, holding the writer back at `position`, may keep
  /// doing so (see SlotWatch).
  bool progressing(uint32_t i, uint64_t word, uint64_t position, uint64_t now_ns) noexcept {
    SlotWatch& w = watch[i];
    const uint64_t owner = uint64_t(CursorWord::participant(word)) << 8 | CursorWord::participant_epoch(word);
    const uint32_t slot_epoch = CursorWord::epoch(word);
    // Our own records: the commit word of a record start below W is its position + 1.
    // At or above tail only (below it, a joiner about to move up may stand on old bytes).
    if (position >= tail && position != write_position &&
        record_at(records, mask, position)->commit.load(std::memory_order_relaxed) != position + 1)
      return false;
    if (w.since_ns == 0 || owner != w.owner || position > w.high) {
      w = {owner, slot_epoch, position, now_ns};
      return true;
    }
    if (position < w.high && slot_epoch == w.slot_epoch) return false;  // stepped back within one claim
    w.slot_epoch = slot_epoch;
    return slow_timeout_ns == UINT64_MAX || now_ns - w.since_ns < slow_timeout_ns;
  }

  /// Whether the owner of cursor slot `i` lives. A new owner is probed at
  /// once; the same owner again only once kLivenessProbeIntervalNs has passed
  /// since its last probe (so one that dies is found within about that).
  bool owner_alive(uint32_t i, uint64_t word, const CursorSlot& slot, uint64_t now_ns) noexcept {
    const uint64_t owner = word & ~CursorWord::kUnitsMask;  // slot epoch and participant
    LivenessProbed& p = probed[i];
    if (p.owner == owner && now_ns - p.at_ns < kLivenessProbeIntervalNs) return true;
    p = {owner, now_ns};
    return liveness(word, slot);
  }

  bool evict(CursorSlot& slot, uint64_t word) noexcept {
    uint64_t expected = word;
    // acq_rel: acquire pairs with the owner's last release CAS (we are about to
    // reuse what it read); release publishes the free slot to claimers. If the
    // owner moved meanwhile the CAS fails and the cursor stays.
    if (!slot.word.compare_exchange_strong(expected, CursorWord::freed(word), std::memory_order_acq_rel)) return false;
    slot.evictions.fetch_add(1, std::memory_order_relaxed);  // statistics only
    // Wake it, in case it sleeps: it would otherwise sleep through its
    // eviction (its cursor's commit word can still read 0). We cannot tell
    // whether it does, and evictions are rare: everyone asleep is woken.
    wake_readers();
    ++evictions;
    return true;
  }

  /// After a commit, while readers handle it: once half the run below limit
  /// is used, moves limit on now rather than in the next reserve, where the
  /// cursor scans, the fence and the miss on a reader's cursor line would
  /// delay the next event. At most once per sixteenth of the ring written, so
  /// a writer held back by a slow reader does not scan on every publish. It
  /// evicts nobody: the slow-consumer watch starts only when a reserve is
  /// really blocked.
  void refresh_limit_early() noexcept {
    if (limit - write_position >= capacity / 8 || write_position < next_early_refresh) return;
    next_early_refresh = write_position + capacity / 16;
    (void)refresh_limit(write_position + kRecordAlign, /*watch_stuck=*/false);
  }

  /// Recomputes limit so that needed_end fits, if the readers allow it. With
  /// `watch_stuck`, the reserve is blocked: readers holding needed_end back
  /// are watched, and evicted when dead or stuck for the slow-consumer timeout.
  bool refresh_limit(uint64_t needed_end, bool watch_stuck = true) noexcept {
    const uint64_t run = std::max(capacity / 4, needed_end - write_position);
    uint64_t wanted = write_position + run;
    if (policy == Policy::Block) {
      const uint64_t blocked_below = watch_stuck && needed_end > capacity ? needed_end - capacity : 0;
      if (blocked_below != 0 && !watching) {
        for (SlotWatch& w : watch) w = {};  // a new blocked stretch: no timer carries over
        watching = true;
      }
      const uint64_t now = blocked_below != 0 ? monotonic_now_ns() : 0;
      const uint64_t slowest = slowest_cursor(blocked_below, now, std::memory_order_acquire);
      if (slowest != UINT64_MAX) wanted = std::min(wanted, slowest + capacity);
    }
    if (wanted < needed_end) return false;
    advance_tail(wanted > capacity ? wanted - capacity : 0);
    // Dekker with joining readers: tail was stored seq_cst; the fence keeps
    // the re-scan below from being satisfied before that store is visible
    // (store-buffering). A reader that claimed a slot below the new tail
    // before our store is seen here; one that claims later sees the new tail.
    if (policy == Policy::Block) {
      std::atomic_thread_fence(std::memory_order_seq_cst);
      const uint64_t slowest = slowest_cursor(0, 0, std::memory_order_seq_cst);
      if (slowest != UINT64_MAX) wanted = std::min(wanted, slowest + capacity);
      if (wanted < needed_end) return false;
    }
    limit = wanted;
    watching = false;                                       // not blocked any more
    header->limit.store(limit, std::memory_order_relaxed);  // tools only
    return true;
  }

  /// Moves tail to a record boundary at or above `bound` and publishes it
  /// before any byte below it is reused. The boundary comes from the chunk
  /// notes, so it may lie up to about two chunks above the first one: tail
  /// then under-states what is intact (a Latest reader there skips records
  /// that were still whole, and counts them lost), never over-states it.
  void advance_tail(uint64_t bound) noexcept {
    if (tail >= bound) return;
    // The first noted record start at or above bound (at most a sixteenth of
    // the ring further); entries from an older lap lie below bound.
    const uint32_t shift = chunk_shift();
    for (uint64_t chunk = bound >> shift; (chunk << shift) < write_position; ++chunk) {
      const uint64_t start = chunk_first_record[chunk % kChunks];
      if (start >= bound && start <= write_position && (start >> shift) == chunk) {
        tail = start;
        break;
      }
    }
    // No note (a restart, or records longer than a chunk): walk the headers.
    while (tail < bound && tail < write_position) {
      const RecordFields f = read_fields(record_at(records, mask, tail));
      if (!fields_sane(f, capacity - (tail & mask))) {
        tail = std::min(bound, write_position);  // our own records were scribbled on: give them up
        break;
      }
      tail += f.length();
    }
    // tail never passes the stored W, or a reader would take the ring for
    // damaged (tail > W) and recover() would rewind it. In a long burst W is
    // stored only at its end while tail moves in reserve: store W now (every
    // record below our write_position is committed, so this is a W like any).
    if (tail > header->write_position.load(std::memory_order_relaxed)) store_write_position();
    // seq_cst: the store half of the joiner Dekker (see refresh_limit). The
    // release fence after it pairs with a Latest reader's acquire fence: a
    // reader that sees bytes we write after this point also sees this tail.
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
  BellHeader* bell = nullptr;  // others may write (and truncate) it: mapped through the fault guard
  CursorLine* line = nullptr;  // our position on this ring in our own reader segment; null: none
  uint64_t capacity = 0;  // validated when the segment was opened: never re-read from shared memory
  uint64_t mask = 0;
  Policy policy = Policy::Block;
  const RingContext* context = nullptr;
  uint32_t participant = 0;
  uint32_t participant_epoch = 0;
  uint32_t ring_index = 0;

  int slot = -1;             // our cursor slot, -1 when we hold none
  uint64_t cursor_word = 0;  // what we last stored in it
  uint64_t position = 0;     // start of our next record
  uint64_t published = 0;    // the position stored in cursor_word
  // Mirroring: the cursor the writer sees stays at `hold` (the last position
  // a peer acknowledged) while `position` reads ahead. UINT64_MAX: no hold.
  // Under Block the bytes in [hold, W) stay intact, so rewind() may go back.
  uint64_t hold = UINT64_MAX;
  uint64_t expected_sequence = 0;
  bool sequence_known = false;
  bool quarantined = false;
  bool evicted_pending = false;     // report Evicted on the next read
  uint32_t empty_peeks = 0;
  bool suspect_damage = false;      // look for damage at the next empty read, not the 64th
  uint64_t missed = 0;              // events skipped, not yet reported
  // Untrusted topics (null otherwise): each event is copied to `copy` (the
  // subscriber's, at least max_record_length(capacity) bytes, allocated when
  // the ring was attached) and handed over only if `verifier` accepts the copy.
  uint8_t* copy = nullptr;
  const SchemaCodec* verifier = nullptr;
  uint64_t rejected_unreported = 0;  // refused events not yet reported (Rejected)
  uint64_t rejected = 0;             // refused events since attached

  static const RecordHeader* record_at(const uint8_t* records, uint64_t mask, uint64_t p) noexcept {
    return reinterpret_cast<const RecordHeader*>(records + (p & mask));
  }

  /// Claims a free cursor slot at `at`, then moves it up to tail if the
  /// writer may already reuse those bytes. False when no slot could be had.
  /// A position off the record grid (the header was scribbled on) joins
  /// quarantined: the first peek reports Corrupt.
  bool join_at(uint64_t at) noexcept {
    if (at % kRecordAlign != 0) {
      quarantined = true;
      return true;
    }
    for (uint32_t i = 0; i < kCursorSlots; ++i) {
      CursorSlot& s = control->slots[i];
      uint64_t word = s.word.load(std::memory_order_relaxed);
      if (CursorWord::owned(word)) continue;
      const uint64_t mine = CursorWord::pack(CursorWord::epoch(word) + 1, participant, participant_epoch, at);
      // A slot once reserved for a subscription keeps its tag when freed: a
      // cursor we claim ourselves carries none, so nobody takes it for theirs.
      // (Tags are written only before a ring is known to readers: no race.)
      s.subscription.store(0, std::memory_order_relaxed);
      // seq_cst: the claim half of the joiner Dekker (see the writer's refresh_limit).
      if (!s.word.compare_exchange_strong(word, mine, std::memory_order_seq_cst)) continue;
      // Tools only. The event clock, not clock_gettime: this also makes a
      // subscribing process learn the TSC rate now, not mid-stream.
      s.last_moved_ns.store(unix_now_ns(), std::memory_order_relaxed);
      slot = int(i);
      cursor_word = mine;
      position = published = at;
      if (hold != UINT64_MAX && hold < at) hold = at;  // a rejoin after eviction: what we held is gone
      if (catch_up_with_tail()) return true;
      leave();
      return false;
    }
    return false;
  }

  /// Takes over cursor slot `index`, which the ring's creator reserved for
  /// us at the ring's start (`word`, read with acquire). Under Block it held
  /// everything since; under Latest the first read counts what was lapped.
  void adopt(int index, uint64_t word, uint64_t first_sequence) noexcept {
    slot = index;
    cursor_word = word;
    position = published = CursorWord::position(word, header->write_position.load(std::memory_order_acquire));
    expected_sequence = first_sequence;
    sequence_known = first_sequence != UINT64_MAX;
  }

  /// Joins a ring that was created after we subscribed but holds no cursor
  /// for us (its creator did not see us, or our reserved cursor was
  /// evicted): at its oldest event, expecting its first sequence, so that
  /// whatever was overwritten before we came is counted, not skipped.
  bool join_from_start(uint64_t first_sequence) noexcept {
    if (!join_at(header->tail_position.load(std::memory_order_acquire))) return false;
    expected_sequence = first_sequence;
    sequence_known = first_sequence != UINT64_MAX;
    return true;
  }

  /// Joins at the write position, knowing the sequence expected there.
  bool join_latest() noexcept {
    uint64_t at = 0;
    sequence_known = locate_write_position(at);
    if (!join_at(at)) return false;
    if (position == at || quarantined) return true;
    // The writer moved tail past `at` before our claim took hold: join at
    // the write position again (now held by our cursor), so the events in
    // between count as before our join, not as lost.
    sequence_known = locate_write_position(at);
    if (at % kRecordAlign == 0 && at > position) {
      position = at;
      (void)store_cursor();  // if the slot was taken from us meanwhile, the first read finds out
    }
    return true;
  }
  /// Joins at tail, and learns the sequence there, so that a writer lapping
  /// us before our first read is counted as a loss, not skipped silently.
  bool join_earliest() noexcept {
    sequence_known = false;
    if (!join_at(header->tail_position.load(std::memory_order_acquire))) return false;
    if (quarantined) return true;  // off the record grid: the first peek says Corrupt
    for (int round = 0; round < 100; ++round) {
      const RecordHeader* rec = record_at(records, mask, position);
      // Acquire: pairs with the writer's release store of commit (as in peek).
      if (rec->commit.load(std::memory_order_acquire) == position + 1) {
        const uint64_t sequence = read_fields(rec).sequence;  // padding carries the next record's
        if (still_valid_at(position)) {
          expected_sequence = sequence;
          sequence_known = true;
          return true;
        }
      } else {
        // Nothing committed here: either we are at the write position, or
        // (Latest) the record was overwritten before we looked.
        uint64_t at = 0;
        if (locate_write_position(at) && at == position) {
          sequence_known = true;
          return true;
        }
      }
      // Lapped while we looked: move up to tail and look there.
      const uint64_t tail = header->tail_position.load(std::memory_order_acquire);
      if (tail % kRecordAlign != 0) break;
      position = std::max(position, tail);
    }
    // The writer laps us faster than we can look: start at the write position
    // instead, with its sequence known, so nothing after it goes uncounted.
    uint64_t at = 0;
    sequence_known = locate_write_position(at);
    if (at % kRecordAlign != 0) return true;  // scribbled: peek finds out
    position = std::max(position, at);
    (void)store_cursor();  // if the slot was taken from us meanwhile, the first read finds out
    return true;
  }

  /// The write position, and in expected_sequence the sequence of the record
  /// that is (or will be) there. False if the writer lapped us 100 times
  /// while we looked (then the sequence is unknown and the first read decides).
  ///
  /// Why it is exact: the writer stores next_sequence (release), then W. We
  /// load W, then next_sequence (acquire): that sequence belongs to the same
  /// store of W, or to a later one. If later, the records committed before it
  /// include the one at W, so its commit word is visible to us: then we take
  /// that record's own sequence. If the commit word at W is still 0, the
  /// sequence we loaded is W's own. Anything else means the bytes at W were
  /// reused (a lap): look again.
  bool locate_write_position(uint64_t& at) noexcept {
    for (int i = 0; i < 100; ++i) {
      at = header->write_position.load(std::memory_order_acquire);
      if (at % kRecordAlign != 0) return false;  // scribbled: join_at quarantines us
      const uint64_t sequence = header->next_sequence.load(std::memory_order_acquire);
      const RecordHeader* rec = record_at(records, mask, at);
      // Acquire: pairs with the writer's release store of commit.
      const uint64_t commit = rec->commit.load(std::memory_order_acquire);
      if (commit == at + 1) {
        expected_sequence = read_fields(rec).sequence;  // padding carries the next record's
      } else if (commit == 0) {
        expected_sequence = sequence;
      } else {
        continue;
      }
      if (still_valid_at(at)) return true;  // not lapped while we looked
    }
    return false;
  }

  void leave() noexcept {
    if (line != nullptr) {
      // Release, as below. Then the line is free for the reader's next ring.
      line->position.store(kLineLeft, std::memory_order_release);
      line->publisher_id.store(0, std::memory_order_release);
      line = nullptr;
    }
    if (slot < 0) return;
    uint64_t expected = cursor_word;
    // Release: our reads of the ring happen before anyone reuses the slot's
    // bytes. A failure means the writer evicted us: the slot is not ours.
    (void)control->slots[slot].word.compare_exchange_strong(expected, CursorWord::freed(cursor_word),
                                                            std::memory_order_release, std::memory_order_relaxed);
    slot = -1;
  }

  /// Looks at the record at our cursor; Ok fills `out`. The cursor does not
  /// move until release(). Untrusted topics: Ok only for an event whose copy
  /// verified; Rejected for one that did not (the cursor moved past it).
  /// Thread: owner only.
  ReadStatus peek(Event& out) noexcept {
    // The one cost an untrusted topic adds to trusted ones: this branch.
    if (verifier == nullptr) [[likely]]
      return peek_record<false>(out);
    return peek_record<true>(out);
  }

  /// Moves past `event`. Evicted if our slot was freed meanwhile: the bytes of
  /// `event` may have been reused while they were read.
  ReadStatus release(const Event& event) noexcept { return move_past(event.next_position_, event.sequence_); }

  /// Hands over the count of refused events not yet reported.
  uint64_t take_rejected() noexcept { return std::exchange(rejected_unreported, 0); }

  /// Moves the cursor past the record at `next_position` whose sequence is `sequence`.
  ReadStatus move_past(uint64_t next_position, uint64_t sequence) noexcept {
    position = next_position;
    expected_sequence = sequence + 1;
    sequence_known = true;
    // Publishing once per eighth of a ring (and before sleeping) is enough,
    // with no CAS per event: a reader that has read everything is then at
    // most an eighth behind in the writer's eyes, and the largest record
    // (with its padding) fits in the other seven (max_record_length).
    if (position - published >= capacity / 8) {
      if (store_cursor()) return ReadStatus::Ok;
    } else if (policy == Policy::Latest || still_owned()) {
      return ReadStatus::Ok;
    }
    rejoin_after_eviction();
    return ReadStatus::Evicted;
  }

  /// Mirroring: the writer may reuse what lies before `next_position` (a
  /// peer holds those events now). Publishes it at once: acks come per batch.
  void acknowledge(uint64_t next_position) noexcept {
    if (hold == UINT64_MAX || next_position <= hold || next_position > position) return;
    hold = next_position;
    publish_progress();
  }
  /// Mirroring: reads again from the last acknowledged position (after a
  /// lost connection). The events there are intact: our cursor held them.
  void rewind() noexcept {
    if (hold == UINT64_MAX || hold >= position) return;
    position = hold;
    sequence_known = false;  // the record there tells
  }

  /// Latest policy: true if the bytes at `at` were not overwritten yet.
  bool still_valid_at(uint64_t at) const noexcept {
    // Pairs with the writer's release fence after its tail store: if what we
    // read was written after that fence, this load sees the new tail.
    std::atomic_thread_fence(std::memory_order_acquire);
    return at >= header->tail_position.load(std::memory_order_relaxed);
  }

  /// Hands over the count of events skipped since the last call, and adds it
  /// to our slot's loss counter for tools (a rare path: only after a loss).
  uint64_t take_missed() noexcept {
    const uint64_t n = missed;
    missed = 0;
    if (n != 0 && slot >= 0) control->slots[slot].losses.fetch_add(n, std::memory_order_relaxed);  // statistics only
    return n;
  }

  /// True if something may be readable (for waiting). Looks at the line the
  /// next read needs anyway, the commit word at our cursor.
  bool has_data() const noexcept {
    if (evicted_pending || rejected_unreported != 0) return true;  // the next read reports it
    // Acquire: the load half of the wake-up Dekker (the fence before it is in
    // begin_sleep); pairs with the writer's release store of commit.
    const uint64_t commit = record_at(records, mask, position)->commit.load(std::memory_order_acquire);
    if (commit == position + 1) return true;  // the record at our cursor is there
    // Evicted (our word changed): the next read says so. Relaxed: our own
    // line, and only read here when there is nothing to read.
    if (slot >= 0 && control->slots[slot].word.load(std::memory_order_relaxed) != cursor_word) return true;
    // 0: the write frontier. The writer zeroes the commit word after each
    // record before it commits that record, and we got here by reading that
    // record (or joined at W, stored after it), so a stale word from an
    // older lap is never seen here. Under Latest it may be the frontier of a
    // later lap (lapped by whole laps while we slept): tail tells, and moves
    // once per quarter ring, so its line is mostly in our cache.
    if (commit == 0) {
      if (policy != Policy::Latest) return false;
      std::atomic_thread_fence(std::memory_order_acquire);  // as in still_valid_at
      return header->tail_position.load(std::memory_order_relaxed) > position;
    }
    // Anything else: lapped (Latest), evicted and overwritten (Block), or
    // scribbled on. Let read() tell which, unless the writer is right here.
    return header->write_position.load(std::memory_order_acquire) != position;
  }

  /// Before sleeping: W is past our cursor, yet no record is committed at it.
  /// W is stored after the commits it covers, so under Block that is damage
  /// (or our eviction); the next read then looks for damage at once instead
  /// of after 64 empty reads, so a reader that waits is told, not left
  /// waiting for ever. Reads W: only on the way to sleep, never in a spin.
  bool stuck_below_write_position() noexcept {
    if (quarantined || evicted_pending) return false;
    if (header->write_position.load(std::memory_order_acquire) <= position) return false;
    // Acquire: as in peek.
    if (record_at(records, mask, position)->commit.load(std::memory_order_acquire) == position + 1) return false;
    suspect_damage = true;
    return true;
  }

  /// Asks the writer for a wake-up, before our last look (has_data) and the
  /// futex wait on `wake_word_seen`, which this returns. True if the writer
  /// relies on a heavy barrier from us (the caller runs it before that look).
  bool begin_sleep(uint32_t& wake_word_seen) noexcept {
    publish_progress();  // a sleeping reader must not hold the writer back
    // Acquire, and before the request: pairs with the writer's release bump.
    // A writer may clear our request right after we post it (it loaded an
    // older one just before); it bumps the wake word after that clear. Read
    // first, the word cannot already hold that bump, so the futex returns at
    // once. Read after the request, it could, and we would sleep through the
    // publish that came next (a lost wake-up the model in tests/model found:
    // --variant request-first).
    wake_word_seen = control->wake_word.load(std::memory_order_acquire);
    // seq_cst: the store half of our side of the wake-up Dekker (see
    // RingWriter::publish_position). Posted even when already set: the model
    // proves this order, and it runs only on the way to sleep.
    bell->wake_request.store(1, std::memory_order_seq_cst);
    // Our fence of the symmetric Dekker: the request is ordered before the
    // re-read in has_data(). (The light protocol adds membarrier.)
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (still_owned_relaxed()) control->slots[slot].sleeping.store(1, std::memory_order_relaxed);  // tools only
    // Relaxed: a writer that switches protocol stores it before it publishes.
    return header->wake_protocol.load(std::memory_order_relaxed) == kWakeLightFence;
  }
  /// After the futex wait (or instead of it). Nothing to take back: the
  /// writer clears requests itself, and one left over costs it one wake-up.
  void end_sleep() noexcept {
    if (still_owned_relaxed()) control->slots[slot].sleeping.store(0, std::memory_order_relaxed);  // tools only
  }

 private:
  template <bool kVerify>
  ReadStatus peek_record(Event& out) noexcept;

  /// Untrusted topics: the event at our cursor failed verification. It is
  /// counted (here and in our slot, for tools) and passed; never handed over.
  void reject(Event& out, uint64_t next_position, uint64_t sequence) noexcept {
    out.data_ = nullptr;
    out.size_ = 0;
    out.subject_ = {};
    ++rejected_unreported;
    ++rejected;
    if (slot >= 0) control->slots[slot].rejected.fetch_add(1, std::memory_order_relaxed);  // statistics only
    empty_peeks = 0;
    // Evicted meanwhile: evicted_pending is set, and the read reports that first.
    (void)move_past(next_position, sequence);
  }

  /// Publishes our position. False if the slot was taken from us.
  bool store_cursor() noexcept {
    if (slot < 0) return false;
    const uint64_t at = std::min(position, hold);
    const uint64_t next = CursorWord::pack(CursorWord::epoch(cursor_word), participant, participant_epoch, at);
    if (next == cursor_word) return still_owned();
    uint64_t expected = cursor_word;
    // Release, paired with the writer's acquire load of cursors: our reads of
    // the records we pass happen before the writer reuses their bytes. A
    // failure means the writer evicted us (the epoch moved on).
    if (!control->slots[slot].word.compare_exchange_strong(expected, next, std::memory_order_release,
                                                          std::memory_order_relaxed))
      return false;
    cursor_word = next;
    published = at;
    // Tools only (idle time in `flowbus inspect`); once per eighth of a ring,
    // which for 1 MiB events is every other event: the TSC clock, since a
    // clock_gettime here cost 1 MiB round trips ~70 ns of their ~400 (p50).
    const uint64_t now = unix_now_ns();
    control->slots[slot].last_moved_ns.store(now, std::memory_order_relaxed);
    if (line != nullptr) {
      // The same position in our own segment, which only we may write (least
      // privilege, step 5: nobody obeys it yet). Release, as the CAS above:
      // our reads of what we passed happen before a writer that acquires it
      // reuses those bytes.
      line->position.store(at, std::memory_order_release);
      line->last_moved_ns.store(now, std::memory_order_relaxed);  // tools only
    }
    return true;
  }

  bool still_owned() const noexcept {
    // The acquire fence keeps our reads of the record (before) ahead of this
    // load: if we read bytes the writer wrote after evicting us (its CAS
    // comes first), we see the eviction here, so release() reports Evicted.
    // Relaxed load: only asks "was I evicted?"; our own line, rarely touched
    // by others. (On x86 both are free.)
    std::atomic_thread_fence(std::memory_order_acquire);
    return slot >= 0 && control->slots[slot].word.load(std::memory_order_relaxed) == cursor_word;
  }

  /// For tools-only stores into our slot: whether it is still ours (so we
  /// never mark another reader's slot), with no ordering to keep.
  bool still_owned_relaxed() const noexcept {
    return slot >= 0 && control->slots[slot].word.load(std::memory_order_relaxed) == cursor_word;
  }

  void publish_progress() noexcept {
    if (position != published && !store_cursor()) rejoin_after_eviction();
  }

  void quarantine() noexcept {
    quarantined = true;
    leave();  // a reader that stops reading must not hold the writer back
  }

  /// Moves the cursor to tail if the writer may reuse the bytes we sit on.
  bool catch_up_with_tail() noexcept {
    for (int round = 0; round < 1000; ++round) {
      // seq_cst: the load half of the joiner Dekker.
      const uint64_t tail = header->tail_position.load(std::memory_order_seq_cst);
      if (tail % kRecordAlign != 0) return false;
      if (tail <= position) return true;
      position = tail;
      if (hold != UINT64_MAX && hold < tail) hold = tail;  // what lies below tail is gone anyway
      if (!store_cursor()) return false;
    }
    return false;  // the writer outran us a thousand times in a row
  }

  /// We were evicted: take a slot again at our position (moved up to tail).
  /// The sequence we expect is kept, so the next record found tells exactly
  /// how many we missed.
  void rejoin_after_eviction() noexcept {
    evicted_pending = true;
    slot = -1;
    if (!join_at(position)) quarantine();
  }

  /// The record at our cursor is not there. Were we lapped or evicted, or is
  /// there simply nothing new?
  enum class Gap { Retry, Empty, Corrupt };
  Gap no_record_at_cursor() noexcept {
    if (policy == Policy::Block) {
      // A live cursor is never passed by the writer: unless we were evicted,
      // there is nothing new. Our slot word stays in our cache; the writer's
      // lines are not touched on this path.
      if (!still_owned()) {
        rejoin_after_eviction();
        return quarantined ? Gap::Corrupt : Gap::Retry;
      }
      // No need to publish our position here: release() publishes every
      // eighth of a ring, and a writer never needs more than the other seven
      // eighths past a reader that caught up (max_record_length).
    } else {
      // Latest: tail moves once per quarter ring, so this line is mostly cached.
      std::atomic_thread_fence(std::memory_order_acquire);
      const uint64_t tail = header->tail_position.load(std::memory_order_relaxed);
      if (tail > position) {
        if (tail % kRecordAlign != 0) return Gap::Corrupt;  // off the record grid: scribbled
        position = tail;
        return Gap::Retry;
      }
    }
    if ((++empty_peeks & 63) != 0 && !suspect_damage) return Gap::Empty;
    suspect_damage = false;
    return look_for_damage();
  }

  /// Now and then an empty ring is checked: if the writer is past us yet no
  /// commit is at our cursor, the ring was scribbled on.
  Gap look_for_damage() noexcept {
    const uint64_t tail = header->tail_position.load(std::memory_order_acquire);
    const uint64_t write = header->write_position.load(std::memory_order_acquire);
    if (tail % kRecordAlign != 0 || write % kRecordAlign != 0 || tail > write) return Gap::Corrupt;
    // W is stored (release) after the commit it covers, and we acquired it, so
    // once it is past us the commit must be visible, unless the record was
    // overwritten.
    if (write > position && record_at(records, mask, position)->commit.load(std::memory_order_acquire) != position + 1)
      return still_valid_at(position) ? Gap::Corrupt : Gap::Retry;
    return Gap::Empty;
  }

  /// After reading a record that turns out insane: torn by a lap (retry at
  /// tail), or damaged (quarantine). Also true when tail itself is off the
  /// record grid: then we are quarantined, which peek reports.
  bool torn_by_lap() noexcept {
    if (still_valid_at(position)) return false;
    const uint64_t tail = header->tail_position.load(std::memory_order_relaxed);
    if (tail % kRecordAlign != 0) quarantine();  // scribbled: never read at a torn position
    else if (tail > position) position = tail;
    return true;
  }
};

template <bool kVerify>
inline ReadStatus RingReader::peek_record(Event& out) noexcept {
  if constexpr (kVerify) {
    if (rejected_unreported != 0) return ReadStatus::Rejected;  // a Lost or Evicted was reported before it
  }
  for (int round = 0; round < 1024; ++round) {
    if (quarantined) return ReadStatus::Corrupt;  // before the loop, or by torn_by_lap
    const RecordHeader* rec = record_at(records, mask, position);
    // SYNC POINT: pairs with the writer's release store of commit; after it,
    // the header fields and payload of this record are complete.
    if (rec->commit.load(std::memory_order_acquire) != position + 1) {
      const Gap gap = no_record_at_cursor();
      if (gap == Gap::Retry) continue;
      if (gap == Gap::Empty) return ReadStatus::Empty;
      quarantine();
      return ReadStatus::Corrupt;
    }
    const RecordFields f = read_fields(rec);
    const uint64_t room_to_end = capacity - (position & mask);
    if (!fields_sane(f, room_to_end)) {
      if (torn_by_lap()) continue;
      quarantine();
      return ReadStatus::Corrupt;
    }
    if (f.padding()) {
      position += f.length();
      continue;
    }
    const uint8_t* base = reinterpret_cast<const uint8_t*>(rec);
    std::string_view subject;
    if (f.offset_and_flags & kFlagHasSubject) {
      uint16_t n;
      std::memcpy(&n, base + sizeof(RecordHeader), sizeof n);
      if (sizeof(RecordHeader) + 2 + n > f.data_offset()) {
        if (torn_by_lap()) continue;
        quarantine();
        return ReadStatus::Corrupt;
      }
      subject = std::string_view(reinterpret_cast<const char*>(base + sizeof(RecordHeader) + 2), n);
    }
    out.data_ = base + f.data_offset();
    out.size_ = f.size;
    out.sequence_ = f.sequence;
    out.time_ns_ = f.time_ns;
    out.position_ = position;
    out.next_position_ = position + f.length();
    out.subject_ = subject;
    out.context_ = context;
    out.ring_index_ = ring_index;
    if constexpr (kVerify) {
      // Copy first, check second, verify the copy: bytes another process can
      // still change prove nothing once checked (DESIGN.md invariant 8). A
      // flowbus writer never writes a longer record than this (reserve
      // refuses it), so the copy always fits; a longer one is damage.
      if (f.length() > max_record_length(capacity)) {
        if (torn_by_lap()) continue;
        quarantine();
        return ReadStatus::Corrupt;
      }
      std::memcpy(copy, base + f.data_offset(), f.size);
      if (!subject.empty()) std::memcpy(copy + f.size, subject.data(), subject.size());
      out.data_ = copy;
      out.subject_ = std::string_view(reinterpret_cast<const char*>(copy + f.size), subject.size());
      // Is the copy what the writer committed? Latest: the check below, as
      // for every Latest read. Block: the writer reuses these bytes only
      // after evicting us; acquire fence in still_owned keeps the copy
      // before that look, so a copy torn by the writer is never verified.
      if (policy == Policy::Block && !still_owned()) {
        rejoin_after_eviction();
        if (quarantined) return ReadStatus::Corrupt;
        continue;  // read() reports Evicted first
      }
    }
    if (policy == Policy::Latest && torn_by_lap()) continue;  // overwritten while we looked
    if (sequence_known && f.sequence != expected_sequence) {
      if (f.sequence < expected_sequence) {  // sequences only grow: this ring is damaged
        quarantine();
        return ReadStatus::Corrupt;
      }
      missed += f.sequence - expected_sequence;
      expected_sequence = f.sequence;
    }
    if constexpr (kVerify) {
      if (!verifier->verify(copy, f.size)) {
        reject(out, position + f.length(), f.sequence);
        return ReadStatus::Rejected;
      }
    }
    empty_peeks = 0;
    return ReadStatus::Ok;
  }
  return ReadStatus::Empty;  // the writer outruns us: come back on the next read
}

}  // namespace detail
}  // namespace flowbus
