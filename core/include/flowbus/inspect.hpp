// A read-only snapshot of a bus for `flowbus inspect`: it maps every segment
// read-only, claims no cursor and registers no participant, so the bus it
// looks at behaves exactly as without it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "flowbus/topic.hpp"

namespace flowbus {

struct ParticipantSnapshot {
  uint32_t slot = 0;
  int64_t pid = 0;
  bool alive = false;
  uint64_t attached_ns = 0;  ///< unix ns
};

struct CursorSnapshot {
  uint32_t slot = 0;
  int64_t pid = 0;            ///< owner's pid, 0 if its participant slot is gone
  bool alive = false;
  uint64_t position = 0;      ///< as last published (readers publish every eighth of a ring)
  uint64_t lag_bytes = 0;     ///< write position - position
  int64_t lag_events = -1;    ///< next sequence - sequence at the cursor; -1 if not known
  uint64_t evictions = 0;     ///< evictions of this slot's owners so far
  bool sleeping = false;
};

struct RingSnapshot {
  std::string topic, publisher, segment;
  uint64_t publisher_id = 0;
  int64_t writer_pid = 0;      ///< pid of the last publisher that held it
  bool writer_alive = false;   ///< a live publisher holds it now
  uint64_t capacity = 0, write_position = 0, tail_position = 0, next_sequence = 0;
  uint64_t retained_events = 0;  ///< events between tail and the write position
  uint64_t last_publish_ns = 0;
  double fill = 0;               ///< (write - slowest live cursor) / capacity; 0 with no reader
  std::vector<CursorSnapshot> cursors;
  std::string error;             ///< why the ring could not be read (permission, damage), else empty
};

struct TopicSnapshot {
  TopicInfo info;  ///< schema bytes left out
};

struct BusSnapshot {
  std::string name;
  uint32_t layout_version = 0;
  uint64_t generation = 0;
  std::vector<ParticipantSnapshot> participants;
  std::vector<TopicSnapshot> topics;
  std::vector<RingSnapshot> rings;
  std::vector<std::string> warnings;  ///< each names the problem and the fix
  size_t live_participants() const;
};

/// Reads bus `name` without changing anything. Throws Error (NotFound,
/// PermissionDenied naming owner and mode, VersionMismatch, Corrupt).
BusSnapshot inspect_bus(const std::string& name);

}  // namespace flowbus
