// The flowbus command line, run as a real process: exit codes, stdout and
// stderr, and the JSON it prints (parsed strictly, through FlexBuffers).
#include <dirent.h>
#include <flatbuffers/flexbuffers.h>
#include <flatbuffers/idl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <set>
#include <sstream>
#include <tuple>

#include "bus_state.hpp"
#include "cli_helpers.hpp"
#include "flowbus/bus.hpp"
#include "segment.hpp"
#include "test_bus.hpp"

using namespace flowbus;
using namespace flowbus::testing;
using namespace std::chrono_literals;

namespace {

TEST(CliTest, EverySubcommandAnswersHelpAndExitsZero) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases{
      {{"--help"}, "Subcommands:"},
      {{"topic", "--help"}, "create"},
      {{"topic", "create", "--help"}, "--schema"},
      {{"topic", "ls", "--help"}, "--json"},
      {{"pub", "--help"}, "--name"},
      {{"sub", "--help"}, "--timeout"},
      {{"gc", "--help"}, "--force"},
      {{"demo", "--help"}, "--seconds"},
      {{"perf", "--help"}, "latency"},
      {{"inspect", "--help"}, "--json"},
      {{"perf", "latency", "--help"}, "--transport"},
      {{"perf", "mirror", "--help"}, "--rtt-size"},
      {{"sidecar", "--help"}, "--reexport"},
  };
  for (const auto& [args, mentions] : cases) {
    const Outcome o = flowbus_cli(args);
    const std::string what = "flowbus " + args[0] + (args.size() > 1 ? " " + args[1] : "");
    EXPECT_EQ(o.exit_code, 0) << what << "\n" << describe(o);
    EXPECT_NE(o.out.find("Usage:"), std::string::npos) << what << "\n" << describe(o);
    EXPECT_NE(o.out.find(mentions), std::string::npos) << what << " does not mention " << mentions << "\n" << describe(o);
  }
}

// Issue 15 item 11: an untrusted topic, made, shown, used and never changed in place.
TEST(CliTest, TopicCreateUntrustedIsShownByLsAndInspectReadsBackAndARecreateWithoutItIsRefused) {
  ScopedBusName name("cli");
  const std::string schema = example_schema("order.fbs");
  Outcome o =
      flowbus_cli({"topic", "create", name.name, "orders.created", "--schema", schema, "--untrusted", "--json"});
  ASSERT_EQ(o.exit_code, 0) << describe(o);
  const Json created(lines_of(o.out).at(0));
  ASSERT_TRUE(created.ok()) << created.error() << "\n" << o.out;
  EXPECT_TRUE(created.root()["untrusted"].AsBool()) << o.out;
  o = flowbus_cli({"topic", "create", name.name, "orders.plain", "--schema", schema});
  ASSERT_EQ(o.exit_code, 0) << describe(o);

  o = flowbus_cli({"topic", "ls", name.name, "--json"});
  ASSERT_EQ(o.exit_code, 0) << describe(o);
  std::map<std::string, bool> untrusted;
  for (const std::string& line : lines_of(o.out)) {
    const Json j(line);
    ASSERT_TRUE(j.ok()) << j.error() << "\n" << line;
    ASSERT_TRUE(j.root()["untrusted"].IsBool()) << line;
    untrusted[str(j.root(), "topic")] = j.root()["untrusted"].AsBool();
  }
  EXPECT_EQ(untrusted, (std::map<std::string, bool>{{"orders.created", true}, {"orders.plain", false}})) << o.out;
  o = flowbus_cli({"topic", "ls", name.name});
  ASSERT_EQ(o.exit_code, 0) << describe(o);
  EXPECT_NE(o.out.find("UNTRUSTED"), std::string::npos) << o.out;
  o = flowbus_cli({"inspect", name.name, "--json"});
  ASSERT_EQ(o.exit_code, 0) << describe(o);
  EXPECT_NE(o.out.find("\"untrusted\":true"), std::string::npos) << o.out;

  // Either way round, a re-create with the other setting changes nothing and says why.
  for (const auto& [topic, extra, says] : {std::tuple{"orders.created", "", "untrusted yes, asked no"},
                                           std::tuple{"orders.plain", "--untrusted", "untrusted no, asked yes"}}) {
    std::vector<std::string> args{"topic", "create", name.name, topic, "--schema", schema};
    if (*extra) args.push_back(extra);
    o = flowbus_cli(args);
    EXPECT_EQ(o.exit_code, 1) << describe(o);
    EXPECT_NE(o.err.find(says), std::string::npos) << describe(o);
  }

  // Events go through it as through any topic, verified on the way.
  o = flowbus_cli({"pub", name.name, "orders.created", "--json", kOrderJson});
  ASSERT_EQ(o.exit_code, 0) << describe(o);
  o = flowbus_cli({"sub", name.name, "orders.created", "--from", "earliest", "--count", "1", "--timeout", "5"});
  ASSERT_EQ(o.exit_code, 0) << describe(o);
  EXPECT_NE(o.out.find("acme"), std::string::npos) << describe(o);
}

