// Publishes sensor readings on a bus in one process and reads them in another,
// through an installed flowbus (see CMakeLists.txt).
//   sensor_bus sub BUS COUNT [TIMEOUT_S]   reads COUNT readings, in order, then exits 0
//   sensor_bus pub BUS COUNT               publishes COUNT readings
// Start the subscriber first: it sees every reading published after it subscribed.
#include <flowbus/flowbus.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "sensor_generated.h"

namespace {

constexpr const char* kTopic = "sensor.temp.line1";

// Both sides register the topic: whoever comes first creates it, the other
// checks it is the same.
flowbus::Bus open_bus(const std::string& name) {
  flowbus::Bus bus = flowbus::Bus::open(name);
  flowbus::TopicSpec topic;
  topic.name = kTopic;
  topic.type = "examples.SensorReading";
  topic.schema = flowbus::compile_schema_file(SENSOR_SCHEMA);
  topic.ring_size = 1u << 20;
  bus.create_topic(topic);
  return bus;
}

int publish(const std::string& name, uint64_t count) {
  flowbus::Bus bus = open_bus(name);
  flowbus::Publisher pub = bus.publisher(kTopic, {.name = "line1"});
  flatbuffers::FlatBufferBuilder fbb;
  for (uint64_t i = 0; i < count; ++i) {
    fbb.Clear();
    fbb.Finish(examples::CreateSensorReadingDirect(fbb, "line1", "t1", 20.0 + double(i) / 10, i));
    if (pub.publish(fbb, std::chrono::seconds(5)) != flowbus::PublishStatus::Ok) {
      std::fprintf(stderr, "pub: reading %llu not published\n", static_cast<unsigned long long>(i));
      return 1;
    }
  }
  std::printf("pub: %llu readings published (flowbus %s)\n", static_cast<unsigned long long>(count), flowbus::version());
  return 0;
}

int subscribe(const std::string& name, uint64_t count, int timeout_s) {
  flowbus::Bus bus = open_bus(name);
  flowbus::Subscriber sub = bus.subscribe("sensor.*.line1", {.from = flowbus::StartAt::Earliest});
  std::printf("sub: ready\n");
  std::fflush(stdout);
  uint64_t next = 0;
  bool in_order = true;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
  while (next < count && std::chrono::steady_clock::now() < deadline) {
    sub.wait(std::chrono::milliseconds(100));
    flowbus::PollResult r = sub.poll([&](const flowbus::Event& e) {  // e.data() points into shared memory
      const auto* reading = examples::GetSensorReading(e.data());
      if (reading->seq() != next || e.type() != "examples.SensorReading") in_order = false;
      ++next;
    });
    if (r.missed != 0) in_order = false;
  }
  std::printf("sub: %llu of %llu readings%s\n", static_cast<unsigned long long>(next),
              static_cast<unsigned long long>(count), in_order ? ", in order" : ", NOT in order");
  return next == count && in_order ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s pub|sub BUS COUNT [TIMEOUT_S]\n", argv[0]);
    return 2;
  }
  const std::string mode = argv[1];
  const uint64_t count = std::strtoull(argv[3], nullptr, 10);
  try {
    if (mode == "pub") return publish(argv[2], count);
    if (mode == "sub") return subscribe(argv[2], count, argc > 4 ? std::atoi(argv[4]) : 10);
  } catch (const flowbus::Error& e) {
    std::fprintf(stderr, "%s: %s\n", mode.c_str(), e.what());
    return 1;
  }
  std::fprintf(stderr, "usage: %s pub|sub BUS COUNT [TIMEOUT_S]\n", argv[0]);
  return 2;
}
