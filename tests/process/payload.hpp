// The payload the multi-process tests send, shared by the test and its worker.
//
// Every event is an examples::SensorReading:
//   line    = the publisher's name
//   sensor  = 16 hex digits of payload_value(name, seq): an integrity check
//             that a reader recomputes from the other fields
//   celsius = seq as a double
//   seq     = the payload counter, from the publisher's first sequence on
// A reader that sees a torn or foreign event finds `sensor` does not match.
#pragma once

#include <cstdint>
#include <cstring>
#include <string_view>

#include <flatbuffers/flatbuffers.h>

#include "flowbus/examples/sensor_generated.h"

namespace flowbus::testing {

inline constexpr uint64_t kFnvBasis = 14695981039346656037ull;

inline uint64_t fnv1a64(const void* data, size_t size, uint64_t hash = kFnvBasis) {
  const auto* p = static_cast<const uint8_t*>(data);
  for (size_t i = 0; i < size; ++i) hash = (hash ^ p[i]) * 1099511628211ull;
  return hash;
}

/// The 64-bit value event `i` of publisher `name` carries (splitmix64 of both).
inline uint64_t payload_value(std::string_view name, uint64_t i) {
  uint64_t z = fnv1a64(name.data(), name.size()) ^ (i * 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/// 16 lowercase hex digits and a NUL.
inline void to_hex16(uint64_t v, char (&out)[17]) {
  static const char digits[] = "0123456789abcdef";
  for (int i = 15; i >= 0; --i, v >>= 4) out[i] = digits[v & 15];
  out[16] = 0;
}

/// Order-sensitive digest of a run of payload values: FNV-1a over their bytes.
inline uint64_t digest_step(uint64_t digest, uint64_t value) { return fnv1a64(&value, sizeof value, digest); }

/// The digest a reader must reach after events first..first+count-1 of `name`.
inline uint64_t expected_digest(std::string_view name, uint64_t first, uint64_t count) {
  uint64_t d = kFnvBasis;
  for (uint64_t i = first; i < first + count; ++i) d = digest_step(d, payload_value(name, i));
  return d;
}

inline void build_payload(flatbuffers::FlatBufferBuilder& fbb, const char* name, uint64_t i) {
  char hex[17];
  to_hex16(payload_value(name, i), hex);
  fbb.Clear();
  fbb.Finish(examples::CreateSensorReadingDirect(fbb, name, hex, double(i), i));
}

/// Checks one received payload. On success sets `counter` (the seq field) and
/// `value` (what it carries) and returns nullptr; otherwise says what is wrong.
/// `data` must not change while it is checked: pass a copy of a record a
/// `latest` writer may overwrite (verifying in place, then reading, races).
inline const char* check_payload(const uint8_t* data, size_t size, std::string_view publisher, uint64_t& counter,
                                 uint64_t& value) {
  flatbuffers::Verifier verifier(data, size);
  if (!examples::VerifySensorReadingBuffer(verifier)) return "not a valid SensorReading FlatBuffer";
  const examples::SensorReading* r = examples::GetSensorReading(data);
  if (r->line() == nullptr || r->sensor() == nullptr) return "line or sensor missing";
  if (r->line()->string_view() != publisher) return "line does not name the ring's publisher";
  counter = r->seq();
  value = payload_value(publisher, counter);
  char hex[17];
  to_hex16(value, hex);
  if (r->sensor()->string_view() != std::string_view(hex, 16)) return "sensor check value does not match (publisher, seq)";
  if (r->celsius() != double(counter)) return "celsius does not match seq";
  return nullptr;
}

}  // namespace flowbus::testing
