// A read-only snapshot of a bus for `flowbus inspect`: it maps every segment
// read-only, claims no cursor and registers no participant, so the bus it
// looks at behaves exactly as without it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "flowbus/event.hpp"
#include "flowbus/topic.hpp"

namespace flowbus {

struct ParticipantSnapshot {
  uint32_t slot = 0;
  int64_t pid = 0;
  bool alive = false;
  uint64_t attached_ns = 0;  ///< unix ns
};

struct CursorSnapshot {
  uint32_t slot = 0;  ///< the writer's attachment holding bytes for it; UINT32_MAX: none (latest, or not admitted yet)
  bool admitted = false;          ///< block: the writer admitted it and obeys its position
  bool position_unknown = false;  ///< admitted, but its segment is not readable by us (another group's)
  int64_t pid = 0;            ///< owner's pid, 0 if its participant slot is gone
  bool alive = false;
  uint64_t position = 0;      ///< as last published (readers publish every eighth of a ring)
  uint64_t lag_bytes = 0;     ///< write position - position
  int64_t lag_events = -1;    ///< next sequence - sequence at the cursor; -1 if not known (lapped: more than the ring retains)
  bool lapped = false;        ///< latest: the writer overwrote events this reader had not read; its next read reports them lost
  uint64_t evictions = 0;     ///< evictions of this slot's owners so far
  uint64_t losses = 0;        ///< events this slot's owners were told they missed (lapped or evicted)
  uint64_t rejected = 0;      ///< untrusted topics: events this slot's owners refused (failed verification)
  uint64_t idle_ns = 0;       ///< since its owner last published a move (or joined)
  bool sleeping = false;
  uint32_t reserved_for =
      0;  ///< the tag of the subscription the ring's creator reserved it for; 0: joined by its reader
};

struct RingSnapshot {
  std::string topic, publisher, segment;
  uint64_t publisher_id = 0;
  std::string origin_node;     ///< mirror rings: the node the events came from (empty: published here)
  std::string origin_source;   ///< mirror rings: the events' CloudEvents source
  int64_t writer_pid = 0;      ///< pid of the last publisher that held it
  bool writer_alive = false;   ///< a live publisher holds it now
  Policy policy = Policy::Block;  ///< as the ring's header says
  uint64_t capacity = 0, write_position = 0, tail_position = 0, next_sequence = 0;
  uint64_t retained_events = 0;  ///< events between tail and the write position
  uint64_t last_publish_ns = 0;
  /// How much of the ring the slowest live reader has yet to read: (write -
  /// its position) / capacity, at most 1; 0 with no reader. At 1, a block
  /// writer waits for that reader; a latest writer (which never waits)
  /// overwrites what it has not read.
  double fill = 0;
  std::vector<CursorSnapshot> cursors;
  std::string error;             ///< why the ring could not be read (permission, damage, removal), else empty
  int64_t remover_pid = 0;       ///< non-zero: the ring is being removed by this process (a gc, or an open removing
                                 ///< an expired ring) and was not read; `error` says whether it is still at it
};

/// One stream of a sidecar connection: an exported ring (what was sent and
/// what the peer confirmed) or an imported one (what this bus holds).
struct MirrorStreamSnapshot {
  std::string topic;
  uint64_t publisher_id = 0;    ///< the origin ring's id
  std::string origin;           ///< imports: "<node>/<publisher>"
  uint64_t sent_sequence = 0;   ///< exports: next sequence to send
  uint64_t acked_sequence = 0;  ///< exports: the peer holds everything below it
  uint64_t next_sequence = 0;   ///< imports: next sequence this bus needs
  int64_t lag_events = -1;      ///< exports: the ring's next sequence - acked_sequence (-1: ring not found)
  uint64_t gaps = 0;            ///< events of this stream that could not be mirrored (lost at the source)
  std::string refused;          ///< the importer refused the stream ("SchemaMismatch: ..."), else empty
};

struct MirrorPeerSnapshot {
  std::string node, address;
  bool connected = false;
  bool outbound = false;
  uint64_t queued_bytes = 0;  ///< waiting for the socket
  std::vector<MirrorStreamSnapshot> exports, imports;
};

/// A `flowbus sidecar` on this bus, from the status it writes twice a second.
struct SidecarSnapshot {
  std::string node;
  int64_t pid = 0;
  bool alive = false;
  uint32_t listen_port = 0;
  uint64_t updated_ns = 0;  ///< unix ns of its last status
  uint64_t events_sent = 0, events_received = 0, duplicates_dropped = 0, gaps = 0;
  std::vector<MirrorPeerSnapshot> peers;
  std::string error;  ///< the status could not be read
};

/// A subscription (Bus::subscribe), recorded in its subscriber's reader
/// segments: a ring created after it reserves room for it, so it misses
/// nothing of that ring.
struct SubscriptionSnapshot {
  uint32_t slot = 0;  ///< n of its (first) reader segment "flowbus.<bus>~r.<pid>.<n>"
  std::string pattern;
  int64_t pid = 0;  ///< its process
  bool alive = false;
  uint32_t uid = 0;             ///< its process's effective uid
  uint32_t tag = 0;             ///< names it in the attachments reserved for it (CursorSnapshot::reserved_for)
  uint32_t rings_attached = 0;  ///< rings matching its pattern its process reads
  uint32_t rings_reserved = 0;  ///< rings whose creator reserved an attachment for it (adopted or not yet)
};

struct TopicSnapshot {
  TopicInfo info;  ///< schema bytes left out
};

struct BusSnapshot {
  std::string name;
  uint32_t layout_version = 0;
  uint64_t generation = 0;
  std::vector<ParticipantSnapshot> participants;
  std::vector<TopicSnapshot> topics;
  std::vector<RingSnapshot> rings;
  std::vector<SubscriptionSnapshot> subscriptions;
  std::vector<SidecarSnapshot> sidecars;
  std::vector<std::string> warnings;  ///< each names the problem and the fix
  size_t live_participants() const;
};

/// Reads bus `name` without changing anything. Throws Error (NotFound,
/// PermissionDenied naming owner and mode, VersionMismatch, Corrupt).
BusSnapshot inspect_bus(const std::string& name);

// ---------------------------------------------------------------------------
// Reading events from outside: `flowbus inspect BUS TOPIC --dump`.
// ---------------------------------------------------------------------------

/// One record copied out of a ring: its header as written, its bytes (header,
/// subject and payload), and the event they make.
struct TapRecord {
  uint64_t position = 0;
  uint64_t commit = 0;  ///< the commit word as read: position + 1
  uint32_t size = 0, data_offset = 0, flags = 0;
  uint64_t sequence = 0, time_ns = 0;
  bool padding = false;
  std::vector<uint8_t> bytes;  ///< the whole record
  std::string subject;
  const RingContext* context = nullptr;
  /// A view of the copy (valid while this record lives unchanged).
  Event event() const;
};

/// Reads one ring without a cursor: the writer never waits for it, nothing in
/// shared memory changes. Each record is copied, then checked against the
/// ring's tail, so what it returns was intact; a tap that is lapped says how
/// many events it missed.
class RingTap {
 public:
  enum class Status { Ok, Empty, Lost, Corrupt };
  /// Opens `topic@publisher` read-only. Throws Error (NotFound, PermissionDenied, Corrupt).
  RingTap(const std::string& bus, const std::string& topic, const std::string& publisher);
  ~RingTap();
  RingTap(RingTap&&) noexcept;
  RingTap& operator=(RingTap&&) noexcept;

