// The ring protocol: one writer, many readers, one shared-memory byte log.
//
// This file is the whole protocol. Layouts are in layout.hpp; who creates and
// maps the segments is in core/src (segment.cpp, bus.cpp, reader_admission.cpp).
// Three segments per ring, and one per reader: data and control (the
// writer's alone: readers map them read-only), the bell (the wake request and
// the doorbell: anyone who reads may write it, so the writer trusts none of
// it), and each reader's own segment, where only that reader writes its
// position C (the start of its next record) on every ring it reads.
//
// Positions are absolute byte counts since the ring was created; a position P
// lives at offset P & mask. The writer owns write_position W.
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
// Joining:   under Block, a reader stores its position in its line, rings
//            the bell (a slot naming its segment and line, then the `rings`
//            count, seq_cst), then re-reads tail (seq_cst); the writer stores
//            tail (seq_cst), then reads the count, attests each announced
//            segment with the kernel (door.admit), records the reader in an
//            attachment of its own .ctl, and re-scans before it raises its
//            limit. One of the two sees the other, so an honest joiner never
//            sits on bytes the writer is about to reuse. The bell is
//            untrusted, so until a reader finds its attachment it checks
//            every read against the writer's reuse floor (as a Latest reader
//            checks tail): an erased announcement costs a counted loss at
//            worst, never a torn read. A joiner learns the exact sequence at
//            its position (locate_write_position), so whatever the writer
//            does before its first read is counted, never skipped.
// Eviction:  under Block, a reader whose process is dead, that has not moved
//            forward for the slow-consumer timeout while the writer is
//            blocked on it, or whose segment was cut short, is evicted: the
//            writer bumps its attachment's epoch (in .ctl, its own), then
//            reuses bytes only after its next tail store and release fence.
//            The reader checks the epoch after each read (acquire fence
//            first): it learns Evicted, and joins again. Nobody writes
//            anyone else's memory. Under Latest nobody is admitted: readers
//            validate, and their lines are for tools.
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

/// A reader's announcement, copied out of a bell slot: untrusted (anyone who
/// may write the bell may forge one).
struct ReaderAnnouncement {
  uint64_t token = 0;  // the reader segment's token
  uint32_t pid = 0;    // with n: the segment "flowbus.<bus>~r.<pid>.<n>"
  uint32_t n = 0;
  uint32_t line = kNoLine;    // its line for this ring (kLineGivenUp in it: give up the reservation)
  uint32_t subscription = 0;  // adopting (or giving up) the reservation for this tag; 0: a plain join
};

/// A reader the writer admitted, as the writer keeps it: in its own memory,
/// attested by the kernel at admission, never re-read from shared memory
/// (but for the line, which only the reader writes).
struct FollowedReader {
  const CursorLine* line = nullptr;  // in the reader's segment, mapped read-only through the fault guard
  const void* segment = nullptr;     // the door's handle on that mapping
  uint64_t token = 0;
  uint64_t start_time = 0;
  uint32_t pid = 0, uid = 0, n = 0, line_index = 0;
  uint32_t subscription = 0;  // the subscription tag in its segment's header (0: none)
};

/// The writer's way to readers' segments and to the kernel (core/src,
/// reader_admission.cpp): cold paths only, behind function pointers so the
/// protocol here stays free of system calls and tests can stand in for them.
struct ReaderDoor {
  void* context = nullptr;
  /// Attests the segment an announcement names (owner, group, mode, /proc,
  /// token, and the line's ring key unless line is kNoLine) and maps it.
  bool (*admit)(void* context, const ReaderAnnouncement& announcement, FollowedReader& out) noexcept = nullptr;
  /// The writer no longer follows `reader`: its mapping may go.
  void (*release)(void* context, const FollowedReader& reader) noexcept = nullptr;
  /// True once `reader`'s segment was cut short under us (the fault guard repaired a page).
  bool (*damaged)(void* context, const FollowedReader& reader) noexcept = nullptr;
  /// Whether process `pid` (started at `start_time`) lives.
  bool (*alive)(void* context, uint32_t pid, uint64_t start_time) noexcept = nullptr;
  /// Whether subscription `tag`, for which `reservation` was made (its
  /// reader segment: token, pid, n; no line), still exists.
  bool (*subscription_alive)(void* context, const FollowedReader& reservation, uint32_t tag) noexcept = nullptr;
  /// If a reader cut the bell short (our fault guard repaired its page, or
  /// the file is short) or scribbled on its header, makes it whole again;
  /// true when it did: every slot is then looked at again.
  bool (*repair_bell)(void* context) noexcept = nullptr;
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
  ControlHeader* control = nullptr;  // ours alone: readers map it read-only
  BellHeader* bell = nullptr;        // readers may write (and truncate) it: mapped through the fault guard
  uint64_t capacity = 0;
  uint64_t mask = 0;
  Policy policy = Policy::Block;
  uint64_t slow_timeout_ns = 0;  // UINT64_MAX: never evict a live reader
  ReaderDoor door;
  uint64_t publisher_id = 0;  // with ring_slot: the key a reader's line for this ring carries
  uint32_t ring_slot = 0;
  bool light_fence = false;      // sleepers run a heavy barrier, so we need no full fence (see publish_position)

  uint64_t write_position = 0;  // local copy of header->write_position
  uint64_t next_sequence = 0;
  uint64_t limit = 0;               // cached: may write below it without looking at readers
  uint64_t next_early_refresh = 0;  // refresh_limit_early looks again once W passes this
  uint64_t tail = 0;            // local copy of header->tail_position
  uint64_t reuse_floor = 0;     // local copy of header->reuse_floor

  // The first record start in each sixteenth of the ring (absolute positions,
  // indexed by chunk number mod 16), so advance_tail can find a record
  // boundary without walking old headers, a cache miss each.
  static constexpr uint32_t kChunks = 16;
  uint64_t chunk_first_record[kChunks] = {};
  uint64_t last_record_chunk = UINT64_MAX;

