// The README's example: a publisher and a subscriber on one bus.
// Built by the test suite (target readme_example) so it always compiles.
#include <flowbus/bus.hpp>
#include <flowbus/error.hpp>
#include <flowbus/schema.hpp>
#include <flowbus/examples/sensor_generated.h>

#include <cstdio>

static int run(const std::string& schema_file) {
  flowbus::Bus bus = flowbus::Bus::open("hello");

  flowbus::TopicSpec topic;
  topic.name = "sensor.temp.line1";
  topic.type = "examples.SensorReading";
  topic.schema = flowbus::compile_schema_file(schema_file);
  bus.create_topic(topic);

  flowbus::Publisher pub = bus.publisher("sensor.temp.line1", {.name = "line1"});
  flowbus::Subscriber sub = bus.subscribe("sensor.*.line1", {.from = flowbus::StartAt::Earliest});

  flatbuffers::FlatBufferBuilder fbb;
  for (uint64_t i = 0; i < 3; ++i) {
    fbb.Finish(examples::CreateSensorReadingDirect(fbb, "line1", "t1", 20.5 + double(i), i));
    if (pub.publish(fbb, std::chrono::seconds(1)) != flowbus::PublishStatus::Ok) return 1;
  }

  sub.wait(std::chrono::seconds(1));
  const flowbus::PollResult got = sub.poll([](const flowbus::Event& e) {  // e.data() points into shared memory
    const auto* reading = examples::GetSensorReading(e.data());
    std::printf("%s %s %s: %.1f C\n", e.id().c_str(), e.time().c_str(), e.source().c_str(), reading->celsius());
  });
  if (got.missed != 0) std::printf("missed %llu events\n", static_cast<unsigned long long>(got.missed));  // never silent
  flowbus::Bus::destroy("hello");
  return 0;
}

int main(int argc, char** argv) {
  const std::string schema_file = argc > 1 ? argv[1] : "schemas/examples/sensor.fbs";
  try {
    return run(schema_file);
  } catch (const flowbus::Error& e) {  // set-up calls throw; the message says what was wrong
    std::fprintf(stderr, "%s: %s\n", argv[0], e.what());
    if (argc <= 1)
      std::fprintf(stderr, "run it from the root of the flowbus repository, or give the schema's path: %s PATH/TO/sensor.fbs\n",
                   argv[0]);
    flowbus::Bus::destroy("hello");  // leave nothing in /dev/shm
    return 1;
  }
}
