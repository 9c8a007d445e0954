// RingTap: reading a ring from outside, for `flowbus inspect --dump`.
// It holds no cursor, so it must prove after the fact that what it copied was
// intact, as a Latest reader does: copy, acquire fence, re-read tail.
#include <cstring>

#include "bus_state.hpp"
#include "flowbus/detail/ring.hpp"
#include "flowbus/error.hpp"
#include "flowbus/inspect.hpp"

namespace flowbus {
using namespace detail;

Event TapRecord::event() const {
  Event e;
  e.data_ = bytes.data() + data_offset;
  e.size_ = size;
  e.sequence_ = sequence;
  e.time_ns_ = time_ns;
  e.position_ = position;
  e.next_position_ = position + bytes.size();
  e.subject_ = subject;
  e.context_ = context;
  return e;
}

struct RingTap::State {
  RingSegments ring;
  TopicInfo topic;
  const RingHeader* header = nullptr;
  const uint8_t* records = nullptr;
  uint64_t mask = 0;
  uint64_t position = 0;
  uint64_t expected_sequence = 0;
  bool sequence_known = false;
  uint64_t missed = 0;

  // Acquire fence, then tail (relaxed): pairs with the writer's release fence
  // after it moves tail, as in RingReader::still_valid_at.
  bool intact(uint64_t at) const noexcept {
    std::atomic_thread_fence(std::memory_order_acquire);
    return at >= header->tail_position.load(std::memory_order_relaxed);
  }
  uint64_t tail() const noexcept { return header->tail_position.load(std::memory_order_acquire); }
  // Acquire: pairs with the writer's store of W after its commit.
  uint64_t write() const noexcept { return header->write_position.load(std::memory_order_acquire); }
};

RingTap::RingTap(const std::string& bus, const std::string& topic, const std::string& publisher)
    : s_(std::make_unique<State>()) {
  const Segment dir_segment = open_directory_read_only(bus);
  if (dir_segment.size() < sizeof(DirectoryLayout))
    throw Error(ErrorCode::Corrupt, "bus '" + bus + "': its directory segment is too small; `flowbus inspect " + bus + " --check` says more");
  const auto* dir = reinterpret_cast<const DirectoryLayout*>(dir_segment.data());
  if (dir->header.magic.load(std::memory_order_acquire) != kDirectoryMagic || dir->header.layout_version != kLayoutVersion)
    throw Error(ErrorCode::Corrupt, "bus '" + bus + "': its directory is damaged or of another version; `flowbus inspect " + bus + " --check` says more");
  std::optional<TopicInfo> info;
  for (uint32_t i = 0; i < kTopics && !info; ++i)
    if (SlotWord::state(dir->topics[i].state.load(std::memory_order_acquire)) == kReady &&
        read_name(dir->topics[i].name, kNameBytes) == topic)
      info = topic_info_of(dir->topics[i]);
  if (!info) throw Error(ErrorCode::NotFound, "bus '" + bus + "' has no topic '" + topic + "'; `flowbus inspect " + bus + "` lists them");
  open_ring_segments(s_->ring, bus, topic, publisher, Access::ReadOnly, Access::ReadOnly, Access::ReadOnly);
  s_->ring.context = make_ring_context(host_name(), bus, *info, publisher, s_->ring.publisher_id);
  for (uint32_t i = 0; i < kRings; ++i) {
    const RingSlot& r = dir->rings[i];
    if (SlotWord::state(r.state.load(std::memory_order_acquire)) == kReady && r.publisher_id == s_->ring.publisher_id &&
        read_name(r.topic, kNameBytes) == topic && read_name(r.publisher, kPublisherNameBytes) == publisher)
      apply_mirror_origin(s_->ring.context, r);
  }
  s_->topic = std::move(*info);
  s_->header = s_->ring.header();
  s_->records = s_->ring.records();
  s_->mask = s_->ring.capacity - 1;
  start_earliest();
}

RingTap::~RingTap() = default;
RingTap::RingTap(RingTap&&) noexcept = default;
RingTap& RingTap::operator=(RingTap&&) noexcept = default;

const RingContext& RingTap::context() const noexcept { return s_->ring.context; }
const TopicInfo& RingTap::topic() const noexcept { return s_->topic; }
uint64_t RingTap::capacity() const noexcept { return s_->ring.capacity; }

uint64_t RingTap::take_missed() noexcept {
  const uint64_t n = s_->missed;
  s_->missed = 0;
  return n;
}

void RingTap::start_earliest() {
  s_->position = s_->tail();
  s_->sequence_known = false;
}

void RingTap::start_from_first() {
  start_earliest();
  // Written before magic, which the open acquired; UINT64_MAX: not known.
  const uint64_t first = s_->header->first_sequence;
  s_->sequence_known = first != UINT64_MAX;
  s_->expected_sequence = first;
}

void RingTap::start_latest(uint64_t count) {
  // Records have no back links: walk from tail, remembering the last `count`
  // starts. If the writer laps the walk, start over from the new tail.
  // `starts` grows with the records found, never to `count` up front: a
  // count far above what the ring holds costs nothing.
  const uint64_t keep = std::max<uint64_t>(count, 1);
  std::vector<uint64_t> starts;
  for (int attempt = 0; attempt < 100; ++attempt) {
    const uint64_t end = s_->write();
    uint64_t p = s_->tail(), seen = 0;
    starts.clear();
    bool lapped = false;
    while (p < end && p % kRecordAlign == 0) {  // off the grid: damaged, next() reports it
      const auto* rec = reinterpret_cast<const RecordHeader*>(s_->records + (p & s_->mask));
      const RecordFields f = read_fields(rec);
      const bool ok = rec->commit.load(std::memory_order_acquire) == p + 1 &&
                      fields_sane(f, s_->ring.capacity - (p & s_->mask));
      if (!s_->intact(p)) { lapped = true; break; }
      if (!ok) break;  // damaged: next() reports it from here
      if (!f.padding()) {
        if (starts.size() < keep) starts.push_back(p);
        else starts[seen % keep] = p;
        ++seen;
      }
      p += f.length();
    }
    if (lapped) continue;
    s_->position = count == 0 ? p : seen == 0 ? s_->tail() : starts[seen < count ? 0 : seen % keep];
    s_->sequence_known = false;
    return;
  }
  start_earliest();  // the writer outruns the walk: the oldest retained will do
}

RingTap::Status RingTap::next(TapRecord& out, bool with_padding) {
  State& s = *s_;
  const uint64_t capacity = s.ring.capacity;
  for (int round = 0; round < 1024; ++round) {
    const uint64_t p = s.position;
    if (p >= s.write()) return Status::Empty;
    // From tail, a position is on the record grid unless tail was scribbled
    // on; off it, a header read could run past the end of the segment.
    if (p % kRecordAlign != 0) return Status::Corrupt;
    const auto* rec = reinterpret_cast<const RecordHeader*>(s.records + (p & s.mask));
    const uint64_t commit = rec->commit.load(std::memory_order_acquire);
    const RecordFields f = read_fields(rec);
    const bool sane = commit == p + 1 && fields_sane(f, capacity - (p & s.mask));
    if (sane) {
      out.bytes.resize(f.length());
      std::memcpy(out.bytes.data(), rec, out.bytes.size());
    }
    if (!s.intact(p)) {  // lapped while we looked: go on from the oldest intact record
      s.position = std::max(s.tail(), p);
      continue;
    }
    if (!sane) return Status::Corrupt;  // below W and not overwritten, yet no valid record
    out.position = p;
    out.commit = commit;
    out.size = f.size;
    out.data_offset = uint32_t(f.data_offset());
    out.flags = f.offset_and_flags & ~kOffsetMask;
    out.sequence = f.sequence;
    out.time_ns = f.time_ns;
    out.padding = f.padding();
    out.context = &s.ring.context;
    out.subject.clear();
    s.position = p + f.length();
    if (out.padding) {
      if (with_padding) return Status::Ok;
      continue;
    }
    if (out.flags & kFlagHasSubject) {
      uint16_t n;
      std::memcpy(&n, out.bytes.data() + sizeof(RecordHeader), sizeof n);
      if (sizeof(RecordHeader) + 2 + n > out.data_offset) return Status::Corrupt;
      out.subject.assign(reinterpret_cast<const char*>(out.bytes.data() + sizeof(RecordHeader) + 2), n);
    }
    if (s.sequence_known && out.sequence != s.expected_sequence) {
      if (out.sequence < s.expected_sequence) return Status::Corrupt;  // sequences only grow
      s.missed += out.sequence - s.expected_sequence;
      s.expected_sequence = out.sequence;  // so the next call delivers this record
      s.position = p;
      return Status::Lost;  // once per gap; take_missed() tells how many
    }
    s.expected_sequence = out.sequence + 1;
    s.sequence_known = true;
    return Status::Ok;
  }
  return Status::Empty;  // the writer outran us a thousand times: try again
}

}  // namespace flowbus
