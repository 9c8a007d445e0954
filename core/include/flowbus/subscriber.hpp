// A subscriber: reads every ring of every topic matching a pattern, in place.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <new>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "flowbus/detail/ring.hpp"
#include "flowbus/event.hpp"
#include "flowbus/status.hpp"

namespace flowbus {

namespace detail {
struct BusState;
struct RingSegments;
class ReaderSegment;
struct CursorLine;
}  // namespace detail
namespace mirroring { struct Access; struct ExportOptions; }

enum class StartAt { Latest, Earliest };

/// How Subscriber::wait() passes the time while no event is there.
enum class WaitStrategy {
  /// Spin for SubscriberOptions::spin, then sleep on the rings' futexes until
  /// a publish wakes it (the default). Idle, it costs no CPU; an event that
  /// finds it asleep pays a kernel wake-up, and its publisher a system call.
  SpinThenSleep,
  /// Spin, then sched_yield, then sleep in slices that double up to a
  /// maximum (SubscriberOptions::backoff), like Aeron's BackoffIdleStrategy.
  /// Its publishers never make a system call for it; an event that comes
  /// while it sleeps is seen at the end of the slice. For a subscriber that
  /// may use part of a CPU but not all of it.
  Backoff,
};

/// WaitStrategy::Backoff's phases. subscribe() throws Error(InvalidArgument)
/// for values out of the ranges given.
struct BackoffOptions {
  static constexpr uint32_t kMaxSpins = 100'000'000, kMaxYields = 1'000'000;
  /// Looks at the rings, a pause between them, before yielding (0 to 100,000,000).
  uint32_t spins = 1000;
  /// Then sched_yield() this many times, a look after each (0 to 1,000,000).
  uint32_t yields = 10;
  /// Then sleep this long (1 us to max_park), look, and double the sleep...
  std::chrono::nanoseconds min_park = std::chrono::microseconds(1);
  /// ...up to this (min_park to 1 s): how late an event that comes while
  /// the subscriber sleeps can be seen, plus the thread's timer slack (Linux:
  /// 50 us by default, prctl(PR_SET_TIMERSLACK) lowers it).
  std::chrono::nanoseconds max_park = std::chrono::milliseconds(1);
};

struct SubscriberOptions {
  /// Where a ring found at subscribe time starts. A ring of a matching topic
  /// created after subscribe() is read from its first event, whatever the
  /// timing: its creator reserves room for this subscriber before its
  /// first publish (Block: the writer waits for it, up to the topic's
  /// slow-consumer timeout). Where nothing could be reserved (64 waiting
  /// subscriptions already, or a topic of a group this subscriber had no
  /// reader segment of when the ring was made), such a ring is joined at its
  /// oldest retained event and what was overwritten before is reported
  /// (Lost), never skipped silently.
  StartAt from = StartAt::Latest;
  std::chrono::nanoseconds spin = std::chrono::microseconds(50);  ///< wait(): spin this long, then sleep
  /// wait(): once an event shows up, keep away from the rings this much
  /// longer before returning, so the publisher writes a batch into lines no
  /// reader is touching and the next poll() takes them all. Raises throughput
  /// (a reader that polls right behind the writer pulls each line back and
  /// forth); adds up to this much latency. 0 (the default): return at once.
  std::chrono::nanoseconds coalesce{0};
  /// wait(): sleep on a futex after `spin` (the default), or back off
  /// (spin, yield, short sleeps, as `backoff` says).
  WaitStrategy wait_strategy = WaitStrategy::SpinThenSleep;
  BackoffOptions backoff;  ///< used under WaitStrategy::Backoff
};

/// Throws Error(InvalidArgument) naming the first setting out of range;
/// subscribe() calls it.
void validate_subscriber_options(const SubscriberOptions& options);

/// What read() found. `missed` counts events skipped (Evicted, Lost), or
/// refused (Rejected: they failed verification).
struct [[nodiscard]] ReadResult {
  ReadStatus status = ReadStatus::Empty;
  uint64_t missed = 0;
  std::string_view
      ring;  ///< Corrupt, Rejected: which ring (its segment name); empty otherwise. Lives as long as the subscriber
};

/// What poll() did. Ignoring it would hide losses: [[nodiscard]].
struct [[nodiscard]] PollResult {
  size_t delivered = 0;
  uint64_t missed = 0;         ///< events lost (Latest) or skipped after an eviction (Block)
  uint32_t evictions = 0;      ///< times this subscriber was evicted
  uint32_t corrupt_rings = 0;  ///< rings quarantined during this poll
  uint64_t rejected = 0;       ///< untrusted topics: events that failed verification, skipped (not in `missed`)
  uint32_t torn_views = 0;     ///< events handed to on_event while this subscriber was being
                               ///< evicted: their bytes may have been reused as they were read
};

/// A ring of a matching topic that a subscriber does not read, and why.
struct UnreadRing {
  std::string ring;      ///< "<topic>@<publisher>"
  std::string reason;    ///< what keeps it out, and what to do
  bool will_retry = false;  ///< attached by a later look once the cause goes (none does today: kept for API stability)
};

class Subscriber {
 public:
  /// The next event of any ring (rings taken in turn). Ok: `event` stays valid
  /// until release(event); release it before the next read. Evicted and Lost
  /// report skipped events and leave `event` unset; read again to go on.
  /// Untrusted topics: `event` points at a copy this subscriber owns, made
  /// and verified by this read; Rejected reports events that failed (ring
  /// `ring`), which are skipped: read again to go on.
  /// Thread: owner only. No allocation, lock or syscall in steady state;
  /// when the bus's topology changed (a new ring), the read that finds
  /// nothing attaches the new rings, which maps them (allocation, syscalls).
  ReadResult read(Event& event) noexcept;
  /// Moves past `event`. Evicted: this subscriber was evicted while holding
  /// it, so its bytes may have been reused meanwhile.
  /// Thread: owner only. No allocation, lock or syscall (unless the writer sleeps on us).
  ReadStatus release(const Event& event) noexcept;
  /// Latest policy: true if `event`'s bytes were not overwritten while you
  /// read them. Check after reading, before trusting what you read.
  /// Untrusted topics: always true (the event is a copy, checked when made).
  /// Thread: owner only. Two loads and a fence.
  bool still_valid(const Event& event) const noexcept;