TEST(CliTest, TopicCreateThenLsJsonShowsEachTopicWithItsTypeAndPolicy) {
  ScopedBusName name("cli");
  Outcome o = flowbus_cli({"topic", "create", name.name, "orders.created", "--schema", example_schema("order.fbs")});
  ASSERT_EQ(o.exit_code, 0) << describe(o);
  o = flowbus_cli({"topic", "create", name.name, "sensor.temp.line1", "--schema", example_schema("sensor.fbs"),
                   "--type", "examples.SensorReading", "--policy", "latest", "--ring-size", "64KiB", "--json"});
  ASSERT_EQ(o.exit_code, 0) << describe(o);
  const Json created(lines_of(o.out).at(0));
  ASSERT_TRUE(created.ok()) << created.error() << "\n" << o.out;
  EXPECT_EQ(str(created.root(), "policy"), "latest");

  o = flowbus_cli({"topic", "ls", name.name, "--json"});
  ASSERT_EQ(o.exit_code, 0) << describe(o);
  const auto lines = lines_of(o.out);
  ASSERT_EQ(lines.size(), 2u) << describe(o);
  std::map<std::string, std::pair<std::string, std::string>> seen;  // topic -> type, policy
  for (const std::string& line : lines) {
    const Json j(line);
    ASSERT_TRUE(j.ok()) << j.error() << "\n" << line;
    seen[str(j.root(), "topic")] = {str(j.root(), "type"), str(j.root(), "policy")};
    if (str(j.root(), "topic") == "sensor.temp.line1") {
      EXPECT_EQ(j.root()["ring_size"].AsUInt64(), 64u * 1024) << line;
    }
  }
  EXPECT_EQ(seen["orders.created"], std::make_pair(std::string("examples.Order"), std::string("block"))) << o.out;
  EXPECT_EQ(seen["sensor.temp.line1"], std::make_pair(std::string("examples.SensorReading"), std::string("latest"))) << o.out;
}

TEST(CliTest, PubThenSubJsonPrintsOneCloudEventPerLineWithThePublishedData) {
  OrdersBus bus;
  Outcome o = bus.pub(kOrderJson, {"--count", "3", "--name", "shop"});
  ASSERT_EQ(o.exit_code, 0) << describe(o);
  o = bus.sub({"--count", "3", "--timeout", "2", "--json"});
  ASSERT_EQ(o.exit_code, 0) << describe(o);
  const auto lines = lines_of(o.out);
  ASSERT_EQ(lines.size(), 3u) << describe(o);
  for (size_t i = 0; i < lines.size(); ++i) {
    const Json j(lines[i]);
    ASSERT_TRUE(j.ok()) << j.error() << "\n" << lines[i];
    const flexbuffers::Map e = j.root();
    EXPECT_EQ(str(e, "specversion"), "1.0") << lines[i];
    std::string id_suffix = "-";
    id_suffix += std::to_string(i);  // (not "-" + ...: GCC 12 warns falsely, -Wrestrict)
    EXPECT_TRUE(ends_with(str(e, "id"), id_suffix)) << lines[i];
    EXPECT_EQ(str(e, "source").rfind("flowbus://", 0), 0u) << lines[i];
    EXPECT_TRUE(ends_with(str(e, "source"), "/" + bus.name.name + "/shop")) << lines[i];
    EXPECT_EQ(str(e, "type"), "examples.Order") << lines[i];
    EXPECT_EQ(str(e, "time").size(), 30u) << lines[i];  // 2026-11-28T11:16:40.797549403Z
    EXPECT_TRUE(ends_with(str(e, "time"), "Z")) << lines[i];
    EXPECT_EQ(str(e, "datacontenttype"), "application/json") << "decoded data is JSON: " << lines[i];
    EXPECT_EQ(str(e, "dataschema").rfind("flowbus:schema/fnv1a64:", 0), 0u) << lines[i];
    EXPECT_EQ(str(e, "flowbustopic"), "orders.created") << lines[i];
    EXPECT_EQ(e["flowbusseq"].AsUInt64(), i) << lines[i];
    ASSERT_TRUE(e["data"].IsMap()) << lines[i];
    const flexbuffers::Map data = e["data"].AsMap();
    EXPECT_EQ(data["id"].AsUInt64(), 7u) << lines[i];
    EXPECT_EQ(str(data, "customer"), "acme") << lines[i];
    EXPECT_EQ(str(data, "sku"), "A-1") << lines[i];
    EXPECT_EQ(data["quantity"].AsUInt64(), 2u) << lines[i];
    EXPECT_EQ(data["price_cents"].AsUInt64(), 1999u) << lines[i];
  }
}

