// `flowbus record`, `record info` and `replay` run as real processes: SIGTERM
// and kill -9 of the recorder, a full disk, losses, a file read by the MCAP
// TypeScript library (@mcap/core, installed with npm into the build tree) and
// decoded with flatc-generated code, and a 100,000-event round trip.
#include <fcntl.h>
#include <sys/stat.h>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <map>
#include <thread>

#include "cli_helpers.hpp"
#include "flowbus/examples/order_generated.h"

using namespace flowbus;
using namespace flowbus::testing;

namespace {

struct TempPath {
  std::string path;
  explicit TempPath(const std::string& name) : path("/tmp/record_test-" + std::to_string(::getpid()) + "-" + name) {}
  ~TempPath() {
    std::remove(path.c_str());
    for (int i = 1; i < 8; ++i) {
      const size_t dot = path.rfind('.');
      std::remove((path.substr(0, dot) + "-" + std::to_string(i) + path.substr(dot)).c_str());
    }
  }
};

std::string order_json(uint64_t id) {
  return R"({"id":)" + std::to_string(id) + R"(,"customer":"c)" + std::to_string(id % 97) + R"(","sku":"S-)" +
         std::to_string(id * 7) + R"(","quantity":)" + std::to_string(id % 5) + R"(,"price_cents":)" +
         std::to_string(100 + id) + "}";
}

/// A file of `n` orders with ids from `first`.
std::string orders_file(const std::string& name, uint64_t first, uint64_t n) {
  const std::string path = "/tmp/record_test-" + std::to_string(::getpid()) + "-" + name + ".jsonl";
  std::ofstream out(path);
  for (uint64_t i = 0; i < n; ++i) out << order_json(first + i) << "\n";
  return path;
}

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_bytes(const std::string& path, const std::vector<uint8_t>& b) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
}

/// The flowbus CLI with stderr joined to stdout, so a test reads the progress lines.
std::unique_ptr<ChildProcess> start_cli(const std::vector<std::string>& args, const std::string& prefix = "") {
  std::string cmd = prefix + "exec " + kCli;
  for (const auto& a : args) cmd += " '" + a + "'";
  return std::make_unique<ChildProcess>(std::vector<std::string>{"/bin/sh", "-c", cmd + " 2>&1"},
                                        ChildProcess::Options{.pipe_stdin = false});
}

/// Reads lines until one contains `needle`; false on timeout or EOF.
bool wait_for_line(ChildProcess& c, const std::string& needle, std::chrono::milliseconds timeout,
                   std::string* seen = nullptr) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    auto line =
        c.read_line(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()));
    if (!line) return false;
    if (seen) *seen += *line + "\n";
    if (line->find(needle) != std::string::npos) return true;
  }
  return false;
}

Json info_json(const std::string& file, bool verify = false) {
  std::vector<std::string> args{"record", "info", file, "--json"};
  if (verify) args.push_back("--verify");
  const Outcome o = flowbus_cli(args);
  EXPECT_EQ(o.exit_code, 0) << describe(o);
  Json j(o.out);
  EXPECT_TRUE(j.ok()) << j.error() << "\n" << o.out;
  return j;
}

/// node_modules with @mcap/core and @mcap/support, installed once into the
/// build tree (never the source tree) with npm; concurrent tests take turns.
std::string mcap_node_modules() {
  const std::string dir = std::string(FLOWBUS_BINARY_DIR) + "/npm";
  const std::string cmd = "mkdir -p '" + dir + "' && cd '" + dir +
                          "' && flock .lock sh -c 'test -f node_modules/@mcap/core/package.json || "
                          "npm install --no-audit --no-fund --loglevel=error @mcap/core@2.2.2 @mcap/support@1.1.0 "
                          "@foxglove/crc >npm.log 2>&1 "
                          "|| { cat npm.log; exit 1; }'";
  ChildProcess c({"/bin/sh", "-c", cmd}, {.pipe_stdin = false, .capture_stderr = true});
  const Outcome o = c.communicate(300s);
  EXPECT_EQ(o.exit_code, 0) << "npm install of @mcap/core failed (the test needs the npm registry):\n" << describe(o);
  return dir + "/node_modules";
}

/// The MCAP TypeScript library's view of `file` (tests/record/mcap_interop.cjs).
Outcome read_with_mcap_ts(const std::string& file, bool stream_only = false) {
  const std::string modules = mcap_node_modules();
  const std::string script = std::string(FLOWBUS_SOURCE_DIR) + "/tests/record/mcap_interop.cjs";
  ChildProcess c({"/bin/sh", "-c",
                  "NODE_PATH='" + modules + "' exec /usr/bin/node '" + script + "' '" + file + "'" +
                      (stream_only ? " --stream" : "")},
                 {.pipe_stdin = false, .capture_stderr = true});
  return c.communicate(120s);
}

std::vector<uint8_t> from_hex(const std::string& hex) {
  std::vector<uint8_t> out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) out.push_back(uint8_t(std::stoi(hex.substr(i, 2), nullptr, 16)));
  return out;
}

