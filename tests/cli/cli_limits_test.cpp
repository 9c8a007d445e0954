// The flowbus command line refusing what it cannot do (issue 17): each bad
// argument, an existing topic asked with other settings, a ring larger than
// /dev/shm, a pattern matching nothing. Each case runs the real binary and
// checks the exit code, that the message names the argument and what is
// allowed, and that a refused command leaves nothing in /dev/shm.
#include <grp.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>

#include "as_stranger.hpp"
#include "bus_state.hpp"
#include "cli_helpers.hpp"
#include "directory_layout.hpp"
#include "segment.hpp"
#include "test_bus.hpp"

using namespace flowbus;
using namespace flowbus::testing;
using namespace std::chrono_literals;

namespace {

bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

/// The smallest power of two that /dev/shm cannot hold now; 0 if above the 1 TiB a ring may have.
uint64_t ring_larger_than_dev_shm() {
  struct statvfs fs{};
  if (::statvfs("/dev/shm", &fs) != 0) return 0;
  const uint64_t free_bytes = uint64_t(fs.f_bavail) * fs.f_frsize;
  uint64_t ring = 4096;
  while (ring <= free_bytes) ring <<= 1;
  return ring <= (1ull << 40) ? ring : 0;
}

struct Refusal {
  std::vector<std::string> args;
  std::vector<std::string> says;  // every one of these is in stderr
};

void expect_refused(const std::vector<Refusal>& cases, std::chrono::milliseconds timeout = 10s) {
  for (const Refusal& c : cases) {
    std::string line;
    for (const auto& a : c.args) line += (a.size() > 60 ? a.substr(0, 60) + "..." : a) + " ";
    const Outcome o = flowbus_cli(c.args, timeout);
    EXPECT_TRUE(o.finished) << line;
    EXPECT_NE(o.exit_code, 0) << line << "\n" << describe(o);
    for (const std::string& s : c.says) EXPECT_TRUE(has(o.err, s)) << line << "\nmissing: " << s << "\n" << describe(o);
  }
}

// --- item 1: topic create on an existing topic -----------------------------

TEST(CliLimitsTest, TopicCreateOfAnExistingTopicWithOtherSettingsIsRefusedNamingEachDifference) {
  OrdersBus bus;
  const std::string schema = example_schema("order.fbs");
  const std::string gid = std::to_string(::getegid());
  const Outcome o = flowbus_cli({"topic", "create", bus.name.name, "orders.created", "--schema", schema, "--ring-size", "64KiB",
                                 "--mode", "0640", "--group", gid, "--timeout", "200ms", "--retention", "60"});
  EXPECT_EQ(o.exit_code, 1) << describe(o);
  for (const std::string& difference : std::vector<std::string>{"ring size 4MiB, asked 64KiB", "mode 0600, asked 0640", "slow-consumer timeout 5s, asked 200ms",
                                        "retention 3600s, asked 60s", "group none (the creator's), asked " + gid})
    EXPECT_TRUE(has(o.err, difference)) << difference << "\n" << describe(o);
  EXPECT_TRUE(has(o.err, "nothing was changed")) << describe(o);
  EXPECT_TRUE(has(o.err, "flowbus topic ls " + bus.name.name)) << describe(o);

  const Outcome policy = flowbus_cli({"topic", "create", bus.name.name, "orders.created", "--schema", schema, "--policy", "latest"});
  EXPECT_EQ(policy.exit_code, 1) << describe(policy);
  EXPECT_TRUE(has(policy.err, "policy block, asked latest")) << describe(policy);
  const Outcome evolved = flowbus_cli({"topic", "create", bus.name.name, "orders.created", "--schema", example_schema("order_v2.fbs")});
  EXPECT_EQ(evolved.exit_code, 1) << describe(evolved);
  EXPECT_TRUE(has(evolved.err, "schema fnv1a64:")) << describe(evolved);
  EXPECT_TRUE(has(evolved.err, "order_v2.fbs")) << describe(evolved);

  // Nothing changed.
  const Outcome ls = flowbus_cli({"topic", "ls", bus.name.name, "--json"});
  ASSERT_EQ(ls.exit_code, 0) << describe(ls);
  const Json topic(lines_of(ls.out).at(0));
  ASSERT_TRUE(topic.ok()) << topic.error() << "\n" << ls.out;
  EXPECT_EQ(topic.root()["ring_size"].AsUInt64(), 4u << 20) << ls.out;
  EXPECT_EQ(str(topic.root(), "mode"), "0600") << ls.out;
}

TEST(CliLimitsTest, TopicCreateOfAnExistingTopicWithTheSameSettingsSaysItExistsAndExitsZero) {
  OrdersBus bus;
  Outcome o = flowbus_cli({"topic", "create", bus.name.name, "orders.created", "--schema", example_schema("order.fbs")});
  EXPECT_EQ(o.exit_code, 0) << describe(o);
  EXPECT_TRUE(has(o.out, "already exists with these settings")) << describe(o);
  o = flowbus_cli({"topic", "create", bus.name.name, "orders.created", "--schema", example_schema("order.fbs"), "--json"});
  EXPECT_EQ(o.exit_code, 0) << describe(o);
  const Json j(lines_of(o.out).at(0));
  ASSERT_TRUE(j.ok()) << j.error() << "\n" << o.out;
  EXPECT_FALSE(j.root()["created"].AsBool()) << o.out;
}

// --- items 2 and 4: what a refused command leaves in /dev/shm --------------

TEST(CliLimitsTest, TopicCreateRefusesARingLargerThanDevShmNamingTheFreeSpaceAndLeavesNoBus) {
  const uint64_t ring = ring_larger_than_dev_shm();
  if (ring == 0) GTEST_SKIP() << "/dev/shm holds more than 1 TiB, the largest ring";
  ScopedBusName name("limits");
  const Outcome o = flowbus_cli({"topic", "create", name.name, "orders.created", "--schema", example_schema("order.fbs"),
                                 "--ring-size", std::to_string(ring)});
  EXPECT_NE(o.exit_code, 0) << describe(o);
  EXPECT_TRUE(has(o.err, "does not fit in /dev/shm, which has ")) << describe(o);
  EXPECT_TRUE(has(o.err, " free")) << describe(o);
  EXPECT_TRUE(shm_entries("flowbus." + name.name).empty()) << describe(o);
}

TEST(CliLimitsTest, APublisherWhoseRingCannotBeCreatedLeavesNoSegmentBehind) {
  const uint64_t ring = ring_larger_than_dev_shm();
  if (ring == 0) GTEST_SKIP() << "/dev/shm holds more than 1 TiB, the largest ring";
  OrdersBus bus;
  {  // The topic was made when /dev/shm had room; now it has not (made so by hand).
    auto seg = detail::Segment::open(detail::directory_segment_name(bus.name.name), detail::Access::ReadWrite);
    auto* dir = reinterpret_cast<detail::DirectoryLayout*>(seg.data());
    for (detail::TopicSlot& t : dir->topics)
      if (detail::read_name(t.name, detail::kNameBytes) == "orders.created") t.ring_size = ring;
  }
  const Outcome o = bus.pub(kOrderJson, {"--name", "shop"});
  EXPECT_NE(o.exit_code, 0) << describe(o);
  EXPECT_TRUE(has(o.err, "/dev/shm")) << describe(o);
  EXPECT_EQ(shm_entries("flowbus." + bus.name.name), std::set<std::string>{"flowbus." + bus.name.name}) << describe(o);
}

TEST(CliLimitsTest, TopicCreateRefusedForABadTypeOrRingSizeLeavesNothingInDevShm) {
  ScopedBusName name("limits");
  expect_refused({
      {{"topic", "create", name.name, "orders.created", "--schema", example_schema("order.fbs"), "--type", "examples.Nope"},
       {"no table 'examples.Nope'"}},
      {{"topic", "create", name.name, "orders.created", "--schema", example_schema("order.fbs"), "--ring-size", "3000"},
       {"ring size 3000 bytes", "power of two from 4KiB to 1TiB"}},
      {{"topic", "create", name.name, "orders.created", "--schema", example_schema("order.fbs"), "--mode", "0400"},
       {"mode", "0600"}},
  });
  EXPECT_TRUE(shm_entries("flowbus." + name.name).empty());
}

// --- item 3: arguments ------------------------------------------------------

TEST(CliLimitsTest, CountsAndRatesOutOfRangeAreRefusedNamingTheArgumentAndTheRange) {
  OrdersBus bus;
  const std::string b = bus.name.name, t = "orders.created";
  const std::string counts = "a whole number from 1 to 18446744073709551615";
  const std::string rates = "events per second from 0.000001 to 1000000000";
  expect_refused({
      {{"pub", b, t, "--json", kOrderJson, "--count", "-1"}, {"--count", "'-1'", counts}},
      {{"pub", b, t, "--json", kOrderJson, "--count", "18446744073709551616"}, {"--count", counts}},
      {{"pub", b, t, "--json", kOrderJson, "--count", "0"}, {"--count", counts}},
      {{"pub", b, t, "--json", kOrderJson, "--count", "2.5"}, {"--count", counts}},
      {{"pub", b, t, "--json", kOrderJson, "--rate", "abc"}, {"--rate", "'abc'", rates}},
      {{"pub", b, t, "--json", kOrderJson, "--rate", "-5"}, {"--rate", rates}},
      {{"pub", b, t, "--json", kOrderJson, "--rate", "nan"}, {"--rate", rates}},
      {{"pub", b, t, "--json", kOrderJson, "--rate", "0"}, {"--rate", rates}},
      {{"pub", b, t, "--json", kOrderJson, "--timeout", "soon"}, {"--timeout", "'soon'", "200ms", "never"}},
      {{"sub", b, "orders.>", "--count", "-1"}, {"--count", counts}},
      {{"sub", b, "orders.>", "--timeout", "-1"}, {"--timeout", "never"}},
      {{"inspect", b, t, "--dump", "-1"}, {"--dump", counts}},
      {{"inspect", b, t, "--dump", "0"}, {"--dump", counts}},
      {{"perf", "latency", "--iters", "-1"}, {"--iters", "a whole number from 1 to 10000000"}},
      {{"perf", "latency", "--gap-us", "-5"}, {"--gap-us", "a whole number from 0 to 1000000"}},
      {{"perf", "latency", "--backoff-max-park-us", "0"},
       {"--backoff-max-park-us", "a whole number from 1 to 1000000"}},
      {{"perf", "latency", "--wait", "yield"}, {"--wait", "unknown wait 'yield'", "spin, backoff or futex"}},
      {{"perf", "throughput", "--wait", "spin"}, {"--wait", "unknown wait 'spin'", "futex or backoff"}},
      {{"perf", "throughput", "--rows", "floor,zmq"}, {"--rows", "unknown row 'zmq'", "use all, or some of"}},
      {{"perf", "throughput", "--rows", ""}, {"--rows", "at least one row"}},
  });
  // None of these published anything.
  const Outcome s = bus.sub({"--timeout", "0.2"});
  EXPECT_EQ(s.exit_code, 0) << describe(s);
  EXPECT_EQ(s.out, "") << describe(s);
}

// The rest of issue 17 item 6 found by the review: every run of perf checks
// its sizes before measuring, durations that must end do, and --group takes
// a group name (the README's recipe) or a gid in range.
TEST(CliLimitsTest, PerfSizesDurationsAndGroupsAreCheckedBeforeAnythingRuns) {
  ScopedBusName name("limits");
  const std::string schema = example_schema("order.fbs");
  expect_refused({
      {{"perf", "throughput", "--size", "64,12"}, {"--size", "'12'", "from 64 bytes"}},
      {{"perf", "mirror", "--size", "64,8MiB"}, {"--size", "'8MiB'", "4.0MiB"}},
      {{"demo", "--seconds", "nan"}, {"--seconds", "0.1 to 3600"}},
      {{"demo", "--seconds", "-1"}, {"--seconds", "0.1 to 3600"}},
      {{"inspect", name.name, "--rate-window", "never"}, {"--rate-window", "0 to 60"}},
      {{"topic", "create", name.name, "t", "--schema", schema, "--group", "no-such-group-here"},
       {"--group", "no group named 'no-such-group-here'", "groupadd"}},
      {{"topic", "create", name.name, "t", "--schema", schema, "--group", "4294967295"}, {"--group", "0 to 4294967294"}},
  });
  EXPECT_TRUE(shm_entries("flowbus." + name.name).empty());
  // A group by name works: root's group exists everywhere.
  const Outcome o = flowbus_cli({"topic", "create", name.name, "t", "--schema", schema, "--group", "root", "--json"});
  EXPECT_EQ(o.exit_code, 0) << describe(o);
  EXPECT_NE(o.out.find("\"group\":0"), std::string::npos) << describe(o);
}

// Found by the review: retention truncated to whole seconds (200ms became
// 0 s: the ring went at the next gc), a rate below 1e-10 overflowed into "no
// limit", and the sidecar's numbers were taken as they came (port 99999
// listened on 34463, a 0 ms peer timeout dropped every peer).
TEST(CliLimitsTest, RetentionRatesAndSidecarNumbersOutOfRangeAreRefused) {
  OrdersBus bus;
  const std::string b = bus.name.name, schema = example_schema("order.fbs");
  const std::vector<std::string> sidecar{"sidecar", "--bus", b, "--node", "n", "--listen", "127.0.0.1:0", "--export", ">"};
  const auto with = [&](std::vector<std::string> more) {
    std::vector<std::string> args = sidecar;
    args.insert(args.end(), more.begin(), more.end());
    return args;
  };
  expect_refused({
      {{"topic", "create", b, "other", "--schema", schema, "--retention", "200ms"}, {"--retention", "whole seconds"}},
      {{"topic", "create", b, "other", "--schema", schema, "--retention", "1500ms"}, {"--retention", "whole seconds"}},
      {{"pub", b, "orders.created", "--json", kOrderJson, "--rate", "1e-12"}, {"--rate", "from 0.000001"}},
      {{"sidecar", "--bus", b, "--node", "n", "--listen", "127.0.0.1:99999", "--export", ">"}, {"from 0 to 65535"}},
      {with({"--peer-timeout-ms", "0"}), {"--peer-timeout-ms"}},
      {with({"--heartbeat-ms", "0"}), {"--heartbeat-ms"}},
      {with({"--peer-timeout-ms", "500", "--heartbeat-ms", "1000"}),
       {"--peer-timeout-ms", "longer than --heartbeat-ms"}},
      {with({"--import-ring-size", "3000"}), {"--import-ring-size", "power of two from 4KiB to 1TiB"}},
      {with({"--import-timeout", "0"}), {"--import-timeout", "never"}},
      {with({"--import-retention", "0.5"}), {"--import-retention", "whole seconds"}},
      {with({"--max-peers", "0"}), {"--max-peers", "not in range 1 to 48"}},
      {with({"--max-peers", "49"}), {"--max-peers", "not in range 1 to 48"}},
      {{"topic", "create", b, "other", "--schema", schema, "--timeout", "0"},
       {"--timeout 0: the slow-consumer timeout must be positive", "or never"}},
      {{"inspect", b, "--watch", "--interval", "0"}, {"--interval 0: give more than 0 and at most 3600 seconds"}},
  });
  // never is a retention too, and shows as never.
  const Outcome o = flowbus_cli({"topic", "create", b, "kept", "--schema", schema, "--retention", "never"});
  EXPECT_EQ(o.exit_code, 0) << describe(o);
  EXPECT_NE(o.out.find("retention never"), std::string::npos) << describe(o);
}

TEST(CliLimitsTest, SchemaFilesThatAreNotRegularOrTooLargeAreRefusedQuickly) {
  ScopedBusName name("limits");
  const std::string big = "/tmp/flowbus-limits-" + std::to_string(::getpid()) + ".fbs";
  {
    std::ofstream f(big);
    f << "// " << std::string((16u << 20) + 10, 'x') << "\n";
  }
  const auto t0 = std::chrono::steady_clock::now();
  expect_refused({
      {{"topic", "create", name.name, "t", "--schema", "/dev/zero"}, {"'/dev/zero'", "not a regular file"}},
      {{"topic", "create", name.name, "t", "--schema", FLOWBUS_SOURCE_DIR "/schemas"}, {"is a directory"}},
      {{"topic", "create", name.name, "t", "--schema", big}, {"larger than 16 MiB"}},
      {{"topic", "create", name.name, "t", "--schema", "/no/such/file.fbs"}, {"'/no/such/file.fbs'", "check the path"}},
  });
  EXPECT_LT(ms_since(t0), 5000);
  std::remove(big.c_str());
  EXPECT_TRUE(shm_entries("flowbus." + name.name).empty());
}

TEST(CliLimitsTest, SizesTakeTheUnitsTheLimitNamesAndAnUnknownUnitListsThem) {
  ScopedBusName name("limits");
  const std::string schema = example_schema("order.fbs");
  // 1TiB is read as 1 TiB: refused for /dev/shm (or created on a host that big), never for its unit.
  const Outcome tib = flowbus_cli({"topic", "create", name.name, "t", "--schema", schema, "--ring-size", "1TiB"});
  EXPECT_FALSE(has(tib.err, "unknown unit")) << describe(tib);
  if (tib.exit_code != 0) {
    EXPECT_TRUE(has(tib.err, "does not fit in /dev/shm")) << describe(tib);
  }
  expect_refused({
      {{"topic", "create", name.name, "t", "--schema", schema, "--ring-size", "1TB"},
       {"--ring-size", "unknown unit 'TB'", "KiB, MiB, GiB or TiB"}},
      {{"topic", "create", name.name, "t", "--schema", schema, "--ring-size", "2TiB"}, {"ring size 2TiB", "from 4KiB to 1TiB"}},
      {{"topic", "create", name.name, "t", "--schema", schema, "--ring-size", "nan"}, {"--ring-size", "not a size"}},
  });
  const Outcome ok = flowbus_cli({"topic", "create", name.name, "t", "--schema", schema, "--ring-size", "64KiB", "--json"});
  ASSERT_EQ(ok.exit_code, 0) << describe(ok);
  const Json j(lines_of(ok.out).at(0));
  ASSERT_TRUE(j.ok()) << j.error() << "\n" << ok.out;
  EXPECT_EQ(j.root()["ring_size"].AsUInt64(), 64u * 1024) << ok.out;
}

TEST(CliLimitsTest, ASubjectOverTheLimitIsRefusedNamingTheLimit) {
  OrdersBus bus;
  const Outcome o = bus.pub(kOrderJson, {"--subject", std::string(1025, 's')});
  EXPECT_NE(o.exit_code, 0) << describe(o);
  EXPECT_TRUE(has(o.err, "--subject")) << describe(o);
  EXPECT_TRUE(has(o.err, "1025 bytes")) << describe(o);
  EXPECT_TRUE(has(o.err, "at most 1024 bytes")) << describe(o);
  EXPECT_FALSE(has(o.err, "ring")) << describe(o);
  const Outcome at_limit = bus.pub(kOrderJson, {"--subject", std::string(1024, 's')});
  EXPECT_EQ(at_limit.exit_code, 0) << describe(at_limit);
}

TEST(CliLimitsTest, PubFromAFileNamesTheLineOfABadEvent) {
  OrdersBus bus;
  const std::string file = "/tmp/flowbus-limits-" + std::to_string(::getpid()) + ".jsonl";
  {
    std::ofstream f(file);
    f << kOrderJson << "\n" << kOrderJson << "\n\n" << kOrderJson << "\n" << R"({"id":1,"colour":"red"})" << "\n";
  }
  const Outcome o = flowbus_cli({"pub", bus.name.name, "orders.created", "--file", file});
  std::remove(file.c_str());
  EXPECT_NE(o.exit_code, 0) << describe(o);
  EXPECT_TRUE(has(o.err, "line 5 of " + file)) << describe(o);
  EXPECT_TRUE(has(o.err, "colour")) << describe(o);
}

TEST(CliLimitsTest, InspectDumpOfFarMoreEventsThanExistAllocatesByWhatExists) {
  OrdersBus bus;
  ASSERT_EQ(bus.pub(kOrderJson, {"--count", "3"}).exit_code, 0);
  // 100,000,000 events asked: 800 MB if allocated (and zeroed) by N; by what
  // exists, a few pages for the 3 there are. ru_maxrss is the largest child
  // this test process waited for: the pub above, and the dump.
  const Outcome o = flowbus_cli({"inspect", bus.name.name, "orders.created", "--dump", "100000000"});
  ASSERT_EQ(o.exit_code, 0) << describe(o);
  EXPECT_EQ(lines_of(o.out).size(), 3u) << describe(o);
  rusage children{};
  ASSERT_EQ(::getrusage(RUSAGE_CHILDREN, &children), 0);
  EXPECT_LT(children.ru_maxrss, 300 * 1024) << "KiB, the largest resident size of a child";
}

// --- item 5: a pattern that matches nothing --------------------------------

TEST(CliLimitsTest, SubOnAPatternThatMatchesNoTopicSaysSoAndExitsOne) {
  OrdersBus bus;
  const Outcome o = flowbus_cli({"sub", bus.name.name, "order.>", "--timeout", "0.2"});
  EXPECT_EQ(o.exit_code, 1) << describe(o);
  EXPECT_TRUE(has(o.err, "no topic on bus '" + bus.name.name + "' matches 'order.>'")) << describe(o);
  EXPECT_TRUE(has(o.err, "flowbus topic ls " + bus.name.name)) << describe(o);
  // A pattern that matches a topic with nothing in it is no error.
  const Outcome quiet = bus.sub({"--timeout", "0.2"});
  EXPECT_EQ(quiet.exit_code, 0) << describe(quiet);
  EXPECT_EQ(quiet.err, "") << describe(quiet);
}

// --- item 6 -----------------------------------------------------------------

TEST(CliLimitsTest, PerfLatencyChecksEveryArgumentBeforeMeasuringAnything) {
  expect_refused({
      {{"perf", "latency", "--iters", "1000", "--size", "64", "--transport", "flowbus,nope"},
       {"--transport", "unknown transport 'nope'", "flowbus, floor, uds, pipe, zmq or bmq"}},
      {{"perf", "latency", "--iters", "1000", "--size", "64,32", "--transport", "floor"}, {"--size", "'32'", "64 bytes"}},
      {{"perf", "latency", "--iters", "1000", "--size", "64,1XB", "--transport", "floor"}, {"--size", "unknown unit 'XB'"}},
  });
  const Outcome o = flowbus_cli({"perf", "latency", "--iters", "1000", "--size", "64", "--transport", "flowbus,nope"});
  EXPECT_FALSE(has(o.err, "round trips")) << "measured before refusing\n" << describe(o);
  EXPECT_TRUE(left_by("flowbus.perf-", o.pid).empty());
}

TEST(CliLimitsTest, TopicLsPrintsDurationsAsTheyAreWrittenAndJsonHasEverySetting) {
  ScopedBusName name("limits");
  const std::string schema = example_schema("order.fbs");
  Outcome o = flowbus_cli({"topic", "create", name.name, "a.default", "--schema", schema, "--json"});
  ASSERT_EQ(o.exit_code, 0) << describe(o);
  const Json created(lines_of(o.out).at(0));
  ASSERT_TRUE(created.ok()) << created.error() << "\n" << o.out;
  EXPECT_EQ(str(created.root(), "bus"), name.name) << o.out;
  EXPECT_EQ(str(created.root(), "topic"), "a.default") << o.out;
  EXPECT_EQ(str(created.root(), "mode"), "0600") << o.out;
  EXPECT_EQ(created.root()["group"].AsInt64(), -1) << o.out;
  EXPECT_EQ(created.root()["slow_consumer_timeout_ms"].AsUInt64(), 5000u) << o.out;
  EXPECT_EQ(created.root()["retention_s"].AsUInt64(), 3600u) << o.out;
  EXPECT_TRUE(created.root()["created"].AsBool()) << o.out;
  o = flowbus_cli({"topic", "create", name.name, "b.never", "--schema", schema, "--timeout", "never", "--json"});
  ASSERT_EQ(o.exit_code, 0) << describe(o);
  const Json never(lines_of(o.out).at(0));
  ASSERT_TRUE(never.ok()) << never.error() << "\n" << o.out;
  EXPECT_TRUE(never.root()["slow_consumer_timeout_ms"].IsNull()) << o.out;
  ASSERT_EQ(flowbus_cli({"topic", "create", name.name, "c.short", "--schema", schema, "--timeout", "0.2", "--retention", "90s"}).exit_code, 0);

  o = flowbus_cli({"topic", "ls", name.name});
  ASSERT_EQ(o.exit_code, 0) << describe(o);
  const auto lines = lines_of(o.out);
  ASSERT_EQ(lines.size(), 4u) << o.out;
  EXPECT_TRUE(has(lines[0], "TIMEOUT")) << o.out;
  EXPECT_TRUE(has(lines[1], " 5s ") && has(lines[1], "3600s")) << o.out;
  EXPECT_TRUE(has(lines[2], " never ")) << o.out;
  EXPECT_TRUE(has(lines[3], " 200ms ") && has(lines[3], "90s")) << o.out;
  EXPECT_FALSE(has(o.out, "000000s")) << o.out;
}

}  // namespace

