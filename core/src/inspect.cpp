// `flowbus inspect`: read-only snapshots. Nothing here writes shared memory.
// Loads of directory words are acquire (directory_layout.hpp); ring words as in ring.hpp.
#include "flowbus/inspect.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "bus_state.hpp"
#include "flowbus/detail/ring.hpp"
#include "flowbus/error.hpp"
#include "flowbus/names.hpp"
#include "inspect_ring.hpp"
#include "liveness.hpp"
#include "reader_lines.hpp"

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

std::vector<SubscriptionSnapshot> read_subscriptions(const std::string& bus) {
  std::vector<SubscriptionSnapshot> out;
  for (const FoundSubscription& f : find_subscriptions(bus)) {
    SubscriptionSnapshot sub;
    sub.slot = f.n;
    sub.pattern = f.pattern;
    sub.pid = f.pid;
    sub.alive = f.alive;
    sub.uid = f.uid;
    sub.tag = f.tag;
    out.push_back(std::move(sub));
  }
  return out;
}

// Which rings each subscription reads, from the cursors found in them.
void count_subscription_rings(BusSnapshot& snap) {
  for (SubscriptionSnapshot& sub : snap.subscriptions)
    for (const RingSnapshot& r : snap.rings) {
      bool reserved = false, attached = false;
      for (const CursorSnapshot& c : r.cursors) {
        reserved |= c.reserved_for == sub.tag && c.pid == sub.pid;  // tags are not secret: the pid too
        attached |= sub.pid != 0 && c.pid == sub.pid;
      }
      sub.rings_reserved += reserved;
      sub.rings_attached += attached && pattern_matches(sub.pattern, r.topic);
    }
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

// Acquire fence, then tail: as a latest reader validates what it read
// (RingReader::still_valid_at), so a sequence read before counts only if this says no.
bool below_tail(const uint8_t* data, uint64_t position) {
  std::atomic_thread_fence(std::memory_order_acquire);
  return position < reinterpret_cast<const RingHeader*>(data)->tail_position.load(std::memory_order_relaxed);
}

}  // namespace

std::string removal_note(const std::string& bus, uint64_t owner) {
  const uint32_t remover = SlotWord::who(owner);
  if (process_alive(pid_t(remover), 0)) return "being removed by pid " + std::to_string(remover) + " right now";
  return "its removal by pid " + std::to_string(remover) + " stopped half-way (that process is gone); `flowbus gc " + bus +
         "` finishes it";
}

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
  out.policy = Policy(h->policy) == Policy::Latest ? Policy::Latest : Policy::Block;
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

