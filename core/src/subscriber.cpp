// Subscriber: finds the rings matching its pattern, reads them in turn, waits.
#include <sched.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <random>
#include <utility>

#include "bus_state.hpp"
#include "flowbus/bus.hpp"
#include "flowbus/error.hpp"
#include "flowbus/internal/mirroring.hpp"
#include "flowbus/names.hpp"
#include "reader_segment.hpp"

namespace flowbus {
using namespace detail;

Subscriber Bus::subscribe(std::string_view pattern, const SubscriberOptions& options) {
  return subscribe_with(pattern, options, nullptr);
}

Subscriber Bus::subscribe_with(std::string_view pattern, const SubscriberOptions& options,
                               const mirroring::ExportOptions* export_options) {
  state_->check_not_inherited("Bus handle");
  validate_pattern(pattern);
  validate_subscriber_options(options);
  Subscriber s(state_, std::string(pattern), options, export_options);
  // Recorded first, then the rings scanned: a ring created from now on
  // either reserves an attachment for us, or is seen by the scan while it is
  // being created (the start-up Dekker, see subscriptions.cpp).
  if (export_options == nullptr || export_options->reserve_new_rings) s.record_subscription();
  s.attach_rings(options.from, /*at_subscribe=*/true);
  return s;
}

Subscriber::Subscriber(std::shared_ptr<BusState> bus, std::string pattern, SubscriberOptions options,
                       const mirroring::ExportOptions* export_options)
    : bus_(std::move(bus)),
      pattern_(std::move(pattern)),
      options_(options),
      export_(export_options ? std::make_unique<mirroring::ExportOptions>(*export_options) : nullptr),
      incarnation_(bus_->incarnation) {}

bool Subscriber::inherited() const noexcept { return incarnation_ != process_incarnation(); }

Subscriber::Subscriber(Subscriber&& other) noexcept
    : bus_(std::move(other.bus_)),
      pattern_(std::move(other.pattern_)),
      options_(other.options_),
      export_(std::move(other.export_)),
      segments_(std::move(other.segments_)),
      reader_segments_(std::move(other.reader_segments_)),
      readers_(std::move(other.readers_)),
      reported_corrupt_(std::move(other.reported_corrupt_)),
      next_ring_(other.next_ring_),
      seen_generation_(other.seen_generation_),
      retry_at_ns_(other.retry_at_ns_),
      subscription_tag_(std::exchange(other.subscription_tag_, 0)),
      rings_at_subscribe_(std::move(other.rings_at_subscribe_)),
      unread_(std::move(other.unread_)),
      unreported_(other.unreported_),
      copy_buffers_(std::move(other.copy_buffers_)),
      copy_capacity_(std::exchange(other.copy_capacity_, 0)),
      incarnation_(other.incarnation_) {
  other.readers_.clear();
  other.segments_.clear();
  other.reader_segments_.clear();
}

Subscriber& Subscriber::operator=(Subscriber&& other) noexcept {
  if (this == &other) return *this;
  close();  // what we held (cursors, our subscription) is given up first
  bus_ = std::move(other.bus_);
  pattern_ = std::move(other.pattern_);
  options_ = other.options_;
  export_ = std::move(other.export_);
  segments_ = std::move(other.segments_);  // after close(): our cursors are gone from them
  reader_segments_ = std::move(other.reader_segments_);  // readers_ point into them: moved together
  readers_ = std::move(other.readers_);
  reported_corrupt_ = std::move(other.reported_corrupt_);
  next_ring_ = other.next_ring_;
  seen_generation_ = other.seen_generation_;
  retry_at_ns_ = other.retry_at_ns_;
  subscription_tag_ = std::exchange(other.subscription_tag_, 0);
  unreported_ = other.unreported_;
  rings_at_subscribe_ = std::move(other.rings_at_subscribe_);
  unread_ = std::move(other.unread_);
  copy_buffers_ = std::move(other.copy_buffers_);  // readers_ point into them: moved together
  copy_capacity_ = std::exchange(other.copy_capacity_, 0);
  incarnation_ = other.incarnation_;
  other.readers_.clear();
  other.segments_.clear();
  other.reader_segments_.clear();
  return *this;
}

Subscriber::~Subscriber() { close(); }

void Subscriber::close() noexcept {
  if (bus_ && bus_->not_ours()) {  // a fork() child's copy: the cursors and subscription are its parent's
    readers_.clear();
    subscription_tag_ = 0;
    return;
  }
  for (RingReader& r : readers_) r.leave();
  readers_.clear();
  // Our segments go (each ends the subscription it records, then is
  // removed): nobody reserves for us any more, or follows our lines.
  reader_segments_.clear();
  subscription_tag_ = 0;
}

bool Subscriber::changed() const noexcept {
  // A ring we could not attach yet is looked at again after a while, even if
  // nothing else changes (retry_at_ns_ is 0 otherwise: no clock read).
  if (retry_at_ns_ != 0 && monotonic_now_ns() >= retry_at_ns_) return true;
  // Acquire: pairs with bump_generation's release; what changed is visible.
  return bus_->dir->header.generation.load(std::memory_order_acquire) != seen_generation_;
}

void Subscriber::refresh() {
  if (inherited()) throw Error(ErrorCode::WrongProcess, inherited_handle_message("Subscriber", bus_->pid));
  if (changed()) attach_rings(StartAt::Earliest, /*at_subscribe=*/false);
}

namespace {

// How long a sleeper on a ring whose bell others may write sleeps before it
// looks again: the latency a forged wake request can cost, at most, per wait.
constexpr uint64_t kSharedBellSleepSliceNs = 20'000'000;

/// "topic@publisher", as flowbus sub and inspect name a ring.
std::string ring_label(const std::string& topic, const std::string& publisher) {
  std::string label;
  label.reserve(topic.size() + 1 + publisher.size());
  label.append(topic).append(1, '@').append(publisher);
  return label;
}

/// The verifier of an untrusted topic's events: one a ring of the same
/// topic and schema already has, or a new one (throws Error if the schema
/// cannot be verified safely; create_topic refuses such a topic).
std::shared_ptr<const SchemaCodec> verifier_for(const std::vector<std::unique_ptr<RingSegments>>& segments,
                                                const TopicInfo& topic, const RingContext& context) {
  for (const auto& seg : segments)
    if (seg->verifier && seg->context.topic == topic.name && seg->context.dataschema == context.dataschema)
      return seg->verifier;
  return std::make_shared<const SchemaCodec>(topic.schema, topic.type);
}

}  // namespace

/// Our line for a ring, in our reader segment of the topic's group (made on
/// first need), and how we announce it on the ring's bell. The group a
/// reader segment gets must be one we are in (the kernel allows no other),
/// so a topic whose group is not ours, or that has none, goes to our
/// segment of our own group.
void Subscriber::claim_line(const TopicInfo& topic, uint64_t publisher_id, uint32_t ring_slot, RingReader& reader) {
  int64_t group = -1;  // our effective group's, also when it is the topic's
  if (topic.group >= 0 && gid_t(topic.group) != ::getegid() && (::geteuid() == 0 || in_group(gid_t(topic.group))))
    group = topic.group;
  for (const auto& own : reader_segments_) {
    if (own->group() != group) continue;
    if (CursorLine* line = own->claim_line(publisher_id, ring_slot)) {
      reader.line = line;
      reader.announcement = own->announcement_for(line);
      return;
    }
  }
  reader_segments_.push_back(ReaderSegment::create(bus_->name, group, subscription_tag_, pattern_));
  reader.line = reader_segments_.back()->claim_line(publisher_id, ring_slot);
  reader.announcement = reader_segments_.back()->announcement_for(reader.line);
}

/// A random tag for our subscription, recorded with our pattern in a
/// reader segment of our own group and of each group of the topics that
/// match it now and that we are in; later ones add segments as they come
/// (claim_line). Before the ring scan: the start-up Dekker.
void Subscriber::record_subscription() {
  std::random_device random;
  while (subscription_tag_ == 0) subscription_tag_ = random();
  std::vector<int64_t> groups{-1};
  for (const TopicInfo& topic : bus_->topics())
    if (topic.group >= 0 && gid_t(topic.group) != ::getegid() && pattern_matches(pattern_, topic.name) &&
        (::geteuid() == 0 || in_group(gid_t(topic.group))) &&
        std::find(groups.begin(), groups.end(), topic.group) == groups.end())
      groups.push_back(topic.group);
  for (const int64_t group : groups)
    reader_segments_.push_back(ReaderSegment::create(bus_->name, group, subscription_tag_, pattern_));
}

void Subscriber::make_copy_room(uint64_t bytes) {
  if (bytes <= copy_capacity_) return;
  std::unique_ptr<uint8_t[], FreeAligned> buffer(static_cast<uint8_t*>(::operator new[](bytes, std::align_val_t(64))));
  std::memset(buffer.get(), 0, bytes);  // touched now: no page faults on the read path
  copy_buffers_.push_back(std::move(buffer));
  copy_capacity_ = bytes;
  for (RingReader& r : readers_)
    if (r.verifier != nullptr) r.copy = copy_buffers_.back().get();
}

void Subscriber::attach_rings(StartAt from, bool at_subscribe) {
  const DirectoryLayout* dir = bus_->dir;
  seen_generation_ = dir->header.generation.load(std::memory_order_acquire);
  bool retry = false;  // a matching ring could not be attached now: look again soon
  unread_.clear();
  for (uint32_t i = 0; i < kRings; ++i) {
    const RingSlot& slot = dir->rings[i];
    // seq_cst at subscribe: the load half of the start-up Dekker (see subscriptions.cpp).
    const uint64_t state = slot.state.load(at_subscribe ? std::memory_order_seq_cst : std::memory_order_acquire);
    if (SlotWord::state(state) != kReady) continue;
    const std::string topic(slot.topic, strnlen(slot.topic, kNameBytes));
    if (!pattern_matches(pattern_, topic)) continue;
    bool known = false;
    for (const auto& seg : segments_) known |= seg->slot == i && seg->publisher_id == slot.publisher_id;
    if (known) continue;
    // A ring Ready when we subscribed is joined as `from` says; one created
    // since is expected from its first event.
    const uint64_t key = uint64_t(i) << 32 | SlotWord::epoch(state);
    if (at_subscribe) rings_at_subscribe_.push_back(key);
    const bool created_since = std::find(rings_at_subscribe_.begin(), rings_at_subscribe_.end(), key) ==
                               rings_at_subscribe_.end();
    const std::string publisher(slot.publisher, strnlen(slot.publisher, kPublisherNameBytes));
    const auto info = bus_->find_topic(topic);
    if (!info) {
      retry = true;
      continue;
    }
    RingContext context = make_ring_context(bus_->host, bus_->name, *info, publisher, slot.publisher_id);
    apply_mirror_origin(context, slot);
    const bool refused = export_ && export_->accept_ring && !export_->accept_ring(context);
    // Only a ring made since we recorded our subscription can hold an
    // attachment reserved for us: one created since we subscribed, or one
    // that became Ready while we subscribed (its creator listed our segment
    // before our scan got to it). One we will not read we give up (below),
    // or it holds its writer until the slow-consumer timeout.
    const bool may_hold_ours = subscription_tag_ != 0 && (created_since || at_subscribe);
    // Given up once is enough: each give-up keeps its line (the writer may
    // read it later), so giving up again at every change would use up lines
    // and segments while the writer has not answered yet.
    const bool given_up = std::find(given_up_.begin(), given_up_.end(), key) != given_up_.end();
    if (refused && (!may_hold_ours || given_up)) continue;  // looked at again on the next change
    auto ring = std::make_unique<RingSegments>();
    try {
      open_ring_segments(*ring, bus_->name, topic, publisher, Access::ReadOnly, Access::ReadOnly, Access::ReadWrite);
    } catch (const Error& e) {
      // A topic named exactly must be readable; under a wildcard, rings we may
      // not open are skipped (they belong to someone else).
      if (e.code() == ErrorCode::NotFound) {  // being removed or replaced: look again
        retry = true;
        continue;
      }
      if (pattern_.find_first_of("*>") == std::string::npos) throw;
      unread_.push_back({ring_label(topic, publisher), e.what(), false});
      continue;
    }
    ring->slot = i;
    ring->data.prefault();  // no page faults on the first lap
    if (ring->publisher_id != slot.publisher_id) {  // replaced meanwhile: look again
      retry = true;
      continue;
    }
    if (info->untrusted) {
      // Set up now, so the read path allocates nothing: the verifier, and
      // room for the largest record this ring can hold.
      try {
        ring->verifier = verifier_for(segments_, *info, context);
        make_copy_room(max_record_length(ring->capacity));
      } catch (const std::exception& e) {
        const std::string why =
            std::string("its events cannot be verified (topic '") + topic + "' is untrusted): " + e.what();
        if (pattern_.find_first_of("*>") == std::string::npos)
          throw Error(ErrorCode::InvalidArgument, "ring '" + ring->data.name() + "': " + why);
        unread_.push_back({ring_label(topic, publisher), why, false});
        continue;
      }
    }
    ring->context = std::move(context);
    RingReader r;
    r.header = ring->header();
    r.records = ring->records();
    r.control = ring->control_header();
    r.bell = ring->bell_header();
    claim_line(*info, ring->publisher_id, i, r);
    r.capacity = ring->capacity;
    r.mask = r.capacity - 1;
    r.policy = ring->policy;
    r.context = &ring->context;
    r.ring_index = uint32_t(readers_.size());
    r.verifier = ring->verifier.get();
    r.copy = r.verifier != nullptr ? copy_buffers_.back().get() : nullptr;
    const uint64_t first_sequence = r.header->first_sequence;  // written before magic, which the open acquired
    uint64_t reserved_state = 0;
    const int reserved = may_hold_ours ? r.find_attachment(subscription_tag_, uint32_t(bus_->pid), reserved_state) : -1;
    if (refused) {
      if (reserved >= 0) {
        r.give_up(subscription_tag_);  // the writer frees it at its next refresh
        given_up_.push_back(key);
      }
      r.leave();
      continue;  // looked at again on the next change
    }
    bool joined = true;
    // A reservation for us means the ring's creator saw our subscription:
    // the ring is newer than it, whatever our scan saw, so read it all.
    if (reserved >= 0)
      r.adopt(reserved, reserved_state, r.control->attachments[reserved].held_from.load(std::memory_order_relaxed),
              first_sequence, subscription_tag_);
    else if (created_since) joined = r.join_from_start(first_sequence);
    else joined = from == StartAt::Earliest ? r.join_earliest() : r.join_latest();
    // A join fails only when tail turns out to be off the record grid (the
    // header was scribbled on): that ring is damaged. It joins quarantined,
    // holding nothing, so the first read reports it Corrupt.
    if (!joined) r.quarantine();
    if (export_ && export_->hold_until_acknowledged) r.hold = r.position;
    segments_.push_back(std::move(ring));
    readers_.push_back(r);
    reported_corrupt_.push_back(false);
  }
  retry_at_ns_ = retry ? monotonic_now_ns() + 10'000'000 : 0;
}

ReadResult Subscriber::read(Event& event) noexcept {
  // One named result, returned on every path: built in the caller's slot
  // (a copy here cost a store-forwarding stall, 60% of this function).
  ReadResult result = read_attached(event);
  if (result.status == ReadStatus::Empty && changed()) {
    const size_t before = readers_.size();
    try {
      refresh();  // topology changed: allocation is allowed here, never in steady state
    } catch (...) {
      // a ring we cannot open now; retried at the next change
    }
    if (readers_.size() != before) result = read_attached(event);
  }
  return result;
}

ReadResult Subscriber::read_attached(Event& event) noexcept {
  ReadResult result;  // the one object every path returns (NRVO), as in read()
  if (inherited()) [[unlikely]] {
    result.status = ReadStatus::WrongProcess;
    return result;
  }
  const size_t n = readers_.size();
  for (size_t k = 0; k < n; ++k) {
    const size_t i = next_ring_ + k < n ? next_ring_ + k : next_ring_ + k - n;
    RingReader& r = readers_[i];
    if (r.quarantined && reported_corrupt_[i]) continue;
    const ReadStatus s = r.peek(event);
    if (r.evicted_pending || (r.missed != 0 && s != ReadStatus::Corrupt)) {
      result.status = r.evicted_pending ? ReadStatus::Evicted : ReadStatus::Lost;
      result.missed = r.take_missed();
      r.evicted_pending = false;
      next_ring_ = i;  // the event found (if any) is delivered by the next read
      return result;
    }
    if (s == ReadStatus::Ok) {
      next_ring_ = i + 1 == n ? 0 : i + 1;
      result.status = ReadStatus::Ok;
      return result;
    }
    if (s == ReadStatus::Corrupt) {
      reported_corrupt_[i] = true;
      result.status = ReadStatus::Corrupt;
      result.ring = segments_[i]->data.name();
      return result;
    }
    if (s == ReadStatus::Rejected) {
      result.status = ReadStatus::Rejected;
      result.missed = r.take_rejected();
      result.ring = segments_[i]->data.name();
      next_ring_ = i;  // the ring goes on: its next event is read next
      return result;
    }
  }
  return result;
}

ReadStatus Subscriber::release(const Event& event) noexcept {
  if (inherited()) [[unlikely]] return ReadStatus::WrongProcess;
  return readers_[event.ring_index_].release(event);
}

void Subscriber::acknowledge(uint32_t ring, uint64_t next_position) noexcept {
  if (ring < readers_.size() && !inherited()) readers_[ring].acknowledge(next_position);
}

void Subscriber::rewind(uint32_t ring) noexcept {
  if (ring < readers_.size() && !inherited()) readers_[ring].rewind();
}

const RingContext& Subscriber::ring_context(uint32_t ring) const noexcept { return segments_[ring]->context; }
Policy Subscriber::ring_policy(uint32_t ring) const noexcept { return readers_[ring].policy; }
bool Subscriber::ring_untrusted(uint32_t ring) const noexcept { return readers_[ring].verifier != nullptr; }
uint64_t Subscriber::ring_rejected(uint32_t ring) const noexcept { return readers_[ring].rejected; }

bool Subscriber::still_valid(const Event& event) const noexcept {
  const RingReader& r = readers_[event.ring_index_];
  return r.verifier != nullptr || r.still_valid_at(event.position_);  // untrusted: a copy, checked when it was made
}

/// True if a read may find something: an event at some ring's cursor, or a
/// change of the bus's rings. Touches only lines the next read needs anyway.
bool Subscriber::ready_to_read() const noexcept {
  for (const RingReader& r : readers_)
    if (!r.quarantined && r.has_data()) return true;
  return changed();
}

/// Once an event shows up: keep away from the rings for options.coalesce, so
/// the writer fills lines no reader touches. Returns true (what wait() returns).
bool Subscriber::after_data() const noexcept {
  if (options_.coalesce.count() <= 0) return true;  // the default: no clock reads
  const uint64_t until = monotonic_now_ns() + uint64_t(options_.coalesce.count());
  while (monotonic_now_ns() < until) cpu_relax();  // touches no shared line
  return true;
}

bool Subscriber::wait(std::chrono::nanoseconds timeout) {
  if (inherited()) throw Error(ErrorCode::WrongProcess, inherited_handle_message("Subscriber", bus_->pid));
  if (options_.wait_strategy == WaitStrategy::Backoff) return wait_backoff(timeout);
  const uint64_t start = monotonic_now_ns();
  const uint64_t deadline = start + uint64_t(std::max<int64_t>(0, timeout.count()));
  const uint64_t spin_until = std::min(deadline, start + uint64_t(std::max<int64_t>(0, options_.spin.count())));
  // The clock costs more than a look at the rings (the commit word at each
  // cursor, a line that stays in our cache until the writer touches it), so
  // it is read once per 32 looks: a new event is seen within a few ns.
  do {
    for (int look = 0; look < 32; ++look)
      if (ready_to_read()) return after_data();
  } while (monotonic_now_ns() < spin_until);
  const std::atomic<uint32_t>* words[128];
  uint32_t expected[128];
  for (;;) {
    unsigned count = 0;
    bool heavy = false;
    for (RingReader& r : readers_) {
      if (r.quarantined || count == 127) continue;  // beyond 127 rings: woken by the others or the timeout
      heavy |= r.begin_sleep(expected[count]);      // reads the wake word, then asks for a wake-up
      words[count++] = &r.control->wake_word;
    }
    // Writers with the light fence need a full barrier in them now (see
    // RingWriter::publish_position). If the kernel refuses, sleep in short
    // slices so a missed wake-up costs at most a millisecond.
    uint64_t max_sleep = heavy && !heavy_barrier() ? 1'000'000 : UINT64_MAX;
    // A bell others may write may have had our request erased (a forged 0):
    // then only a slice's end wakes us, and nothing is lost but that time.
    // So may a bell cut short (truncated): our request went to a zero page.
    for (const auto& seg : segments_)
      if (seg->bell_shared || seg->bell_guard.damaged()) max_sleep = std::min(max_sleep, kSharedBellSleepSliceNs);
    words[count] = &bus_->dir->header.topology_word;  // new rings wake us too
    expected[count++] = bus_->dir->header.topology_word.load(std::memory_order_acquire);
    bool have = ready_to_read();
    for (RingReader& r : readers_) have |= r.stuck_below_write_position();  // the read says what it is
    const uint64_t now = monotonic_now_ns();
    if (!have && now < deadline) futex_wait_any(words, expected, count, std::min(deadline - now, max_sleep));
    for (RingReader& r : readers_) r.end_sleep();
    if (have || ready_to_read()) {
      if (changed()) refresh();
      return after_data();
    }
    if (monotonic_now_ns() >= deadline) return false;
  }
}

namespace {

void sleep_ns(uint64_t ns) noexcept {
  timespec ts{time_t(ns / 1'000'000'000), long(ns % 1'000'000'000)};
  while (clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, &ts) == EINTR) {
  }
}

}  // namespace