/// orders.created with `n` orders from publisher "shop" (ids 0..n-1), one with a subject from "web".
struct RecordBus : OrdersBus {
  explicit RecordBus(uint64_t n) {
    const std::string file = orders_file(name.name, 0, n);
    Outcome o = flowbus_cli({"pub", name.name, "orders.created", "--file", file, "--name", "shop", "-q"});
    EXPECT_EQ(o.exit_code, 0) << describe(o);
    std::remove(file.c_str());
    o = flowbus_cli({"pub", name.name, "orders.created", "--json", order_json(4242), "--name", "web", "--subject",
                     "order/4242", "-q"});
    EXPECT_EQ(o.exit_code, 0) << describe(o);
  }
};

}  // namespace

TEST(Record, EveryCommandHasHelp) {
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"record", "--help"}, {"record", "info", "--help"}, {"replay", "--help"}}) {
    const Outcome o = flowbus_cli(args);
    EXPECT_EQ(o.exit_code, 0) << describe(o);
    EXPECT_NE(o.out.find("Usage"), std::string::npos) << describe(o);
  }
  EXPECT_NE(flowbus_cli({"record", "--help"}).out.find("--compression"), std::string::npos);
  EXPECT_NE(flowbus_cli({"replay", "--help"}).out.find("--speed"), std::string::npos);
  EXPECT_NE(flowbus_cli({"record", "info", "--help"}).out.find("--json"), std::string::npos);
}

TEST(Record, BadInputGetsAClearError) {
  RecordBus bus(3);
  TempPath f("bad.mcap");
  struct Case {
    std::vector<std::string> args;
    std::string says;
  };
  const std::vector<Case> cases = {
      {{"record", bus.name.name, "orders..x", "-o", f.path}, "orders..x"},
      {{"record", bus.name.name, "orders.>.x", "-o", f.path}, "orders.>.x"},
      {{"record", "no-such-bus-here", "orders.>", "-o", f.path}, "does not exist"},
      {{"record", bus.name.name, "orders.>"}, "-o FILE"},
      {{"record", bus.name.name, "orders.>", "-o", f.path, "--compression", "gzip"}, "zstd"},
      {{"record", bus.name.name, "orders.>", "-o", f.path, "--split"}, "needs --max-size"},
      {{"record", bus.name.name, "orders.>", "-o", "/nonexistent-dir/x.mcap"},
       "cannot create '/nonexistent-dir/x.mcap'"},
      {{"replay", f.path, "--bus", bus.name.name, "--speed", "fast"}, "is not a speed"},
      {{"replay", f.path, "--bus", bus.name.name, "--speed", "0"}, "is not a speed"},
      {{"replay", f.path, "--bus", bus.name.name, "--speed", "-1"}, "is not a speed"},
      {{"replay", "/nonexistent.mcap", "--bus", bus.name.name}, "cannot open '/nonexistent.mcap'"},
      {{"record", "info", "/etc/hostname"}, "is not an MCAP file"},
  };
  for (const Case& c : cases) {
    const Outcome o = flowbus_cli(c.args);
    EXPECT_NE(o.exit_code, 0) << describe(o);
    EXPECT_NE(o.err.find(c.says), std::string::npos) << "expected '" << c.says << "'\n" << describe(o);
  }
  // A pattern that matches nothing yet is said, and the recorder waits for such a topic.
  const Outcome o = flowbus_cli({"record", bus.name.name, "nothing.here", "-o", f.path, "--duration", "200ms"});
  EXPECT_EQ(o.exit_code, 0) << describe(o);
  EXPECT_NE(o.err.find("no topic on bus '" + bus.name.name + "' matches 'nothing.here' yet"), std::string::npos)
      << describe(o);
  // A recording of other topics has none to replay under --topics.
  const Outcome r = flowbus_cli({"replay", f.path, "--bus", bus.name.name, "--topics", "orders.>"});
  EXPECT_EQ(r.exit_code, 1) << describe(r);
  EXPECT_NE(r.err.find("no recorded topic"), std::string::npos) << describe(r);
}