TEST(CliTest, SubWithATimeoutFailsWithAMessageUnlessItGotTheCount) {
  OrdersBus bus;
  ASSERT_EQ(bus.pub(kOrderJson, {"--count", "3"}).exit_code, 0);
  const auto t0 = std::chrono::steady_clock::now();
  Outcome o = bus.sub({"--timeout", "0.5", "--count", "5"});
  EXPECT_NE(o.exit_code, 0) << describe(o);
  EXPECT_NE(o.err.find("3 of 5"), std::string::npos) << describe(o);
  EXPECT_EQ(lines_of(o.out).size(), 3u) << describe(o);
  EXPECT_LT(ms_since(t0), 5000);
  o = bus.sub({"--timeout", "0.5", "--count", "3"});
  EXPECT_EQ(o.exit_code, 0) << describe(o);
  EXPECT_EQ(lines_of(o.out).size(), 3u) << describe(o);
}

// Issue 15 item 6: the README's own damage example (one commit word zeroed)
// used to end `sub` five events short, exit 0, with no message: a waiting
// reader never looked for damage. Losses and corrupt rings now exit 1.
TEST(CliTest, SubReportsARingWithAnUncommittedRecordBelowTheWriterAsCorruptAndExitsOne) {
  OrdersBus bus;
  ASSERT_EQ(bus.pub(kOrderJson, {"--count", "10", "--name", "shop"}).exit_code, 0);
  {
    auto seg = detail::Segment::open(detail::data_segment_name(bus.name.name, "orders.created", "shop"),
                                     detail::Access::ReadWrite);
    uint8_t* records = seg.data() + detail::kRecordsOffset;
    uint64_t position = 0;
    for (int i = 0; i < 5; ++i) {  // to the sixth record
      const auto* rec = reinterpret_cast<const detail::RecordHeader*>(records + position);
      position += detail::record_length(rec->offset_and_flags & detail::kOffsetMask, rec->size);
    }
    reinterpret_cast<detail::RecordHeader*>(records + position)->commit.store(0);
  }
  const Outcome o = bus.sub({"--timeout", "1"});
  EXPECT_EQ(lines_of(o.out).size(), 5u) << describe(o);
  EXPECT_EQ(o.exit_code, 1) << describe(o);
  EXPECT_NE(o.err.find("corrupt"), std::string::npos) << describe(o);
  // A whole stream still exits 0.
  OrdersBus healthy;
  ASSERT_EQ(healthy.pub(kOrderJson, {"--count", "3"}).exit_code, 0);
  EXPECT_EQ(healthy.sub({"--timeout", "0.3"}).exit_code, 0);
}

TEST(CliTest, PubRefusesJsonThatDoesNotFitTheSchemaNamingTheField) {
  OrdersBus bus;
  const Outcome o = bus.pub(R"({"id":1,"colour":"red"})");
  EXPECT_NE(o.exit_code, 0) << describe(o);
  EXPECT_NE(o.err.find("colour"), std::string::npos) << describe(o);
  EXPECT_NE(o.err.find("examples.Order"), std::string::npos) << describe(o);
  // Nothing was published.
  const Outcome s = bus.sub({"--timeout", "0.3"});
  EXPECT_EQ(s.exit_code, 0) << describe(s);
  EXPECT_EQ(s.out, "") << describe(s);
}

TEST(CliTest, PubRefusesAValueOfTheWrongTypeNamingTheField) {
  OrdersBus bus;
  for (const char* json : {R"({"id":1,"quantity":"lots"})", R"({"id":1,"quantity":-1})", R"({"id":1,"price_cents":true})"}) {
    const Outcome o = bus.pub(json);
    EXPECT_NE(o.exit_code, 0) << json << "\n" << describe(o);
    const std::string field = std::string(json).find("price_cents") != std::string::npos ? "price_cents" : "quantity";
    EXPECT_NE(o.err.find(field), std::string::npos) << json << "\n" << describe(o);
  }
}

TEST(CliTest, InvalidBusNamesAndPatternsAreRefusedWithAMessage) {
  OrdersBus bus;
  const std::vector<std::vector<std::string>> bad_bus{
      {"topic", "ls", "Bad Name"},
      {"topic", "create", "Bad Name", "orders.created", "--schema", example_schema("order.fbs")},
      {"pub", "Bad Name", "orders.created", "--json", kOrderJson},
      {"sub", "Bad Name", "orders.>", "--timeout", "0.1"},
      {"gc", "Bad Name"},
  };
  for (const auto& args : bad_bus) {
    const Outcome o = flowbus_cli(args);
    EXPECT_NE(o.exit_code, 0) << args[0] << "\n" << describe(o);
    EXPECT_NE(o.err.find("invalid"), std::string::npos) << args[0] << "\n" << describe(o);
  }
  for (const char* pattern : {"a..b", "orders.>.x", "orders created"}) {
    const Outcome o = flowbus_cli({"sub", bus.name.name, pattern, "--timeout", "0.1"});
    EXPECT_NE(o.exit_code, 0) << pattern << "\n" << describe(o);
    EXPECT_NE(o.err.find("invalid"), std::string::npos) << pattern << "\n" << describe(o);
  }
  EXPECT_TRUE(shm_entries("flowbus.Bad Name").empty());
}

