// Shared-memory layouts of flowbus: a ring's data, control and bell segments,
// and a reader's own segment.
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
// 5: readers write only their own reader segments (least privilege, step 6):
//    `.ctl` is the writer's (Attachment[64] replaces the cursor slots), the
//    bell grows a doorbell (`rings`, BellSlot[64]), and the data segment a
//    reuse floor beside tail.
// 6: subscriptions live in the subscribers' reader segments (a pattern and
//    a tag in the header), not in the directory (SubscriptionSlot is gone);
//    a reservation names the reader segment it was made from.
// 7: a bell slot is filled under a value of that claim's own (odd) and
//    marked rung by CAS; a reservation is given up by kLineGivenUp in the
//    reader's own line, never by a bell slot naming no line.
inline constexpr uint32_t kLayoutVersion = 7;

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
//         | tail_position, limit, reuse_floor          |
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
  // limit - capacity of the limit the writer set last, stored before any
  // byte below it is reused: a reader not yet admitted checks its reads
  // against it (tail may pass a joiner the writer admits after storing tail).
  std::atomic<uint64_t> reuse_floor;
  char pad2[kLinePad - 24];

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
// Control segment "flowbus.<bus>.<topic>@<publisher>.ctl": written by the
// ring's writer only (mode as the data segment); readers map it read-only.
//
//   0     +-------------------------------------------+
//         | magic, version, attachment count           |
//   128   +-------------------------------------------+
//         | wake word (futex), admissions              |
//   256   +-------------------------------------------+
//         | Attachment[kAttachments], 128 bytes each   |
//         +-------------------------------------------+
//
// An attachment is the writer's record of a reader it holds bytes for: a
// reader it admitted (whose line, in the reader's own segment, it obeys),
// or a reservation it made at the ring's start for a subscription that
// existed before the ring. Its state word packs [epoch:56][kind:8]; every
// claim, free and eviction bumps the epoch, so a reader that finds its
// epoch changed knows it was evicted. Only the writer writes any of it:
// readers learn of their admission by watching `admissions`.
// ---------------------------------------------------------------------------

inline constexpr uint32_t kAttachments = 64;

struct AttachmentState {
  // kWriting: the writer is changing the fields (readers look again).
  static constexpr uint64_t kFree = 0, kReserved = 1, kAdmitted = 2, kWriting = 3;
  static uint64_t pack(uint64_t epoch, uint64_t kind) { return epoch << 8 | kind; }
  static uint64_t epoch(uint64_t word) { return word >> 8; }
  static uint64_t kind(uint64_t word) { return word & 0xff; }
};

struct Attachment {
  std::atomic<uint64_t> state;  // AttachmentState: written last (release), after the fields below
  // Admitted: the reader segment "flowbus.<bus>~r.<pid>.<n>" (token) and its line.
  std::atomic<uint64_t> token;
  // Reserved: the reader segment holding the subscription it was made for.
  // Either way attested by the kernel (owner, /proc) when the writer made it.
  std::atomic<uint32_t> pid;
  std::atomic<uint32_t> uid;
  std::atomic<uint32_t> n;
  std::atomic<uint32_t> line;        // kNoLine while Reserved
  std::atomic<uint64_t> start_time;  // of pid (/proc/<pid>/stat), so a reused pid is not taken for it
  // Reserved: the subscription it holds position held_from for (the tag in
  // that segment's header).
  std::atomic<uint32_t> subscription;
  uint32_t reserved0;
  std::atomic<uint64_t> held_from;  // the position it held the writer at when made (tools)
  std::atomic<uint64_t> evictions;  // readers evicted from this attachment (tools)
  std::atomic<uint64_t> since_ns;   // Unix ns of the claim (tools)
  char pad[kLinePad - 72];
};
static_assert(sizeof(Attachment) == kLinePad);
static_assert(offsetof(Attachment, token) == 8 && offsetof(Attachment, start_time) == 32 &&
              offsetof(Attachment, held_from) == 48 && offsetof(Attachment, since_ns) == 64);

struct ControlHeader {
  std::atomic<uint64_t> magic;
  uint32_t layout_version;
  uint32_t attachment_count;  // kAttachments
  char pad0[kLinePad - 16];
  uint32_t reserved0;
  std::atomic<uint32_t> wake_word;   // the futex readers sleep on; the writer bumps it to wake them
  std::atomic<uint64_t> admissions;  // bumped (release) after every change of an attachment
  char pad1[kLinePad - 16];
  Attachment attachments[kAttachments];
};
static_assert(offsetof(ControlHeader, layout_version) == 8 && offsetof(ControlHeader, attachment_count) == 12);
static_assert(offsetof(ControlHeader, wake_word) == kLinePad + 4 &&
              offsetof(ControlHeader, admissions) == kLinePad + 8);
