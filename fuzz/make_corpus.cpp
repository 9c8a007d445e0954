// Writes the generated seeds of fuzz/corpus/: real rings (data segment plus
// control header) and real bus directories (the directory fuzzer's windows),
// made by a real bus in /dev/shm, and the example schemas as
// compile_schema_file builds them, and sessions of the sidecar's wire
// protocol. Usage: fuzz_make_corpus <corpus dir>.
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
#include "flowbus/wire/codec.hpp"

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

// The data segment, then the control header with its first `slots` attachments.
std::vector<uint8_t> ring_seed(const std::string& bus, const std::string& topic, const std::string& publisher, size_t slots) {
  std::vector<uint8_t> out = read_segment(data_segment_name(bus, topic, publisher), SIZE_MAX);
  if (slots != 0) {
    const std::vector<uint8_t> ctl = read_segment(control_segment_name(bus, topic, publisher),
                                                  offsetof(ControlHeader, attachments) + slots * sizeof(Attachment));
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

// wire_frames seeds: a first byte choosing the chunking, then frames.
void wire_seeds() {
  using namespace flowbus::wire;
  using Bytes = std::vector<uint8_t>;
  auto add = [](Bytes& out, std::span<const uint8_t> frame) { out.insert(out.end(), frame.begin(), frame.end()); };
  FrameWriter w;
  EventBatchWriter batch(4096, 64);
  const Nonce nonce{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
                    17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};
  auto handshake = [&](uint8_t mode, bool with_mac) {
    Bytes out{mode};
    add(out, w.hello({kProtocolVersion, "host-a", nonce, "flowbus 0.1.0"}));
    if (with_mac) {
      const Mac mac = compute_auth_mac("token", nonce, "host-a");
      add(out, w.auth({mac}));
    } else {
      add(out, w.auth({}));
    }
    return out;
  };
  const uint8_t schema[] = {0x10, 0, 0, 0, 'B', 'F', 'B', 'S'};
  StreamOpenView open{.stream = 1, .topic = "plant.sensors", .type = "examples.SensorReading",
                      .schema_id = "fnv1a64:0123456789abcdef", .schema = schema, .policy = TopicPolicy::Block,
                      .publisher_id = 42, .publisher = "press-1", .source = "flowbus://host-a/plant/press-1",
                      .origin_node = "host-a", .first_sequence = 1};

  Bytes session = handshake(0, true);
  const std::vector<std::string> patterns = {"plant.*", "orders"};
  const std::vector<Resume> resume = {Resume(42, 1), Resume(7, 100)};
  add(session, w.subscribe(patterns, resume));
  add(session, w.stream_open(open));
  batch.start(1);
  const uint8_t payload[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
  for (uint64_t seq = 1; seq <= 5; ++seq) (void)batch.add(seq, seq * 1000, seq % 2 ? "line-1" : "", payload, 0);
  add(session, batch.finish());
  add(session, w.gap({1, 6, 9, "no longer retained"}));
  batch.start(1);
  (void)batch.add(9, 9000, "", payload, 1);
  add(session, batch.finish());
  add(session, w.ack({1, 10}));
  add(session, w.heartbeat({123456789}));
  add(session, w.bye({"shutting down"}));
  write("wire_frames/session_at_once", session);
  session[0] = 1;
  write("wire_frames/session_byte_by_byte", session);
  session[0] = 37;
  write("wire_frames/session_in_chunks", session);

  Bytes refused{5};
  add(refused, w.hello({2, "newer", nonce, "flowbus 9"}));
  add(refused, w.refuse({RefuseCode::VersionMismatch, "peer speaks flowbus wire protocol 1, this sidecar speaks 2", 2, 1}));
  write("wire_frames/version_refused", refused);

  Bytes bad_order = handshake(0, false);
  add(bad_order, w.ack({3, 4}));
  batch.start(3);  // a stream never opened
  (void)batch.add(1, 1, "", payload, 0);
  add(bad_order, batch.finish());
  write("wire_frames/batch_without_stream_open", bad_order);

  Bytes out_of_bounds = handshake(0, false);
  add(out_of_bounds, w.stream_open(open));
  flatbuffers::FlatBufferBuilder fbb;
  const auto bytes_vec = fbb.CreateVector(payload, sizeof payload);
  const EventEntry entries[] = {EventEntry(1, 0, 0, 4, 4, 2, 0), EventEntry(2, 0, 8, 30, 0, 0, 0)};
  const auto entries_vec = fbb.CreateVectorOfStructs(entries, 2);
  fbb.FinishSizePrefixed(CreateFrame(fbb, Body::EventBatch, CreateEventBatch(fbb, 1, entries_vec, bytes_vec).Union()),
                         FrameIdentifier());
  add(out_of_bounds, {fbb.GetBufferPointer(), fbb.GetSize()});
  write("wire_frames/entry_out_of_bounds", out_of_bounds);

  const std::string tls("\0\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 12);
  write("wire_frames/tls_client_hello", Bytes(tls.begin(), tls.end()));
  const std::string http = std::string(1, '\0') + "GET / HTTP/1.1\r\nHost: sidecar\r\n\r\n";
  write("wire_frames/http_get", Bytes(http.begin(), http.end()));
  write("wire_frames/huge_length", Bytes{0, 0xff, 0xff, 0xff, 0x7f, 'F', 'B', 'W', '1'});
}

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
  wire_seeds();
  return 0;
}
