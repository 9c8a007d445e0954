// `flowbus inspect BUS --check`: the directory and ring invariants, verified
// read-only. A live writer keeps moving while we look, so each ring is walked
// up to three times and only findings that survive every walk are reported;
// a walk that the writer laps restarts from the new tail instead of failing.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>
#include <set>
#include <thread>

#include "bus_state.hpp"
#include "flowbus/detail/ring.hpp"
#include "flowbus/error.hpp"
#include "flowbus/inspect.hpp"
#include "flowbus/names.hpp"
#include "flowbus/schema.hpp"
#include "inspect_ring.hpp"

namespace flowbus {
using namespace detail;

namespace {

std::string hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}
std::string num(uint64_t v) { return std::to_string(v); }

class Findings {
 public:
  Findings(std::vector<CheckFinding>& out, std::string where) : out_(out), where_(std::move(where)) {}
  void add(const std::string& problem) { out_.push_back({where_, problem}); }
  bool check(bool ok, const std::string& problem) {
    if (!ok) add(problem);
    return ok;
  }

 private:
  std::vector<CheckFinding>& out_;
  std::string where_;
};

bool name_ok(void (*validate)(std::string_view), const char* field, size_t capacity) {
  if (strnlen(field, capacity) == capacity) return false;  // not NUL-terminated
  try {
    validate(std::string_view(field));
    return true;
  } catch (const Error&) {
    return false;
  }
}

struct TopicCheck {
  TopicInfo info;
  std::unique_ptr<SchemaCodec> codec;  // null if the schema is unusable (already reported)
};

void check_directory_header(const DirectoryLayout* dir, uint64_t segment_size, Findings& f) {
  const DirectoryHeader& h = dir->header;
  f.check(h.participants == kParticipants && h.topics == kTopics && h.rings == kRings,
          "table sizes " + num(h.participants) + "/" + num(h.topics) + "/" + num(h.rings) + " differ from this build's " +
              num(kParticipants) + "/" + num(kTopics) + "/" + num(kRings));
  f.check(h.segment_size == segment_size,
          "header says the segment has " + num(h.segment_size) + " bytes, it has " + num(segment_size));
  for (uint32_t i = 0; i < kParticipants; ++i) {
    const uint64_t w = dir->participants[i].state.load(std::memory_order_acquire);
    if (SlotWord::state(w) > kCleaning) f.add("participant slot " + num(i) + " has unknown state " + num(SlotWord::state(w)));
    else if (SlotWord::state(w) == kReady && SlotWord::who(w) == 0) f.add("participant slot " + num(i) + " is ready but names pid 0");
  }
  for (uint32_t i = 0; i < kTopics; ++i)
    if (SlotWord::state(dir->topics[i].state.load(std::memory_order_acquire)) > kCleaning)
      f.add("topic slot " + num(i) + " has an unknown state");
  for (uint32_t i = 0; i < kRings; ++i)
    if (SlotWord::state(dir->rings[i].state.load(std::memory_order_acquire)) > kCleaning)
      f.add("ring slot " + num(i) + " has an unknown state");
}

std::vector<TopicCheck> check_topics(const DirectoryLayout* dir, CheckReport& report) {
  std::vector<TopicCheck> topics;
  std::set<std::string> names;
  for (uint32_t i = 0; i < kTopics; ++i) {
    const TopicSlot& t = dir->topics[i];
    if (SlotWord::state(t.state.load(std::memory_order_acquire)) != kReady) continue;
    ++report.topics;
    Findings f(report.findings, "topic slot " + num(i));
    if (!f.check(name_ok(validate_topic_name, t.name, kNameBytes), "its name is not a valid topic name")) continue;
    TopicCheck tc;
    tc.info = topic_info_of(t);
    Findings ft(report.findings, "topic " + tc.info.name);
    ft.check(names.insert(tc.info.name).second, "the name is registered twice");
    ft.check(t.policy <= uint32_t(Policy::Latest), "unknown policy " + num(t.policy));
    ft.check(t.ring_size >= 4096 && (t.ring_size & (t.ring_size - 1)) == 0,
             "ring size " + num(t.ring_size) + " is not a power of two of at least 4096");
    ft.check(t.mode <= 0777, "mode " + hex(t.mode) + " has bits beyond 0777");
    if (ft.check(t.schema_size > 0 && t.schema_size <= kMaxSchemaBytes,
                 "schema size " + num(t.schema_size) + " is outside 1.." + num(kMaxSchemaBytes))) {
      ft.check(schema_id(tc.info.schema) == tc.info.schema_id,
               "schema id " + tc.info.schema_id + " does not match its schema bytes (" + schema_id(tc.info.schema) + ")");
      try {
        tc.codec = std::make_unique<SchemaCodec>(tc.info.schema, tc.info.type);
      } catch (const Error& e) {
        ft.add(std::string("its schema is unusable: ") + e.what());
      }
    }
    topics.push_back(std::move(tc));
  }
  return topics;
}

struct RingWalk {
  std::set<uint64_t> starts;  // record starts from tail to W, padding included
  uint64_t records = 0;
};

/// The record chain from tail to the write position read at the start.
RingWalk walk_records(const RingSegments& ring, const TopicCheck* topic, Findings& f) {
  const RingHeader* h = ring.header();
  const uint8_t* records = ring.records();
  const uint64_t cap = ring.capacity, mask = cap - 1;
  RingWalk walk;
  for (int attempt = 0; attempt < 100; ++attempt) {
    walk = RingWalk{};
    const uint64_t end = h->write_position.load(std::memory_order_acquire);
    const uint64_t next_sequence = h->next_sequence.load(std::memory_order_acquire);
    uint64_t p = h->tail_position.load(std::memory_order_acquire);
    if (p % kRecordAlign != 0 || p > end) return walk;  // reported with the positions
    std::vector<CheckFinding> local;
    Findings lf(local, "");
    int64_t last_sequence = -1;
    bool lapped = false;
    while (p < end && local.empty()) {
      const auto* rec = reinterpret_cast<const RecordHeader*>(records + (p & mask));
      const uint64_t commit = rec->commit.load(std::memory_order_acquire);
      const RecordFields fields = read_fields(rec);
      const uint64_t room = cap - (p & mask);
      std::vector<uint8_t> payload;
      const bool sane = commit == p + 1 && fields_sane(fields, room);
      if (sane && !fields.padding() && topic && topic->codec)
        payload.assign(reinterpret_cast<const uint8_t*>(rec) + fields.data_offset(),
                       reinterpret_cast<const uint8_t*>(rec) + fields.data_offset() + fields.size);
      // Acquire fence, then tail: did the writer reuse these bytes while we read them?
      std::atomic_thread_fence(std::memory_order_acquire);
      if (p < h->tail_position.load(std::memory_order_relaxed)) {
        lapped = true;
        break;
      }
      const std::string at = "record at position " + num(p) + " (offset " + num(p & mask) + ")";
      if (!lf.check(commit == p + 1, at + ": commit word " + hex(commit) + " is not position + 1 = " + hex(p + 1))) break;
      if (!lf.check(fields.data_offset() >= sizeof(RecordHeader),
                    at + ": its data starts at " + num(fields.data_offset()) + ", inside its 32-byte header")) break;
      if (!lf.check((fields.offset_and_flags & ~(kOffsetMask | kKnownFlags)) == 0,
                    at + ": unknown flag bits " + hex(fields.offset_and_flags & ~(kOffsetMask | kKnownFlags)))) break;
      if (!lf.check(fields.length() <= room, at + ": its length " + num(fields.length()) + " runs past the end of the ring (" +
                                                 num(room) + " bytes left in this lap)")) break;
      if (!lf.check(!fields.padding() || fields.length() == room,
                    at + ": a padding record of " + num(fields.length()) + " bytes that does not reach the end of the lap (" +
                        num(room) + " bytes)")) break;
      walk.starts.insert(p);
      if (fields.padding()) {
        lf.check(last_sequence < 0 || fields.sequence == uint64_t(last_sequence) + 1,
                 at + ": padding carries sequence " + num(fields.sequence) + ", the next record's should be " +
                     num(uint64_t(last_sequence) + 1));
      } else {
        ++walk.records;
        // A mirror writer declares the sequences its source had lost (kFlagGap).
        const bool declared_gap = (fields.offset_and_flags & kFlagGap) != 0 && fields.sequence > uint64_t(last_sequence) + 1;
        lf.check(last_sequence < 0 || fields.sequence == uint64_t(last_sequence) + 1 || declared_gap,
                 at + ": sequence " + num(fields.sequence) + " follows " + num(uint64_t(last_sequence)) + " (sequences go up by one)");
        if (fields.offset_and_flags & kFlagHasSubject) {
          uint16_t n;
          std::memcpy(&n, reinterpret_cast<const uint8_t*>(rec) + sizeof(RecordHeader), sizeof n);
          lf.check(sizeof(RecordHeader) + 2 + n <= fields.data_offset(),
                   at + ": its subject of " + num(n) + " bytes overlaps its data");
        }
        if (topic && topic->codec)
          lf.check(topic->codec->verify(payload.data(), payload.size()),
                   at + ": its " + num(fields.size) + "-byte payload does not verify as " + topic->info.type);
        last_sequence = int64_t(fields.sequence);
      }
      p += fields.length();
    }
    if (lapped) continue;
    if (local.empty() && p != end)
      lf.add("the record chain from tail ends at " + num(p) + ", past the write position " + num(end));
    if (local.empty() && last_sequence >= 0 && uint64_t(last_sequence) + 1 != next_sequence)
      lf.add("the last record has sequence " + num(uint64_t(last_sequence)) + " but next_sequence is " + num(next_sequence));
    for (auto& c : local) f.add(c.problem);
    return walk;
  }
  f.add("the writer lapped every walk of the records: stop it to check them");
  return walk;
}

void check_positions(const RingSegments& ring, Findings& f) {
  const RingHeader* h = ring.header();
  const uint64_t cap = ring.capacity;
  // W is read on both sides of tail: tail <= W and W - tail <= capacity hold
  // at every instant, and W only grows.
  const uint64_t w1 = h->write_position.load(std::memory_order_acquire);
  const uint64_t tail = h->tail_position.load(std::memory_order_acquire);
  const uint64_t w2 = h->write_position.load(std::memory_order_acquire);
  const uint64_t limit = h->limit.load(std::memory_order_acquire);
  f.check(w1 % kRecordAlign == 0, "write position " + num(w1) + " is not a multiple of 32");
  f.check(tail % kRecordAlign == 0, "tail " + num(tail) + " is not a multiple of 32");
  f.check(tail <= w2, "tail " + num(tail) + " is past the write position " + num(w2));
  f.check(w1 <= tail + cap, "write position " + num(w1) + " is more than a ring (" + num(cap) + ") ahead of tail " + num(tail));
  f.check(limit == 0 || w2 <= limit, "write position " + num(w2) + " is past the writer's limit " + num(limit));
  // The writer zeroes the next record's commit word before each commit. Only
  // on the record grid: a scribbled W may point anywhere, up to the last byte
  // of the ring (a header there would run past the segment).
  if (w2 % kRecordAlign != 0) {
    f.check(w1 != w2, "write position " + num(w2) + " is not a multiple of 32");
    return;
  }
  const auto* next = reinterpret_cast<const RecordHeader*>(ring.records() + (w2 & (cap - 1)));
  const uint64_t commit = next->commit.load(std::memory_order_acquire);
  f.check(commit != w2 + 1 || h->write_position.load(std::memory_order_acquire) != w2,
          "the record at the write position " + num(w2) + " is already committed (its commit word was not zeroed)");
}

void check_control(const std::string& bus, uint32_t ring_slot, const RingSegments& ring, const RingWalk& walk,
                   CheckReport& report, Findings& f) {
  const ControlHeader* c = ring.control_header();
  const RingHeader* h = ring.header();
  f.check(c->attachment_count == kAttachments,
          "control: " + num(c->attachment_count) + " attachments, this build has " + num(kAttachments));
  const uint64_t w = h->write_position.load(std::memory_order_acquire);
  // The readers' lines after W: a line is never older than the W it is
  // judged against (a live writer may pass a line sampled before W).
  const std::vector<FoundReaderLine> lines = find_reader_lines(bus, ring.publisher_id, ring_slot);
  const uint64_t floor = h->reuse_floor.load(std::memory_order_acquire);
  f.check(floor <= w, "reuse floor " + num(floor) + " is above the write position " + num(w));
  for (uint32_t k = 0; k < kAttachments; ++k) {
    const Attachment& a = c->attachments[k];
    const uint64_t kind = AttachmentState::kind(a.state.load(std::memory_order_acquire));
    const std::string at = "attachment " + num(k);
    if (!f.check(kind <= AttachmentState::kWriting, at + ": state kind " + num(kind) + " is not one a writer stores"))
      continue;
    if (kind == AttachmentState::kAdmitted)
      f.check(a.line.load(std::memory_order_relaxed) < kReaderLines,
              at + ": names line " + num(a.line.load(std::memory_order_relaxed)) + " of " + num(kReaderLines));
  }
  // The readers' own lines: where the walk went, a live block reader stands
  // on a record start, and the writer never laps one it admitted.
  for (const FoundReaderLine& l : lines) {
    if (!l.alive) continue;  // a dead reader's line: its writer stops following it; not damage
    ++report.cursors;
    bool admitted = false;
    for (const Attachment& a : c->attachments)
      admitted |= AttachmentState::kind(a.state.load(std::memory_order_acquire)) == AttachmentState::kAdmitted &&
                  a.token.load(std::memory_order_relaxed) == l.token &&
                  a.line.load(std::memory_order_relaxed) == l.line;
    const std::string at =
        "reader " + num(l.pid) + " (line " + num(l.line) + " of its segment ~r." + num(l.pid) + "." + num(l.n) + ")";
    const uint64_t tail = h->tail_position.load(std::memory_order_acquire);
    if (ring.policy != Policy::Block || !admitted) continue;
    // Only where the walk went: past its last record the writer may have moved on.
    if (l.position >= tail && !walk.starts.empty() && l.position <= *walk.starts.rbegin())
      f.check(walk.starts.count(l.position) != 0,
              at + ": position " + num(l.position) + " is not the start of a record");
    // (Tail itself may pass a live reader: it is kept conservatively, see advance_tail.)
    f.check(
        l.position + ring.capacity >= w,
        at + ": the writer at " + num(w) + " has lapped a reader it admitted, at " + num(l.position) + ", under block");
  }
  for (uint32_t i = 0; i < kBellSlots; ++i) {
    const uint64_t seq = ring.bell_header()->slot[i].seq.load(std::memory_order_relaxed);
    f.check(seq <= kBellSlotRung || bell_slot_filling(seq),
            "bell: slot " + num(i) + " holds " + num(seq) + " (readers store odd values and 2, the writer 0)");
  }
  // Readers store only 1, the writer only 0: anything else was written by
  // something that is not flowbus (harmless to the protocol: nonzero asks for
  // a wake-up, which the next publish grants and clears).
  const uint32_t request = ring.bell_header()->wake_request.load(std::memory_order_relaxed);
  f.check(request <= 1, "bell: the wake request holds " + num(request) + " (readers store 1, the writer 0)");
  f.check(!ring.bell_guard.damaged(), "bell: cut short while we looked (truncated by a process that may write it)");
}

/// Permission is not damage: whose the ring is, and what its mode lets us do.
std::string not_readable_by_you(const std::string& bus, const std::string& topic, const std::string& publisher) {
  std::string segment = data_segment_name(bus, topic, publisher);
  if (::faccessat(AT_FDCWD, ("/dev/shm/" + segment).c_str(), R_OK, AT_EACCESS) == 0)
    segment = control_segment_name(bus, topic, publisher);  // the data was readable: the control segment was not
  return "not readable by you (uid " + num(::geteuid()) + ", mode " + describe_owner_and_mode(segment) + ")";
}

void check_ring(const std::string& bus, const DirectoryLayout* dir, uint32_t index, const std::vector<TopicCheck>& topics,
                CheckReport& report) {
  const RingSlot& slot = dir->rings[index];
  if (!name_ok(validate_topic_name, slot.topic, kNameBytes) ||
      !name_ok(validate_publisher_name, slot.publisher, kPublisherNameBytes)) {
    report.findings.push_back({"ring slot " + num(index), "its topic or publisher name is not valid"});
    return;
  }
  const std::string topic = read_name(slot.topic, kNameBytes), publisher = read_name(slot.publisher, kPublisherNameBytes);
  const std::string where = "ring " + topic + "@" + publisher;
  const TopicCheck* tc = nullptr;
  for (const auto& t : topics) tc = t.info.name == topic ? &t : tc;
  if (tc == nullptr) report.findings.push_back({where, "its topic is not registered in the directory"});
  const uint64_t state = slot.state.load(std::memory_order_acquire);
  if (const uint64_t owner = slot.owner.load(std::memory_order_acquire); is_removing_owner(owner)) {
    report.removing.push_back({where, removal_note(bus, owner)});
    return;
  }
  RingSegments ring;
  try {
    open_ring_segments(ring, bus, topic, publisher, Access::ReadOnly, Access::ReadOnly, Access::ReadOnly);
  } catch (const Error& e) {
    const uint64_t owner = slot.owner.load(std::memory_order_acquire);
    if (e.code() == ErrorCode::PermissionDenied)
      report.unreadable.push_back({where, not_readable_by_you(bus, topic, publisher)});
    else if (is_removing_owner(owner))  // removed while we opened it
      report.removing.push_back({where, removal_note(bus, owner)});
    else if (slot.state.load(std::memory_order_acquire) != state)  // removed, and its slot freed or reused
      report.removing.push_back({where, "removed while checked"});
    else
      report.findings.push_back({where, e.what()});
    return;
  }
  ++report.rings;
  std::vector<CheckFinding> found;
  RingWalk walk;
  const size_t cursors_before = report.cursors;
  for (int attempt = 0; attempt < 3; ++attempt) {
    if (attempt > 0) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    found.clear();
    report.cursors = cursors_before;
    Findings f(found, where);
    const RingHeader* h = ring.header();
    f.check(h->publisher_id == slot.publisher_id, "publisher id " + hex(h->publisher_id) + " differs from the directory's " + hex(slot.publisher_id));
    if (tc) {
      f.check(h->capacity == tc->info.ring_size, "capacity " + num(h->capacity) + " differs from the topic's ring size " + num(tc->info.ring_size));
      f.check(h->policy == uint32_t(tc->info.policy), "policy " + num(h->policy) + " differs from the topic's");
    }
    check_positions(ring, f);
    if (found.empty()) walk = walk_records(ring, tc, f);
    check_control(bus, index, ring, walk, report, f);
    if (found.empty()) break;  // clean: what an earlier walk saw was the writer moving
  }
  report.records += walk.records;
  report.findings.insert(report.findings.end(), found.begin(), found.end());
}

}  // namespace