  // Our own copy of each attachment (only we write .ctl, so it is exact), and
  // what we keep of its reader: a reader we admitted, or a reservation.
  struct Follow {
    uint64_t state = 0;         // as stored in control->attachments[k].state
    FollowedReader reader;      // admitted: whose line we obey; reserved: whose segment holds the
                                // subscription (no line), whose process must adopt or give it up
    uint32_t subscription = 0;  // reserved: for which subscription tag
    uint64_t held_from = 0;     // reserved: the position it holds us at
  };
  Follow follow[kAttachments];
  uint64_t seen_rings = 0;  // bell->rings when we last answered the bell
  // Per bell slot whose bit in filling_slots is set: since when (monotonic
  // ns) we have seen it neither free nor rung at every answer. Freed once that lasts
  // kBellFillingGraceNs, whatever values it held meanwhile: an honest slot
  // goes from one claim's filling value to another's only through rung and
  // our store of 0 (or our freeing), so a forger who writes a new odd value
  // at every answer, or an even one that is neither, holds it no longer.
  uint64_t filling_since_ns[kBellSlots] = {};
  uint64_t filling_slots = 0;  // bit i: filling_since_ns[i] is running
  // A reader fills a slot in a few stores, but it may be preempted in
  // between for a scheduler's time slice or more: freed after two answers
  // in a row (the rule before), a slot was freed under a live reader under
  // load (TSan's thread stress test lost its announcement, and it lost
  // events, counted). A slot left filling by a dead reader or a forger waits
  // this long; the reader whose slot was freed rings in another one.
  static constexpr uint64_t kBellFillingGraceNs = 100'000'000;
  bool bell_backlog = true;  // rung slots may be left (more than one answer's worth, or a restart)
  // Announcements answered per limit refresh at most: all the bell holds.
  // The joining Dekker protects an honest joiner only if the refresh that
  // sees its ring answers it before raising the limit; one left for later
  // reads with validation, and may lose events (counted) it need not have.
  // Each answer costs system calls (the segment attested and mapped, tens of
  // us), so a flood of forged announcements costs a publish at most 64 of
  // them; most forgeries fail at the first (a name that does not exist).
  static constexpr uint32_t kAnswersPerRefresh = kBellSlots;

