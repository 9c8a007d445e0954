// A publisher: the single writer of one ring of one topic.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include <flatbuffers/flatbuffers.h>

#include "flowbus/detail/ring.hpp"
#include "flowbus/status.hpp"

namespace flowbus {

namespace detail { struct BusState; struct RingSegments; struct LoanState; }
namespace mirroring { struct Access; }

struct PublisherOptions {
  std::string name = "main";       ///< ring name; appears in each event's source
  std::vector<uint8_t> schema;     ///< if set, must be a compatible evolution of the topic's
};

class Publisher;

/// What Publisher::try_publish_batch did: the first `published` events of the
/// batch are in the ring; `status` tells why it stopped (Ok: all of them).
struct [[nodiscard]] BatchResult {
  size_t published = 0;
  PublishStatus status = PublishStatus::Ok;
};

/// Ring memory lent to a FlatBufferBuilder: the event is built in place.
/// Get one from Publisher::loan, build with builder(), Finish it, then
/// Publisher::commit. One loan is open per publisher at a time: while it is,
/// the publisher answers LoanOpen to publishes and further loans, so nothing
/// can overwrite the loaned bytes. Dropping a loan without committing it
/// cancels it. A loan may be moved (the moved-from one is empty); it must not
/// outlive its publisher. Thread: the publisher's owner only.
class Loan {
 public:
  Loan() = default;
  Loan(Loan&& other) noexcept;
  Loan& operator=(Loan&& other) noexcept;
  ~Loan();
  flatbuffers::FlatBufferBuilder& builder() noexcept { return *builder_; }
  size_t capacity() const noexcept { return capacity_; }
  explicit operator bool() const noexcept { return builder_.has_value(); }

 private:
  friend class Publisher;
  void cancel() noexcept;
  std::optional<flatbuffers::FlatBufferBuilder> builder_;
  detail::LoanState* state_ = nullptr;  // its publisher's, while open
  detail::RingWriter::Reservation reservation_;
  size_t capacity_ = 0;
  uint32_t front_ = 0;  // bytes before the loaned area (header, subject)
  uint32_t flags_ = 0;
};

class Publisher {
 public:
  /// Copies `bytes` (a finished FlatBuffer of the topic's type) into the ring.
  /// Never waits: Full at once when a live reader holds the space (Block).
  /// Thread: owner only. No allocation, lock or syscall (unless a reader sleeps).
  PublishStatus try_publish(std::span<const uint8_t> bytes, std::string_view subject = {}) noexcept;
  /// As try_publish, but waits up to `timeout` for space; stuck readers are
  /// evicted after the topic's slow-consumer timeout, dead ones at once.
  /// Thread: owner only. Spins, yields, then sleeps while it waits.
  PublishStatus publish(std::span<const uint8_t> bytes, std::chrono::nanoseconds timeout,
                        std::string_view subject = {}) noexcept;
  /// Copies `events` (finished FlatBuffers) into the ring in order, as one
  /// burst: each gets the next sequence, all get one time, read once as the
  /// burst starts, and the write position and sleeping readers are updated
  /// once, after the last. Readers that poll see each event as soon as it is
  /// copied. Stops at the first event that does not fit now (Full) or ever
  /// (TooLarge): the events before it are published, none after it. Never
  /// waits. Thread: owner only. No allocation, lock or syscall (unless a
  /// reader sleeps: one wake-up for the burst).
  BatchResult try_publish_batch(std::span<const std::span<const uint8_t>> events) noexcept;
  /// As try_publish_batch, but waits for space as publish() does, up to
  /// `timeout` for the whole call; `published` < events.size() only when the
  /// timeout ran out (Full) or an event can never fit (TooLarge).
  BatchResult publish_batch(std::span<const std::span<const uint8_t>> events, std::chrono::nanoseconds timeout) noexcept;
  /// Publishes the builder's finished buffer (copied once) and clears the
  /// builder for reuse (only when Ok). Thread: owner only.
  PublishStatus publish(flatbuffers::FlatBufferBuilder& builder, std::chrono::nanoseconds timeout,
                        std::string_view subject = {}) noexcept;

  /// Reserves `max_bytes` in the ring and lends them to a FlatBufferBuilder.
  /// Returns Full/TooLarge instead of a loan when there is no room, LoanOpen
  /// while another loan of this publisher is open. Building past max_bytes
  /// throws Error(InvalidArgument): loan more. Thread: owner only.
  PublishStatus loan(size_t max_bytes, Loan& out, std::string_view subject = {}) noexcept;
  /// Publishes a finished loan: Ok, or NoLoan (not open: nothing written).
  /// Thread: owner only.
  PublishStatus commit(Loan& loan) noexcept;

  /// The sequence the next event gets; readers' evictions this writer made.
  /// Thread: owner only (other threads would race with publishing).
  uint64_t next_sequence() const noexcept { return writer_.next_sequence; }
  uint64_t evictions() const noexcept { return writer_.evictions; }
  const std::string& topic() const noexcept;
  const std::string& source() const noexcept;  ///< the CloudEvents source of this ring's events
  const RingContext& context() const noexcept;  ///< this ring's CloudEvents context (origin_node set on mirrors)
  uint64_t publisher_id() const noexcept;

  /// Move-only. Move-assigning gives up the ring this publisher held (as the
  /// destructor does), then takes `other`'s.
  Publisher(Publisher&&) noexcept;
  Publisher& operator=(Publisher&&) noexcept;
  /// Lets go of the ring: it stays, with its events, for the topic's
  /// retention, and a publisher of the same name continues its sequence.
  /// Any thread, once the owner is done with it.
  ~Publisher();

 private:
  friend class Bus;
  friend struct mirroring::Access;  // mirror rings: the sidecar's calls (not API)
  Publisher(std::shared_ptr<detail::BusState> bus, std::unique_ptr<detail::RingSegments> ring);
  void close() noexcept;
  PublishStatus publish_mirrored(std::span<const uint8_t> bytes, uint64_t sequence, uint64_t time_ns,
                                 std::string_view subject, std::chrono::nanoseconds timeout) noexcept;
  PublishStatus try_publish_mirrored(std::span<const uint8_t> bytes, uint64_t sequence, uint64_t time_ns,
                                     std::string_view subject) noexcept;
  template <class TryOnce>
  PublishStatus retry_while_full(PublishStatus first, std::chrono::nanoseconds timeout, TryOnce&& try_once) noexcept;
  std::shared_ptr<detail::BusState> bus_;
  std::unique_ptr<detail::RingSegments> ring_;
  detail::RingWriter writer_;
  std::unique_ptr<detail::LoanState> loans_;  // on the heap: a Loan points at it across Publisher moves
  uint32_t incarnation_ = 0;  // the process's when made: another in a fork() child (core/src/fork_guard.hpp)
  bool inherited() const noexcept;
};

}  // namespace flowbus