  void start_earliest();
  /// Starts at the ring's first event: at the oldest retained, and if the
  /// writer has overwritten events since the ring began, the first next()
  /// answers Lost with their number (for a ring that appeared while we watched).
  void start_from_first();
  /// Starts at the `count`-th last event (at the earliest retained if fewer).
  void start_latest(uint64_t count);
  /// The next record. Ok fills `out` (padding records only with `with_padding`);
  /// Lost: the writer lapped us, reported once per gap, `take_missed()` says how many events; Corrupt: the
  /// ring fails its checks here (`flowbus inspect BUS --check` says more).
  Status next(TapRecord& out, bool with_padding = false);
  uint64_t take_missed() noexcept;
  const RingContext& context() const noexcept;
  const TopicInfo& topic() const noexcept;  ///< with its binary schema, to decode payloads
  uint64_t capacity() const noexcept;

 private:
  struct State;
  std::unique_ptr<State> s_;
};

// ---------------------------------------------------------------------------
// Verifying invariants: `flowbus inspect BUS --check`.
// ---------------------------------------------------------------------------

struct CheckFinding {
  std::string where;    ///< "directory", "topic NAME", "ring TOPIC@PUBLISHER", "ring ... control"
  std::string problem;  ///< what is wrong, with the numbers
};

struct CheckReport {
  std::string bus;
  uint64_t topics = 0, rings = 0, records = 0, cursors = 0;  ///< what was verified
  std::vector<CheckFinding> findings;    ///< damage
  std::vector<CheckFinding> unreadable;  ///< rings the caller may not read: not checked, and not damage
  std::vector<CheckFinding> removing;    ///< rings being removed (or whose removal a dead remover left): not checked, not damage
  bool ok() const noexcept { return findings.empty(); }
};

/// Verifies the directory and every ring read-only: magic and version, sizes,
/// names, alignment, positions, the record chain from tail to the write
/// position (commit words, lengths, padding, sequences), and cursors. A
/// finding caused by a live writer racing the walk is re-checked and dropped
/// if it goes away. A ring the caller may not read is listed in `unreadable`,
/// one being removed in `removing`, not in `findings`. Throws Error only when
/// the bus cannot be opened at all.
CheckReport check_bus(const std::string& name);

}  // namespace flowbus