static_assert(offsetof(ControlHeader, attachments) == 2 * kLinePad);
static_assert(std::is_standard_layout_v<ControlHeader>);

// ---------------------------------------------------------------------------
// Bell segment "flowbus.<bus>.<topic>@<publisher>.bell": every reader may
// write it, so its writer trusts none of it. Created with the mode that lets
// the topic's readers write; the writer and readers map it through the fault
// guard (core/src/fault_guard.hpp), since whoever may write it may truncate it.
//
//   0     +-------------------------------------------+
//         | magic, version, slot count                 |
//   128   +-------------------------------------------+
//         | wake request             (loaded per publish)|
//   256   +-------------------------------------------+
//         | rings          (loaded per limit refresh)  |
//   384   +-------------------------------------------+
//         | BellSlot[kBellSlots], 32 bytes each        |
//         +-------------------------------------------+
//
// Wake-up: a reader about to sleep sets `wake_request`; the writer's next
// publish clears it and wakes every sleeper (RingWriter::publish_position).
// No count, so a reader that dies asleep costs at most one wake-up. A forged
// 1 costs the writer a futex call per publish; a forged 0 erases requests,
// so where others may write the bell, readers sleep in bounded slices.
//
// Joining: a reader announces itself in a free slot (its reader segment and
// line), then bumps `rings`; the writer, at its next limit refresh, attests
// the segment with the kernel (owner, group, mode, /proc) before it trusts
// a byte of it, admits the reader, and frees the slot. A forged or erased
// announcement costs the victim a slower admission, never an event: a reader
// not yet admitted validates every read (RingReader, "joining").
// ---------------------------------------------------------------------------
inline constexpr uint32_t kBellSlots = 64;
inline constexpr uint32_t kNoLine = UINT32_MAX;  // no line (the writer answers no announcement naming none)

struct BellSlot {
  // 0 free; odd while a reader fills it (a value of that claim's own, see
  // bell_filling_value); kBellSlotRung once filled (the reader's CAS from its
  // filling value, release); the writer sets 0 again once it has processed
  // it, or freed a slot left filling (its reader died, or a forger).
  std::atomic<uint64_t> seq;
  std::atomic<uint64_t> token;
  std::atomic<uint32_t> pid;
  std::atomic<uint32_t> n;
  std::atomic<uint32_t> line;          // the line for this ring in that segment, or kNoLine
  std::atomic<uint32_t> subscription;  // adopting the reservation for this tag; 0: a plain join
};
inline constexpr uint64_t kBellSlotFilling = 1, kBellSlotRung = 2;  // any odd value is filling
inline constexpr bool bell_slot_filling(uint64_t seq) noexcept { return (seq & 1) != 0; }
/// A claim's own filling value: odd, and differs from claim to claim, so a
/// reader whose slot the writer freed (and another reader may have claimed)
/// fails its CAS to kBellSlotRung and rings in another slot.
inline constexpr uint64_t bell_filling_value(uint64_t token, uint64_t claim) noexcept {
  return ((token ^ (claim * 0x9e3779b97f4a7c15ull)) << 1) | kBellSlotFilling;
}
static_assert(sizeof(BellSlot) == 32);

struct BellHeader {
  std::atomic<uint64_t> magic;
  uint32_t layout_version;
  uint32_t slot_count;  // kBellSlots
  char pad0[kLinePad - 16];
  std::atomic<uint32_t>
      wake_request;  // nonzero: a reader sleeps, or is about to (set by readers, cleared by the writer)
  char pad1[kLinePad - 4];
  std::atomic<uint64_t> rings;  // bumped (seq_cst) after a slot is rung
  char pad2[kLinePad - 8];
  BellSlot slot[kBellSlots];
};
static_assert(offsetof(BellHeader, layout_version) == 8 && offsetof(BellHeader, wake_request) == kLinePad);
static_assert(offsetof(BellHeader, rings) == 2 * kLinePad && offsetof(BellHeader, slot) == 3 * kLinePad);
inline constexpr uint64_t kBellSegmentSize = 4096;  // one whole page: the fault guard repairs pages
static_assert(sizeof(BellHeader) <= kBellSegmentSize);

