// Shared-memory layouts of flowbus: the ring's data and control segments.
// (The bus directory's layout is private to core/src/directory_layout.hpp.)
// Every struct here is standard-layout, shared between processes that may be
// built by different compilers, so sizes and offsets are pinned by asserts
// and padding uses a fixed 128 bytes (two cache lines: adjacent-line prefetch).
//
// Internal: publisher.hpp and subscriber.hpp include this so the hot path
// inlines. Not API: user code needs nothing from it, and it may change in any
// release (flowbus/flowbus.hpp is the API).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace flowbus::detail {

inline constexpr size_t kLinePad = 128;
// 2: directory ring slots grew to 512 B (mirror origin); records may carry kFlagGap.
// 3: a cursor word's asleep bit replaces CursorSlot::sleeping; records are at
//    most 7/16 of the ring (max_record_length); subscriptions in the directory,
//    cursors reserved for them, and the ring's first sequence.
// 4: a self-clearing `wake_request` word, in a segment of its own (`.bell`),
//    replaces `waiters` and the cursor word's asleep bit (the first steps to
//    least privilege, docs/proposals/least-privilege.md); CursorSlot::sleeping
//    is a tools flag.
inline constexpr uint32_t kLayoutVersion = 4;

inline constexpr uint64_t kRingMagic = 0x474e495242574c46ull;     // "FLWBRING"
inline constexpr uint64_t kControlMagic = 0x4c54434242574c46ull;  // "FLWBBCTL"
inline constexpr uint64_t kBellMagic = 0x4c4c454242574c46ull;     // "FLWBBELL"

static_assert(std::atomic<uint64_t>::is_always_lock_free);
static_assert(std::atomic<uint32_t>::is_always_lock_free);

// ---------------------------------------------------------------------------
// Data segment "flowbus.<bus>.<topic>@<publisher>": written by its publisher
// only, mapped read-only by every reader.
//
//   0     +-------------------------------------------+
//         | RingHeader.identity: magic, version,       |
//         | capacity, publisher id, policy             |
//   128   +-------------------------------------------+
//         | write_position, next_sequence,             |
//         | last_publish_ns          (writer, per event)|
//   256   +-------------------------------------------+
//         | tail_position, limit                       |
//         | (writer, when it refreshes its limit)      |
//   384   +-------------------------------------------+
//         | reserved                                   |
//   512   +-------------------------------------------+ kRecordsOffset
//         | records ... (capacity bytes, power of two) |
//         +-------------------------------------------+
//
// A record at absolute position P lives at offset P & (capacity - 1):
//
//   +--------+------+----------------------+-----+------+-----------+------+
//   | commit | size | flags:4 data_offset:28| seq | time | [subject] | data |
//   | u64    | u32  | u32                  | u64 | u64  |           |      |
//   +--------+------+----------------------+-----+------+-----------+------+
//   commit == P + 1 once the record is complete (written last, release);
//   any other value means "not yet written at this lap".
// ---------------------------------------------------------------------------

// How the current writer orders its write_position store before its load of
// `wake_request` (the wake-up Dekker): a full fence per publish, or only a compiler
// fence, which is enough when every sleeper first runs membarrier(GLOBAL_EXPEDITED).
inline constexpr uint32_t kWakeFullFence = 0;
inline constexpr uint32_t kWakeLightFence = 1;

inline constexpr size_t kRecordAlign = 32;
inline constexpr uint64_t kMinCapacity = 4096;  // smallest ring: a power of two at least this
inline constexpr uint32_t kFlagPadding = 1u << 28;     // skip to the next lap
inline constexpr uint32_t kFlagHasSubject = 2u << 28;  // u16 length + bytes after the header
// Mirror rings only: the writer skipped sequences before this record on
// purpose (its source no longer held them); readers count them as missed.
inline constexpr uint32_t kFlagGap = 4u << 28;
inline constexpr uint32_t kOffsetMask = (1u << 28) - 1;
inline constexpr uint32_t kKnownFlags = kFlagPadding | kFlagHasSubject | kFlagGap;
inline constexpr size_t kMaxSubject = 1024;