void snapshot_ring_cursors(const uint8_t* data, const ControlHeader* c, const std::vector<FoundReaderLine>& lines,
                           RingSnapshot& out) {
  uint64_t slowest = UINT64_MAX;
  const uint64_t now = realtime_ns();  // readers stamp their moves with event time (Unix ns)
  auto lag = [&](CursorSnapshot& cur) {
    cur.lag_bytes = out.write_position >= cur.position ? out.write_position - cur.position : 0;
    uint64_t seq = 0;
    if (cur.lag_bytes == 0)
      cur.lag_events = 0;
    else if (sequence_at(data, out, cur.position, &seq) && seq <= out.next_sequence)
      cur.lag_events = int64_t(out.next_sequence - seq);
    // Latest: bytes below tail may be overwritten (a sequence read there may
    // be torn); a reader there was lapped. Under block tail may pass a live
    // reader (kept conservatively, see advance_tail), so it says nothing there.
    if (out.policy == Policy::Latest && cur.lag_bytes != 0 && below_tail(data, cur.position)) {
      cur.lapped = true;
      cur.lag_events = -1;
    }
    if (cur.alive) slowest = std::min(slowest, cur.position);
  };
  // The writer's attachments: whom it holds bytes for. Read once each:
  // another process may change .ctl while we look (its owner, a group writer).
  struct Seen {
    uint64_t kind = AttachmentState::kFree;
    uint64_t token = 0;
    uint32_t line = 0;
    uint32_t pid = 0;
    bool matched = false;
  };
  std::vector<Seen> attached(kAttachments);
  for (uint32_t k = 0; k < kAttachments; ++k) {
    const Attachment& a = c->attachments[k];
    // Acquire: pairs with the writer's release store of the state (tools: a torn view is harmless).
    attached[k].kind = AttachmentState::kind(a.state.load(std::memory_order_acquire));
    attached[k].token = a.token.load(std::memory_order_relaxed);
    attached[k].line = a.line.load(std::memory_order_relaxed);
    attached[k].pid = a.pid.load(std::memory_order_relaxed);
  }
  for (const FoundReaderLine& l : lines) {
    CursorSnapshot cur;
    cur.slot = UINT32_MAX;
    for (uint32_t k = 0; k < kAttachments; ++k) {
      if (attached[k].kind != AttachmentState::kAdmitted || attached[k].token != l.token || attached[k].line != l.line)
        continue;
      attached[k].matched = true;
      cur.slot = k;
      cur.admitted = true;
      cur.reserved_for = c->attachments[k].subscription.load(std::memory_order_relaxed);
      cur.evictions = c->attachments[k].evictions.load(std::memory_order_relaxed);
      break;
    }
    // A reservation its subscriber adopted, which the writer has not
    // answered yet: the same reader (by its process).
    for (uint32_t k = 0; k < kAttachments && cur.slot == UINT32_MAX; ++k) {
      if (attached[k].kind != AttachmentState::kReserved || attached[k].matched || attached[k].pid != l.pid) continue;
      attached[k].matched = true;
      cur.slot = k;
      cur.reserved_for = c->attachments[k].subscription.load(std::memory_order_relaxed);
    }
    cur.pid = l.pid;
    cur.alive = l.alive;
    cur.position = l.position;
    cur.evictions = std::max(cur.evictions, l.evictions);
    cur.losses = l.losses;
    cur.rejected = l.rejected;
    cur.idle_ns = l.last_moved_ns != 0 && now > l.last_moved_ns ? now - l.last_moved_ns : 0;
    cur.sleeping = l.sleeping;
    lag(cur);
    out.cursors.push_back(cur);
  }
  // Attachments whose reader we did not find: reservations not adopted yet,
  // and readers whose segment we may not read (another group's).
  for (uint32_t k = 0; k < kAttachments; ++k) {
    if (attached[k].matched || attached[k].kind == AttachmentState::kFree) continue;
    const Attachment& a = c->attachments[k];
    CursorSnapshot cur;
    cur.slot = k;
    cur.admitted = attached[k].kind == AttachmentState::kAdmitted;
    cur.reserved_for = a.subscription.load(std::memory_order_relaxed);
    cur.evictions = a.evictions.load(std::memory_order_relaxed);
    const uint64_t since = a.since_ns.load(std::memory_order_relaxed);
    cur.idle_ns = since != 0 && now > since ? now - since : 0;
    if (cur.admitted) {
      cur.pid = a.pid.load(std::memory_order_relaxed);
      cur.alive = false;  // unknown: its segment is not ours to read
      cur.position_unknown = true;
      cur.position = out.write_position;
    } else {
      cur.pid = a.pid.load(std::memory_order_relaxed);
      cur.alive = process_alive(pid_t(cur.pid), a.start_time.load(std::memory_order_relaxed));
      cur.position = std::min(a.held_from.load(std::memory_order_relaxed), out.write_position);
    }
    lag(cur);
    out.cursors.push_back(cur);
  }
  // Capped: a lapped latest reader is more than a ring behind, and what it
  // has yet to read is at most what the ring holds.
  if (slowest != UINT64_MAX && out.write_position >= slowest)
    out.fill = std::min(1.0, double(out.write_position - slowest) / double(out.capacity));
}

}  // namespace detail

namespace {

void read_ring(const std::string& bus, uint32_t ring_slot, RingSnapshot& out) {
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
  snapshot_ring_cursors(data.data(), reinterpret_cast<const ControlHeader*>(ctl.data()),
                        find_reader_lines(bus, out.publisher_id, ring_slot), out);
}

std::string topic_of_ring(const RingSnapshot& r) { return r.topic + "@" + r.publisher; }

const TopicSnapshot* topic_named(const BusSnapshot& snap, const std::string& name) {
  for (const auto& t : snap.topics)
    if (t.info.name == name) return &t;
  return nullptr;
}

std::string seconds_text(std::chrono::nanoseconds d) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%gs", double(d.count()) / 1e9);
  return buf;
}