TEST(Record, SigtermFinishesTheFileAndInfoDescribesIt) {
  RecordBus bus(500);
  TempPath f("term.mcap");
  auto rec = start_cli({"record", bus.name.name, "orders.>", "-o", f.path, "--from", "earliest"});
  std::string seen;
  ASSERT_TRUE(wait_for_line(*rec, "recording: 501 events", 20s, &seen)) << seen;
  rec->signal(SIGTERM);
  ASSERT_TRUE(wait_for_line(*rec, "recorded 501 events from 2 ring(s)", 10s, &seen)) << seen;
  const auto status = rec->wait(10s);
  ASSERT_TRUE(status && WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << seen;
  EXPECT_NE(seen.find("interrupted"), std::string::npos) << seen;
  struct stat st {};
  ASSERT_EQ(::stat(f.path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u) << "a recording holds the events: owner-only, as topics are";

  const Json j = info_json(f.path, /*verify=*/true);
  const auto root = j.root();
  EXPECT_TRUE(root["complete"].AsBool());
  EXPECT_TRUE(root["verified"].AsBool());
  EXPECT_EQ(root["events"].AsUInt64(), 501u);
  EXPECT_EQ(root["messages"].AsUInt64(), 502u);  // and one subject
  EXPECT_EQ(root["lost"].AsUInt64(), 0u);
  EXPECT_EQ(str(root, "compression"), "zstd");
  EXPECT_EQ(str(root, "stop_reason"), "interrupted");
  EXPECT_LE(root["start_ns"].AsUInt64(), root["end_ns"].AsUInt64());
  const auto topics = root["topics"].AsVector();
  ASSERT_EQ(topics.size(), 1u);
  EXPECT_EQ(str(topics[0].AsMap(), "topic"), "orders.created");
  EXPECT_EQ(str(topics[0].AsMap(), "type"), "examples.Order");
  EXPECT_EQ(topics[0].AsMap()["rings"].AsUInt64(), 2u);
  const auto schemas = root["schemas"].AsVector();
  ASSERT_EQ(schemas.size(), 1u);
  EXPECT_EQ(str(schemas[0].AsMap(), "encoding"), "flatbuffer");
  EXPECT_EQ(str(schemas[0].AsMap(), "name"), "examples.Order");
  // The human view says the same.
  const Outcome human = flowbus_cli({"record", "info", f.path});
  EXPECT_EQ(human.exit_code, 0) << describe(human);
  EXPECT_NE(human.out.find("complete"), std::string::npos) << human.out;
  EXPECT_NE(human.out.find("events: 501 (and 1 subject message) in "), std::string::npos) << human.out;
  EXPECT_NE(human.out.find("orders.created"), std::string::npos) << human.out;
}

TEST(Record, KillMinus9LeavesAFileReadableUpToItsLastChunk) {
  RecordBus bus(2000);
  TempPath f("kill.mcap");
  auto rec =
      start_cli({"record", bus.name.name, "orders.>", "-o", f.path, "--from", "earliest", "--compression", "lz4"});
  std::string seen;
  ASSERT_TRUE(wait_for_line(*rec, "recording: 2001 events", 20s, &seen)) << seen;
  // A chunk is written at least every second: wait for one more progress line past that.
  ASSERT_TRUE(wait_for_line(*rec, "recording: 2001 events", 5s, &seen)) << seen;
  ASSERT_TRUE(wait_for_line(*rec, "recording: 2001 events", 5s, &seen)) << seen;
  rec->kill_and_reap();

  const Outcome info = flowbus_cli({"record", "info", f.path});
  EXPECT_EQ(info.exit_code, 0) << describe(info);
  EXPECT_NE(info.out.find("INCOMPLETE"), std::string::npos) << info.out;
  EXPECT_NE(info.out.find("2001 events in"), std::string::npos) << info.out;
  const Json j = info_json(f.path);
  EXPECT_FALSE(j.root()["complete"].AsBool());
  EXPECT_EQ(j.root()["events"].AsUInt64(), 2001u);
  // A reader no one here wrote reads every record up to the cut.
  const Outcome ts = read_with_mcap_ts(f.path, /*stream_only=*/true);
  ASSERT_EQ(ts.exit_code, 0) << describe(ts);
  const Json t(ts.out);
  ASSERT_TRUE(t.ok()) << ts.out;
  EXPECT_TRUE(t.root()["streamError"].IsNull()) << ts.out;
  EXPECT_FALSE(t.root()["stream"].AsMap()["done"].AsBool()) << ts.out;
  EXPECT_EQ(t.root()["stream"].AsMap()["messages"].AsUInt64(), 2002u) << ts.out;
  // Replay refuses it unless told to recover, then replays all of it.
  ScopedBusName target("rec9");
  const Outcome refused = flowbus_cli({"replay", f.path, "--bus", target.name, "--speed", "max"});
  EXPECT_EQ(refused.exit_code, 1) << describe(refused);
  EXPECT_NE(refused.err.find("is incomplete"), std::string::npos) << describe(refused);
  EXPECT_NE(refused.err.find("--recover"), std::string::npos) << describe(refused);
  const Outcome replayed = flowbus_cli({"replay", f.path, "--bus", target.name, "--speed", "max", "--recover"});
  EXPECT_EQ(replayed.exit_code, 0) << describe(replayed);
  EXPECT_NE(replayed.err.find("replayed 2001 events"), std::string::npos) << describe(replayed);
}

TEST(Record, ACutOrDamagedFileGetsAClearError) {
  RecordBus bus(3000);
  TempPath f("damaged.mcap");
  Outcome o = flowbus_cli({"record", bus.name.name, "orders.>", "-o", f.path, "--from", "earliest", "--count", "3001",
                           "--compression", "none", "--chunk-size", "16KiB", "-q"});
  ASSERT_EQ(o.exit_code, 0) << describe(o);
  const auto good = read_bytes(f.path);
  ScopedBusName target("recbad");
  // Cut in the middle: the tools say it is incomplete.
  auto cut = good;
  cut.resize(good.size() / 2);
  write_bytes(f.path, cut);
  o = flowbus_cli({"replay", f.path, "--bus", target.name, "--speed", "max"});
  EXPECT_EQ(o.exit_code, 1) << describe(o);
  EXPECT_NE(o.err.find("is incomplete"), std::string::npos) << describe(o);
  o = flowbus_cli({"record", "info", f.path});
  EXPECT_NE(o.out.find("INCOMPLETE"), std::string::npos) << describe(o);
  EXPECT_NE(o.out.find("cut short"), std::string::npos) << describe(o);
  // One byte flipped inside a chunk: the chunk CRC catches it.
  auto damaged = good;
  damaged[good.size() / 3] ^= 0x20;
  write_bytes(f.path, damaged);
  o = flowbus_cli({"replay", f.path, "--bus", target.name, "--speed", "max"});
  EXPECT_EQ(o.exit_code, 1) << describe(o);
  EXPECT_NE(o.err.find("is damaged"), std::string::npos) << describe(o);
  o = flowbus_cli({"record", "info", f.path, "--verify"});
  EXPECT_EQ(o.exit_code, 1) << describe(o);
  EXPECT_NE(o.err.find("is damaged"), std::string::npos) << describe(o);
  // A byte of the summary: its CRC catches it, even without --verify.
  damaged = good;
  damaged[good.size() - 50] ^= 0x01;
  write_bytes(f.path, damaged);
  o = flowbus_cli({"record", "info", f.path});
  EXPECT_EQ(o.exit_code, 1) << describe(o);
  EXPECT_NE(o.err.find("summary section is damaged"), std::string::npos) << describe(o);
}

TEST(Record, AFullDiskStopsTheRecorderWithAClearErrorAndAReadableFile) {
  RecordBus bus(20000);
  TempPath f("full.mcap");
  // ulimit -f: at most 64 KiB (128 blocks of 512 bytes); write() then fails with EFBIG.
  auto rec = start_cli({"record", bus.name.name, "orders.>", "-o", f.path, "--from", "earliest", "--compression",
                        "none", "--chunk-size", "8KiB", "-q"},
                       "ulimit -f 128; ");
  std::string seen;
  EXPECT_TRUE(wait_for_line(*rec, "flowbus record:", 20s, &seen)) << seen;
  const auto status = rec->wait(10s);
  ASSERT_TRUE(status && WIFEXITED(*status)) << seen;
  EXPECT_EQ(WEXITSTATUS(*status), 1) << seen;
  EXPECT_NE(seen.find("File too large"), std::string::npos) << seen;
  EXPECT_NE(seen.find(f.path), std::string::npos) << seen;
  const Json j = info_json(f.path);
  EXPECT_FALSE(j.root()["complete"].AsBool());
  EXPECT_GT(j.root()["events"].AsUInt64(), 100u);
  EXPECT_LE(read_bytes(f.path).size(), 65536u);
}

TEST(Record, LossesOnALatestTopicAreCountedOnScreenAndInTheFile) {
  ScopedBusName bus("reclost");
  Outcome o = flowbus_cli({"topic", "create", bus.name, "sensor.temp", "--schema", example_schema("sensor.fbs"),
                           "--policy", "latest", "--ring-size", "4KiB"});
  ASSERT_EQ(o.exit_code, 0) << describe(o);
  TempPath f("lost.mcap");
  auto rec = start_cli({"record", bus.name, "sensor.*", "-o", f.path});
  std::string seen;
  ASSERT_TRUE(wait_for_line(*rec, "recording: 0 events", 10s, &seen)) << seen;
  rec->signal(SIGSTOP);  // a recorder that cannot keep up
  o = flowbus_cli({"pub", bus.name, "sensor.temp", "--json", R"({"line":"l1","sensor":"t1","celsius":20.5,"seq":1})",
                   "--count", "2000", "-q"});
  ASSERT_EQ(o.exit_code, 0) << describe(o);
  rec->signal(SIGCONT);
  ASSERT_TRUE(wait_for_line(*rec, "recording:", 10s, &seen)) << seen;
  rec->signal(SIGTERM);
  const auto status = rec->wait(10s);
  ASSERT_TRUE(status && WIFEXITED(*status)) << seen;
  while (auto line = rec->read_line(2s)) seen += *line + "\n";
  EXPECT_EQ(WEXITSTATUS(*status), 1) << seen;
  EXPECT_NE(seen.find("event(s) lost"), std::string::npos) << seen;
  const Json j = info_json(f.path);
  const uint64_t lost = j.root()["lost"].AsUInt64();
  EXPECT_GT(lost, 1000u) << seen;
  EXPECT_EQ(lost + j.root()["events"].AsUInt64(), 2000u) << seen;
}

TEST(Record, TheMcapTypeScriptLibraryReadsEveryRecordIndexAndCrc) {
  RecordBus bus(5000);
  for (const std::string compression : {"zstd", "lz4", "none"}) {
    TempPath f("ts-" + compression + ".mcap");
    const Outcome o = flowbus_cli({"record", bus.name.name, "orders.>", "-o", f.path, "--from", "earliest", "--count",
                                   "5001", "--compression", compression, "--chunk-size", "64KiB", "-q"});
    ASSERT_EQ(o.exit_code, 0) << describe(o);
    const Outcome ts = read_with_mcap_ts(f.path);
    ASSERT_EQ(ts.exit_code, 0) << describe(ts);
    const Json j(ts.out);
    ASSERT_TRUE(j.ok()) << j.error() << ts.out;
    const auto root = j.root();
    // Every record, read as a stream, with the chunk CRCs checked.
    const auto stream = root["stream"].AsMap();
    EXPECT_TRUE(root["streamError"].IsNull()) << ts.out;
    EXPECT_TRUE(stream["done"].AsBool()) << ts.out;
    EXPECT_EQ(stream["bytesRemaining"].AsUInt64(), 0u);
    EXPECT_EQ(stream["messages"].AsUInt64(), 5002u);
    EXPECT_EQ(stream["messageIndexEntries"].AsUInt64(), 5002u);
    const auto ops = stream["opcodes"].AsMap();
    for (const char* op : {"Header", "Chunk", "Schema", "Channel", "Message", "MessageIndex", "Metadata", "DataEnd",
                           "Statistics", "ChunkIndex", "MetadataIndex", "SummaryOffset", "Footer"})
      EXPECT_GE(ops[op].AsUInt64(), 1u) << op << " missing in " << ts.out;
    EXPECT_GT(ops["Chunk"].AsUInt64(), 3u);
    EXPECT_EQ(ops["Chunk"].AsUInt64(), ops["ChunkIndex"].AsUInt64());
    // The summary (its CRC checked by the indexed reader), the data section CRC, the index.
    EXPECT_EQ(str(root["header"].AsMap(), "library").rfind("flowbus ", 0), 0u);
    const auto crc = root["dataSectionCrc"].AsMap();
    EXPECT_NE(crc["stored"].AsUInt64(), 0u);
    EXPECT_EQ(crc["stored"].AsUInt64(), crc["computed"].AsUInt64());
    const auto schemas = root["schemas"].AsVector();
    ASSERT_EQ(schemas.size(), 1u);
    EXPECT_EQ(str(schemas[0].AsMap(), "encoding"), "flatbuffer");
    EXPECT_EQ(str(schemas[0].AsMap(), "name"), "examples.Order");
    EXPECT_EQ(from_hex(str(schemas[0].AsMap(), "dataHex")), compile_schema_file(example_schema("order.fbs")));
    const auto channels = root["channels"].AsVector();
    ASSERT_EQ(channels.size(), 3u);  // shop, web, web's subjects
    std::map<std::string, flexbuffers::Map> by_publisher;
    for (size_t i = 0; i < channels.size(); ++i) {
      const auto c = channels[i].AsMap();
      const auto md = c["metadata"].AsMap();
      if (str(c, "messageEncoding") == "json") {
        EXPECT_EQ(str(c, "topic"), "orders.created/subject");
        continue;
      }
      EXPECT_EQ(str(c, "topic"), "orders.created");
      EXPECT_EQ(str(c, "messageEncoding"), "flatbuffer");
      EXPECT_EQ(str(md, "type"), "examples.Order");
      EXPECT_EQ(str(md, "datacontenttype"), "application/x-flatbuffers");
      EXPECT_EQ(str(md, "dataschema").rfind("flowbus:schema/fnv1a64:", 0), 0u);
      EXPECT_TRUE(ends_with(str(md, "source"), "/" + bus.name.name + "/" + str(md, "flowbus.publisher")));
      by_publisher.emplace(str(md, "flowbus.publisher"), md);
    }
    EXPECT_EQ(by_publisher.size(), 2u);
    const auto stats = root["statistics"].AsMap();
    EXPECT_EQ(str(stats, "messageCount"), "5002");
    EXPECT_EQ(stats["channelCount"].AsUInt64(), 3u);
    EXPECT_EQ(root["indexedMessages"].AsUInt64(), 5002u);
    EXPECT_TRUE(root["indexedInTimeOrder"].AsBool());
    EXPECT_GT(root["fromMiddle"].AsUInt64(), 0u);
    EXPECT_LT(root["fromMiddle"].AsUInt64(), 5002u);
    const auto chunks = root["chunkIndexes"].AsVector();
    for (size_t i = 0; i < chunks.size(); ++i)
      EXPECT_EQ(str(chunks[i].AsMap(), "compression"), compression == "none" ? "" : compression);
    bool has_recording = false;
    const auto metadata = root["metadata"].AsVector();
    for (size_t i = 0; i < metadata.size(); ++i)
      if (str(metadata[i].AsMap(), "name") == "flowbus.recording") {
        has_recording = true;
        EXPECT_EQ(str(metadata[i].AsMap()["metadata"].AsMap(), "events"), "5001");
        EXPECT_EQ(str(metadata[i].AsMap()["metadata"].AsMap(), "lost"), "0");
      }
    EXPECT_TRUE(has_recording) << ts.out;

    // A message as the TypeScript library hands it, decoded with flatc-generated code.
    const auto first = root["firstMessages"].AsVector();
    bool decoded = false;
    for (size_t i = 0; i < first.size(); ++i) {
      const auto m = first[i].AsMap();
      const auto bytes = from_hex(str(m, "hex"));
      flatbuffers::Verifier v(bytes.data(), bytes.size());
      if (!examples::VerifyOrderBuffer(v)) continue;  // the subject channel's JSON
      const examples::Order* order = examples::GetOrder(bytes.data());
      if (order->id() != 0) continue;
      decoded = true;
      EXPECT_EQ(order->customer()->str(), "c0");
      EXPECT_EQ(order->sku()->str(), "S-0");
      EXPECT_EQ(order->price_cents(), 100u);
      EXPECT_EQ(m["sequence"].AsUInt64(), 0u);
      EXPECT_EQ(str(m, "logTime"), str(m, "publishTime"));
    }
    EXPECT_TRUE(decoded) << ts.out;
  }
}

TEST(Replay, KeepsTheRecordedSpacingUnlessMaxAndMarksReplayedEvents) {
  ScopedBusName bus("recspace");
  Outcome o = flowbus_cli({"topic", "create", bus.name, "orders.created", "--schema", example_schema("order.fbs")});
  ASSERT_EQ(o.exit_code, 0) << describe(o);
  TempPath f("spacing.mcap");
  auto rec = start_cli({"record", bus.name, "orders.>", "-o", f.path, "--count", "6"});
  std::string seen;
  ASSERT_TRUE(wait_for_line(*rec, "recording: 0 events", 10s, &seen)) << seen;
  o = flowbus_cli({"pub", bus.name, "orders.created", "--json", order_json(1), "--count", "6", "--rate", "10",
                   "--subject", "s/1", "-q"});
  ASSERT_EQ(o.exit_code, 0) << describe(o);
  ASSERT_TRUE(rec->wait(10s)) << seen;
  ScopedBusName target("recspace2");
  // Recorded 0.5 s apart end to end: at speed 1 the replay takes about that, at max far less.
  auto t0 = std::chrono::steady_clock::now();
  o = flowbus_cli({"replay", f.path, "--bus", target.name, "--speed", "1.0"});
  const int64_t at_one = ms_since(t0);
  ASSERT_EQ(o.exit_code, 0) << describe(o);
  EXPECT_GE(at_one, 450);
  t0 = std::chrono::steady_clock::now();
  ScopedBusName target2("recspace3");
  o = flowbus_cli({"replay", f.path, "--bus", target2.name, "--speed", "max"});
  ASSERT_EQ(o.exit_code, 0) << describe(o);
  EXPECT_LT(ms_since(t0), at_one);
  // Replayed events keep id, source, time, subject and payload, and say they were replayed.
  const Outcome live =
      flowbus_cli({"sub", bus.name, "orders.>", "--from", "earliest", "--json", "--count", "6", "--timeout", "5"});
  const Outcome again =
      flowbus_cli({"sub", target.name, "orders.>", "--from", "earliest", "--json", "--count", "6", "--timeout", "5"});
  ASSERT_EQ(live.exit_code, 0) << describe(live);
  ASSERT_EQ(again.exit_code, 0) << describe(again);
  const auto a = lines_of(live.out), b = lines_of(again.out);
  ASSERT_EQ(a.size(), 6u);
  ASSERT_EQ(b.size(), 6u);
  for (size_t i = 0; i < 6; ++i) {
    std::string replayed = b[i];
    const std::string mark = ",\"flowbusorigin\":\"replay\"";
    const size_t at = replayed.find(mark);
    ASSERT_NE(at, std::string::npos) << replayed;
    replayed.erase(at, mark.size());
    EXPECT_EQ(replayed, a[i]);
    EXPECT_NE(a[i].find("\"subject\":\"s/1\""), std::string::npos) << a[i];
  }
  // Replaying again into the same bus adds nothing: the same ids are there.
  o = flowbus_cli({"replay", f.path, "--bus", target2.name, "--speed", "max"});
  EXPECT_EQ(o.exit_code, 0) << describe(o);
  EXPECT_NE(o.err.find("6 already on the bus"), std::string::npos) << describe(o);
}

// Issue 22 item 5: 100,000 events from 3 publishers recorded, replayed into
// another bus, and `sub --json` there shows the same ids, sources, times and
// payloads in per-publisher order.
TEST(Replay, RoundTripsAHundredThousandEventsFromThreePublishers) {
  ScopedBusName bus("recrt");
  // Rings that hold all of it: `sub --from earliest` afterwards sees every event, here and on the target.
  Outcome o = flowbus_cli(
      {"topic", "create", bus.name, "orders.created", "--schema", example_schema("order.fbs"), "--ring-size", "16MiB"});
  ASSERT_EQ(o.exit_code, 0) << describe(o);
  constexpr uint64_t kPerPublisher = 33334, kTotal = 3 * kPerPublisher;  // 100,002
  const std::string total = std::to_string(kTotal);
  TempPath f("roundtrip.mcap");
  auto rec = start_cli({"record", bus.name, "orders.>", "-o", f.path, "--count", total});
  std::string seen;
  ASSERT_TRUE(wait_for_line(*rec, "recording: 0 events", 10s, &seen)) << seen;
  std::vector<std::string> files;
  std::vector<std::unique_ptr<ChildProcess>> pubs;
  for (const std::string p : {"0", "1", "2"}) {
    files.push_back(orders_file("rt" + p, std::stoull(p) * 1'000'000, kPerPublisher));
    pubs.push_back(start_cli(
        {"pub", bus.name, "orders.created", "--file", files.back(), "--name", "p" + p, "--timeout", "60", "-q"}));
  }
  for (auto& p : pubs) {
    const auto s = p->wait(120s);
    ASSERT_TRUE(s && WIFEXITED(*s) && WEXITSTATUS(*s) == 0);
  }
  for (const auto& file : files) std::remove(file.c_str());
  ASSERT_TRUE(wait_for_line(*rec, "recorded " + total + " events from 3 ring(s)", 120s, &seen)) << seen;
  EXPECT_NE(seen.find("lost 0"), std::string::npos) << seen;
  const auto rs = rec->wait(30s);
  ASSERT_TRUE(rs && WIFEXITED(*rs) && WEXITSTATUS(*rs) == 0) << seen;

  // Into another bus, which the replay creates with the recorded topic.
  ScopedBusName target("recrt2");
  o = flowbus_cli({"replay", f.path, "--bus", target.name, "--speed", "max"}, 120s);
  ASSERT_EQ(o.exit_code, 0) << describe(o);
  EXPECT_NE(o.err.find("replayed " + total + " events of 3 ring(s)"), std::string::npos) << describe(o);
  const std::vector<std::string> sub_args{"orders.>", "--from", "earliest",  "--json",
                                          "--count",  total,    "--timeout", "10"};
  auto sub = [&](const std::string& b) {
    std::vector<std::string> args{"sub", b};
    args.insert(args.end(), sub_args.begin(), sub_args.end());
    const Outcome out = flowbus_cli(args, 120s);
    EXPECT_EQ(out.exit_code, 0) << out.err;
    return lines_of(out.out);
  };
  const std::vector<std::string> original = sub(bus.name), replayed = sub(target.name);
  ASSERT_EQ(original.size(), kTotal);
  ASSERT_EQ(replayed.size(), kTotal);
  // Per publisher (source), the same lines in the same order, but for the replay mark.
  auto source_of = [](const std::string& line) {
    const size_t at = line.find("\"source\":\"") + 10;
    return line.substr(at, line.find('"', at) - at);
  };
  std::map<std::string, std::vector<std::string>> a, b;
  for (const auto& l : original) a[source_of(l)].push_back(l);
  const std::string mark = ",\"flowbusorigin\":\"replay\"";
  for (auto l : replayed) {
    const size_t at = l.find(mark);
    ASSERT_NE(at, std::string::npos) << l;
    l.erase(at, mark.size());
    b[source_of(l)].push_back(l);
  }
  ASSERT_EQ(a.size(), 3u);
  ASSERT_EQ(b.size(), 3u);
  for (const auto& [source, lines] : a) {
    ASSERT_EQ(b[source].size(), kPerPublisher) << source;
    for (size_t i = 0; i < lines.size(); ++i) ASSERT_EQ(b[source][i], lines[i]) << source << " line " << i;
  }
}

TEST(Record, ASlowRecorderOnABlockTopicIsEvictedAndSaysWhatItMissed) {
  ScopedBusName bus("recevict");
  Outcome o = flowbus_cli({"topic", "create", bus.name, "orders.created", "--schema", example_schema("order.fbs"),
                           "--ring-size", "64KiB", "--timeout", "200ms"});
  ASSERT_EQ(o.exit_code, 0) << describe(o);
  TempPath f("evict.mcap");
  auto rec = start_cli({"record", bus.name, "orders.>", "-o", f.path});
  std::string seen;
  ASSERT_TRUE(wait_for_line(*rec, "recording: 0 events", 10s, &seen)) << seen;
  rec->signal(SIGSTOP);  // holds the ring full: the publisher waits, then evicts it
  o = flowbus_cli({"pub", bus.name, "orders.created", "--json", order_json(1), "--count", "5000", "-q"});
  ASSERT_EQ(o.exit_code, 0) << describe(o);
  rec->signal(SIGCONT);
  ASSERT_TRUE(wait_for_line(*rec, "recording:", 10s, &seen)) << seen;
  rec->signal(SIGTERM);
  const auto status = rec->wait(10s);
  ASSERT_TRUE(status && WIFEXITED(*status)) << seen;
  while (auto line = rec->read_line(2s)) seen += *line + "\n";
  EXPECT_EQ(WEXITSTATUS(*status), 1) << seen;
  // The core reports what an evicted reader missed as Evicted, or as Lost
  // when it finds the bytes overwritten first: either way it is counted.
  EXPECT_NE(seen.find("event(s) lost"), std::string::npos) << seen;
  const Json j = info_json(f.path);
  EXPECT_GT(j.root()["lost"].AsUInt64(), 0u);
  EXPECT_EQ(j.root()["lost"].AsUInt64() + j.root()["events"].AsUInt64(), 5000u) << seen;
}

TEST(Record, MaxSizeSplitsIntoWholeFiles) {
  RecordBus bus(20000);
  TempPath f("split.mcap");
  Outcome o = flowbus_cli({"record", bus.name.name, "orders.>", "-o", f.path, "--from", "earliest", "--count", "20001",
                           "--compression", "none", "--chunk-size", "16KiB", "--max-size", "512KiB", "--split", "-q"});
  ASSERT_EQ(o.exit_code, 0) << describe(o);
  uint64_t events = 0;
  int files = 0;
  for (int i = 0; i < 8; ++i) {
    const std::string path = i == 0 ? f.path : f.path.substr(0, f.path.rfind('.')) + "-" + std::to_string(i) + ".mcap";
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) break;
    ++files;
    EXPECT_LE(st.st_size, 512 * 1024 + 64 * 1024) << path;
    const Json j = info_json(path, /*verify=*/true);
    EXPECT_TRUE(j.root()["complete"].AsBool()) << path;
    events += j.root()["events"].AsUInt64();
  }
  EXPECT_GE(files, 4);
  EXPECT_EQ(events, 20001u);
  // Without --split the recorder stops at the size.
  o = flowbus_cli({"record", bus.name.name, "orders.>", "-o", f.path, "--from", "earliest", "--compression", "none",
                   "--chunk-size", "16KiB", "--max-size", "256KiB", "-q"});
  ASSERT_EQ(o.exit_code, 0) << describe(o);
  EXPECT_NE(o.err.find("max size reached"), std::string::npos) << describe(o);
  EXPECT_LT(info_json(f.path).root()["events"].AsUInt64(), 20001u);
}

TEST(Replay, StartEndAndLoopChooseWhatIsPublished) {
  ScopedBusName bus("recwin");
  Outcome o = flowbus_cli({"topic", "create", bus.name, "orders.created", "--schema", example_schema("order.fbs")});
  ASSERT_EQ(o.exit_code, 0) << describe(o);
  TempPath f("window.mcap");
  auto rec = start_cli({"record", bus.name, "orders.>", "-o", f.path, "--count", "10"});
  std::string seen;
  ASSERT_TRUE(wait_for_line(*rec, "recording: 0 events", 10s, &seen)) << seen;
  o = flowbus_cli({"pub", bus.name, "orders.created", "--json", order_json(1), "--count", "10", "--rate", "10", "-q"});
  ASSERT_EQ(o.exit_code, 0) << describe(o);
  ASSERT_TRUE(rec->wait(10s)) << seen;
  // Events 100 ms apart: from 0.25 s to 0.65 s after the first are events 3..6.
  ScopedBusName target("recwin2");
  o = flowbus_cli({"replay", f.path, "--bus", target.name, "--speed", "max", "--start", "250ms", "--end", "650ms"});
  ASSERT_EQ(o.exit_code, 0) << describe(o);
  o = flowbus_cli({"sub", target.name, "orders.>", "--from", "earliest", "--json", "--timeout", "1"});
  auto lines = lines_of(o.out);
  ASSERT_EQ(lines.size(), 4u) << o.out;
  EXPECT_EQ(Json(lines[0]).root()["flowbusseq"].AsUInt64(), 3u);
  EXPECT_EQ(Json(lines[3]).root()["flowbusseq"].AsUInt64(), 6u);
  // --loop goes round with new sequences (ids stay unique) until SIGTERM.
  ScopedBusName looped("recwin3");
  auto loop = start_cli({"replay", f.path, "--bus", looped.name, "--speed", "max", "--loop"});
  std::this_thread::sleep_for(500ms);
  loop->signal(SIGTERM);
  ASSERT_TRUE(wait_for_line(*loop, "interrupted", 10s, &seen)) << seen;
  o = flowbus_cli({"sub", looped.name, "orders.>", "--from", "earliest", "--json", "--count", "25", "--timeout", "2"});
  ASSERT_EQ(o.exit_code, 0) << describe(o);
  lines = lines_of(o.out);
  ASSERT_EQ(lines.size(), 25u);
  std::set<std::string> ids;
  const uint64_t first = Json(lines[0]).root()["flowbusseq"].AsUInt64();  // the ring may have dropped the oldest passes
  for (size_t i = 0; i < lines.size(); ++i) {
    const Json j(lines[i]);
    EXPECT_EQ(j.root()["flowbusseq"].AsUInt64(), first + i) << lines[i];
    ids.insert(str(j.root(), "id"));
  }
  EXPECT_EQ(ids.size(), 25u);
}