TEST(CliTest, RestartedPubUnderTheSameNameContinuesTheSequence) {
  OrdersBus bus;
  Outcome o = bus.pub(kOrderJson, {"--name", "shop", "--count", "3"});
  ASSERT_EQ(o.exit_code, 0) << describe(o);
  o = bus.pub(kOrderJson, {"--name", "shop"});
  ASSERT_EQ(o.exit_code, 0) << describe(o);
  o = bus.sub({"--count", "4", "--timeout", "2", "--json"});
  ASSERT_EQ(o.exit_code, 0) << describe(o);
  const auto lines = lines_of(o.out);
  ASSERT_EQ(lines.size(), 4u) << describe(o);
  std::vector<std::string> ids;
  for (const std::string& line : lines) {
    const Json j(line);
    ASSERT_TRUE(j.ok()) << j.error() << "\n" << line;
    ids.push_back(str(j.root(), "id"));
  }
  EXPECT_TRUE(ends_with(ids[3], "-3")) << ids[3];  // the second run's first event
  // Same publisher id, so ids stay unique across the restart.
  EXPECT_EQ(ids[3].substr(0, ids[3].rfind('-')), ids[0].substr(0, ids[0].rfind('-')));
  EXPECT_EQ(std::set<std::string>(ids.begin(), ids.end()).size(), 4u);
}

TEST(CliTest, DemoRunsForASecondAndLeavesNothingInDevShm) {
  const auto before = shm_entries("flowbus.demo-");
  ChildProcess demo({kCli, "demo", "--seconds", "1"}, {.pipe_stdin = false, .capture_stderr = true});
  const std::string bus = "demo-" + std::to_string(demo.pid());
  const Outcome o = demo.communicate(60s);
  ASSERT_TRUE(o.finished) << describe(o);
  EXPECT_EQ(o.exit_code, 0) << describe(o);
  EXPECT_NE(o.out.find("bus '" + bus + "'"), std::string::npos) << describe(o);
  EXPECT_NE(o.out.find("collector"), std::string::npos) << describe(o);
  // Each service reports what it reads: the order services see orders, never a sensor reading (issue 17 item 6).
  int order_services = 0;
  for (const std::string& line : lines_of(o.out)) {
    if (line.find("  billing") == 0 || line.find("  shipping") == 0) {
      ++order_services;
      EXPECT_NE(line.find("last order #"), std::string::npos) << line << "\n" << describe(o);
      EXPECT_EQ(line.find("reading"), std::string::npos) << line << "\n" << describe(o);
    }
    if (line.find("  collector") == 0) {
      EXPECT_NE(line.find("last reading"), std::string::npos) << line << "\n" << describe(o);
    }
  }
  EXPECT_EQ(order_services, 2) << describe(o);
  EXPECT_TRUE(shm_entries("flowbus." + bus).empty()) << describe(o);
  // Nothing new named flowbus.demo-*, except what a demo that someone else is
  // running right now (its pid, in the bus name, is alive) holds.
  for (const std::string& e : shm_entries("flowbus.demo-")) {
    const pid_t owner = pid_t(std::atoi(e.c_str() + std::strlen("flowbus.demo-")));
    const bool running_elsewhere = owner > 0 && owner != demo.pid() && ::kill(owner, 0) == 0;
    EXPECT_TRUE(before.count(e) || running_elsewhere) << "left behind: /dev/shm/" << e;
  }
  Bus::destroy(bus);  // in case it failed
}

}  // namespace

TEST(CliTest, PerfLatencyJsonGivesPercentilesForEveryTransportAndLeavesNothingBehind) {
  const Outcome o = flowbus_cli({"perf", "latency", "--iters", "2000", "--size", "64,4096", "--json"}, 120s);
  ASSERT_EQ(o.exit_code, 0) << describe(o);
  const auto lines = lines_of(o.out);
  ASSERT_EQ(lines.size(), 12u) << describe(o);  // 6 transports x 2 sizes
  std::set<std::string> transports;
  for (const std::string& line : lines) {
    Json j(line);
    ASSERT_TRUE(j.ok()) << j.error() << "\n" << line;
    const auto m = j.root();
    transports.insert(str(m, "transport"));
    EXPECT_EQ(m["iters"].AsUInt64(), 2000u) << line;
    // How each receiver waits: flowbus as --wait says (spin by default), the floor spins, the rest block.
    const std::string t = str(m, "transport");
    EXPECT_EQ(str(m, "wait"), t == "flowbus" || t == "floor" ? "spin" : "kernel") << line;
    EXPECT_GT(m["echo_cpus"].AsDouble(), 0) << line;
    const double p50 = m["rtt_p50_ns"].AsDouble(), p99 = m["rtt_p99_ns"].AsDouble(), max = m["rtt_max_ns"].AsDouble();
    EXPECT_GT(p50, 0) << line;
    EXPECT_LE(p50, m["rtt_p90_ns"].AsDouble()) << line;
    EXPECT_LE(m["rtt_p90_ns"].AsDouble(), p99) << line;
    EXPECT_LE(p99, m["rtt_p999_ns"].AsDouble()) << line;
    EXPECT_LE(m["rtt_p999_ns"].AsDouble(), max) << line;
    const uint64_t bytes = m["bytes"].AsUInt64();
    EXPECT_TRUE(bytes == 64 || bytes == 4096) << line;
  }
  EXPECT_EQ(transports, (std::set<std::string>{"flowbus", "floor", "uds", "pipe", "zmq", "bmq"}));
  EXPECT_TRUE(left_by("flowbus.perf-", o.pid).empty()) << "perf left its bus in /dev/shm";
}