  /// Calls on_event(const Event&) for up to max_events available events,
  /// releasing each after the call. Never waits. noexcept when on_event is;
  /// if on_event throws, the event it was given is released, what this poll
  /// had counted (missed, evictions, corrupt rings) is carried into the next
  /// poll's result, and the exception goes on to the caller. Stops at once
  /// in a fork() child (read() says WrongProcess). Thread: owner only; as read().
  template <class F>
  PollResult poll(F&& on_event, size_t max_events = SIZE_MAX) noexcept(noexcept(on_event(std::declval<const Event&>())));

  /// Waits until an event may be readable: spins for options.spin, then
  /// sleeps on the futex of every ring at once (WaitStrategy::SpinThenSleep);
  /// or spins, yields and sleeps in growing slices (WaitStrategy::Backoff).
  /// Returns at once, with no system call, when an event is there already.
  /// False on timeout. New rings wake it too and are attached (throws Error
  /// as refresh() does; in a fork() child, Error(WrongProcess)).
  /// Thread: owner only.
  bool wait(std::chrono::nanoseconds timeout);

  /// Attaches rings created since the last look (cheap when nothing changed).
  /// Throws Error when a ring of an exactly named topic cannot be read
  /// (permission, damage); under a wildcard such rings are skipped.
  /// Thread: owner only.
  void refresh();

  /// The CloudEvents context and policy of ring `ring` (Event::ring()), for
  /// ring < ring_count(). Thread: owner only (read() may add rings).
  const RingContext& ring_context(uint32_t ring) const noexcept;
  Policy ring_policy(uint32_t ring) const noexcept;
  /// True if ring `ring`'s topic is untrusted: its events are verified copies.
  bool ring_untrusted(uint32_t ring) const noexcept;
  /// Events of ring `ring` refused since it was attached (they failed verification).
  uint64_t ring_rejected(uint32_t ring) const noexcept;
  size_t ring_count() const noexcept { return readers_.size(); }
  /// The rings of matching topics this subscriber does not read, as of its
  /// last look at the bus (subscribe, refresh, or a read or wait that found
  /// the bus changed): not readable by this process under a wildcard (an
  /// exact name throws instead). Empty when it reads every matching ring.
  /// Thread: owner only.
  const std::vector<UnreadRing>& unread_rings() const noexcept { return unread_; }
  const std::string& pattern() const noexcept { return pattern_; }

  /// Move-only. Moving one subscriber over another first gives up the
  /// target's cursors and subscription, as its destructor does.
  Subscriber(Subscriber&&) noexcept;
  Subscriber& operator=(Subscriber&&) noexcept;
  /// Frees its cursors (a Block writer no longer waits for it) and its
  /// subscription. Any thread, once the owner is done with it.
  ~Subscriber();

