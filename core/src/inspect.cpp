// `flowbus inspect`: read-only snapshots. Nothing here writes shared memory.
// Loads of directory words are acquire (directory_layout.hpp); ring words as in ring.hpp.
#include "flowbus/inspect.hpp"

#include <cstring>

#include "bus_state.hpp"
#include "flowbus/detail/ring.hpp"
#include "inspect_ring.hpp"
#include "flowbus/error.hpp"
#include "flowbus/names.hpp"
#include "liveness.hpp"

namespace flowbus::detail {
std::vector<SidecarSnapshot> read_sidecars(const std::string& bus, const std::vector<RingSnapshot>& rings);
}

namespace flowbus {
using namespace detail;

size_t BusSnapshot::live_participants() const {
  size_t n = 0;
  for (const auto& p : participants) n += p.alive;
  return n;
}

namespace {

bool participant_alive(const DirectoryLayout* dir, uint32_t index, uint32_t epoch_low8, int64_t* pid) {
  if (index >= kParticipants) return false;
  const ParticipantSlot& p = dir->participants[index];
  const uint64_t w = p.state.load(std::memory_order_acquire);
  if (SlotWord::state(w) != kReady) return false;
  if (pid != nullptr) *pid = SlotWord::who(w);
  if (epoch_low8 != 256 && (SlotWord::epoch(w) & 0xff) != epoch_low8) return false;
  return process_alive(pid_t(SlotWord::who(w)), p.start_time);
}

}  // namespace

namespace detail {

namespace {

// The sequence at a position, if a committed, sane record is there.
bool sequence_at(const uint8_t* data, const RingSnapshot& ring, uint64_t p, uint64_t* seq) {
  if (p % kRecordAlign != 0) return false;  // off the record grid: a scribbled tail
  const uint8_t* records = data + kRecordsOffset;
  const auto* rec = reinterpret_cast<const RecordHeader*>(records + (p & (ring.capacity - 1)));
  if (p >= ring.write_position || rec->commit.load(std::memory_order_acquire) != p + 1) return false;
  const RecordFields f = read_fields(rec);
  if (!fields_sane(f, ring.capacity - (p & (ring.capacity - 1)))) return false;
  *seq = f.sequence;
  return true;
}

}  // namespace

bool snapshot_ring_data(const std::string& bus, const uint8_t* data, uint64_t size, RingSnapshot& out) {
  const auto* h = reinterpret_cast<const RingHeader*>(data);
  // Capacity is read once: anyone with write access may change it while we
  // look, and a value checked then read again could send us past the segment.
  const uint64_t capacity = size < kRecordsOffset ? 0 : *static_cast<const volatile uint64_t*>(&h->capacity);
  if (size < kRecordsOffset || h->magic.load(std::memory_order_acquire) != kRingMagic ||
      h->layout_version != kLayoutVersion || size - kRecordsOffset < capacity || capacity < kMinCapacity ||
      (capacity & (capacity - 1)) != 0) {
    out.error = "damaged or foreign ring header (magic, version or capacity); check it with `flowbus inspect " + bus + " --check`";
    return false;
  }
  out.capacity = capacity;
  out.write_position = h->write_position.load(std::memory_order_acquire);
  out.tail_position = h->tail_position.load(std::memory_order_acquire);
  out.next_sequence = h->next_sequence.load(std::memory_order_acquire);
  out.last_publish_ns = h->last_publish_ns.load(std::memory_order_relaxed);
  uint64_t tail_seq = 0;
  out.retained_events = sequence_at(data, out, out.tail_position, &tail_seq) && tail_seq <= out.next_sequence
                            ? out.next_sequence - tail_seq
                            : 0;
  return true;
}

void snapshot_ring_cursors(const uint8_t* data, const ControlHeader* c, const DirectoryLayout* dir, RingSnapshot& out) {
  uint64_t slowest = UINT64_MAX;
  const uint64_t now = realtime_ns();  // cursors stamp their moves with event time (Unix ns)
  for (uint32_t i = 0; i < kCursorSlots; ++i) {
    const CursorSlot& s = c->slots[i];
    const uint64_t word = s.word.load(std::memory_order_acquire);
    if (!CursorWord::owned(word)) continue;
    CursorSnapshot cur;
    cur.slot = i;
    cur.alive = participant_alive(dir, CursorWord::participant(word), CursorWord::participant_epoch(word), &cur.pid);
    cur.position = CursorWord::position(word, out.write_position);
    cur.lag_bytes = out.write_position >= cur.position ? out.write_position - cur.position : 0;
    uint64_t seq = 0;
    if (cur.lag_bytes == 0) cur.lag_events = 0;
    else if (sequence_at(data, out, cur.position, &seq) && seq <= out.next_sequence) cur.lag_events = int64_t(out.next_sequence - seq);
    cur.evictions = s.evictions.load(std::memory_order_relaxed);
    cur.losses = s.losses.load(std::memory_order_relaxed);
    const uint64_t moved = s.last_moved_ns.load(std::memory_order_relaxed);
    cur.idle_ns = moved != 0 && now > moved ? now - moved : 0;
    cur.sleeping = CursorWord::asleep(word);
    if (cur.alive) slowest = std::min(slowest, cur.position);
    out.cursors.push_back(cur);
  }
  if (slowest != UINT64_MAX && out.write_position >= slowest) out.fill = double(out.write_position - slowest) / double(out.capacity);
}

}  // namespace detail

namespace {

void read_ring(const std::string& bus, const DirectoryLayout* dir, RingSnapshot& out) {
  Segment data;
  try {
    data = Segment::open(data_segment_name(bus, out.topic, out.publisher), Access::ReadOnly, kRecordsOffset);
  } catch (const Error& e) {
    out.error = e.what();
    return;
  }
  if (!snapshot_ring_data(bus, data.data(), data.size(), out)) return;
  Segment ctl;
  try {
    ctl = Segment::open(control_segment_name(bus, out.topic, out.publisher), Access::ReadOnly, sizeof(ControlHeader));
  } catch (const Error& e) {
    out.error = e.what();
    return;
  }
  snapshot_ring_cursors(data.data(), reinterpret_cast<const ControlHeader*>(ctl.data()), dir, out);
}

std::string topic_of_ring(const RingSnapshot& r) { return r.topic + "@" + r.publisher; }

void add_warnings(BusSnapshot& snap) {
  if (snap.live_participants() == 0)
    snap.warnings.push_back("no live process uses bus '" + snap.name + "': `flowbus gc " + snap.name +
                            "` removes it once its rings' retention has passed (`--force` now)");
  for (const auto& p : snap.participants)
    if (!p.alive)
      snap.warnings.push_back("process " + std::to_string(p.pid) + " died attached to the bus; the next process to open it (or `flowbus gc " + snap.name + "`) frees what it left");
  for (const auto& r : snap.rings) {
    if (!r.error.empty()) {
      snap.warnings.push_back("ring " + topic_of_ring(r) + ": " + r.error);
      continue;
    }
    if (!r.writer_alive) {
      bool undrained = false;
      for (const auto& c : r.cursors) undrained |= c.alive && c.lag_bytes > 0;
      if (undrained)
        snap.warnings.push_back("ring " + topic_of_ring(r) + ": its publisher (pid " + std::to_string(r.writer_pid) +
                                ") is gone and readers have not drained it yet; restart the publisher under the name '" + r.publisher + "' to continue its sequence");
    }
    for (const auto& c : r.cursors) {
      if (!c.alive)
        snap.warnings.push_back("ring " + topic_of_ring(r) + ": cursor " + std::to_string(c.slot) + " belongs to a dead process (pid " +
                                std::to_string(c.pid) + "); the writer evicts it when it needs the space");
      else if (r.fill > 0.9 && c.lag_bytes * 10 > r.capacity * 9)
        snap.warnings.push_back("ring " + topic_of_ring(r) + ": reader pid " + std::to_string(c.pid) +
                                " is more than 90% of the ring behind; it will be evicted after the topic's slow-consumer timeout unless it catches up");
    }
  }
  for (const SidecarSnapshot& side : snap.sidecars) {
    const std::string who = "sidecar " + side.node + " (pid " + std::to_string(side.pid) + ")";
    if (!side.error.empty()) {
      snap.warnings.push_back(side.error);
      continue;
    }
    if (!side.alive) {
      snap.warnings.push_back(who + " is gone; restart it to resume mirroring (peers resume where they stopped)");
      continue;
    }
    for (const MirrorPeerSnapshot& peer : side.peers)
      if (!peer.connected)
        snap.warnings.push_back(who + ": peer " + peer.node + " is disconnected; what it has not acknowledged is held for it "
                                "(publishers of block topics wait) until it returns or its resume window ends");
    for (const MirrorPeerSnapshot& peer : side.peers) {
      for (const MirrorStreamSnapshot& x : peer.exports)
        if (!x.refused.empty())
          snap.warnings.push_back(who + ": peer " + peer.node + " refused topic " + x.topic + ": " + x.refused);
      for (const MirrorStreamSnapshot& x : peer.imports)
        if (!x.refused.empty())
          snap.warnings.push_back(who + ": refused topic " + x.topic + " from " + x.origin + ": " + x.refused);
    }
    if (side.gaps != 0)
      snap.warnings.push_back(who + ": " + std::to_string(side.gaps) + " events could not be mirrored (lost at the source); its log names them");
  }
}

}  // namespace

BusSnapshot inspect_bus(const std::string& name) {
  Segment seg = open_directory_read_only(name);
  const auto* dir = reinterpret_cast<const DirectoryLayout*>(seg.data());
  BusSnapshot snap;
  snap.name = name;
  if (dir->header.magic.load(std::memory_order_acquire) != kDirectoryMagic)
    throw Error(ErrorCode::Corrupt, "bus '" + name + "': its directory has no valid magic; `flowbus gc --force " + name + "` removes it");
  snap.layout_version = dir->header.layout_version;
  if (snap.layout_version != kLayoutVersion || seg.size() < sizeof(DirectoryLayout))
    throw Error(ErrorCode::VersionMismatch, "bus '" + name + "' has layout version " + std::to_string(snap.layout_version) +
                                                ", this flowbus speaks version " + std::to_string(kLayoutVersion));
  snap.generation = dir->header.generation.load(std::memory_order_acquire);
  for (uint32_t i = 0; i < kParticipants; ++i) {
    const uint64_t w = dir->participants[i].state.load(std::memory_order_acquire);
    if (SlotWord::state(w) != kReady) continue;
    ParticipantSnapshot p;
    p.slot = i;
    p.pid = SlotWord::who(w);
    p.alive = participant_alive(dir, i, 256, nullptr);
    p.attached_ns = dir->participants[i].attached_ns;
    snap.participants.push_back(p);
  }
  for (uint32_t i = 0; i < kTopics; ++i) {
    if (SlotWord::state(dir->topics[i].state.load(std::memory_order_acquire)) != kReady) continue;
    TopicSnapshot t{topic_info_of(dir->topics[i])};
    t.info.schema.clear();
    snap.topics.push_back(std::move(t));
  }
  for (uint32_t i = 0; i < kRings; ++i) {
    const RingSlot& r = dir->rings[i];
    if (SlotWord::state(r.state.load(std::memory_order_acquire)) != kReady) continue;
    RingSnapshot ring;
    ring.topic.assign(r.topic, strnlen(r.topic, kNameBytes));
    ring.publisher.assign(r.publisher, strnlen(r.publisher, kPublisherNameBytes));
    ring.segment = data_segment_name(name, ring.topic, ring.publisher);
    ring.publisher_id = r.publisher_id;
    if (r.flags & kRingMirror) {
      ring.origin_node.assign(r.origin_node, strnlen(r.origin_node, kNodeNameBytes));
      ring.origin_source.assign(r.origin_source, strnlen(r.origin_source, kSourceBytes));
    }
    ring.writer_pid = r.owner_pid;
    const uint64_t owner = r.owner.load(std::memory_order_acquire);
    ring.writer_alive = owner != 0 && !is_removing_owner(owner) &&
                        participant_alive(dir, SlotWord::who(owner), SlotWord::epoch(owner) & 0xff, nullptr);
    read_ring(name, dir, ring);
    snap.rings.push_back(std::move(ring));
  }
  snap.sidecars = read_sidecars(name, snap.rings);
  add_warnings(snap);
  return snap;
}

}  // namespace flowbus
