// The tools' view of who reads a ring: the lines readers keep for it in
// their own segments (layout.hpp, "Reader segment"), found by name and read
// read-only. Cold: `flowbus inspect`, `check` and the metrics call it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace flowbus::detail {

/// A reader's line for one ring, copied out of its segment.
struct FoundReaderLine {
  uint32_t pid = 0, n = 0, line = 0;  // "flowbus.<bus>~r.<pid>.<n>", line index
  uint64_t token = 0;
  bool alive = false;  // its process lives (pid and start time)
  uint64_t position = 0, last_moved_ns = 0, losses = 0, rejected = 0, evictions = 0;
  bool sleeping = false;
};

/// A Subscriber's subscription, as its reader segments record it.
struct FoundSubscription {
  uint32_t pid = 0, n = 0;  // the first of its segments found
  uint32_t uid = 0;         // the segment's owner: the subscriber's effective uid
  uint32_t tag = 0;
  std::string pattern;
  bool alive = false;  // its process lives (pid and start time)
};

inline constexpr uint32_t kAnyRingSlot = UINT32_MAX;

/// Every line for ring (publisher_id, ring_slot; kAnyRingSlot: any slot) in the reader segments of
/// bus `bus` that this process may read; `unreadable` (if given) counts the
/// segments it may not (another group's).
std::vector<FoundReaderLine> find_reader_lines(const std::string& bus, uint64_t publisher_id, uint32_t ring_slot,
                                               uint32_t* unreadable = nullptr);

/// The live subscriptions (tag not 0) in the reader segments of bus `bus`
/// that this process may read, one per Subscriber (its segments of several
/// groups each record it).
std::vector<FoundSubscription> find_subscriptions(const std::string& bus);

}  // namespace flowbus::detail
