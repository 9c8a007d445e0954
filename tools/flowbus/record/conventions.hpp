// How flowbus events sit in an MCAP file (docs/design.md, "Recording in
// MCAP"): one Schema per topic schema (encoding "flatbuffer", the .bfbs as
// data, the root table as name), one Channel per ring (the topic as its
// name, message encoding "flatbuffer", the ring's constant CloudEvents
// context and the topic's settings as metadata), one Message per event (the
// FlatBuffer untouched as data, the event time as log and publish time, the
// low 32 bits of its sequence as the MCAP sequence). Subjects, the one
// per-event attribute left, travel on a JSON side channel "<topic>/subject"
// just before their event.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "flowbus/event.hpp"
#include "flowbus/mcap/records.hpp"
#include "flowbus/topic.hpp"

namespace flowbus::record {

inline constexpr const char* kEncoding = "flatbuffer";
inline constexpr const char* kSubjectEncoding = "json";
inline constexpr const char* kSubjectSuffix = "/subject";
/// Metadata record names: losses so far (written as they happen, at most
/// once a second), and the recording's totals (written when it finishes).
inline constexpr const char* kLossesRecord = "flowbus.losses";
inline constexpr const char* kRecordingRecord = "flowbus.recording";

/// The Channel metadata of a ring: CloudEvents context, publisher, topic settings.
mcap::KeyValues channel_metadata(const RingContext& ring, const TopicInfo& topic, const std::string& bus,
                                 uint64_t first_sequence);

/// What replay needs back from a Channel record of an event channel.
struct RecordedRing {
  std::string topic;
  std::string source;
  std::string publisher;
  uint64_t publisher_id = 0;
  uint64_t first_sequence = 0;
  std::string type;
  Policy policy = Policy::Block;
  uint64_t ring_size = 0;
  int64_t slow_consumer_timeout_ns = -1;  ///< -1: never
  int64_t retention_s = -1;               ///< -1: never
};
/// Nullopt when the channel is not a flowbus event channel (a subject side
/// channel, or a file from elsewhere). Throws mcap::McapError when flowbus
/// metadata is present but malformed.
std::optional<RecordedRing> recorded_ring(const mcap::Channel& channel);
/// For a subject side channel, the id of the event channel it serves.
std::optional<uint16_t> subject_channel_of(const mcap::Channel& channel);

/// The full 64-bit sequence of an event from its MCAP sequence (low 32 bits)
/// and the previous full sequence of its ring (or the channel's first
/// sequence for its first event): the next value at or above `previous`
/// with those low bits.
inline uint64_t widen_sequence(uint64_t previous, uint32_t low) {
  return previous + uint32_t(low - uint32_t(previous));
}

std::string hex16(uint64_t v);

}  // namespace flowbus::record