// Never registers as a sleeper, so no publisher makes a wake-up call for us,
// and none can be lost: every phase ends in a look at each ring's commit
// word, and no sleep is longer than max_park or than the time left.
bool Subscriber::wait_backoff(std::chrono::nanoseconds timeout) {
  if (ready_to_read()) return after_data();  // data there: no clock read, no system call
  const BackoffOptions& b = options_.backoff;
  const uint64_t deadline = monotonic_now_ns() + uint64_t(std::max<int64_t>(0, timeout.count()));
  // Spin: the clock costs more than a look, so it is read once per 32 looks.
  for (uint32_t spin = 1; spin < b.spins; ++spin) {
    cpu_relax();  // between looks: each one pulls the line the writer is filling
    if (ready_to_read()) return after_data();
    if (spin % 32 == 0 && monotonic_now_ns() >= deadline) return false;
  }
  for (uint32_t yield = 0; yield < b.yields; ++yield) {
    if (monotonic_now_ns() >= deadline) return false;
    sched_yield();
    if (ready_to_read()) return after_data();
  }
  for (uint64_t park = uint64_t(b.min_park.count());; park = std::min(2 * park, uint64_t(b.max_park.count()))) {
    bool stuck = false;  // damage (W past a cursor with nothing committed): the read reports it
    for (RingReader& r : readers_) stuck |= r.stuck_below_write_position();
    if (stuck) return true;
    const uint64_t now = monotonic_now_ns();
    if (now >= deadline) return false;
    sleep_ns(std::min(park, deadline - now));
    if (ready_to_read()) {
      if (changed()) refresh();
      return after_data();
    }
  }
}