 private:
  friend class Bus;
  friend struct mirroring::Access;  // export subscribers: the sidecar's calls (not API)
  Subscriber(std::shared_ptr<detail::BusState> bus, std::string pattern, SubscriberOptions options,
             const mirroring::ExportOptions* export_options);
  void acknowledge(uint32_t ring, uint64_t next_position) noexcept;
  void rewind(uint32_t ring) noexcept;
  bool changed() const noexcept;
  bool ready_to_read() const noexcept;
  bool after_data() const noexcept;
  bool wait_backoff(std::chrono::nanoseconds timeout);
  ReadResult read_attached(Event& event) noexcept;
  void attach_rings(StartAt from, bool at_subscribe);
  void make_copy_room(uint64_t bytes);
  void claim_line(const TopicInfo& topic, uint64_t publisher_id, uint32_t ring_slot, detail::RingReader& reader);
  void record_subscription();
  void close() noexcept;

  std::shared_ptr<detail::BusState> bus_;
  std::string pattern_;
  SubscriberOptions options_;
  std::unique_ptr<mirroring::ExportOptions> export_;  // the sidecar's; null for applications
  std::vector<std::unique_ptr<detail::RingSegments>> segments_;
  // Our own segments, one per group of the topics we read (usually one): each
  // ring's line there holds our position (least privilege), and each
  // records our subscription (pattern and tag) for rings created later.
  std::vector<std::unique_ptr<detail::ReaderSegment>> reader_segments_;
  std::vector<detail::RingReader> readers_;
  std::vector<bool> reported_corrupt_;
  size_t next_ring_ = 0;
  uint64_t seen_generation_ = 0;
  uint64_t retry_at_ns_ = 0;  // monotonic: look at the rings again then (0: no ring is waiting)
  // Our subscription's tag (random, 0: none), and the rings that were Ready
  // when we subscribed (slot << 32 | slot epoch): any other ring was created
  // after, so we expect its every event.
  uint32_t subscription_tag_ = 0;
  std::vector<uint64_t> rings_at_subscribe_;
  std::vector<uint64_t> given_up_;  // rings (slot << 32 | epoch) whose reservation we gave up
  std::vector<UnreadRing> unread_;
  PollResult unreported_;  // counted by a poll whose callback threw: the next poll reports it
  // Untrusted topics: where events are copied to be verified, one buffer for
  // all rings (one event is held at a time), as large as the largest record
  // of any untrusted ring attached. Grown only when a ring is attached; the
  // older buffers are kept, as an event still held may point into one.
  struct FreeAligned {
    void operator()(uint8_t* p) const noexcept { ::operator delete[](p, std::align_val_t(64)); }
  };
  std::vector<std::unique_ptr<uint8_t[], FreeAligned>> copy_buffers_;
  uint64_t copy_capacity_ = 0;
  uint32_t incarnation_ = 0;  // the process's when made: another in a fork() child (core/src/fork_guard.hpp)
  bool inherited() const noexcept;
};

template <class F>
PollResult Subscriber::poll(F&& on_event, size_t max_events) noexcept(noexcept(on_event(std::declval<const Event&>()))) {
  PollResult result;
  if (unreported_.missed != 0 || unreported_.evictions != 0 || unreported_.corrupt_rings != 0 ||
      unreported_.rejected != 0) [[unlikely]]
    result = std::exchange(unreported_, PollResult{});
  Event event;
  while (result.delivered < max_events) {
    ReadResult r = read(event);
    if (r.status == ReadStatus::Ok) {
      if constexpr (noexcept(on_event(static_cast<const Event&>(event)))) {
        on_event(static_cast<const Event&>(event));
      } else {
        try {
          on_event(static_cast<const Event&>(event));
        } catch (...) {
          (void)release(event);  // the event is done with: do not hold the writer back
          unreported_ = result;  // nothing counted is dropped with the exception
          unreported_.delivered = 0;
          throw;
        }
      }
      ++result.delivered;
      // The eviction itself (with its count) is reported by the next read.
      if (release(event) == ReadStatus::Evicted) ++result.torn_views;
      continue;
    }
    if (r.status == ReadStatus::Empty || r.status == ReadStatus::WrongProcess) break;
    if (r.status == ReadStatus::Rejected) {
      result.rejected += r.missed;
      continue;
    }
    result.missed += r.missed;
    if (r.status == ReadStatus::Evicted) ++result.evictions;
    if (r.status == ReadStatus::Corrupt) ++result.corrupt_rings;
  }
  return result;
}

}  // namespace flowbus