struct RecordHeader {
  std::atomic<uint64_t> commit;
  uint32_t size;              // payload bytes
  uint32_t offset_and_flags;  // payload start from the record start (low 28 bits), flags
  uint64_t sequence;
  uint64_t time_ns;
};
static_assert(sizeof(RecordHeader) == kRecordAlign);
static_assert(std::is_standard_layout_v<RecordHeader>);
static_assert(offsetof(RecordHeader, commit) == 0 && offsetof(RecordHeader, size) == 8 &&
              offsetof(RecordHeader, offset_and_flags) == 12 && offsetof(RecordHeader, sequence) == 16 &&
              offsetof(RecordHeader, time_ns) == 24);

inline constexpr uint64_t record_length(uint64_t data_offset, uint64_t size) {
  return (data_offset + size + kRecordAlign - 1) & ~uint64_t(kRecordAlign - 1);
}

/// The longest record (header included) a ring of `capacity` bytes accepts:
/// 7/16 of it. A reader publishes its cursor once per eighth of the ring, so a
/// reader that has read everything may have published a cursor up to an
/// eighth behind W; the writer may need padding (less than a record) plus the
/// record plus the next commit word past W. With records of at most 7/16,
/// that fits in the 7/8 the reader's published cursor leaves free, so a
/// caught-up reader can never hold a `block` writer back.
inline constexpr uint64_t max_record_length(uint64_t capacity) { return capacity / 16 * 7; }

struct RingHeader {
  // identity: written once by the creator, magic last (release)
  std::atomic<uint64_t> magic;
  uint32_t layout_version;
  uint32_t policy;
  uint64_t capacity;
  uint64_t publisher_id;
  uint64_t created_ns;
  std::atomic<uint32_t> wake_protocol;  // kWakeFullFence or kWakeLightFence, set by the current writer
  uint32_t reserved0;
  char pad0[kLinePad - 48];

  std::atomic<uint64_t> write_position;   // first byte not yet committed
  std::atomic<uint64_t> next_sequence;    // stored before write_position, for restarts
  std::atomic<uint64_t> last_publish_ns;
  char pad1[kLinePad - 24];

  std::atomic<uint64_t> tail_position;    // oldest record still guaranteed intact
  std::atomic<uint64_t> limit;            // writer writes below it; bytes below limit - capacity may go
  char pad2[kLinePad - 16];

  // Written once by the creator: the sequence of the ring's first record, so
  // a reader that attaches late counts what was overwritten before it came.
  // UINT64_MAX: not known in advance (a mirror ring takes its origin's).
  uint64_t first_sequence;
  char reserved[kLinePad - 8];
};
inline constexpr size_t kRecordsOffset = sizeof(RingHeader);
static_assert(sizeof(RingHeader) == 4 * kLinePad);
static_assert(offsetof(RingHeader, write_position) == kLinePad);
static_assert(offsetof(RingHeader, tail_position) == 2 * kLinePad);
static_assert(offsetof(RingHeader, first_sequence) == 3 * kLinePad);
static_assert(std::is_standard_layout_v<RingHeader>);

// ---------------------------------------------------------------------------
// Control segment "flowbus.<bus>.<topic>@<publisher>.ctl": written by readers.
//
//   0     +-------------------------------------------+
//         | magic, version, slot count                 |
//   128   +-------------------------------------------+
//         | wake word (futex)                          |
//   256   +-------------------------------------------+
//         | CursorSlot[kCursorSlots], 128 bytes each   |
//         +-------------------------------------------+
//
// A cursor word packs [epoch:8][participant:8][participant epoch:8][0:1][position/32:39].
// The epoch is odd while the slot is owned and even while free; every claim
// and every free (or eviction) bumps it, so an evicted owner's compare-and-
// swap fails and it can never write into a slot that someone else now owns.
// The participant's own epoch (low 8 bits of its directory slot's epoch)
// tells a live owner from a dead one whose participant slot was reused.
// Bit 39 was the asleep bit (layout 3); it is always 0 now.
// ---------------------------------------------------------------------------

inline constexpr uint32_t kCursorSlots = 64;

