// Writes the generated seeds of fuzz/corpus/: real rings (data segment plus
// control header) and real bus directories (the directory fuzzer's windows),
// made by a real bus in /dev/shm, and the example schemas as
// compile_schema_file builds them. Usage: fuzz_make_corpus <corpus dir>.
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "bus_state.hpp"
#include "directory_windows.hpp"
#include "flowbus/bus.hpp"
#include "flowbus/examples/sensor_generated.h"
#include "flowbus/schema.hpp"

using namespace flowbus;
using namespace flowbus::detail;

namespace {

std::string out_dir;

void write(const std::string& file, const std::vector<uint8_t>& bytes) {
  const std::string path = out_dir + "/" + file;
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
  std::printf("%s (%zu bytes)\n", path.c_str(), bytes.size());
}

std::vector<uint8_t> read_segment(const std::string& name, size_t n) {
  const Segment seg = Segment::open(name, Access::ReadOnly);
  return std::vector<uint8_t>(seg.data(), seg.data() + std::min<uint64_t>(n, seg.size()));
}

// The data segment, then the control header with its first `slots` cursor slots.
std::vector<uint8_t> ring_seed(const std::string& bus, const std::string& topic, const std::string& publisher, size_t slots) {
  std::vector<uint8_t> out = read_segment(data_segment_name(bus, topic, publisher), SIZE_MAX);
  if (slots != 0) {
    const std::vector<uint8_t> ctl =
        read_segment(control_segment_name(bus, topic, publisher), offsetof(ControlHeader, slots) + slots * sizeof(CursorSlot));
    out.insert(out.end(), ctl.begin(), ctl.end());
  }
  return out;
}

std::vector<uint8_t> directory_seed(const std::string& bus) {
  const std::vector<uint8_t> dir = read_segment(directory_segment_name(bus), SIZE_MAX);
  std::vector<uint8_t> out;
  for_each_window([&](size_t offset, size_t length, size_t) { out.insert(out.end(), &dir[offset], &dir[offset] + length); });
  return out;
}

void publish(Publisher& pub, uint64_t n, flatbuffers::FlatBufferBuilder& fbb) {
  for (uint64_t i = 0; i < n; ++i) {
    fbb.Clear();
    fbb.Finish(examples::CreateSensorReadingDirect(fbb, "line1", "t1", 20.5 + double(i), i));
    (void)pub.try_publish({fbb.GetBufferPointer(), fbb.GetSize()}, i % 3 == 0 ? "line1/t1" : "");
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <corpus dir>\n", argv[0]);
    return 2;
  }
  out_dir = argv[1];
  const std::string bus_name = "fuzzseed-" + std::to_string(::getpid());
  Bus::destroy(bus_name);
  {
    const std::vector<uint8_t> sensor = compile_schema_file(FLOWBUS_SOURCE_DIR "/schemas/examples/sensor.fbs");
    Bus bus = Bus::open(bus_name);
    write("directory/empty", directory_seed(bus_name));
    TopicSpec block{.name = "sensor.block", .type = "examples.SensorReading", .schema = sensor, .ring_size = 4096};
    TopicSpec latest = block;
    latest.name = "sensor.latest";
    latest.policy = Policy::Latest;
    bus.create_topic(block);
    bus.create_topic(latest);
    flatbuffers::FlatBufferBuilder fbb;

    Publisher fresh = bus.publisher("sensor.block", {.name = "fresh"});
    publish(fresh, 5, fbb);
    write("ring_records/block_fresh", ring_seed(bus_name, "sensor.block", "fresh", 0));

    Publisher wrapped = bus.publisher("sensor.latest", {.name = "wrapped"});
    Subscriber sub = bus.subscribe("sensor.latest", {.from = StartAt::Earliest});
    publish(wrapped, 200, fbb);  // laps the 4 KiB ring: padding records, a moved tail
    (void)sub.poll([](const Event&) {});
    publish(wrapped, 7, fbb);
    write("ring_records/latest_wrapped_with_cursor", ring_seed(bus_name, "sensor.latest", "wrapped", 2));
    write("directory/two_topics_two_rings", directory_seed(bus_name));
  }
  Bus::destroy(bus_name);

  for (const char* name : {"order", "order_v2", "sensor"})
    write(std::string("schema/") + name + ".compiled.bfbs",
          compile_schema_file(std::string(FLOWBUS_SOURCE_DIR "/schemas/examples/") + name + ".fbs"));
  return 0;
}
