// Test helper: how many readers a ring has (read-only look at the lines
// readers keep for it in their own segments).
#pragma once

#include <string>

#include "bus_state.hpp"
#include "reader_lines.hpp"

namespace flowbus::testing {

/// Readers of the ring of `publisher` on `topic`: the lines readers keep
/// for it (a Block writer obeys those it admitted), and the reservations its
/// creator made for subscriptions whose subscriber has not looked yet.
inline int owned_cursors(const std::string& bus, const std::string& topic, const std::string& publisher) {
  auto seg = detail::Segment::open(detail::data_segment_name(bus, topic, publisher), detail::Access::ReadOnly);
  const auto* h = reinterpret_cast<const detail::RingHeader*>(seg.data());
  int n = int(detail::find_reader_lines(bus, h->publisher_id, detail::kAnyRingSlot).size());
  auto ctl = detail::Segment::open(detail::control_segment_name(bus, topic, publisher), detail::Access::ReadOnly);
  for (const detail::Attachment& a : reinterpret_cast<const detail::ControlHeader*>(ctl.data())->attachments)
    n += detail::AttachmentState::kind(a.state.load()) == detail::AttachmentState::kReserved;
  return n;
}

}  // namespace flowbus::testing