struct CursorWord {
  static constexpr uint64_t kUnitsBits = 39;  // 32-byte units: a 16 TiB window, far above any capacity
  static constexpr uint64_t kUnitsMask = (1ull << kUnitsBits) - 1;
  static uint64_t pack(uint32_t epoch, uint32_t participant, uint32_t participant_epoch, uint64_t position) {
    return (uint64_t(epoch & 0xff) << 56) | (uint64_t(participant & 0xff) << 48) |
           (uint64_t(participant_epoch & 0xff) << 40) | ((position / kRecordAlign) & kUnitsMask);
  }
  static uint64_t freed(uint64_t word) { return pack(epoch(word) + 1, 0, 0, 0); }
  static uint32_t epoch(uint64_t word) { return uint32_t(word >> 56); }
  static uint32_t participant(uint64_t word) { return uint32_t(word >> 48) & 0xff; }
  static uint32_t participant_epoch(uint64_t word) { return uint32_t(word >> 40) & 0xff; }
  static bool owned(uint64_t word) { return (epoch(word) & 1) != 0; }
  /// The full position, given any position `near` within 2^44 bytes above it.
  static uint64_t position(uint64_t word, uint64_t near) {
    const uint64_t near_units = near / kRecordAlign;
    const uint64_t behind = (near_units - (word & kUnitsMask)) & kUnitsMask;
    return (near_units - behind) * kRecordAlign;
  }
};

struct CursorSlot {
  std::atomic<uint64_t> word;           // see CursorWord
  std::atomic<uint64_t> last_moved_ns;  // event time (Unix ns) when its owner last published a move (tools)
  std::atomic<uint64_t> evictions;      // times this slot's owner was evicted (tools)
  std::atomic<uint32_t> sleeping;       // 1 while its owner sleeps on wake_word (tools only, not the protocol)
  // A cursor a new ring's writer claimed for a subscription that existed
  // before the ring (SubscriptionSlot::tag), for that subscriber to adopt;
  // 0 for cursors that readers claimed themselves.
  std::atomic<uint32_t> subscription;
  std::atomic<uint64_t> losses;         // events its owners were told they missed (tools)
  // Untrusted topics: events its owners refused because their copy failed
  // verification (tools). Was padding (zero) before, so older readers show 0.
  std::atomic<uint64_t> rejected;
  char pad[kLinePad - 48];
};
static_assert(sizeof(CursorSlot) == kLinePad);
static_assert(offsetof(CursorSlot, word) == 0 && offsetof(CursorSlot, last_moved_ns) == 8 &&
              offsetof(CursorSlot, evictions) == 16 && offsetof(CursorSlot, subscription) == 28 &&
              offsetof(CursorSlot, losses) == 32 && offsetof(CursorSlot, rejected) == 40);

struct ControlHeader {
  std::atomic<uint64_t> magic;
  uint32_t layout_version;
  uint32_t slot_count;
  char pad0[kLinePad - 16];
  uint32_t reserved0;               // was `waiters` (layout 3)
  std::atomic<uint32_t> wake_word;  // the futex readers sleep on; the writer bumps it to wake them
  char pad1[kLinePad - 8];
  CursorSlot slots[kCursorSlots];
};
static_assert(offsetof(ControlHeader, layout_version) == 8 && offsetof(ControlHeader, slot_count) == 12);
static_assert(offsetof(ControlHeader, wake_word) == kLinePad + 4);
static_assert(offsetof(ControlHeader, slots) == 2 * kLinePad);
static_assert(std::is_standard_layout_v<ControlHeader>);