TEST(CliTest, PerfLatencyOverZmqAndBmqGivesOneOrderedLinePerTransportAndLeavesNothingBehind) {
  const Outcome o = flowbus_cli({"perf", "latency", "--transport", "zmq,bmq", "--iters", "2000", "--size", "64", "--json"}, 120s);
  ASSERT_EQ(o.exit_code, 0) << describe(o);
  const auto lines = lines_of(o.out);
  ASSERT_EQ(lines.size(), 2u) << describe(o);
  std::vector<std::string> transports;
  for (const std::string& line : lines) {
    Json j(line);
    ASSERT_TRUE(j.ok()) << j.error() << "\n" << line;
    const auto m = j.root();
    transports.push_back(str(m, "transport"));
    EXPECT_EQ(m["bytes"].AsUInt64(), 64u) << line;
    for (const char* key : {"rtt_p50_ns", "rtt_p90_ns", "rtt_p99_ns", "rtt_p999_ns", "rtt_max_ns"})
      EXPECT_TRUE(m[key].IsNumeric()) << key << " is not a number: " << line;
    EXPECT_GT(m["rtt_p50_ns"].AsDouble(), 0) << line;
    EXPECT_LE(m["rtt_p50_ns"].AsDouble(), m["rtt_p99_ns"].AsDouble()) << line;
    EXPECT_LE(m["rtt_p99_ns"].AsDouble(), m["rtt_max_ns"].AsDouble()) << line;
  }
  EXPECT_EQ(transports, (std::vector<std::string>{"zmq", "bmq"}));
  EXPECT_TRUE(left_by("flowbus-perf-bmq-", o.pid).empty()) << "bmq left its queues in /dev/shm";
}

// Issue 19 item 4: every --wait in one run, each flowbus line with its
// strategy and the CPU its echo side used; uds beside them, run once.
TEST(CliTest, PerfLatencyMeasuresEachWaitStrategyInOneRunWithTheEchoSidesCpu) {
  const Outcome o = flowbus_cli({"perf", "latency", "--transport", "flowbus,uds", "--wait", "spin,backoff,futex",
                                 "--gap-us", "20", "--iters", "2000", "--size", "64", "--json"},
                                120s);
  ASSERT_EQ(o.exit_code, 0) << describe(o);
  std::vector<std::string> seen;
  for (const std::string& line : lines_of(o.out)) {
    Json j(line);
    ASSERT_TRUE(j.ok()) << j.error() << "\n" << line;
    const auto m = j.root();
    seen.push_back(str(m, "transport") + "/" + str(m, "wait"));
    EXPECT_EQ(m["gap_ns"].AsUInt64(), 20000u) << line;
    EXPECT_GT(m["echo_cpus"].AsDouble(), 0) << line;
    EXPECT_LE(m["echo_cpus"].AsDouble(), 1.1) << line;  // one process on one CPU
  }
  EXPECT_EQ(seen, (std::vector<std::string>{"flowbus/spin", "flowbus/backoff", "flowbus/futex", "uds/kernel"}))
      << o.out;
  EXPECT_TRUE(left_by("flowbus.perf-", o.pid).empty()) << "perf left its bus in /dev/shm";
}

TEST(CliTest, PerfLatencyRefusesAnUnknownWaitBeforeMeasuring) {
  const Outcome o = flowbus_cli({"perf", "latency", "--wait", "spin,nap", "--iters", "1000", "--size", "64"});
  EXPECT_NE(o.exit_code, 0) << describe(o);
  EXPECT_NE(o.err.find("unknown wait 'nap': use spin, backoff or futex"), std::string::npos) << describe(o);
  EXPECT_EQ(o.out, "") << describe(o);
}

