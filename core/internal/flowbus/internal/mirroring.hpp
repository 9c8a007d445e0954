// The calls the sidecar mirrors with. Not part of the public API: this header
// is not installed, and applications never need it. A mirror ring republishes
// another host's events with their own identity; an export subscriber holds a
// Block writer back until a peer has acknowledged what it was sent.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>

#include "flowbus/bus.hpp"

namespace flowbus::mirroring {

/// Where a mirrored ring's events were first published.
struct MirrorOrigin {
  uint64_t publisher_id = 0;  ///< the origin ring's id: mirrored events keep their CloudEvents id
  std::string source;         ///< the origin ring's CloudEvents source ("flowbus://host/bus/publisher")
  std::string node;           ///< the node (sidecar) where they were first published
  /// The sequence of the first event the new mirror ring will hold (a reader
  /// that attaches late counts what was overwritten before it came);
  /// UINT64_MAX if not known.
  uint64_t first_sequence = UINT64_MAX;
};

/// The writer of a mirror ring: the events of one origin ring on another
/// host, republished here with their own sequence, time and identity (see
/// publish_mirrored). One ring per origin ring, named "m-<origin publisher id
/// in hex>"; reopening it continues where the last writer stopped, so
/// next_sequence() says what is already held. Throws Error as
/// Bus::publisher() does, and NameInUse if a local publisher took that name.
Publisher mirror_publisher(Bus& bus, std::string_view topic, const MirrorOrigin& origin);

/// Republishes an event received from elsewhere with its own `sequence` and
/// `time_ns` (nanoseconds since the Unix epoch). `sequence` below
/// next_sequence() is Duplicate and writes nothing; above it leaves a gap
/// that readers are told they missed (the origin no longer held those
/// events). Waits up to `timeout` for space, as Publisher::publish() does.
/// Thread: the publisher's owner only.
PublishStatus publish_mirrored(Publisher& mirror, std::span<const uint8_t> bytes, uint64_t sequence, uint64_t time_ns,
                               std::string_view subject, std::chrono::nanoseconds timeout) noexcept;

/// How an export subscriber differs from an application's.
struct ExportOptions {
  /// release() moves only the read position; the cursor that holds a Block
  /// writer back stays where acknowledge() put it, so events a peer has not
  /// confirmed are never overwritten and rewind() can send them again. The
  /// slow-consumer timeout still applies.
  bool hold_until_acknowledged = false;
  /// If set, a ring of a matching topic is read only if this accepts its
  /// context (exported topics, never back to the origin node). Called when
  /// rings are attached, never on the hot path.
  std::function<bool(const RingContext&)> accept_ring;
  /// False: rings created after subscribing reserve no cursor for this
  /// subscriber (SubscriberOptions explains reservations). The sidecar's `>`
  /// subscription filters rings it may never look at while its peer is away.
  bool reserve_new_rings = true;
};

/// Bus::subscribe with the export options above.
Subscriber export_subscriber(Bus& bus, std::string_view pattern, const SubscriberOptions& options,
                             const ExportOptions& export_options);

/// With hold_until_acknowledged: the writer of `ring` may now reuse
/// everything before `next_position` (Event::next_position() of the last
/// event a peer confirmed). One CAS: call it per batch, not per event.
/// Thread: the subscriber's owner only.
void acknowledge(Subscriber& sub, uint32_t ring, uint64_t next_position) noexcept;
/// With hold_until_acknowledged: reads `ring` again from the last
/// acknowledged position (its events are intact under Block).
/// Thread: the subscriber's owner only.
void rewind(Subscriber& sub, uint32_t ring) noexcept;

}  // namespace flowbus::mirroring