// ---------------------------------------------------------------------------
// Bell segment "flowbus.<bus>.<topic>@<publisher>.bell": every reader may
// write it, so its writer trusts none of it. Created with the control
// segment's mode; the writer and readers map it through the fault guard
// (core/src/fault_guard.hpp), since whoever may write it may truncate it.
//
//   0     +-------------------------------------------+
//         | magic, version                             |
//   128   +-------------------------------------------+
//         | wake request              (loaded per publish)|
//   256   +-------------------------------------------+
//
// A reader about to sleep sets `wake_request`; the writer's next publish
// clears it and wakes every sleeper (RingWriter::publish_position). No count,
// so a reader that dies asleep costs at most one wake-up, and nobody has
// anything to take back when a sleeper is evicted or leaves. A forged 1 costs
// the writer a futex call per publish; a forged 0 erases requests, so where
// others may write the bell, readers sleep in bounded slices.
// ---------------------------------------------------------------------------
struct BellHeader {
  std::atomic<uint64_t> magic;
  uint32_t layout_version;
  uint32_t reserved0;
  char pad0[kLinePad - 16];
  std::atomic<uint32_t>
      wake_request;  // nonzero: a reader sleeps, or is about to (set by readers, cleared by the writer)
  char pad1[kLinePad - 4];
};
static_assert(offsetof(BellHeader, layout_version) == 8 && offsetof(BellHeader, wake_request) == kLinePad);
static_assert(sizeof(BellHeader) == 2 * kLinePad);
inline constexpr uint64_t kBellSegmentSize = 4096;  // one whole page: the fault guard repairs pages

// ---------------------------------------------------------------------------
// Reader segment "flowbus.<bus>~r.<pid>.<n>": one per Subscriber and group
// (and per 64 rings of that group),
// created by that reader, written by it alone (mode 0640, group = the group
// of the topics it reads), so others may read it and nobody else can write
// it. The reader publishes its position on each ring here as well as in its
// cursor slot; least privilege (docs/proposals/least-privilege.md, step 6)
// moves the writer to reading it, mapped read-only, and retires the slots.
//
//   0     +-------------------------------------------+
//         | magic, version, token, pid, start time,    |
//         | creation time                              |
//   256   +-------------------------------------------+
//         | CursorLine[kReaderLines], 128 bytes each   |
//         +-------------------------------------------+
//
// A line is free while its publisher_id is 0. The reader fills
// publisher_id and ring_slot (the ring's key), then stores position
// (release); kLineLeft says it has left that ring.
// ---------------------------------------------------------------------------
inline constexpr uint64_t kReaderMagic = 0x5244524242574c46ull;  // "FLWBBRDR"
// One line per ring read; a Subscriber that reads more rings of one group
// makes another segment. Small, so a process under a file size limit
// (RLIMIT_FSIZE applies to /dev/shm too) or with many subscribers pays 8 KiB
// a segment: the proposal's 512 lines made 64 KiB, over `ulimit -f 128`.
inline constexpr uint32_t kReaderLines = 64;
inline constexpr uint64_t kLineLeft = UINT64_MAX;

struct CursorLine {
  std::atomic<uint64_t> position;      // start of the reader's next record; kLineLeft once it left
  std::atomic<uint64_t> publisher_id;  // with ring_slot: which ring; 0 while the line is free
  std::atomic<uint32_t> ring_slot;     // the ring's slot in the directory
  uint32_t reserved0;
  std::atomic<uint64_t> last_moved_ns;  // event time (Unix ns) of its last move (tools)
  char pad[kLinePad - 32];
};
static_assert(sizeof(CursorLine) == kLinePad);
static_assert(offsetof(CursorLine, publisher_id) == 8 && offsetof(CursorLine, ring_slot) == 16 &&
              offsetof(CursorLine, last_moved_ns) == 24);

struct ReaderHeader {
  std::atomic<uint64_t> magic;
  uint32_t layout_version;
  uint32_t lines;       // kReaderLines
  uint64_t token;       // random, nonzero: tells this segment from a later one of the same name
  uint64_t pid;         // the reader's process
  uint64_t start_time;  // its start time (/proc/<pid>/stat), so a reused pid is not taken for it
  uint64_t created_ns;  // Unix ns (tools)
  char pad[2 * kLinePad - 48];
  CursorLine line[kReaderLines];
};
static_assert(offsetof(ReaderHeader, token) == 16 && offsetof(ReaderHeader, line) == 2 * kLinePad);
static_assert(std::is_standard_layout_v<ReaderHeader>);
static_assert(std::is_standard_layout_v<BellHeader>);

}  // namespace flowbus::detail