CheckReport check_bus(const std::string& name) {
  CheckReport report;
  report.bus = name;
  const Segment seg = open_directory_read_only(name);
  const auto* dir = reinterpret_cast<const DirectoryLayout*>(seg.data());
  Findings f(report.findings, "directory");
  const uint64_t magic = dir->header.magic.load(std::memory_order_acquire);
  if (!f.check(magic == kDirectoryMagic, "magic " + hex(magic) + " is not " + hex(kDirectoryMagic) + " (\"FLWWBDIR\")")) return report;
  if (!f.check(dir->header.layout_version == kLayoutVersion,
               "layout version " + num(dir->header.layout_version) + ", this flowbus speaks " + num(kLayoutVersion)))
    return report;
  if (!f.check(seg.size() >= sizeof(DirectoryLayout),
               "the segment has " + num(seg.size()) + " bytes, the directory needs " + num(sizeof(DirectoryLayout))))
    return report;
  check_directory_header(dir, seg.size(), f);
  const std::vector<TopicCheck> topics = check_topics(dir, report);
  std::set<std::string> rings;
  for (uint32_t i = 0; i < kRings; ++i) {
    if (SlotWord::state(dir->rings[i].state.load(std::memory_order_acquire)) != kReady) continue;
    const std::string key = read_name(dir->rings[i].topic, kNameBytes) + "@" + read_name(dir->rings[i].publisher, kPublisherNameBytes);
    if (!rings.insert(key).second) report.findings.push_back({"ring slot " + num(i), "ring " + key + " is registered twice"});
    check_ring(name, dir, i, topics, report);
  }
  return report;
}

}  // namespace flowbus