// ---------------------------------------------------------------------------
// Reader segment "flowbus.<bus>~r.<pid>.<n>": one per Subscriber and group
// (and per 64 rings of that group),
// created by that reader, written by it alone (mode 0640, group = the group
// of the topics it reads), so others may read it and nobody else can write
// it. The reader publishes its position on each ring here; a Block ring's
// writer that admitted it (an Attachment) maps it read-only and obeys it.
//
//   0     +-------------------------------------------+
//         | magic, version, token, pid, start time,    |
//         | creation time, subscription tag, pattern   |
//   256   +-------------------------------------------+
//         | CursorLine[kReaderLines], 128 bytes each   |
//         +-------------------------------------------+
//
// A line is free while its publisher_id is 0. The reader stores kLineLeft
// in position, fills publisher_id and ring_slot (the ring's key), then
// stores its position (release); kLineLeft says it has left that ring,
// kLineGivenUp that it gave up the ring's reservation for it.
//
// The subscription: the Subscriber's pattern and a random nonzero tag,
// written before the segment is linked into place (so the file appears
// whole); the subscription ends when the segment is removed. A ring's
// creator lists these segments before its ring is Ready and reserves an
// attachment for each live subscription that matches (subscriptions.cpp).
// ---------------------------------------------------------------------------
inline constexpr uint64_t kReaderMagic = 0x5244524242574c46ull;  // "FLWBBRDR"
// One line per ring read; a Subscriber that reads more rings of one group
// makes another segment. Small, so a process under a file size limit
// (RLIMIT_FSIZE applies to /dev/shm too) or with many subscribers pays 8 KiB
// a segment: the proposal's 512 lines made 64 KiB, over `ulimit -f 128`.
inline constexpr uint32_t kReaderLines = 64;
inline constexpr uint64_t kLineLeft = UINT64_MAX;
// A reader gives up a reservation it will not use by storing this in a line
// keyed to the ring and announcing that line: the writer reads it in the
// reader's own segment, which nobody else can write, so nobody can give up
// another's reservation. The line stays so (not reused) while the segment lives.
inline constexpr uint64_t kLineGivenUp = UINT64_MAX - 1;
inline constexpr size_t kPatternBytes = 128;  // as a topic name (directory_layout.hpp, kNameBytes)

struct CursorLine {
  std::atomic<uint64_t> position;       // start of the reader's next record; kLineLeft once it left
  std::atomic<uint64_t> publisher_id;   // with ring_slot: which ring; 0 while the line is free
  std::atomic<uint32_t> ring_slot;      // the ring's slot in the directory
  std::atomic<uint32_t> sleeping;       // 1 while the reader sleeps on the ring's wake word (tools)
  std::atomic<uint64_t> last_moved_ns;  // event time (Unix ns) of its last move (tools)
  std::atomic<uint64_t> losses;         // events the reader was told it missed (tools)
  std::atomic<uint64_t> rejected;       // untrusted topics: events whose copy failed verification (tools)
  std::atomic<uint64_t> evictions;      // times the writer evicted it (tools)
  char pad[kLinePad - 56];
};
static_assert(sizeof(CursorLine) == kLinePad);
static_assert(offsetof(CursorLine, publisher_id) == 8 && offsetof(CursorLine, ring_slot) == 16 &&
              offsetof(CursorLine, sleeping) == 20 && offsetof(CursorLine, last_moved_ns) == 24 &&
              offsetof(CursorLine, evictions) == 48);

struct ReaderHeader {
  std::atomic<uint64_t> magic;
  uint32_t layout_version;
  uint32_t lines;                      // kReaderLines
  uint64_t token;                      // random, nonzero: tells this segment from a later one of the same name
  uint64_t pid;                        // the reader's process
  uint64_t start_time;                 // its start time (/proc/<pid>/stat), so a reused pid is not taken for it
  uint64_t created_ns;                 // Unix ns (tools)
  std::atomic<uint32_t> subscription;  // its Subscriber's tag; 0: none
  uint32_t reserved0;
  char pattern[kPatternBytes];  // the Subscriber's pattern, NUL-terminated
  char pad[2 * kLinePad - 56 - kPatternBytes];
  CursorLine line[kReaderLines];
};
static_assert(offsetof(ReaderHeader, token) == 16 && offsetof(ReaderHeader, subscription) == 48 &&
              offsetof(ReaderHeader, line) == 2 * kLinePad);
static_assert(std::is_standard_layout_v<ReaderHeader>);
static_assert(std::is_standard_layout_v<BellHeader>);

}  // namespace flowbus::detail
