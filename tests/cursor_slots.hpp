// Test helper: how many cursor slots of a ring are owned (read-only look).
#pragma once

#include <string>

#include "bus_state.hpp"

namespace flowbus::testing {

/// Cursors owned in the ring of `publisher` on `topic`.
inline int owned_cursors(const std::string& bus, const std::string& topic, const std::string& publisher) {
  auto seg = detail::Segment::open(detail::control_segment_name(bus, topic, publisher), detail::Access::ReadOnly);
  const auto* c = reinterpret_cast<const detail::ControlHeader*>(seg.data());
  int n = 0;
  for (const detail::CursorSlot& s : c->slots) n += detail::CursorWord::owned(s.word.load());
  return n;
}

}  // namespace flowbus::testing
