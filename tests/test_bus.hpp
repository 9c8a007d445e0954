// Test helpers: a uniquely named bus that is destroyed at the end of the test.
#pragma once

#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "flowbus/bus.hpp"
#include "flowbus/schema.hpp"
#include "flowbus/examples/sensor_generated.h"

namespace flowbus::testing {

/// A count from the environment (the soak runs raise them), or `fallback`.
inline uint64_t env_count(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == 0) return fallback;
  return std::strtoull(v, nullptr, 10);
}

inline std::string unique_bus_name(const char* stem) {
  static std::atomic<int> counter{0};
  return std::string(stem) + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
}

inline std::string example_schema(const char* file) {
  return std::string(FLOWBUS_SOURCE_DIR) + "/schemas/examples/" + file;
}

/// Removes every segment of the bus when the test ends, whatever happened.
struct ScopedBusName {
  std::string name;
  explicit ScopedBusName(const char* stem) : name(unique_bus_name(stem)) {}
  ~ScopedBusName() { Bus::destroy(name); }
};

inline TopicSpec sensor_topic(const std::string& name, Policy policy = Policy::Block, uint64_t ring = 64 * 1024) {
  TopicSpec spec;
  spec.name = name;
  spec.type = "examples.SensorReading";
  spec.schema = compile_schema_file(example_schema("sensor.fbs"));
  spec.policy = policy;
  spec.ring_size = ring;
  return spec;
}

/// A SensorReading whose seq field is `seq`.
inline void build_reading(flatbuffers::FlatBufferBuilder& fbb, uint64_t seq, double celsius = 21.5) {
  fbb.Clear();
  fbb.Finish(examples::CreateSensorReadingDirect(fbb, "line1", "t1", celsius, seq));
}

/// A sensor topic whose slow-consumer timeout is never: a writer waits for
/// its readers for good, so a test sees what holds it back.
inline TopicSpec never_evicting(const std::string& name, Policy policy = Policy::Block, uint64_t ring = 4096) {
  TopicSpec spec = sensor_topic(name, policy, ring);
  spec.slow_consumer_timeout = kNever;
  return spec;
}

/// try_publish of a SensorReading whose seq field is `seq`.
inline PublishStatus publish_reading(Publisher& pub, uint64_t seq) {
  flatbuffers::FlatBufferBuilder fbb;
  build_reading(fbb, seq);
  return pub.try_publish({fbb.GetBufferPointer(), fbb.GetSize()});
}

}  // namespace flowbus::testing