// What happens to a slow reader depends on the policy: under block it holds
// the writer back until the slow-consumer timeout (if any) evicts it; under
// latest the writer never waits, and laps it.
std::string slow_reader_warning(const BusSnapshot& snap, const RingSnapshot& r, const CursorSnapshot& c) {
  const std::string who = "reader pid " + std::to_string(c.pid);
  if (r.policy == Policy::Latest)
    return c.lapped ? who + " was lapped: the writer (policy latest, it never waits) overwrote events it had not read; its next read "
                            "says how many it lost and goes on from the oldest retained event"
                    : who + " is more than 90% of the ring behind; the writer (policy latest) does not wait for it, so unless it "
                            "catches up it will be lapped and told how many events it lost";
  const TopicSnapshot* topic = topic_named(snap, r.topic);
  const std::string behind = who + " is more than 90% of the ring behind and holds its publisher back; ";
  if (topic != nullptr && topic->info.slow_consumer_timeout == kNever)
    return behind + "the topic's slow-consumer timeout is never, so it is not evicted: the publisher waits until it reads";
  return behind + "it will be evicted after the topic's slow-consumer timeout" +
         (topic != nullptr ? " (" + seconds_text(topic->info.slow_consumer_timeout) + ")" : "") + " unless it catches up";
}

std::string reader_warning(const BusSnapshot& snap, const RingSnapshot& r, const CursorSnapshot& c) {
  if (!c.alive)
    return "cursor " + std::to_string(c.slot) + " belongs to a dead process (pid " + std::to_string(c.pid) + "); " +
           (r.policy == Policy::Latest ? "the writer never waits for it, and the next process to open the bus (or `flowbus gc " +
                                             snap.name + "`) frees it"
                                       : std::string("the writer evicts it when it needs the space"));
  const bool far_behind = c.lag_bytes * 10 > r.capacity * 9;
  if (c.lapped || (far_behind && r.fill > 0.9)) return slow_reader_warning(snap, r, c);
  return {};
}

void add_warnings(BusSnapshot& snap) {
  // Topics are configuration made on purpose, often before any publisher:
  // plain gc keeps them, and a bus that only has topics is not garbage.
  if (snap.live_participants() == 0 && snap.topics.empty())
    snap.warnings.push_back("no live process uses bus '" + snap.name + "': `flowbus gc " + snap.name + "` removes it" +
                            (snap.rings.empty() ? "" : " once its rings' retention has passed"));
  else if (snap.live_participants() == 0)
    snap.warnings.push_back("no live process uses bus '" + snap.name + "'; it keeps its " + std::to_string(snap.topics.size()) +
                            " topic(s) for the publishers to come, and `flowbus gc " + snap.name +
                            "` removes its rings once their retention has passed");
  for (const auto& p : snap.participants)
    if (!p.alive)
      snap.warnings.push_back("process " + std::to_string(p.pid) + " died attached to the bus; the next process to open it (or `flowbus gc " + snap.name + "`) frees what it left");
  for (const auto& r : snap.rings) {
    if (!r.error.empty()) {
      if (r.remover_pid == 0 || !process_alive(pid_t(r.remover_pid), 0))  // a removal under way is no problem
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
    for (const auto& c : r.cursors)
      if (std::string w = reader_warning(snap, r, c); !w.empty()) snap.warnings.push_back("ring " + topic_of_ring(r) + ": " + w);
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
    const uint64_t state = r.state.load(std::memory_order_acquire);
    if (SlotWord::state(state) != kReady) continue;
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
    if (const TopicSnapshot* t = topic_named(snap, ring.topic)) ring.policy = t->info.policy;  // the header's, once read
    if (is_removing_owner(owner)) {  // its segments may be gone already
      ring.remover_pid = SlotWord::who(owner);
      ring.error = removal_note(name, owner);
    } else {
      read_ring(name, i, ring);
      // Removed (its slot freed or reused) while we read it: no longer on the bus.
      if (!ring.error.empty() && r.state.load(std::memory_order_acquire) != state) continue;
    }
    snap.rings.push_back(std::move(ring));
  }
  snap.subscriptions = read_subscriptions(name);
  count_subscription_rings(snap);
  snap.sidecars = read_sidecars(name, snap.rings);
  add_warnings(snap);
  return snap;
}

}  // namespace flowbus