static bool gnuplot_on_path() {
  const char* path = std::getenv("PATH");
  std::istringstream dirs(path ? path : "/usr/bin:/bin");
  for (std::string dir; std::getline(dirs, dir, ':');)
    if (!dir.empty() && ::access((dir + "/gnuplot").c_str(), X_OK) == 0) return true;
  return false;
}

TEST(CliTest, PerfLatencyPlotWritesAPngFile) {
  if (!gnuplot_on_path()) GTEST_SKIP() << "gnuplot is not installed (apt-get install gnuplot-nox)";
  const std::string png = "/tmp/flowbus-cli-test-" + std::to_string(getpid()) + ".png";
  const Outcome o = flowbus_cli({"perf", "latency", "--transport", "floor,flowbus", "--iters", "2000", "--size", "64,4096",
                                 "--plot", png, "--json"},
                                120s);
  ASSERT_EQ(o.exit_code, 0) << describe(o);
  EXPECT_EQ(lines_of(o.out).size(), 4u) << describe(o);  // the JSON is still printed, and no PNG on stdout
  FILE* f = std::fopen(png.c_str(), "rb");
  ASSERT_NE(f, nullptr) << png << " was not written";
  unsigned char magic[8] = {};
  const size_t got = std::fread(magic, 1, sizeof magic, f);
  std::fclose(f);
  std::remove(png.c_str());
  const unsigned char png_magic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  ASSERT_EQ(got, sizeof magic);
  EXPECT_EQ(std::memcmp(magic, png_magic, sizeof magic), 0) << "not a PNG file";
}

TEST(CliTest, PerfThroughputJsonCountsEventsInEveryModeAndLeavesNothingBehind) {
  const Outcome o = flowbus_cli({"perf", "throughput", "--seconds", "0.3", "--json"}, 120s);
  ASSERT_EQ(o.exit_code, 0) << describe(o);
  const auto lines = lines_of(o.out);
  ASSERT_EQ(lines.size(), 16u) << describe(o);  // the two ceilings, then the floor and 6 runs for each of 2 sizes
  std::set<uint64_t> floor_sizes;
  std::set<std::string> modes, transports;
  std::set<uint64_t> batches;
  for (const std::string& line : lines) {
    Json j(line);
    ASSERT_TRUE(j.ok()) << j.error() << "\n" << line;
    const auto m = j.root();
    const std::string mode = str(m, "mode");
    modes.insert(mode);
    transports.insert(str(m, "transport"));
    EXPECT_GT(m["events"].AsUInt64(), 0u) << line;
    EXPECT_GT(m["events_per_s"].AsDouble(), 0) << line;
    EXPECT_GT(m["mb_per_s"].AsDouble(), 0) << line;
    EXPECT_GT(m["seconds"].AsDouble(), 0) << line;
    if (str(m, "transport") == "flowbus" && mode == "1->1") batches.insert(m["batch"].AsUInt64());
    if (str(m, "transport") == "floor") {
      EXPECT_EQ(mode, "1->1") << line;
      floor_sizes.insert(m["bytes"].AsUInt64());
    }
    // 1->K and P->1: each process of the many side's rate, beside this size's 1->1 (issue 19 item 3).
    const auto per_process = m["per_process_events_per_s"].AsVector();
    if (mode == "1->K" || mode == "P->1") {
      EXPECT_EQ(per_process.size(), 2u) << line;
      double total = 0;
      for (size_t i = 0; i < per_process.size(); ++i) total += per_process[i].AsDouble();
      EXPECT_NEAR(total, m["total_events_per_s"].AsDouble(), 2) << line;
      EXPECT_GT(m["one_to_one_events_per_s"].AsDouble(), 0) << line;
      EXPECT_EQ(str(m, "wait"), "futex") << line;
      EXPECT_TRUE(m["time_shared"].AsBool() || ::sysconf(_SC_NPROCESSORS_ONLN) > 2) << line;
    } else {
      EXPECT_EQ(per_process.size(), 0u) << line;
    }
    if (mode == "1->K") {
      EXPECT_EQ(m["subscribers"].AsInt64(), 2) << line;  // the default K
    } else if (mode == "P->1") {
      EXPECT_EQ(m["publishers"].AsInt64(), 2) << line;  // the default P
    } else if (mode == "in-process") {
      EXPECT_TRUE(str(m, "transport") == "moodycamel" || str(m, "transport") == "moodycamel-bulk") << line;
    }
  }
  EXPECT_EQ(modes, (std::set<std::string>{"in-process", "1->1", "1->K", "P->1"})) << o.out;
  EXPECT_EQ(transports, (std::set<std::string>{"moodycamel", "moodycamel-bulk", "floor", "flowbus", "uds", "pipe"})) << o.out;
  EXPECT_EQ(floor_sizes, (std::set<uint64_t>{64, 65536})) << o.out;  // a floor for each size
  EXPECT_EQ(batches, (std::set<uint64_t>{1, 64})) << o.out;  // one event per publish, and publish_batch's default burst
  EXPECT_TRUE(left_by("flowbus.perf-", o.pid).empty()) << "perf throughput left its bus in /dev/shm";
}