// The reader recipe of the README and docs/security.md, by group name
// (issue 15 item 10): `topic create --mode 0640 --group G` on a new bus, and
// a member of G (another uid, a forked child) subscribes with `flowbus sub`
// and may not publish.
TEST(CliLimitsTest, TheReaderRecipeLetsAGroupMemberSubscribeByGroupNameAndNotPublish) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to become another user";
  const struct group* nogroup = ::getgrnam("nogroup");
  if (nogroup == nullptr) GTEST_SKIP() << "no group 'nogroup' here";
  const gid_t readers = nogroup->gr_gid;
  ScopedBusName name("recipe");
  Outcome o = flowbus_cli({"topic", "create", name.name, "orders.created", "--schema", example_schema("order.fbs"),
                           "--mode", "0640", "--group", "nogroup"});
  ASSERT_EQ(o.exit_code, 0) << describe(o);
  o = flowbus_cli({"pub", name.name, "orders.created", "--json", kOrderJson});
  ASSERT_EQ(o.exit_code, 0) << describe(o);
  const std::string member = as_stranger({readers}, [&] {
    const Outcome sub =
        flowbus_cli({"sub", name.name, "orders.created", "--from", "earliest", "--count", "1", "--timeout", "5"});
    const Outcome pub = flowbus_cli({"pub", name.name, "orders.created", "--json", kOrderJson});
    return "sub " + describe(sub) + "\npub " + describe(pub);
  });
  EXPECT_NE(member.find("sub exit 0"), std::string::npos) << member;
  EXPECT_NE(member.find("\"customer\": \"acme\""), std::string::npos) << member;
  EXPECT_NE(member.find("pub exit 1"), std::string::npos) << member;
  EXPECT_NE(member.find("(in its group) may not publish on it"), std::string::npos) << member;
}
