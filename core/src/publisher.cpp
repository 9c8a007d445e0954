// Publisher: attach or create the ring, then the hot path over RingWriter.
// Directory words follow the ordering rules in directory_layout.hpp.
#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <cctype>
#include <cstdio>
#include <cstring>
#include <random>
#include <thread>

#include "bus_state.hpp"
#include "flowbus/bus.hpp"
#include "flowbus/error.hpp"
#include "flowbus/internal/mirroring.hpp"
#include "flowbus/names.hpp"
#include "flowbus/schema.hpp"
#include "liveness.hpp"
#include "subscriptions.hpp"
#include "writer_door.hpp"

namespace flowbus {
namespace detail {

// Lends the ring's bytes to a loan's FlatBufferBuilder. One per publisher,
// on the heap, so a Loan's builder keeps a valid allocator when the Loan or
// the Publisher is moved.
class LoanAllocator : public flatbuffers::Allocator {
 public:
  uint8_t* allocate(size_t wanted) override {
    if (wanted > size)
      throw Error(ErrorCode::InvalidArgument, "the FlatBuffer needs " + std::to_string(wanted) + " bytes but the loan holds " +
                                                  std::to_string(size) + "; loan more");
    return memory;
  }
  void deallocate(uint8_t*, size_t) override {}
  uint8_t* reallocate_downward(uint8_t*, size_t, size_t new_size, size_t, size_t) override {
    throw Error(ErrorCode::InvalidArgument, "the FlatBuffer outgrew its loan (needs " + std::to_string(new_size) +
                                                " bytes, the loan holds " + std::to_string(size) + "); loan more");
  }
  uint8_t* memory = nullptr;
  size_t size = 0;
};

struct LoanState {
  LoanAllocator allocator;
  bool open = false;  // a Loan holds the bytes at the write position
};

}  // namespace detail
using namespace detail;

namespace {

uint32_t bell_mode(uint32_t data_mode) {
  // Readers post wake requests and announce themselves: whoever may read the
  // topic may write its bell (and nothing else of the ring's).
  uint32_t mode = data_mode;
  if (data_mode & 0040) mode |= 0020;
  if (data_mode & 0004) mode |= 0002;
  return mode | 0600;
}

void create_ring_segments(RingSegments& ring, const std::string& bus, const TopicInfo& topic,
                          const std::string& publisher, uint64_t publisher_id, uint64_t first_sequence) {
  const std::string data_name = data_segment_name(bus, topic.name, publisher);
  const std::string ctl_name = control_segment_name(bus, topic.name, publisher);
  // Left over from a creator that died before its slot was Ready: ours now.
  for (const std::string& seg : ring_segment_names(bus, topic.name, publisher)) Segment::remove(seg);
  // The writer's alone, as the data segment: readers map it read-only.
  ring.control = Segment::create(ctl_name, sizeof(ControlHeader), topic.mode, topic.group);
  auto* c = ring.control_header();
  c->layout_version = kLayoutVersion;
  c->attachment_count = kAttachments;
  c->magic.store(kControlMagic, std::memory_order_release);  // written last: openers acquire it
  ring.bell = Segment::create(bell_segment_name(bus, topic.name, publisher), kBellSegmentSize, bell_mode(topic.mode),
                              topic.group);
  guard_bell(ring);  // a reader may truncate it as soon as it exists
  init_bell(*ring.bell_header());
  ring.data = Segment::create(data_name, kRecordsOffset + topic.ring_size, topic.mode, topic.group);
  RingHeader* h = ring.header();
  h->layout_version = kLayoutVersion;
  h->policy = uint32_t(topic.policy);
  h->capacity = topic.ring_size;
  h->publisher_id = publisher_id;
  h->created_ns = unix_now_ns();
  h->first_sequence = first_sequence;
  h->magic.store(kRingMagic, std::memory_order_release);  // written last: openers acquire it
  ring.publisher_id = publisher_id;
  ring.capacity = topic.ring_size;
  ring.policy = topic.policy;
}

/// Whether this process may publish on `topic`: as its mode lets a file
/// owned by the topic's creator and group be written by us (root may).
/// Enforced here, by the library; see docs/security.md for what a process
/// that bypasses it can still do.
void check_may_publish(const TopicInfo& topic) {
  if (topic.owner_uid < 0) return;  // made by an older flowbus: no owner recorded
  const uid_t me = ::geteuid();
  if (me == 0 || int64_t(me) == topic.owner_uid) return;  // the owner always has rw (validated)
  const bool in_group = topic.owner_gid >= 0 && detail::in_group(gid_t(topic.owner_gid));
  if ((topic.mode & (in_group ? 0020u : 0002u)) != 0) return;
  char bits[10];
  for (int i = 0; i < 9; ++i) bits[i] = (topic.mode & (0400u >> i)) ? "rwxrwxrwx"[i] : '-';
  bits[9] = 0;
  std::string owner = std::to_string(topic.owner_uid);
  if (const passwd* pw = ::getpwuid(uid_t(topic.owner_uid))) owner += std::string(" (") + pw->pw_name + ")";
  std::string group = std::to_string(topic.owner_gid);
  if (const ::group* gr = ::getgrgid(gid_t(topic.owner_gid))) group += std::string(" (") + gr->gr_name + ")";
  throw Error(ErrorCode::PermissionDenied,
              "topic '" + topic.name + "' is " + bits + ", owner uid " + owner + ", group " + group + ": uid " +
                  std::to_string(me) + (in_group ? " (in its group)" : " (outside its group)") +
                  " may not publish on it; ask its owner to create it with a mode that lets " +
                  (in_group ? "its group write (e.g. 0660)" : "you write, or to add you to its group"));
}

}  // namespace

Publisher Bus::publisher(std::string_view topic_name, const PublisherOptions& options) {
  validate_publisher_name(options.name);
  return attach_publisher(topic_name, options.name, options.schema, nullptr);
}

Publisher Bus::attach_publisher(std::string_view topic_name, const std::string& name, const std::vector<uint8_t>& schema,
                                const mirroring::MirrorOrigin* origin) {
  state_->check_not_inherited("Bus handle");
  validate_topic_name(topic_name);
  BusState& bus = *state_;
  const auto topic = bus.find_topic(std::string(topic_name));
  if (!topic)
    throw Error(ErrorCode::NotFound, "topic '" + std::string(topic_name) + "' does not exist on bus '" + bus.name +
                                         "'; create it first with `flowbus topic create " + bus.name + " " +
                                         std::string(topic_name) + " --schema FILE.fbs --type ROOT`");
  check_may_publish(*topic);
  bus.check_writable("publish on topic '" + topic->name + "'");
  if (!schema.empty()) check_compatible_evolution(topic->schema, schema);
  auto ring = std::make_unique<RingSegments>();
  DirectoryLayout* dir = bus.dir;
  bool attached = false;
  int finish_removals = 1;
  for (uint32_t i = 0; i < kRings && !attached; ++i) {
    RingSlot& r = dir->rings[i];
    if (SlotWord::state(r.state.load(std::memory_order_acquire)) != kReady) continue;
    if (read_name(r.topic, kNameBytes) != topic->name || read_name(r.publisher, kPublisherNameBytes) != name) continue;
    if (origin != nullptr && ((r.flags & kRingMirror) == 0 || r.publisher_id != origin->publisher_id))
      throw Error(ErrorCode::NameInUse, "a local publisher on topic '" + topic->name + "' is named '" + name +
                                            "', the name of the mirror ring for that origin; rename it");
    // A mirror ring belongs to one origin: another node (or source) that
    // announces the same publisher id must not write into it.
    if (origin != nullptr && (read_name(r.origin_node, kNodeNameBytes) != origin->node ||
                              read_name(r.origin_source, kSourceBytes) != origin->source))
      throw Error(ErrorCode::NameInUse, "the mirror ring '" + name + "' on topic '" + topic->name +
                                            "' belongs to origin " + read_name(r.origin_node, kNodeNameBytes) +
                                            " (source " + read_name(r.origin_source, kSourceBytes) + "), not to " +
                                            origin->node + " (source " + origin->source + ")");
    uint64_t owner = r.owner.load(std::memory_order_acquire);
    if (is_removing_owner(owner) && !process_alive(pid_t(SlotWord::who(owner)), 0) && finish_removals-- > 0) {
      bus.remove_expired_rings();  // its remover died half-way: finish the removal, then look again
      i = UINT32_MAX;              // (++i: back to slot 0)
      continue;
    }
    if (is_removing_owner(owner))
      throw Error(ErrorCode::NameInUse, "the ring of publisher '" + name + "' on topic '" + topic->name +
                                            "' is being removed by `flowbus gc`; try again");
    if (owner != 0) {
      const uint32_t holder = SlotWord::who(owner);  // the owner's participant slot
      const bool same_owner = holder < kParticipants &&
          SlotWord::epoch(dir->participants[holder].state.load(std::memory_order_acquire)) == SlotWord::epoch(owner);
      if (same_owner && bus.participant_alive(holder))
        throw Error(ErrorCode::NameInUse, "publisher '" + name + "' on topic '" + topic->name + "' is held by live pid " +
                                              std::to_string(r.owner_pid) + "; stop it or choose another --name");
    }
    // The previous owner is gone: take the ring over (CAS, so two restarts
    // of the same name cannot both win).
    if (!r.owner.compare_exchange_strong(owner, bus.owner_word(), std::memory_order_acq_rel))
      throw Error(ErrorCode::NameInUse, "publisher '" + name + "' on topic '" + topic->name + "' was just taken by pid " +
                                            std::to_string(r.owner_pid) + "; choose another --name");
    r.owner_pid = uint32_t(bus.pid);
    r.owner_participant = bus.participant;
    open_ring_segments(*ring, bus.name, topic->name, name, Access::ReadWrite, Access::ReadWrite, Access::ReadWrite);
    ring->slot = i;
    attached = true;
  }
  if (!attached) {
    uint32_t i = 0;
    for (; i < kRings; ++i) {
      RingSlot& r = dir->rings[i];
      uint64_t w = r.state.load(std::memory_order_acquire);
      if (SlotWord::state(w) != kFree) continue;
      const uint32_t epoch = SlotWord::epoch(w) + 1;
      if (!r.state.compare_exchange_strong(w, SlotWord::pack(epoch, uint32_t(bus.pid), kClaiming), std::memory_order_acq_rel))
        continue;
      if (origin != nullptr) {
        r.publisher_id = origin->publisher_id;
        r.flags = kRingMirror;
        std::memset(r.origin_node, 0, kNodeNameBytes);
        std::memcpy(r.origin_node, origin->node.data(), origin->node.size());
        std::memset(r.origin_source, 0, kSourceBytes);
        std::memcpy(r.origin_source, origin->source.data(), origin->source.size());
      } else {
        std::random_device rd;
        r.publisher_id = (uint64_t(rd()) << 32) ^ rd() ^ unix_now_ns();
        r.flags = 0;
      }
      r.created_ns = unix_now_ns();
      r.owner_pid = uint32_t(bus.pid);
      r.owner_participant = bus.participant;
      r.owner.store(bus.owner_word(), std::memory_order_relaxed);
      std::memset(r.topic, 0, kNameBytes);
      std::memcpy(r.topic, topic->name.data(), topic->name.size());
      std::memset(r.publisher, 0, kPublisherNameBytes);
      std::memcpy(r.publisher, name.data(), name.size());
      // seq_cst store, then seq_cst loads of the others (Dekker): of two
      // processes creating the same name at once, at least one sees the other.
      // Whoever sees a rival backs off, so at most one goes on.
      r.state.store(SlotWord::pack(epoch, uint32_t(bus.pid), kClaiming), std::memory_order_seq_cst);
      for (uint32_t j = 0; j < kRings; ++j) {
        const RingSlot& o = dir->rings[j];
        if (j == i || SlotWord::state(o.state.load(std::memory_order_seq_cst)) == kFree) continue;
        if (read_name(o.topic, kNameBytes) == topic->name && read_name(o.publisher, kPublisherNameBytes) == name) {
          r.state.store(SlotWord::pack(epoch, 0, kFree), std::memory_order_release);
          throw Error(ErrorCode::NameInUse, "publisher '" + name + "' on topic '" + topic->name +
                                                "' is being created by another process right now; try again or choose another --name");
        }
      }
      try {
        // A local ring starts at sequence 0, a mirror ring where its origin's stream does.
        create_ring_segments(*ring, bus.name, *topic, name, r.publisher_id, origin != nullptr ? origin->first_sequence : 0);
        // Before Ready, so before any reader can know the ring, and before
        // our first write: every live subscription that matches gets an
        // attachment at the start (the start-up Dekker: our Claiming store
        // above was seq_cst, see subscriptions.cpp).
        reserve_for_subscribers(bus, *topic, r.publisher_id, i, ring->control_header());
      } catch (...) {
        // A ring half made (its data segment refused for want of space, say)
        // leaves nothing behind: no slot, no segment.
        ring->bell_guard.reset();
        ring->data = Segment();
        ring->control = Segment();
        ring->bell = Segment();
        for (const std::string& seg : ring_segment_names(bus.name, topic->name, name)) Segment::remove(seg);
        r.state.store(SlotWord::pack(epoch, 0, kFree), std::memory_order_release);
        throw;
      }
      ring->slot = i;
      // Release: segments and fields are complete for whoever sees Ready.
      r.state.store(SlotWord::pack(epoch, 0, kReady), std::memory_order_release);
      break;
    }
    if (i == kRings)
      throw Error(ErrorCode::NoSpace, "bus '" + bus.name + "' holds " + std::to_string(kRings) + " rings already; run `flowbus gc`");
  }
  ring->data.prefault();  // no page faults on the first lap
  ring->context = make_ring_context(bus.host, bus.name, *topic, name, ring->publisher_id);
  apply_mirror_origin(ring->context, dir->rings[ring->slot]);
  Publisher p(state_, std::move(ring));
  p.writer_.policy = topic->policy;
  p.writer_.slow_timeout_ns = topic->slow_consumer_timeout == kNever ? UINT64_MAX : uint64_t(topic->slow_consumer_timeout.count());
  p.writer_.light_fence = enable_light_writer_fence();
  p.writer_.publisher_id = p.ring_->publisher_id;
  p.writer_.ring_slot = p.ring_->slot;
  p.ring_->door = std::make_shared<WriterDoor>(bus, *topic, *p.ring_);
  p.writer_.door = p.ring_->door->door();  // before recover(): it attests the readers an earlier writer admitted
  // seq_cst: visible before anything this writer publishes (readers read it
  // when they go to sleep).
  p.writer_.header->wake_protocol.store(p.writer_.light_fence ? kWakeLightFence : kWakeFullFence,
                                        std::memory_order_seq_cst);
  p.writer_.recover();
  // The event clock learns the TSC rate on its first read (2 ms, once per
  // process); pay it here, not in the first publish.
  (void)unix_now_ns();
  bus.bump_generation();
  return p;
}

Publisher::Publisher(std::shared_ptr<BusState> bus, std::unique_ptr<RingSegments> ring)
    : bus_(std::move(bus)), ring_(std::move(ring)), loans_(std::make_unique<LoanState>()) {
  writer_.header = ring_->header();
  writer_.records = ring_->records();
  writer_.control = ring_->control_header();
  writer_.bell = ring_->bell_header();
  writer_.capacity = ring_->capacity;
  writer_.mask = writer_.capacity - 1;
  incarnation_ = bus_->incarnation;
}

Publisher::Publisher(Publisher&& other) noexcept = default;

Publisher& Publisher::operator=(Publisher&& other) noexcept {
  if (this == &other) return *this;
  close();  // our ring is given up first, or its name stays held by our own pid
  bus_ = std::move(other.bus_);
  ring_ = std::move(other.ring_);
  writer_ = other.writer_;
  loans_ = std::move(other.loans_);
  incarnation_ = other.incarnation_;
  return *this;
}

Publisher::~Publisher() { close(); }

void Publisher::close() noexcept {
  if (!ring_) return;
  if (bus_->not_ours()) {  // a fork() child's copy: the ring is still its parent's
    ring_.reset();
    return;
  }
  // Give the ring up: it stays (retention) and a restart under our name takes it.
  RingSlot& r = bus_->dir->rings[ring_->slot];
  uint64_t mine = bus_->owner_word();
  r.owner.compare_exchange_strong(mine, 0, std::memory_order_acq_rel);
  bus_->bump_generation();
  ring_.reset();
}

bool Publisher::inherited() const noexcept { return incarnation_ != process_incarnation(); }

const std::string& Publisher::topic() const noexcept { return ring_->context.topic; }
const std::string& Publisher::source() const noexcept { return ring_->context.source; }
const RingContext& Publisher::context() const noexcept { return ring_->context; }
uint64_t Publisher::publisher_id() const noexcept { return ring_->publisher_id; }

namespace {

uint32_t subject_front(std::string_view subject, uint32_t& flags) {
  if (subject.empty()) return sizeof(RecordHeader);
  flags |= kFlagHasSubject;
  // header, u16 length, subject bytes, then the payload 16-aligned
  return uint32_t((sizeof(RecordHeader) + 2 + subject.size() + 15) & ~size_t(15));
}

void write_subject(uint8_t* record, std::string_view subject) {
  const uint16_t n = uint16_t(subject.size());
  std::memcpy(record + sizeof(RecordHeader), &n, sizeof n);
  std::memcpy(record + sizeof(RecordHeader) + 2, subject.data(), n);
}

}  // namespace

PublishStatus Publisher::try_publish(std::span<const uint8_t> bytes, std::string_view subject) noexcept {
  if (inherited()) [[unlikely]] return PublishStatus::WrongProcess;
  if (subject.size() > kMaxSubject || bytes.size() > UINT32_MAX) return PublishStatus::TooLarge;
  uint32_t flags = 0;
  const uint32_t front = subject_front(subject, flags);
  RingWriter::Reservation r;
  if (loans_->open) return PublishStatus::LoanOpen;  // the next bytes are lent
  const PublishStatus s = writer_.reserve(front, bytes.size(), r);
  if (s != PublishStatus::Ok) return s;
  if (flags) write_subject(r.record, subject);
  std::memcpy(r.record + front, bytes.data(), bytes.size());
  writer_.commit(r, front | flags, uint32_t(bytes.size()), unix_now_ns());
  return PublishStatus::Ok;
}

BatchResult Publisher::try_publish_batch(std::span<const std::span<const uint8_t>> events) noexcept {
  BatchResult result;
  if (events.empty()) return result;
  if (inherited()) [[unlikely]] return {0, PublishStatus::WrongProcess};
  if (loans_->open) return {0, PublishStatus::LoanOpen};  // the next bytes are lent
  const uint64_t now = unix_now_ns();  // one clock read for the burst: ~a publish's cost on its own
  for (const std::span<const uint8_t> bytes : events) {
    RingWriter::Reservation r;
    result.status = bytes.size() > UINT32_MAX ? PublishStatus::TooLarge
                                              : writer_.reserve(sizeof(RecordHeader), bytes.size(), r);
    if (result.status != PublishStatus::Ok) break;
    std::memcpy(r.record + sizeof(RecordHeader), bytes.data(), bytes.size());
    writer_.commit_record(r, uint32_t(sizeof(RecordHeader)), uint32_t(bytes.size()), now);
    ++result.published;
  }
  if (result.published != 0) writer_.end_burst(now);
  return result;
}

BatchResult Publisher::publish_batch(std::span<const std::span<const uint8_t>> events,
                                     std::chrono::nanoseconds timeout) noexcept {
  BatchResult total = try_publish_batch(events);
  if (total.status != PublishStatus::Full) return total;
  // What is left waits for space as publish() does, all within one deadline.
  const uint64_t deadline = monotonic_now_ns() + uint64_t(std::max<int64_t>(0, timeout.count()));
  while (total.status == PublishStatus::Full) {
    const uint64_t now = monotonic_now_ns();
    if (now >= deadline) break;
    BatchResult step;
    const PublishStatus s = retry_while_full(PublishStatus::Full, std::chrono::nanoseconds(deadline - now), [&] {
      step = try_publish_batch(events.subspan(total.published));
      return step.published != 0 ? PublishStatus::Ok : step.status;
    });
    total.published += step.published;
    total.status = step.published != 0 ? step.status : s;
  }
  return total;
}

PublishStatus Publisher::try_publish_mirrored(std::span<const uint8_t> bytes, uint64_t sequence, uint64_t time_ns,
                                              std::string_view subject) noexcept {
  if (inherited()) [[unlikely]] return PublishStatus::WrongProcess;
  if (sequence < writer_.next_sequence) return PublishStatus::Duplicate;
  if (loans_->open) return PublishStatus::LoanOpen;  // the next bytes are lent
  if (subject.size() > kMaxSubject || bytes.size() > UINT32_MAX) return PublishStatus::TooLarge;
  uint32_t flags = 0;
  const uint32_t front = subject_front(subject, flags);
  RingWriter::Reservation r;
  const PublishStatus s = writer_.reserve(front, bytes.size(), r);  // a padding it writes carries next_sequence
  if (s != PublishStatus::Ok) return s;
  if (sequence != writer_.next_sequence) {
    flags |= kFlagGap;  // declared, so `inspect --check` tells it from damage
    writer_.next_sequence = sequence;
  }
  if (subject.size() != 0) write_subject(r.record, subject);
  std::memcpy(r.record + front, bytes.data(), bytes.size());
  writer_.commit(r, front | flags, uint32_t(bytes.size()), time_ns);
  return PublishStatus::Ok;
}

template <class TryOnce>
PublishStatus Publisher::retry_while_full(PublishStatus s, std::chrono::nanoseconds timeout, TryOnce&& try_once) noexcept {
  if (s != PublishStatus::Full) return s;
  const uint64_t deadline = monotonic_now_ns() + uint64_t(std::max<int64_t>(0, timeout.count()));
  for (uint32_t round = 0; s == PublishStatus::Full; ++round) {
    if (monotonic_now_ns() >= deadline) return s;
    // Back off: spin briefly, then yield, then sleep a little (readers need the CPU).
    if (round > 64) std::this_thread::sleep_for(std::chrono::microseconds(round > 1000 ? 500 : 20));
    else if (round > 16) std::this_thread::yield();
    s = try_once();
  }
  return s;
}

PublishStatus Publisher::publish(std::span<const uint8_t> bytes, std::chrono::nanoseconds timeout,
                                 std::string_view subject) noexcept {
  return retry_while_full(try_publish(bytes, subject), timeout, [&] { return try_publish(bytes, subject); });
}

PublishStatus Publisher::publish_mirrored(std::span<const uint8_t> bytes, uint64_t sequence, uint64_t time_ns,
                                          std::string_view subject, std::chrono::nanoseconds timeout) noexcept {
  const auto once = [&] { return try_publish_mirrored(bytes, sequence, time_ns, subject); };
  return retry_while_full(once(), timeout, once);
}

PublishStatus Publisher::publish(flatbuffers::FlatBufferBuilder& builder, std::chrono::nanoseconds timeout,
                                 std::string_view subject) noexcept {
  const PublishStatus s = publish(std::span<const uint8_t>(builder.GetBufferPointer(), builder.GetSize()), timeout, subject);
  if (s == PublishStatus::Ok) builder.Clear();
  return s;
}

PublishStatus Publisher::loan(size_t max_bytes, Loan& out, std::string_view subject) noexcept {
  if (inherited()) [[unlikely]] return PublishStatus::WrongProcess;
  if (subject.size() > kMaxSubject || max_bytes > kOffsetMask) return PublishStatus::TooLarge;  // no rounding overflow
  if (loans_->open) return PublishStatus::LoanOpen;
  uint32_t flags = 0;
  const uint32_t front = subject_front(subject, flags);
  const size_t size = (max_bytes + kRecordAlign - 1) & ~size_t(kRecordAlign - 1);
  RingWriter::Reservation reservation;
  const PublishStatus s = writer_.reserve(front, size, reservation);
  if (s != PublishStatus::Ok) return s;
  if (flags) write_subject(reservation.record, subject);
  out.cancel();
  loans_->allocator.memory = reservation.record + front;
  loans_->allocator.size = size;
  loans_->open = true;
  out.state_ = loans_.get();
  out.reservation_ = reservation;
  out.capacity_ = size;
  out.front_ = front;
  out.flags_ = flags;
  // Builds back to front into [memory, memory + size); no heap allocation.
  out.builder_.emplace(size, &loans_->allocator, false, 16);
  return PublishStatus::Ok;
}

PublishStatus Publisher::commit(Loan& loan) noexcept {
  if (inherited()) [[unlikely]] return PublishStatus::WrongProcess;
  if (loan.state_ != loans_.get() || !loans_->open) return PublishStatus::NoLoan;
  flatbuffers::FlatBufferBuilder& b = *loan.builder_;
  const uint8_t* start = b.GetBufferPointer();
  const uint32_t offset = uint32_t(start - loan.reservation_.record);
  // The finished buffer ends the loan; the unused front is the only waste.
  writer_.commit(loan.reservation_, offset | loan.flags_, uint32_t(b.GetSize()), unix_now_ns());
  loan.cancel();  // done with: closes it
  return PublishStatus::Ok;
}

Loan::Loan(Loan&& other) noexcept { *this = std::move(other); }

Loan& Loan::operator=(Loan&& other) noexcept {
  if (this == &other) return *this;
  cancel();
  builder_ = std::move(other.builder_);  // its allocator is the publisher's: still valid
  other.builder_.reset();
  state_ = std::exchange(other.state_, nullptr);
  reservation_ = other.reservation_;
  capacity_ = std::exchange(other.capacity_, 0);
  front_ = other.front_;
  flags_ = other.flags_;
  return *this;
}

Loan::~Loan() { cancel(); }

void Loan::cancel() noexcept {
  if (state_ != nullptr) state_->open = false;  // nothing was committed: the bytes are free again
  state_ = nullptr;
  builder_.reset();
  capacity_ = 0;
}

}  // namespace flowbus