// Collector and distributor with backing-off subscribers: one rate per
// process of the many side, all of them summing to the total.
TEST(CliTest, PerfThroughputGivesEachProcessesRateUnderEachWait) {
  const Outcome o = flowbus_cli({"perf", "throughput", "--size", "64", "--seconds", "0.2", "--publishers", "3",
                                 "--subscribers", "3", "--batch", "1", "--wait", "backoff", "--json"},
                                120s);
  ASSERT_EQ(o.exit_code, 0) << describe(o);
  std::set<std::string> many;
  for (const std::string& line : lines_of(o.out)) {
    Json j(line);
    ASSERT_TRUE(j.ok()) << j.error() << "\n" << line;
    const auto m = j.root();
    const std::string mode = str(m, "mode");
    if (mode != "1->K" && mode != "P->1") continue;
    many.insert(mode);
    EXPECT_EQ(str(m, "wait"), "backoff") << line;
    const auto rates = m["per_process_events_per_s"].AsVector();
    ASSERT_EQ(rates.size(), 3u) << line;
    double total = 0;
    for (size_t i = 0; i < rates.size(); ++i) {
      EXPECT_GT(rates[i].AsDouble(), 0) << line;
      total += rates[i].AsDouble();
    }
    EXPECT_NEAR(total, m["total_events_per_s"].AsDouble(), 3) << line;
  }
  EXPECT_EQ(many, (std::set<std::string>{"1->K", "P->1"})) << o.out;
  const Outcome bad = flowbus_cli({"perf", "throughput", "--wait", "spin"});
  EXPECT_NE(bad.exit_code, 0) << describe(bad);
  EXPECT_NE(bad.err.find("unknown wait 'spin': use futex or backoff"), std::string::npos) << describe(bad);
}

// --rows runs what it names and nothing else (an A/B script's short round):
// the plain 1->1 row has its ratio to the floor, the burst row no ratio to a
// 1->1 baseline, and no JSON value is NaN where a baseline did not run.
TEST(CliTest, PerfThroughputRowsRunsOnlyTheRowsNamed) {
  const Outcome o = flowbus_cli(
      {"perf", "throughput", "--size", "64", "--seconds", "0.1", "--rows", "floor,flowbus,batch", "--json"}, 120s);
  ASSERT_EQ(o.exit_code, 0) << describe(o);
  std::multiset<std::string> ran;
  for (const std::string& line : lines_of(o.out)) {
    Json j(line);
    ASSERT_TRUE(j.ok()) << j.error() << "\n" << line;
    const auto m = j.root();
    ran.insert(str(m, "mode") + " " + str(m, "transport") + " x" + std::to_string(m["batch"].AsUInt64()));
    EXPECT_GT(m["events_per_s"].AsDouble(), 0) << line;
  }
  EXPECT_EQ(ran, (std::multiset<std::string>{"1->1 floor x1", "1->1 flowbus x1", "1->1 flowbus x64"})) << o.out;
  const Outcome table =
      flowbus_cli({"perf", "throughput", "--size", "64", "--seconds", "0.1", "--rows", "flowbus"}, 120s);
  ASSERT_EQ(table.exit_code, 0) << describe(table);
  EXPECT_EQ(lines_of(table.out).size(), 2u) << "a header and the one row: " << describe(table);
  EXPECT_EQ(table.out.find("nan"), std::string::npos) << describe(table);
  // The collector by its name (no '>' for a shell to take as a redirection).
  const Outcome collector = flowbus_cli(
      {"perf", "throughput", "--size", "64", "--seconds", "0.1", "--publishers", "2", "--rows", "collector", "--json"},
      120s);
  ASSERT_EQ(collector.exit_code, 0) << describe(collector);
  ASSERT_EQ(lines_of(collector.out).size(), 1u) << describe(collector);
  EXPECT_NE(collector.out.find("\"mode\":\"P->1\""), std::string::npos) << describe(collector);
}

