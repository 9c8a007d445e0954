// A subscriber: reads every ring of every topic matching a pattern, in place.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "flowbus/detail/ring.hpp"
#include "flowbus/event.hpp"

namespace flowbus {

namespace detail { struct BusState; struct RingSegments; }

enum class StartAt { Latest, Earliest };

struct SubscriberOptions {
  StartAt from = StartAt::Latest;  ///< where a ring found at subscribe time starts (new rings: earliest)
  std::chrono::nanoseconds spin = std::chrono::microseconds(50);  ///< wait(): spin this long, then sleep
  /// wait(): once an event shows up, keep away from the rings this much
  /// longer before returning, so the publisher writes a batch into lines no
  /// reader is touching and the next poll() takes them all. Raises throughput
  /// (a reader that polls right behind the writer pulls each line back and
  /// forth); adds up to this much latency. 0 (the default): return at once.
  std::chrono::nanoseconds coalesce{0};
  /// Mirroring (the sidecar): release() moves only the read position; the
  /// cursor that holds a Block writer back stays where acknowledge() put it,
  /// so events a peer has not confirmed are never overwritten and rewind()
  /// can send them again. The slow-consumer timeout still applies.
  bool hold_until_acknowledged = false;
  /// If set, a ring of a matching topic is read only if this accepts its
  /// context (the sidecar: exported topics, never back to the origin node).
  /// Called when rings are attached, never on the hot path.
  std::function<bool(const RingContext&)> accept_ring;
  /// A ring of a matching topic created after subscribe() keeps every event
  /// for this subscriber from its first one (Block: the writer waits for it,
  /// up to the topic's slow-consumer timeout), even before the subscriber has
  /// looked at the ring: its creator reserves a cursor for it. Off: such a
  /// ring is joined at its oldest retained event when the subscriber next
  /// reads, and what was overwritten before is counted (Lost), not kept. The
  /// sidecar turns it off: its `>` subscription filters rings it may never
  /// look at while its peer is away.
  bool reserve_new_rings = true;
};

/// What read() found. `missed` counts events skipped (Evicted, Lost).
struct ReadResult {
  ReadStatus status = ReadStatus::Empty;
  uint64_t missed = 0;
  std::string_view ring;  ///< Corrupt: which ring (its segment name); empty otherwise. Lives as long as the subscriber
};

struct PollResult {
  size_t delivered = 0;
  uint64_t missed = 0;         ///< events lost (Latest) or skipped after an eviction (Block)
  uint32_t evictions = 0;      ///< times this subscriber was evicted
  uint32_t corrupt_rings = 0;  ///< rings quarantined during this poll
  uint32_t torn_views = 0;     ///< events handed to on_event while this subscriber was being
                               ///< evicted: their bytes may have been reused as they were read
};

class Subscriber {
 public:
  /// The next event of any ring (rings taken in turn). Ok: `event` stays valid
  /// until release(event); release it before the next read. Evicted and Lost
  /// report skipped events and leave `event` unset; read again to go on.
  /// Thread: owner only. No allocation, lock or syscall in steady state;
  /// when the bus's topology changed (a new ring), the read that finds
  /// nothing attaches the new rings, which maps them (allocation, syscalls).
  ReadResult read(Event& event) noexcept;
  /// Moves past `event`. Evicted: this subscriber was evicted while holding
  /// it, so its bytes may have been reused meanwhile.
  ReadStatus release(const Event& event) noexcept;
  /// Latest policy: true if `event`'s bytes were not overwritten while you
  /// read them. Check after reading, before trusting what you read.
  bool still_valid(const Event& event) const noexcept;

  /// Calls on_event(const Event&) for up to max_events available events,
  /// releasing each after the call. Never waits.
  template <class F>
  PollResult poll(F&& on_event, size_t max_events = SIZE_MAX);

  /// Waits until an event may be readable: spins for options.spin, then
  /// sleeps on the futex of every ring at once. False on timeout.
  bool wait(std::chrono::nanoseconds timeout);

  /// Attaches rings created since the last look (cheap when nothing changed).
  void refresh();

  /// With options.hold_until_acknowledged: the writer of `ring` may now reuse
  /// everything before `next_position` (Event::next_position() of the last
  /// event a peer confirmed). One CAS: call it per batch, not per event.
  void acknowledge(uint32_t ring, uint64_t next_position) noexcept;
  /// With options.hold_until_acknowledged: reads `ring` again from the last
  /// acknowledged position (its events are intact under Block).
  void rewind(uint32_t ring) noexcept;
  /// The CloudEvents context and policy of ring `ring` (Event::ring()), for
  /// ring < ring_count().
  const RingContext& ring_context(uint32_t ring) const noexcept;
  Policy ring_policy(uint32_t ring) const noexcept;
  size_t ring_count() const noexcept { return readers_.size(); }
  const std::string& pattern() const noexcept { return pattern_; }

  Subscriber(Subscriber&&) noexcept;
  Subscriber& operator=(Subscriber&&) noexcept;
  ~Subscriber();

 private:
  friend class Bus;
  Subscriber(std::shared_ptr<detail::BusState> bus, std::string pattern, SubscriberOptions options);
  bool changed() const noexcept;
  ReadResult read_attached(Event& event) noexcept;
  void attach_rings(StartAt from, bool at_subscribe);
  void close() noexcept;

  std::shared_ptr<detail::BusState> bus_;
  std::string pattern_;
  SubscriberOptions options_;
  std::vector<std::unique_ptr<detail::RingSegments>> segments_;
  std::vector<detail::RingReader> readers_;
  std::vector<bool> reported_corrupt_;
  size_t next_ring_ = 0;
  uint64_t seen_generation_ = 0;
  uint64_t retry_at_ns_ = 0;  // monotonic: look at the rings again then (0: no ring is waiting)
  // Our subscription in the bus directory (UINT32_MAX: none), and the rings
  // that were Ready when we subscribed (slot << 32 | slot epoch): any other
  // ring was created after, so we expect its every event.
  uint32_t subscription_index_ = UINT32_MAX;
  uint32_t subscription_tag_ = 0;
  std::vector<uint64_t> rings_at_subscribe_;
};

template <class F>
PollResult Subscriber::poll(F&& on_event, size_t max_events) {
  PollResult result;
  Event event;
  while (result.delivered < max_events) {
    ReadResult r = read(event);
    if (r.status == ReadStatus::Ok) {
      on_event(static_cast<const Event&>(event));
      ++result.delivered;
      // The eviction itself (with its count) is reported by the next read.
      if (release(event) == ReadStatus::Evicted) ++result.torn_views;
      continue;
    }
    if (r.status == ReadStatus::Empty) break;
    result.missed += r.missed;
    if (r.status == ReadStatus::Evicted) ++result.evictions;
    if (r.status == ReadStatus::Corrupt) ++result.corrupt_rings;
  }
  return result;
}

}  // namespace flowbus
