// Subscriptions recorded in the bus directory, and the attachments a new
// ring's writer reserves for them, so that a subscriber started before its
// publisher loses nothing of the new ring (docs/design.md, "Start-up order").
#pragma once

#include <cstdint>
#include <string_view>

#include "bus_state.hpp"

namespace flowbus::detail {

struct SubscriptionHandle {
  uint32_t index = UINT32_MAX;  // UINT32_MAX: none (the table was full)
  uint32_t tag = 0;
  bool valid() const noexcept { return index != UINT32_MAX; }
};

/// Records a live subscription to `pattern`. An invalid handle when all
/// kSubscriptions slots are taken (rings created later are then joined at
/// their start with what was overwritten counted, not reserved for).
SubscriptionHandle register_subscription(BusState& bus, std::string_view pattern) noexcept;
void release_subscription(BusState& bus, SubscriptionHandle handle) noexcept;
/// Frees the subscriptions of dead participant `participant` (epoch: its slot's epoch).
bool release_subscriptions_of(BusState& bus, uint32_t participant, uint32_t epoch) noexcept;

/// Called by the creator of a new Block ring after its segments exist and
/// before the ring is Ready: reserves an attachment at position 0 for every
/// live subscription whose pattern matches `topic` and that may read the
/// ring, for its subscriber to adopt (RingReader::adopt). Returns how many.
uint32_t reserve_for_subscribers(BusState& bus, const TopicInfo& topic, ControlHeader* control) noexcept;

/// How a reservation names its subscriber's participant: slot index and
/// the low 8 bits of its epoch (Attachment::participant).
inline uint32_t reservation_participant(uint32_t index, uint32_t participant_epoch) noexcept {
  return index | (participant_epoch & 0xff) << 16;
}

}  // namespace flowbus::detail
