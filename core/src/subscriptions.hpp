// Subscriptions before their rings: the attachments a new ring's writer
// reserves for the live subscriptions recorded in reader segments, so that a
// subscriber started before its publisher loses nothing of the new ring
// (docs/design.md, "Start-up order").
#pragma once

#include <cstdint>

#include "bus_state.hpp"

namespace flowbus::detail {

/// Called by the creator of a new Block ring (publisher_id, ring_slot) after
/// its segments exist and before the ring is Ready: reserves an attachment at
/// position 0 for every live subscription whose pattern matches `topic`,
/// recorded in a reader segment that may read the ring (the admission rule,
/// attested by the kernel), for its subscriber to adopt (RingReader::adopt).
/// One per subscription, whatever number of segments record it. Returns how
/// many. Cold: lists /dev/shm and opens each reader segment of the bus.
uint32_t reserve_for_subscribers(const BusState& bus, const TopicInfo& topic, uint64_t publisher_id, uint32_t ring_slot,
                                 ControlHeader* control) noexcept;

}  // namespace flowbus::detail