TEST(CliTest, PerfMirrorJsonGivesThroughputPerSizeAndRoundTripsAgainstTcpAndLeavesNothingBehind) {
  const Outcome o = flowbus_cli({"perf", "mirror", "--seconds", "0.3", "--iters", "2000", "--json"}, 180s);
  ASSERT_EQ(o.exit_code, 0) << describe(o);
  const auto lines = lines_of(o.out);
  ASSERT_EQ(lines.size(), 5u) << describe(o);  // tcp and sidecar round trips, what the sidecar adds, 2 sizes
  std::set<std::string> rtt_transports;
  std::set<uint64_t> mirrored_sizes;
  bool added = false;
  for (const std::string& line : lines) {
    Json j(line);
    ASSERT_TRUE(j.ok()) << j.error() << "\n" << line;
    const auto m = j.root();
    const std::string mode = str(m, "mode");
    if (mode == "mirror") {
      mirrored_sizes.insert(m["bytes"].AsUInt64());
      EXPECT_GT(m["events"].AsUInt64(), 0u) << line;
      EXPECT_GT(m["seconds"].AsDouble(), 0) << line;
      EXPECT_GT(m["events_per_s"].AsDouble(), 0) << line;
      EXPECT_GT(m["mb_per_s"].AsDouble(), 0) << line;
    } else if (mode == "mirror_rtt") {
      rtt_transports.insert(str(m, "transport"));
      EXPECT_EQ(m["bytes"].AsUInt64(), 64u) << line;
      EXPECT_EQ(m["iters"].AsUInt64(), 2000u) << line;
      for (const char* key : {"rtt_p50_ns", "rtt_p90_ns", "rtt_p99_ns", "rtt_p999_ns", "rtt_max_ns"})
        EXPECT_GT(m[key].AsDouble(), 0) << key << ": " << line;
      EXPECT_LE(m["rtt_p50_ns"].AsDouble(), m["rtt_p90_ns"].AsDouble()) << line;
      EXPECT_LE(m["rtt_p90_ns"].AsDouble(), m["rtt_p99_ns"].AsDouble()) << line;
      EXPECT_LE(m["rtt_p99_ns"].AsDouble(), m["rtt_p999_ns"].AsDouble()) << line;
      EXPECT_LE(m["rtt_p999_ns"].AsDouble(), m["rtt_max_ns"].AsDouble()) << line;
    } else if (mode == "mirror_added") {
      added = true;
      EXPECT_EQ(m["bytes"].AsUInt64(), 64u) << line;
      EXPECT_GT(m["p50_ratio"].AsDouble(), 0) << line;
      EXPECT_TRUE(m["added_rtt_ns"].IsNumeric()) << line;  // a difference: its sign is measured, not asserted
      EXPECT_TRUE(m["added_per_hop_ns"].IsNumeric()) << line;
    } else {
      ADD_FAILURE() << "unexpected mode: " << line;
    }
  }
  EXPECT_EQ(rtt_transports, (std::set<std::string>{"tcp", "sidecar"})) << o.out;
  EXPECT_EQ(mirrored_sizes, (std::set<uint64_t>{64, 65536})) << o.out;
  EXPECT_TRUE(added) << o.out;
  EXPECT_TRUE(left_by("flowbus.perfmirror-", o.pid).empty()) << "perf mirror left a bus in /dev/shm";
}

TEST(CliTest, PerfLatencyRefusesAnUnknownTransportWithTheChoices) {
  const Outcome o = flowbus_cli({"perf", "latency", "--iters", "100", "--size", "64", "--transport", "carrier-pigeon"});
  EXPECT_NE(o.exit_code, 0) << describe(o);
  EXPECT_NE(o.err.find("flowbus, floor, uds, pipe, zmq or bmq"), std::string::npos) << describe(o);
}

TEST(CliTest, InspectJsonShowsTheRingAndItsSequenceAndInspectListsTheBus) {
  OrdersBus bus;
  ASSERT_EQ(bus.pub(kOrderJson, {"--count", "4", "--name", "shop"}).exit_code, 0);
  const Outcome o = flowbus_cli({"inspect", bus.name.name, "--json", "--rate-window", "0"});
  ASSERT_EQ(o.exit_code, 0) << describe(o);
  Json j(o.out);
  ASSERT_TRUE(j.ok()) << j.error() << "\n" << o.out;
  const auto root = j.root();
  EXPECT_EQ(str(root, "bus"), bus.name.name);
  const auto rings = root["rings"].AsVector();
  ASSERT_EQ(rings.size(), 1u) << o.out;
  const auto ring = rings[0].AsMap();
  EXPECT_EQ(str(ring, "publisher"), "shop");
  EXPECT_EQ(ring["next_sequence"].AsUInt64(), 4u);
  EXPECT_FALSE(ring["writer_alive"].AsBool());  // pub exited
  const Outcome list = flowbus_cli({"inspect"});
  EXPECT_EQ(list.exit_code, 0) << describe(list);
  EXPECT_NE(list.out.find(bus.name.name), std::string::npos) << describe(list);
  const Outcome missing = flowbus_cli({"inspect", "no-such-bus-here"});
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_NE(missing.err.find("does not exist"), std::string::npos) << describe(missing);
}

TEST(CliTest, GcOfABusThatDoesNotExistSaysSoAndRemovesNothing) {
  const std::string name = "no-such-bus-" + std::to_string(getpid());
  const Outcome o = flowbus_cli({"gc", name});
  EXPECT_NE(o.exit_code, 0) << describe(o);
  EXPECT_NE(o.err.find("does not exist"), std::string::npos) << describe(o);
  EXPECT_EQ(o.out.find("removed"), std::string::npos) << describe(o);
}