  // Per attachment, while the writer is blocked: its reader, the highest
  // position it was seen at and since when (monotonic ns). Only progress
  // frees the writer, so only a move past that high mark starts a new watch:
  // a reader that steps its position back and forth keeps no timer young. A
  // step back within one admission (same epoch), or a position that is not
  // a record start, is no reader's doing: evicted at once. A new admission of
  // the same process below the mark (a rejoin) goes on with the timer: the
  // process has held the writer that long. Watches live for one blocked
  // stretch only (reset once a reserve fits again), so no reader inherits a
  // timer from an earlier stretch; a new reader starts a new watch.
  struct SlotWatch {
    uint64_t owner = 0;
    uint64_t epoch = 0;     // the admission judged now
    uint64_t high = 0;      // the owner's highest position in this watch: only passing it restarts the timer
    uint64_t own_high = 0;  // the highest position of admission `epoch`: below it is a step back
    uint64_t since_ns = 0;
  };
  // Per attachment: whose liveness was last probed, and when (monotonic ns).
  // A probe reads /proc (four syscalls) and a blocked writer retries often,
  // so an owner is probed at most once per kLivenessProbeIntervalNs. Kept
  // across blocked stretches: a writer held back again and again by a reader
  // that only just keeps up probes it once per interval, not once a stretch.
  struct LivenessProbed {
    uint64_t state = 0;
    uint64_t at_ns = 0;
  };
  static constexpr uint64_t kLivenessProbeIntervalNs = 1'000'000;
  LivenessProbed probed[kAttachments];
  SlotWatch watch[kAttachments];
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
    limit = write_position;  // forces a refresh (and a look at readers) on the first publish
    reuse_floor = header->reuse_floor.load(std::memory_order_relaxed);
    if (reuse_floor > write_position) {  // scribbled: a floor is never above W
      reuse_floor = write_position;
      header->reuse_floor.store(reuse_floor, std::memory_order_relaxed);
    }
    store_write_position();
    recover_attachments();
  }

  /// Takes over the attachments an earlier writer of this ring left in .ctl:
  /// a reader it admitted is attested again (its segment reopened; one that
  /// fails, or whose process is gone, is freed), a reservation is kept. The
  /// bell is answered at the first limit refresh. Cold: once per writer.
  void recover_attachments() noexcept {
    for (uint32_t k = 0; k < kAttachments; ++k) {
      Attachment& a = control->attachments[k];
      Follow& f = follow[k];
      f = {};
      // Relaxed: written by an earlier writer of this ring, a process that is
      // gone or handed the ring over; our open of .ctl ordered us after it.
      f.state = a.state.load(std::memory_order_relaxed);
      const uint64_t kind = AttachmentState::kind(f.state);
      if (kind == AttachmentState::kReserved) {
        f.subscription = a.subscription.load(std::memory_order_relaxed);
        f.reader.token = a.token.load(std::memory_order_relaxed);
        f.reader.pid = a.pid.load(std::memory_order_relaxed);
        f.reader.uid = a.uid.load(std::memory_order_relaxed);
        f.reader.n = a.n.load(std::memory_order_relaxed);
        f.reader.line_index = kNoLine;
        f.reader.start_time = a.start_time.load(std::memory_order_relaxed);
        f.held_from = std::min(a.held_from.load(std::memory_order_relaxed), write_position);
        continue;
      }
      if (kind != AttachmentState::kAdmitted) {
        if (kind != AttachmentState::kFree) {
          // Half written by a writer that died (an admission: adoptions
          // stay Reserved while written), or scribbled. An admission cut
          // short was never seen by its reader: clear the token first, so
          // the freed attachment does not name it and it does not take
          // itself for evicted (evicted_unawares). Relaxed: published by
          // drop's release store of the state.
          a.token.store(0, std::memory_order_relaxed);
          drop(k, false);
        }
        continue;
      }
      ReaderAnnouncement again;
      again.token = a.token.load(std::memory_order_relaxed);
      again.pid = a.pid.load(std::memory_order_relaxed);
      again.n = a.n.load(std::memory_order_relaxed);
      again.line = a.line.load(std::memory_order_relaxed);
      // A line past the segment's (kNoLine included) is no reader's: .ctl was scribbled.
      if (again.line >= kReaderLines || door.admit == nullptr || !door.admit(door.context, again, f.reader))
        drop(k, false);
    }
    seen_rings = 0;
    bell_backlog = true;
    // Our predecessor may have died between an admission's store and its
    // announcement: its reader, still joining, looks for it only when the
    // count moves (a repeat of its ring is answered as a no-op).
    announce(false);
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

  /// Slowest position an attachment holds, or UINT64_MAX when there is none.
  /// Frees the attachments of readers that left (or whose line no longer
  /// names this ring). When `blocked_below` is set, evicts the readers below
  /// it whose process is dead, that have made no progress for the
  /// slow-consumer timeout, or that no reader could have put there (see
  /// SlotWatch), and those whose segment was cut short.
  uint64_t slowest_reader(uint64_t blocked_below, uint64_t now_ns, std::memory_order order) noexcept {
    uint64_t slowest = UINT64_MAX;
    for (uint32_t k = 0; k < kAttachments; ++k) {
      Follow& f = follow[k];
      const uint64_t kind = AttachmentState::kind(f.state);
      if (kind == AttachmentState::kFree) {
        if (blocked_below != 0) watch[k] = {};  // the next reader starts afresh
        continue;
      }
      uint64_t position = f.held_from;
      uint64_t owner = uint64_t(f.reader.pid) | 1ull << 32;
      if (kind == AttachmentState::kAdmitted) {
        if (door.damaged != nullptr && door.damaged(door.context, f.reader)) {
          evict(k);  // its segment was cut short: its line reads 0 from now on
          continue;
        }
        // Acquire (at least): pairs with the reader's release store of its
        // position, so its reads of the bytes it passed happen before we
        // reuse them. The key after it (relaxed): the reader stores the key
        // before any position of this ring, and kLineLeft before a new key.
        position = f.reader.line->position.load(order);
        if (position == kLineLeft || position == kLineGivenUp ||
            f.reader.line->publisher_id.load(std::memory_order_relaxed) != publisher_id ||
            f.reader.line->ring_slot.load(std::memory_order_relaxed) != ring_slot) {
          drop(k, false);  // it left this ring
          continue;
        }
        owner = uint64_t(f.reader.pid) | 2ull << 32;
      }
      if (position > write_position) {  // a lie: no reader stands past what we committed
        evict(k);                       // (kept, it would hold an attachment for good)
        continue;
      }
      if (blocked_below != 0 && position < blocked_below && policy == Policy::Block) {
        if (!progressing(k, owner, position, now_ns) || !owner_alive(k, now_ns)) {
          evict(k);
          continue;
        }
      }
      slowest = std::min(slowest, position);
    }
    return slowest;
  }

  /// Whether attachment `k`, holding the writer back at `position`, may keep
  /// doing so (see SlotWatch).
  bool progressing(uint32_t k, uint64_t owner, uint64_t position, uint64_t now_ns) noexcept {
    SlotWatch& w = watch[k];
    const uint64_t epoch = AttachmentState::epoch(follow[k].state);
    // Our own records: the commit word of a record start below W is its position + 1.
    // At or above tail only (below it, a joiner about to move up may stand on old bytes).
    if (position >= tail && position != write_position &&
        record_at(records, mask, position)->commit.load(std::memory_order_relaxed) != position + 1)
      return false;
    if (w.since_ns == 0 || owner != w.owner || position > w.high) {
      w = {owner, epoch, position, position, now_ns};
      return true;
    }
    if (epoch != w.epoch) {  // a new admission of the same process, below its mark: judged from here
      w.epoch = epoch;
      w.own_high = position;
    } else if (position < w.own_high) {
      return false;  // stepped back within one admission
    } else {
      w.own_high = position;
    }
    return slow_timeout_ns == UINT64_MAX || now_ns - w.since_ns < slow_timeout_ns;
  }

  /// Whether the reader of attachment `k` lives (for a reservation: whether
  /// its subscription does). A new one is probed at once; the same one again
  /// only once kLivenessProbeIntervalNs has passed since its last probe (so
  /// one that dies is found within about that).
  bool owner_alive(uint32_t k, uint64_t now_ns) noexcept {
    const Follow& f = follow[k];
    LivenessProbed& p = probed[k];
    if (p.state == f.state && now_ns - p.at_ns < kLivenessProbeIntervalNs) return true;
    p = {f.state, now_ns};
    if (AttachmentState::kind(f.state) == AttachmentState::kAdmitted)
      return door.alive == nullptr || door.alive(door.context, f.reader.pid, f.reader.start_time);
    return door.subscription_alive == nullptr || door.subscription_alive(door.context, f.reader, f.subscription);
  }

  /// Stores attachment `k`'s fields, then its state (release): a reader that
  /// acquires the state sees the fields it names. `adoption`: a reservation
  /// becomes an admission of the same subscription and pid.
  void store_attachment(uint32_t k, bool adoption = false) noexcept {
    Follow& f = follow[k];
    Attachment& a = control->attachments[k];
    // The fields are read seqlock-style (RingReader::find_attachment,
    // evicted_unawares): the state says kWriting while they change, and this
    // fence orders that store before the field stores, so a reader that reads
    // a field stored here, then fences (acquire) and re-reads the state, sees
    // that the state changed. Same epoch: its reader's ownership holds.
    // An adoption changes no field a reader matches a reservation by
    // (subscription, pid), so it stays Reserved meanwhile: killed halfway,
    // our successor keeps the reservation (recovery frees what says
    // kWriting, and its reader, which had adopted it, would be evicted), and
    // finishes the adoption when it answers the slot, still rung.
    if (!adoption) {
      a.state.store(AttachmentState::pack(AttachmentState::epoch(f.state), AttachmentState::kWriting),
                    std::memory_order_relaxed);
      std::atomic_thread_fence(std::memory_order_release);
    }
    // Relaxed, each: published by the release store of the state below.
    a.token.store(f.reader.token, std::memory_order_relaxed);
    a.pid.store(f.reader.pid, std::memory_order_relaxed);
    a.uid.store(f.reader.uid, std::memory_order_relaxed);
    a.n.store(f.reader.n, std::memory_order_relaxed);
    a.line.store(f.reader.line_index, std::memory_order_relaxed);
    a.start_time.store(f.reader.start_time, std::memory_order_relaxed);
    a.subscription.store(f.subscription, std::memory_order_relaxed);
    a.held_from.store(f.held_from, std::memory_order_relaxed);
    a.since_ns.store(unix_now_ns(), std::memory_order_relaxed);  // tools
    a.state.store(f.state, std::memory_order_release);
  }

  /// Frees attachment `k` (its reader left, died, or we evict it): a new
  /// epoch, so its reader's next ownership check fails.
  void drop(uint32_t k, bool eviction) noexcept {
    Follow& f = follow[k];
    if (AttachmentState::kind(f.state) == AttachmentState::kAdmitted && door.release != nullptr)
      door.release(door.context, f.reader);
    // Release: a reader that sees the new epoch is done with the bytes we
    // reuse next (see RingReader::still_owned: its acquire fence, then this
    // word). Fields first: they may be read under the new state.
    const uint64_t state = AttachmentState::pack(AttachmentState::epoch(f.state) + 1, AttachmentState::kFree);
    f = {};
    f.state = state;
    Attachment& a = control->attachments[k];
    a.state.store(state, std::memory_order_release);
    // Any byte we reuse from now on is written after this fence: a reader
    // that read such a byte, then fences (acquire) and loads its state (its
    // ownership check), sees the new epoch, and reports Evicted.
    std::atomic_thread_fence(std::memory_order_release);
    if (eviction)
      a.evictions.store(a.evictions.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);  // tools
    // watch[k] stays: if its process is admitted again in this blocked
    // stretch, its timer goes on (answer), so leaving and joining again
    // below the mark keeps no timer young.
    announce(eviction);
  }

  /// Tells readers that the attachment table changed. Release: a reader that
  /// acquires the new count sees the attachment stores before it.
  void announce(bool wake) noexcept {
    control->admissions.fetch_add(1, std::memory_order_release);
    // An evicted reader may sleep on data that will never come at its
    // cursor (the commit word there can read 0 again): everyone asleep is
    // woken (rare).
    if (wake) wake_readers();
  }

  void evict(uint32_t k) noexcept {
    drop(k, true);
    ++evictions;
  }

  /// Answers the bell: admits (at most kAnswersPerRefresh of) the readers
  /// announced in it. Every announcement is untrusted: copied out of the
  /// slot, then attested by the door against the kernel.
  void answer_bell() noexcept {
    // A bell cut short reads 0 here (the guard's zero page) and no joiner's
    // ring reaches us until it is whole again: no joiner is admitted.
    if (door.repair_bell != nullptr && door.repair_bell(door.context)) bell_backlog = true;  // look at every slot
    // seq_cst: the load half of the joining Dekker (see refresh_limit).
    const uint64_t rung = bell->rings.load(std::memory_order_seq_cst);
    if (rung == seen_rings && !bell_backlog) return;
    seen_rings = rung;
    bell_backlog = false;
    uint32_t answered = 0;
    uint64_t now = 0;  // read once, and only if a slot is seen filling
    for (uint32_t i = 0; i < kBellSlots; ++i) {
      BellSlot& slot = bell->slot[i];
      // Acquire: pairs with the reader's release CAS to kBellSlotRung; its
      // fields are then visible (a forger may change them later: we copy).
      const uint64_t seq = slot.seq.load(std::memory_order_acquire);
      const uint64_t bit = uint64_t(1) << i;
      if (seq != 0 && seq != kBellSlotRung) {
        // Filling (or garbage) for the grace period: left so by a dead
        // reader or a forger. Free it, or 64 such slots would shut every
        // joiner out. The CAS from the value just seen never erases a
        // reader's rung; a reader still filling fails its own CAS to rung
        // and rings elsewhere.
        if (now == 0) now = monotonic_now_ns();
        if ((filling_slots & bit) == 0) {
          filling_slots |= bit;
          filling_since_ns[i] = now;
        } else if (now - filling_since_ns[i] >= kBellFillingGraceNs) {
          uint64_t seen = seq;
          (void)slot.seq.compare_exchange_strong(seen, 0, std::memory_order_relaxed);
          filling_slots &= ~bit;
        }
        bell_backlog = true;  // look again at the next refresh, rung or not
        continue;
      }
      filling_slots &= ~bit;
      if (seq != kBellSlotRung) continue;
      if (answered == kAnswersPerRefresh) {
        bell_backlog = true;
        break;
      }
      ReaderAnnouncement a;
      a.token = slot.token.load(std::memory_order_relaxed);
      a.pid = slot.pid.load(std::memory_order_relaxed);
      a.n = slot.n.load(std::memory_order_relaxed);
      a.line = slot.line.load(std::memory_order_relaxed);
      a.subscription = slot.subscription.load(std::memory_order_relaxed);
      ++answered;
      answer(a);
      // Answered: the slot is free for the next announcement. Only now: a
      // writer killed while it answered (the door's system calls take tens
      // of us) leaves the slot rung, and the next writer of the ring answers
      // it again; a repeat is harmless. Freed first, the announcement died
      // with the writer, and its reader, never admitted, read unprotected
      // and lost events (counted) once a later writer lapped it (TSan's
      // torture test). (An announcement that crashed the door would now
      // crash each successor; the door only opens, stats and maps, through
      // the fault guard.) Release: our loads of its fields above come before
      // a reader that claims it (acquire CAS from 0) fills it again.
      slot.seq.store(0, std::memory_order_release);
    }
  }

  void answer(const ReaderAnnouncement& a) noexcept {
    if (a.subscription != 0) {
      answer_reserved(a);
      return;
    }
    if (a.line == kNoLine || door.admit == nullptr) return;
    uint32_t free_k = kAttachments;
    for (uint32_t k = 0; k < kAttachments; ++k) {
      const Follow& f = follow[k];
      const uint64_t kind = AttachmentState::kind(f.state);
      if (kind == AttachmentState::kFree) {
        if (free_k == kAttachments) free_k = k;
      } else if (kind == AttachmentState::kAdmitted && f.reader.token == a.token && f.reader.line_index == a.line) {
        return;  // admitted already (a reader rings again after each rejoin; this one is a repeat)
      }
    }
    if (free_k == kAttachments) return;  // all taken: the joiner reads with validation until one frees
    FollowedReader reader;
    if (!door.admit(door.context, a, reader)) return;  // not a reader of ours: forged, gone or damaged
    Follow& f = follow[free_k];
    const uint64_t epoch = AttachmentState::epoch(f.state) + 1;  // a free one keeps its last epoch
    f = {};
    f.state = AttachmentState::pack(epoch, AttachmentState::kAdmitted);
    f.reader = reader;
    store_attachment(free_k);
    // No wake-up: an admission changes nothing a sleeping joiner waits for
    // (it reads with validation meanwhile, and looks at its next read).
    announce(false);
    // The same process held us back before in this blocked stretch (it left
    // or was evicted, and joined again): its timer goes on.
    const uint64_t owner = uint64_t(reader.pid) | 2ull << 32;
    if (watching && watch[free_k].owner != owner)
      for (const SlotWatch& w : watch)
        if (w.owner == owner && w.since_ns != 0) {
          watch[free_k] = w;
          watch[free_k].epoch = ~epoch;  // not this admission's: its own high mark starts at its first look
          break;
        }
  }

  /// An announcement that names a reservation: its subscriber adopts it (or
  /// gives it up). Only the process the reservation was made for may. Tags
  /// are not secret (anyone who may read a segment reads its tag), so the
  /// reservation is the one of that tag made for the announcer's pid: a
  /// reservation another process got for the same tag stops nobody.
  void answer_reserved(const ReaderAnnouncement& a) noexcept {
    for (uint32_t k = 0; k < kAttachments; ++k) {
      Follow& f = follow[k];
      if (AttachmentState::kind(f.state) != AttachmentState::kReserved || f.subscription != a.subscription ||
          f.reader.pid != a.pid)
        continue;
      // Its line, attested in a segment of its own subscription, says what
      // it wants: the bell says only where to look (anyone may name anyone's
      // line there). No line, no answer. The segment must be that process's
      // AND carry the reservation's tag: another Subscriber of the same
      // process has lines of its own (one it gave up, or one it reads), and
      // a forger naming one of those would give the reservation up, or have
      // it follow a line that is not its reader's, which would let us reuse
      // bytes that reader has not read (the ownership check holds: same epoch).
      FollowedReader reader;
      if (a.line == kNoLine || door.admit == nullptr || !door.admit(door.context, a, reader)) return;
      if (reader.pid != f.reader.pid || reader.subscription != f.subscription) {  // not theirs
        if (door.release != nullptr) door.release(door.context, reader);
        return;
      }
      // Acquire: pairs with the reader's release store of kLineGivenUp.
      if (reader.line->position.load(std::memory_order_acquire) == kLineGivenUp) {
        if (door.release != nullptr) door.release(door.context, reader);
        drop(k, false);  // given up: it will not read this ring
        return;
      }
      // Adopted: the same epoch, so the reader's ownership check holds
      // across; from now on its line, not position held_from, holds us.
      f.state = AttachmentState::pack(AttachmentState::epoch(f.state), AttachmentState::kAdmitted);
      f.reader = reader;
      store_attachment(k, /*adoption=*/true);
      announce(false);
      return;
    }
  }

  /// After a commit, while readers handle it: once half the run below limit
  /// is used, moves limit on now rather than in the next reserve, where the
  /// scans of readers, the fence and the miss on a reader's line would
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
    if (policy == Policy::Latest) {  // nobody holds us back, and nobody needs admitting
      // But readers open the ring through its bell: keep it whole.
      if (door.repair_bell != nullptr) (void)door.repair_bell(door.context);
      advance_tail(wanted > capacity ? wanted - capacity : 0);
      set_limit(wanted);
      return true;
    }
    const uint64_t blocked_below = watch_stuck && needed_end > capacity ? needed_end - capacity : 0;
    if (blocked_below != 0 && !watching) {
      for (SlotWatch& w : watch) w = {};  // a new blocked stretch: no timer carries over
      watching = true;
    }
    const uint64_t now = blocked_below != 0 ? monotonic_now_ns() : 0;
    uint64_t slowest = slowest_reader(blocked_below, now, std::memory_order_acquire);
    if (slowest != UINT64_MAX) wanted = std::min(wanted, slowest + capacity);
    if (wanted >= needed_end) advance_tail(wanted > capacity ? wanted - capacity : 0);
    // The joining Dekker. A joiner stores its line, rings the bell (seq_cst),
    // then loads tail (seq_cst); we store tail (seq_cst, in advance_tail),
    // fence, then load the bell's count. One of the two sees the other: the
    // joiner moves up to our tail, or we admit it here and re-scan below,
    // before the limit that lets us destroy what it stands on. The bell is
    // answered even while we are blocked: a reservation holding us may be
    // adopted now.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    answer_bell();
    // The re-scan judges as the first scan does: a reader admitted just now
    // (a process that left and joined again below its mark, say) is watched
    // here, or it could hold us for good by doing so at every refresh.
    slowest = slowest_reader(blocked_below, now, std::memory_order_seq_cst);
    if (slowest != UINT64_MAX) wanted = std::min(wanted, slowest + capacity);
    if (wanted < needed_end) return false;
    set_limit(wanted);
    watching = false;  // not blocked any more
    return true;
  }

  /// Takes limit `wanted`, and raises the reuse floor with it before any
  /// byte below the floor is reused: a reader not yet admitted that read
  /// bytes we write after this sees the new floor (release fence; it
  /// acquire-fences, then loads the floor: RingReader::still_valid_for_joiner).
  void set_limit(uint64_t wanted) noexcept {
    limit = wanted;
    header->limit.store(limit, std::memory_order_relaxed);  // tools only
    if (wanted > capacity && wanted - capacity > reuse_floor) {
      reuse_floor = wanted - capacity;
      header->reuse_floor.store(reuse_floor, std::memory_order_relaxed);
      std::atomic_thread_fence(std::memory_order_release);
    }
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
  const ControlHeader* control = nullptr;  // the writer's: mapped read-only
  BellHeader* bell = nullptr;              // others may write (and truncate) it: mapped through the fault guard
  CursorLine* line = nullptr;              // our position on this ring, in our own reader segment; null: none
  ReaderAnnouncement announcement;         // our segment and line, as we ring them on the bell
  uint64_t capacity = 0;  // validated when the segment was opened: never re-read from shared memory
  uint64_t mask = 0;
  Policy policy = Policy::Block;
  const RingContext* context = nullptr;
  uint32_t ring_index = 0;

  // Block: the writer's attachment that holds bytes for us, once it admitted
  // us (or reserved it for our subscription); -1 before. Its epoch changes
  // when the writer evicts us.
  int attachment = -1;
  uint64_t attachment_epoch = 0;
  uint32_t reserved_tag = 0;  // the subscription tag of a reservation we adopted
  // Block, announced but not admitted yet: nothing holds bytes for us, so
  // every read is checked against the writer's reuse floor, as a Latest
  // reader checks tail, and what was overwritten is counted.
  bool joining = false;
  uint64_t seen_admissions = 0;         // control->admissions when we last looked for ours
  uint64_t eviction_seen = UINT64_MAX;  // state of the freed attachment that named us, once we knew
  uint32_t looks_since_ring = 0;        // while joining: ring again now and then (an announcement may be erased)
  uint64_t bell_claims = 0;             // bell slots we claimed: each claim fills with a value of its own
  uint32_t reads_since_look = 0;
  uint64_t position = 0;     // start of our next record
  uint64_t published = 0;    // the position last stored in our line
  // Mirroring: the position the writer sees stays at `hold` (the last position
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

  /// Starts reading at `at`: publishes it in our line, announces us on the
  /// bell (Block), then moves up to tail if the writer may already reuse
  /// those bytes. False if tail is off the record grid (the header was
  /// scribbled on). A position off the record grid joins quarantined: the
  /// first peek reports Corrupt.
  bool join_at(uint64_t at) noexcept {
    if (at % kRecordAlign != 0) {
      quarantine();  // also frees our line
      return true;
    }
    attachment = -1;
    reserved_tag = 0;
    position = at;
    if (hold != UINT64_MAX && hold < at) hold = at;  // a rejoin after eviction: what we held is gone
    published = UINT64_MAX;                          // store_cursor stores even an unchanged position
    store_cursor();                                  // before the bell: the writer reads our line when it admits us
    if (policy == Policy::Block) {
      joining = true;
      looks_since_ring = 0;
      // Acquire: pairs with the writer's release bump; any admission of us
      // comes after our ring below, so it changes this count.
      seen_admissions = control->admissions.load(std::memory_order_acquire);
      ring_bell(0, announcement.line);
    }
    return catch_up_with_tail();
  }

  /// Takes over attachment `k`, which the ring's creator reserved for our
  /// subscription `tag` at the ring's start (`state`, found by
  /// find_attachment): under Block it held everything since `held_from`.
  /// Rings the bell so that the writer follows our line from now on.
  void adopt(int k, uint64_t state, uint64_t held_from, uint64_t first_sequence, uint32_t tag) noexcept {
    attachment = k;
    attachment_epoch = AttachmentState::epoch(state);
    reserved_tag = tag;
    joining = false;
    position = held_from;
    published = UINT64_MAX;
    store_cursor();  // before the bell, as in join_at
    ring_bell(tag, announcement.line);
    expected_sequence = first_sequence;
    sequence_known = first_sequence != UINT64_MAX;
  }

  /// The attachment holding bytes for us: a reservation for subscription
  /// `tag` of our process `pid`, or (tag 0) an admission of our
  /// announcement. -1 when there is none; else its index, and its state
  /// word in `state`.
  int find_attachment(uint32_t tag, uint32_t pid, uint64_t& state) const noexcept {
    for (uint32_t k = 0; k < kAttachments; ++k) {
      const Attachment& a = control->attachments[k];
      // Acquire: pairs with the writer's release store of the state; the
      // fields it names are visible.
      state = a.state.load(std::memory_order_acquire);
      const uint64_t kind = AttachmentState::kind(state);
      const bool mine = tag == 0 ? kind == AttachmentState::kAdmitted &&
                                       a.token.load(std::memory_order_relaxed) == announcement.token &&
                                       a.line.load(std::memory_order_relaxed) == announcement.line
                                 : kind == AttachmentState::kReserved &&
                                       a.subscription.load(std::memory_order_relaxed) == tag &&
                                       a.pid.load(std::memory_order_relaxed) == pid;
      if (!mine) continue;
      // The fields may be a later claim's if the writer freed and reused the
      // attachment while we read: then the state changed too. The fence
      // pairs with the writer's release fence before it stores fields.
      std::atomic_thread_fence(std::memory_order_acquire);
      if (a.state.load(std::memory_order_relaxed) == state) return int(k);
    }
    return -1;
  }

  /// Joins a ring that was created after we subscribed but holds no
  /// reservation for us (its creator did not see us, or it was evicted): at its oldest event, expecting its first
  /// sequence, so that whatever was overwritten before we came is counted, not skipped.
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
    // The writer moved tail past `at` before our announcement took hold:
    // join at the write position again, so the events in between count as
    // before our join, not as lost.
    sequence_known = locate_write_position(at);
    if (at % kRecordAlign == 0 && at > position) {
      position = at;
      store_cursor();
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
    store_cursor();
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

  /// Gives up the reservation for subscription `tag` (we will not read this
  /// ring): our line says kLineGivenUp, and the bell names it. The writer
  /// believes the line, not the bell, so no one else can give ours up. The
  /// line is not reused (the writer may read it later; 64 per segment, and
  /// this is rare: a ring refused, or left before the writer followed us).
  void give_up(uint32_t tag) noexcept {
    if (line == nullptr) return;  // nothing to say it with: the writer's liveness check frees it
    // Release: whoever acquires kLineGivenUp sees the key stored before it.
    line->position.store(kLineGivenUp, std::memory_order_release);
    ring_bell(tag, announcement.line);
    line = nullptr;  // kept as it is: leave() must not free it
  }

  /// Stops reading this ring: the writer frees our attachment at its next
  /// limit refresh, and our line is free for another ring.
  void leave() noexcept {
    // A reservation we adopted but the writer has not followed yet holds it
    // at held_from: give it up, or it holds until the slow-consumer timeout.
    if (attachment >= 0 && reserved_tag != 0 &&
        AttachmentState::kind(control->attachments[attachment].state.load(std::memory_order_relaxed)) ==
            AttachmentState::kReserved)
      give_up(reserved_tag);
    if (line != nullptr) {
      // Release, as every position we store: our reads of the ring happen
      // before the writer, seeing kLineLeft, reuses what we read. Then the
      // key: the line is free for our next ring.
      line->position.store(kLineLeft, std::memory_order_release);
      line->publisher_id.store(0, std::memory_order_release);
      line = nullptr;
    }
    attachment = -1;
    joining = false;
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

  /// Moves past `event`. Evicted if the writer evicted us meanwhile (or,
  /// before our admission, passed it with its reuse floor): the bytes of
  /// `event` may have been reused while they were read.
  ReadStatus release(const Event& event) noexcept {
    // Evicted between the read and this release (wait() publishes our
    // position on its way to sleep, and learns it then): we joined again
    // elsewhere already, and the bytes of `event` may have been reused.
    if (evicted_pending) return ReadStatus::Evicted;
    return move_past(event.next_position_, event.sequence_, event.position_);
  }

  /// Hands over the count of refused events not yet reported.
  uint64_t take_rejected() noexcept { return std::exchange(rejected_unreported, 0); }

  /// Moves the cursor past the record at `read_at`, whose sequence is
  /// `sequence` and whose successor is at `next_position`.
  ReadStatus move_past(uint64_t next_position, uint64_t sequence, uint64_t read_at) noexcept {
    // A joiner judges what it read before it publishes that it passed it:
    // once our line says we passed read_at, a writer that admitted us may
    // raise its floor to our line, and the floor would then condemn a read
    // that was whole (TSan's thread stress test caught this order).
    const bool valid = policy != Policy::Block || !joining || still_valid_for_joiner(read_at);
    position = next_position;
    expected_sequence = sequence + 1;
    sequence_known = true;
    // Publishing once per eighth of a ring (and before sleeping) is enough:
    // a reader that has read everything is then at most an eighth behind in
    // the writer's eyes, and the largest record (with its padding) fits in
    // the other seven (max_record_length).
    if (position - published >= capacity / 8) store_cursor();
    if (policy == Policy::Latest) return ReadStatus::Ok;
    if (!joining) {
      if (still_owned()) return ReadStatus::Ok;
    } else if (valid) {
      if ((++reads_since_look & 63) == 0) look_for_admission();
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

  /// Joining (Block, not admitted yet): true if the bytes at `at` were not
  /// reused yet. Pairs with the writer's release fence after it raises the
  /// reuse floor (RingWriter::set_limit): if what we read was written after
  /// that fence, this load sees the new floor.
  bool still_valid_for_joiner(uint64_t at) const noexcept {
    std::atomic_thread_fence(std::memory_order_acquire);
    return at >= header->reuse_floor.load(std::memory_order_relaxed);
  }

  /// Hands over the count of events skipped since the last call, and adds it
  /// to our line's loss counter for tools (a rare path: only after a loss).
  uint64_t take_missed() noexcept {
    const uint64_t n = missed;
    missed = 0;
    if (n != 0 && line != nullptr)  // statistics only: our own line, nobody else writes it
      line->losses.store(line->losses.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
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
    // Evicted (our attachment's epoch changed): the next read says so.
    // Relaxed: a line the writer rarely writes, only read here when there is
    // nothing to read.
    if (attachment >= 0 && !still_owned_relaxed()) return true;
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
    if (line != nullptr) line->sleeping.store(1, std::memory_order_relaxed);  // tools only
    // Relaxed: a writer that switches protocol stores it before it publishes.
    return header->wake_protocol.load(std::memory_order_relaxed) == kWakeLightFence;
  }
  /// After the futex wait (or instead of it). Nothing to take back: the
  /// writer clears requests itself, and one left over costs it one wake-up.
  void end_sleep() noexcept {
    if (line != nullptr) line->sleeping.store(0, std::memory_order_relaxed);  // tools only
  }

  /// Stops reading a damaged ring: it reports Corrupt, and holds nobody back.
  void quarantine() noexcept {
    quarantined = true;
    leave();  // a reader that stops reading must not hold the writer back
  }

  /// Announces us on the bell: a free slot filled, then the count bumped.
  /// All slots taken (a flood): the count alone, and look_for_admission
  /// rings again later. Untrusted memory: anyone may clear or fill it.
  void ring_bell(uint32_t tag, uint32_t line_index) noexcept {
    for (BellSlot& slot : bell->slot) {
      if (slot.seq.load(std::memory_order_relaxed) != 0) continue;
      uint64_t free_slot = 0;
      const uint64_t filling = bell_filling_value(announcement.token, ++bell_claims);
      // Acquire: pairs with the writer's release store of 0, so our stores
      // below come after its loads of the slot's last announcement. The
      // release CAS to kBellSlotRung below publishes them.
      if (!slot.seq.compare_exchange_strong(free_slot, filling, std::memory_order_acquire, std::memory_order_relaxed))
        continue;
      slot.token.store(announcement.token, std::memory_order_relaxed);
      slot.pid.store(announcement.pid, std::memory_order_relaxed);
      slot.n.store(announcement.n, std::memory_order_relaxed);
      slot.line.store(line_index, std::memory_order_relaxed);
      slot.subscription.store(tag, std::memory_order_relaxed);
      // Release: pairs with the writer's acquire load of seq (answer_bell).
      // A CAS from our own filling value: if we were stopped so long that
      // the writer freed the slot, our announcement is not in it: ring in
      // another slot. (If another reader claimed the slot meanwhile, our
      // field stores above may have overwritten its announcement: it is
      // lost, as an erased one, and that reader rings again later; a
      // counted loss at worst.)
      uint64_t ours = filling;
      if (slot.seq.compare_exchange_strong(ours, kBellSlotRung, std::memory_order_release, std::memory_order_relaxed))
        break;
    }
    // seq_cst: the store half of the joining Dekker (the caller loads tail
    // next, seq_cst; see RingWriter::refresh_limit).
    bell->rings.fetch_add(1, std::memory_order_seq_cst);
  }

  /// Publishes our position now (or the held one) if it moved; rejoins if
  /// that shows we were evicted.
  void publish_progress() noexcept {
    if (reserved_tag != 0 && attachment >= 0) confirm_adoption(16);  // on the way to sleep: sooner
    if (std::min(position, hold) == published) return;
    store_cursor();
    if (policy == Policy::Block && !joining && !still_owned()) rejoin_after_eviction();
  }

 private:
  template <bool kVerify>
  ReadStatus peek_record(Event& out) noexcept;

  /// Untrusted topics: the event at our cursor failed verification. It is
  /// counted (here and in our line, for tools) and passed; never handed over.
  void reject(Event& out, uint64_t next_position, uint64_t sequence) noexcept {
    out.data_ = nullptr;
    out.size_ = 0;
    out.subject_ = {};
    ++rejected_unreported;
    ++rejected;
    if (line != nullptr)  // statistics only: our own line
      line->rejected.store(line->rejected.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    empty_peeks = 0;
    // Evicted meanwhile: evicted_pending is set, and the read reports that first.
    (void)move_past(next_position, sequence, position);
  }

  /// Publishes our position (or the held one) in our line.
  void store_cursor() noexcept {
    const uint64_t at = std::min(position, hold);
    if (at == published) return;
    published = at;
    if (line == nullptr) return;
    // Tools only (idle time in `flowbus inspect`); once per eighth of a ring,
    // which for 1 MiB events is every other event: the TSC clock, since a
    // clock_gettime here cost 1 MiB round trips ~70 ns of their ~400 (p50).
    line->last_moved_ns.store(unix_now_ns(), std::memory_order_relaxed);
    // Release, paired with the writer's acquire load of our line: our reads
    // of the records we passed happen before it reuses their bytes. A plain
    // store: only we write our line (the writer evicts us in its own .ctl).
    line->position.store(at, std::memory_order_release);
  }

  bool still_owned() const noexcept {
    // The acquire fence keeps our reads of the record (before) ahead of this
    // load: if we read bytes the writer wrote after evicting us (its store of
    // our attachment's new epoch comes first, then its tail store and release
    // fence), we see the eviction here, so release() reports Evicted.
    // Relaxed load: only asks "was I evicted?"; a line the writer rarely
    // writes, so it stays in our cache. (On x86 both are free.)
    std::atomic_thread_fence(std::memory_order_acquire);
    return still_owned_relaxed();
  }

  bool still_owned_relaxed() const noexcept {
    return attachment >= 0 &&
           AttachmentState::epoch(control->attachments[attachment].state.load(std::memory_order_relaxed)) ==
               attachment_epoch;
  }

  /// A reservation we adopted: until the writer follows our line (the
  /// attachment says Admitted), ring again now and then. The first ring may
  /// have been lost (a bell full or scribbled, a writer that restarted
  /// before it answered), and the reservation would hold the writer at its
  /// start until the slow-consumer timeout, or for good with `never`.
  /// `every`: ring again once per that many calls (a power of two).
  void confirm_adoption(uint32_t every = 4096) noexcept {
    // Relaxed: only a hint to ring again (ownership is checked elsewhere).
    const uint64_t state = control->attachments[attachment].state.load(std::memory_order_relaxed);
    if (AttachmentState::kind(state) == AttachmentState::kAdmitted) {
      reserved_tag = 0;  // followed: nothing to give up on leaving either
      return;
    }
    if ((++looks_since_ring & (every - 1)) == 0) ring_bell(reserved_tag, announcement.line);
  }

  /// Joining: has the writer admitted us? Looks only when the attachment
  /// table changed (one load of a line the writer rarely writes).
  void look_for_admission() noexcept {
    // Acquire: pairs with the writer's release bump after it stored an attachment.
    const uint64_t admissions = control->admissions.load(std::memory_order_acquire);
    if (admissions == seen_admissions) {
      // Our announcement may have been erased by a forger, or found the bell
      // full: ring again now and then (a repeat is ignored by the writer).
      if ((++looks_since_ring & 4095) == 0) ring_bell(0, announcement.line);
      return;
    }
    seen_admissions = admissions;
    uint64_t state = 0;
    const int k = find_attachment(0, 0, state);
    if (k < 0) {
      // Admitted and evicted before we ever looked (a reader that reads
      // nothing for the slow-consumer timeout): say so, and announce us again.
      if (evicted_unawares()) rejoin_after_eviction();
      return;
    }
    attachment = k;
    attachment_epoch = AttachmentState::epoch(state);
    joining = false;
    // The writer may have admitted us below the floor it had reached before
    // (our announcement waited in the bell): what lies below it may be gone.
    (void)lapped_while_joining_at(position);
  }

  /// Joining: true if the bytes at our position may have been reused (below
  /// the reuse floor); then moves up to tail (a record start at or above the
  /// floor), and the sequence tells what we missed.
  bool lapped_while_joining_at(uint64_t at) noexcept {
    if (still_valid_for_joiner(at)) return false;
    // Acquire again: the floor we loaded was stored after the tail it lies
    // below (and after the release fence that follows that tail store).
    std::atomic_thread_fence(std::memory_order_acquire);
    const uint64_t tail = header->tail_position.load(std::memory_order_relaxed);
    if (tail % kRecordAlign != 0 || tail <= position) {
      quarantine();  // tail below the floor: scribbled
      return true;
    }
    position = tail;
    if (joining && evicted_unawares()) rejoin_after_eviction();
    return true;
  }

  /// Joining: did the writer admit us and then evict us, before we found our
  /// admission? Then a free attachment still names us (the writer clears no
  /// field when it frees one, but for the token of an admission a writer
  /// died writing, which we never saw); each such freeing is reported once.
  bool evicted_unawares() noexcept {
    for (uint32_t k = 0; k < kAttachments; ++k) {
      const Attachment& a = control->attachments[k];
      // Acquire, and the re-check after the fence: as in find_attachment.
      const uint64_t state = a.state.load(std::memory_order_acquire);
      if (AttachmentState::kind(state) != AttachmentState::kFree || AttachmentState::epoch(state) == 0 ||
          a.token.load(std::memory_order_relaxed) != announcement.token ||
          a.line.load(std::memory_order_relaxed) != announcement.line)
        continue;
      std::atomic_thread_fence(std::memory_order_acquire);
      if (a.state.load(std::memory_order_relaxed) != state || state == eviction_seen) continue;
      eviction_seen = state;
      return true;
    }
    return false;
  }

  /// After a read that turns out insane: torn by a lap (retry at tail), or
  /// damaged (quarantine).
  bool torn() noexcept { return joining ? lapped_while_joining_at(position) : torn_by_lap(); }

  /// Moves the cursor to tail if the writer may reuse the bytes we sit on.
  bool catch_up_with_tail() noexcept {
    for (int round = 0; round < 1000; ++round) {
      // seq_cst: the load half of the joiner Dekker.
      const uint64_t tail = header->tail_position.load(std::memory_order_seq_cst);
      if (tail % kRecordAlign != 0) return false;
      if (tail <= position) return true;
      position = tail;
      if (hold != UINT64_MAX && hold < tail) hold = tail;  // what lies below tail is gone anyway
      store_cursor();
    }
    return false;  // the writer outran us a thousand times in a row
  }

  /// We were evicted: announce us again at our position (moved up to tail).
  /// The sequence we expect is kept, so the next record found tells exactly
  /// how many we missed.
  void rejoin_after_eviction() noexcept {
    evicted_pending = true;
    // Our freed attachment still names us: not an eviction to report again.
    if (attachment >= 0) eviction_seen = control->attachments[attachment].state.load(std::memory_order_relaxed);
    if (line != nullptr)  // tools only: our own line
      line->evictions.store(line->evictions.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    if (!join_at(position)) quarantine();
  }

  /// The record at our cursor is not there. Were we lapped or evicted, or is
  /// there simply nothing new?
  enum class Gap { Retry, Empty, Corrupt };
  Gap no_record_at_cursor() noexcept {
    if (policy == Policy::Block) {
      if (joining) {
        // Nothing holds bytes for us yet: were we admitted meanwhile (or
        // admitted and evicted: then we joined again, at tail), or lapped?
        const bool evicted_before = evicted_pending;
        look_for_admission();
        if (evicted_pending != evicted_before) return quarantined ? Gap::Corrupt : Gap::Retry;
        if (joining && lapped_while_joining_at(position)) return quarantined ? Gap::Corrupt : Gap::Retry;
      } else if (!still_owned()) {
        // An admitted reader is never passed by the writer: unless we were
        // evicted, there is nothing new. Our attachment's line stays in our
        // cache; the writer's busy lines are not touched on this path.
        rejoin_after_eviction();
        return quarantined ? Gap::Corrupt : Gap::Retry;
      } else if (reserved_tag != 0) {
        confirm_adoption();
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
      if (torn()) continue;
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
        if (torn()) continue;
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
        if (torn()) continue;
        quarantine();
        return ReadStatus::Corrupt;
      }
      std::memcpy(copy, base + f.data_offset(), f.size);
      if (!subject.empty()) std::memcpy(copy + f.size, subject.data(), subject.size());
      out.data_ = copy;
      out.subject_ = std::string_view(reinterpret_cast<const char*>(copy + f.size), subject.size());
      // Is the copy what the writer committed? Latest, or Block not yet
      // admitted: the check below, as for every such read. Block: the
      // writer reuses these bytes only after evicting us; acquire fence in
      // still_owned keeps the copy before that look, so a copy torn by the
      // writer is never verified.
      if (policy == Policy::Block && !joining && !still_owned()) {
        rejoin_after_eviction();
        if (quarantined) return ReadStatus::Corrupt;
        continue;  // read() reports Evicted first
      }
    }
    // Overwritten while we looked (Latest, or Block before our admission).
    if (policy == Policy::Latest ? torn_by_lap() : joining && lapped_while_joining_at(position)) continue;
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