void validate_subscriber_options(const SubscriberOptions& options) {
  if (options.wait_strategy != WaitStrategy::SpinThenSleep && options.wait_strategy != WaitStrategy::Backoff)
    throw Error(ErrorCode::InvalidArgument, "SubscriberOptions::wait_strategy: use SpinThenSleep or Backoff");
  const BackoffOptions& b = options.backoff;
  auto refuse = [](const std::string& what) {
    throw Error(ErrorCode::InvalidArgument, "SubscriberOptions::backoff." + what);
  };
  if (b.spins > BackoffOptions::kMaxSpins)
    refuse("spins is " + std::to_string(b.spins) + ": at most " + std::to_string(BackoffOptions::kMaxSpins));
  if (b.yields > BackoffOptions::kMaxYields)
    refuse("yields is " + std::to_string(b.yields) + ": at most " + std::to_string(BackoffOptions::kMaxYields));
  if (b.min_park < std::chrono::microseconds(1))
    refuse("min_park is " + std::to_string(b.min_park.count()) + " ns: at least 1 us (1000 ns)");
  if (b.max_park < b.min_park)
    refuse("max_park is " + std::to_string(b.max_park.count()) + " ns: at least min_park (" +
           std::to_string(b.min_park.count()) + " ns)");
  if (b.max_park > std::chrono::seconds(1))
    refuse("max_park is " + std::to_string(b.max_park.count()) +
           " ns: at most 1 s (sleep longer with WaitStrategy::SpinThenSleep, which a publish wakes)");
}

}  // namespace flowbus
