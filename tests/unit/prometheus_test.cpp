// The Prometheus text format of `flowbus exporter` and `inspect --prometheus`
// (tools/flowbus/metrics): escaping, values, families, and a snapshot's page.
#include "metrics/prometheus.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "flowbus/bus.hpp"
#include "test_bus.hpp"

using namespace flowbus;
using namespace flowbus::metrics;

namespace {

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

size_t count_of(const std::string& text, const std::string& part) {
  size_t n = 0;
  for (size_t at = text.find(part); at != std::string::npos; at = text.find(part, at + 1)) ++n;
  return n;
}

}  // namespace

TEST(PrometheusText, LabelValuesEscapeBackslashQuoteAndNewlineOnly) {
  EXPECT_EQ(escape_label_value("plain.topic-1_x"), "plain.topic-1_x");
  EXPECT_EQ(escape_label_value(R"(a\b)"), R"(a\\b)");
  EXPECT_EQ(escape_label_value(R"(say "hi")"), R"(say \"hi\")");
  EXPECT_EQ(escape_label_value("two\nlines"), R"(two\nlines)");
  EXPECT_EQ(escape_label_value("tab\tand ünïcode {}=,"),
            "tab\tand ünïcode {}=,");  // kept as they are: UTF-8 is allowed
  EXPECT_EQ(escape_label_value(R"(\")"), R"(\\\")");
}

TEST(PrometheusText, HelpEscapesBackslashAndNewlineButNotQuotes) {
  EXPECT_EQ(escape_help(R"(a "quoted" \ word)"
                        "\n"
                        "next"),
            R"(a "quoted" \\ word\nnext)");
}

TEST(PrometheusText, ValuesAreExactIntegersOrShortestFloatsOrTheSpecialWords) {
  EXPECT_EQ(format_value(uint64_t(0)), "0");
  EXPECT_EQ(format_value(std::numeric_limits<uint64_t>::max()), "18446744073709551615");
  EXPECT_EQ(format_value(42.0), "42");
  EXPECT_EQ(format_value(-3.0), "-3");
  EXPECT_EQ(format_value(0.5), "0.5");
  EXPECT_EQ(format_value(0.1), "0.1");
  EXPECT_EQ(format_value(1e-9), "1e-09");
  EXPECT_EQ(format_value(1765000000.25), "1765000000.25");
  EXPECT_EQ(format_value(std::nan("")), "NaN");
  EXPECT_EQ(format_value(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(format_value(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(std::stod(format_value(1.5e300)), 1.5e300);
}

TEST(PrometheusText, NamesFollowTheDataModel) {
  EXPECT_TRUE(valid_metric_name("flowbus_ring_events_total"));
  EXPECT_TRUE(valid_metric_name("job:rate5m"));
  EXPECT_FALSE(valid_metric_name("1abc"));
  EXPECT_FALSE(valid_metric_name("flowbus-ring"));
  EXPECT_FALSE(valid_metric_name(""));
  EXPECT_TRUE(valid_label_name("publisher_id"));
  EXPECT_FALSE(valid_label_name("__name__"));
  EXPECT_FALSE(valid_label_name("a:b"));
  EXPECT_FALSE(valid_label_name("9"));
}

TEST(PrometheusText, FamiliesAreWrittenOnceGroupedInDeclarationOrderWithoutDuplicates) {
  Exposition out;
  out.family("b_total", Exposition::Type::Counter, "the b\ncount");
  out.family("a", Exposition::Type::Gauge, "an a");
  out.family("unused", Exposition::Type::Gauge, "never sampled");
  out.add("a", {{"x", "1"}}, 1.5);
  out.add("b_total", {{"x", "1"}}, uint64_t(7));
  out.add("a", {{"x", "2"}}, 2.0);
  out.add("a", {{"x", "1"}}, 99.0);              // same series: dropped, the first wins
  out.add("b_total", {{"x", ""}}, uint64_t(3));  // an empty value is no label
  out.add("b_total", {}, uint64_t(4));           // so this is its duplicate
  EXPECT_EQ(out.text(),
            "# HELP b_total the b\\ncount\n"
            "# TYPE b_total counter\n"
            "b_total{x=\"1\"} 7\n"
            "b_total 3\n"
            "# HELP a an a\n"
            "# TYPE a gauge\n"
            "a{x=\"1\"} 1.5\n"
            "a{x=\"2\"} 2\n");
  EXPECT_THROW(out.add("undeclared", {}, 1.0), std::logic_error);
  EXPECT_THROW(out.add("a", {{"bad-label", "v"}}, 1.0), std::logic_error);
  EXPECT_THROW(out.family("bad-name", Exposition::Type::Gauge, "x"), std::logic_error);
}

namespace {

BusSnapshot sample_bus() {
  BusSnapshot s;
  s.name = "plant";
  s.participants = {{0, 100, true, 0}, {1, 101, false, 0}, {2, 102, true, 0}};
  TopicSnapshot t;
  t.info.name = "orders.created";
  t.info.type = "examples.Order";
  t.info.policy = Policy::Block;
  t.info.schema_id = "sha256:ab";
  s.topics.push_back(t);
  RingSnapshot r;
  r.topic = "orders.created";
  r.publisher = "shop";
  r.writer_alive = false;
  r.capacity = 65536;
  r.write_position = 4096;
  r.tail_position = 1024;
  r.next_sequence = 40;
  r.retained_events = 30;
  r.fill = 0.25;
  r.last_publish_ns = 1765000000500000000ull;
  CursorSnapshot lagging;
  lagging.slot = 3;
  lagging.pid = 100;
  lagging.alive = true;
  lagging.lag_bytes = 2048;
  lagging.lag_events = 20;
  lagging.evictions = 1;
  lagging.losses = 5;
  lagging.rejected = 7;
  lagging.idle_ns = 1500000000;
  CursorSnapshot lapped = lagging;
  lapped.slot = 4;
  lapped.lag_events = -1;
  lapped.lapped = true;
  lapped.sleeping = true;
  r.cursors = {lagging, lapped};
  s.rings.push_back(r);
  RingSnapshot unreadable;
  unreadable.topic = "orders.created";
  unreadable.publisher = "secret";
  unreadable.error = "permission denied";
  s.rings.push_back(unreadable);
  s.warnings = {"a warning"};
  // A dead sidecar's last status under the same node as a live one's: the live one's series win.
  SidecarSnapshot dead;
  dead.node = "edge";
  dead.pid = 7;
  dead.alive = false;
  MirrorPeerSnapshot stale_peer{"hub", "10.0.0.2:7000", true, false, 0, {}, {}};
  stale_peer.exports.push_back({"orders.created", 0xabc, "", 10, 5, 0, 5, 0, ""});
  dead.peers.push_back(stale_peer);
  SidecarSnapshot live = dead;
  live.pid = 8;
  live.alive = true;
  live.events_sent = 33;
  live.peers[0].exports[0] = {"orders.created", 0xabc, "", 40, 38, 0, 2, 1, ""};
  live.peers[0].imports.push_back({"orders.created", 0xdef, "hub/shop", 0, 0, 12, -1, 0, "SchemaMismatch: no"});
  s.sidecars = {dead, live};
  return s;
}

}  // namespace

TEST(PrometheusText, ASnapshotBecomesRingReaderMirrorAndBusSeries) {
  const std::string page = render({{"plant", sample_bus(), {}}, {"gone", std::nullopt, "bus gone does not exist"}});
  const std::string ring = R"({bus="plant",topic="orders.created",publisher="shop"})";
  EXPECT_TRUE(contains(page, "# TYPE flowbus_ring_events_total counter\n"));
  EXPECT_TRUE(contains(page, "flowbus_ring_events_total" + ring + " 40\n"));
  EXPECT_TRUE(contains(page, "flowbus_ring_bytes_total" + ring + " 4096\n"));
  EXPECT_TRUE(contains(page, "flowbus_ring_fill_ratio" + ring + " 0.25\n"));
  EXPECT_TRUE(contains(page, "flowbus_ring_retained_events" + ring + " 30\n"));
  EXPECT_TRUE(contains(page, "flowbus_ring_retained_bytes" + ring + " 3072\n"));
  EXPECT_TRUE(contains(page, "flowbus_ring_writer_alive" + ring + " 0\n"));
  EXPECT_TRUE(contains(page, "flowbus_ring_last_publish_timestamp_seconds" + ring + " 1765000000.5\n"));
  // The ring it may not read says so, and nothing else about it.
  EXPECT_TRUE(contains(page, R"(flowbus_ring_readable{bus="plant",topic="orders.created",publisher="secret"} 0)"));
  EXPECT_FALSE(contains(page, R"(flowbus_ring_events_total{bus="plant",topic="orders.created",publisher="secret"})"));
  const std::string reader = R"({bus="plant",topic="orders.created",publisher="shop",slot="3",pid="100"})";
  EXPECT_TRUE(contains(page, "flowbus_reader_lag_events" + reader + " 20\n"));
  EXPECT_TRUE(contains(page, "flowbus_reader_lag_bytes" + reader + " 2048\n"));
  EXPECT_TRUE(contains(page, "flowbus_reader_evictions_total" + reader + " 1\n"));
  EXPECT_TRUE(contains(page, "flowbus_reader_lost_events_total" + reader + " 5\n"));
  EXPECT_TRUE(contains(page, "flowbus_reader_rejected_events_total" + reader + " 7\n"));
  EXPECT_TRUE(contains(page, "flowbus_reader_idle_seconds" + reader + " 1.5\n"));
  EXPECT_TRUE(contains(page, "flowbus_reader_asleep" + reader + " 0\n"));
  // A lapped reader's lag in events is not known: absent, not made up.
  const std::string lapped = R"({bus="plant",topic="orders.created",publisher="shop",slot="4",pid="100"})";
  EXPECT_FALSE(contains(page, "flowbus_reader_lag_events" + lapped));
  EXPECT_TRUE(contains(page, "flowbus_reader_lapped" + lapped + " 1\n"));
  EXPECT_TRUE(contains(page, "flowbus_reader_asleep" + lapped + " 1\n"));
  EXPECT_TRUE(contains(page, R"(flowbus_bus_participants{bus="plant",state="alive"} 2)"));
  EXPECT_TRUE(contains(page, R"(flowbus_bus_participants{bus="plant",state="dead"} 1)"));
  EXPECT_TRUE(contains(page, R"(flowbus_bus_up{bus="plant"} 1)"));
  EXPECT_TRUE(contains(page, R"(flowbus_bus_warnings{bus="plant"} 1)"));
  EXPECT_TRUE(contains(
      page,
      R"(flowbus_topic_info{bus="plant",topic="orders.created",type="examples.Order",policy="block",schema_id="sha256:ab"} 1)"));
  // A bus that cannot be read is up 0 and has no other series.
  EXPECT_TRUE(contains(page, R"(flowbus_bus_up{bus="gone"} 0)"));
  EXPECT_EQ(count_of(page, R"(bus="gone")"), 1u);
  // Mirrors: the live sidecar's streams, not the dead one's stale status.
  const std::string stream =
      R"({bus="plant",kind="sidecar",node="edge",peer="hub",direction="export",topic="orders.created",publisher_id="0000000000000abc"})";
  EXPECT_TRUE(contains(page, "flowbus_mirror_stream_sent_events_total" + stream + " 40\n"));
  EXPECT_TRUE(contains(page, "flowbus_mirror_stream_acked_events_total" + stream + " 38\n"));
  EXPECT_TRUE(contains(page, "flowbus_mirror_stream_unacked_events" + stream + " 2\n"));
  EXPECT_TRUE(contains(page, "flowbus_mirror_stream_gap_events_total" + stream + " 1\n"));
  EXPECT_TRUE(contains(page, "flowbus_mirror_stream_connected" + stream + " 1\n"));
  EXPECT_EQ(count_of(page, "flowbus_mirror_stream_sent_events_total{"), 1u);
  EXPECT_TRUE(contains(page, R"(flowbus_mirror_alive{bus="plant",kind="sidecar",node="edge",pid="7"} 0)"));
  EXPECT_TRUE(contains(page, R"(flowbus_mirror_alive{bus="plant",kind="sidecar",node="edge",pid="8"} 1)"));
  EXPECT_TRUE(contains(page, R"(flowbus_mirror_sent_events_total{bus="plant",kind="sidecar",node="edge",pid="8"} 33)"));
  const std::string import =
      R"({bus="plant",kind="sidecar",node="edge",peer="hub",direction="import",topic="orders.created",publisher_id="0000000000000def",origin="hub/shop"})";
  EXPECT_TRUE(contains(page, "flowbus_mirror_stream_received_events_total" + import + " 12\n"));
  EXPECT_TRUE(contains(page, "flowbus_mirror_stream_refused" + import + " 1\n"));
  EXPECT_TRUE(contains(page, "flowbus_mirror_stream_connected" + import + " 0\n"));
  // Every family has HELP and TYPE once, before its samples.
  for (const char* family :
       {"flowbus_ring_events_total", "flowbus_reader_lag_bytes", "flowbus_bus_up", "flowbus_mirror_stream_connected"}) {
    EXPECT_EQ(count_of(page, std::string("# HELP ") + family + " "), 1u) << family;
    EXPECT_EQ(count_of(page, std::string("# TYPE ") + family + " "), 1u) << family;
    EXPECT_LT(page.find(std::string("# TYPE ") + family + " "), page.find(std::string(family) + "{")) << family;
  }
}

TEST(PrometheusText, ADeadSidecarsPeersAreNotConnected) {
  BusSnapshot s;
  s.name = "b";
  SidecarSnapshot dead;
  dead.node = "n";
  dead.alive = false;
  dead.peers.push_back({"p", "a:1", true, true, 0, {{"t", 1, "", 3, 3, 0, 0, 0, ""}}, {}});
  s.sidecars.push_back(dead);
  const std::string page = render({{"b", s, {}}});
  EXPECT_TRUE(
      contains(page, R"(flowbus_mirror_peer_connected{bus="b",kind="sidecar",node="n",peer="p",address="a:1"} 0)"));
  EXPECT_TRUE(contains(page, "flowbus_mirror_stream_connected{")) << page;
  EXPECT_FALSE(contains(page,
                        "flowbus_mirror_stream_connected{bus=\"b\",kind=\"sidecar\",node=\"n\",peer=\"p\",direction="
                        "\"export\",topic=\"t\",publisher_id=\"0000000000000001\"} 1"));
}

TEST(PrometheusText, EventsAReaderOfAnUntrustedTopicRefusedAreCountedPerReader) {
  flowbus::testing::ScopedBusName name("prom-untrusted");
  Bus bus = Bus::open(name.name);
  TopicSpec spec = flowbus::testing::sensor_topic("t");
  spec.untrusted = true;
  bus.create_topic(spec);
  Subscriber sub = bus.subscribe("t", {StartAt::Earliest});
  Publisher pub = bus.publisher("t", {"rogue"});
  const std::vector<uint8_t> junk(64, 0xff);  // not a FlatBuffer: publishing checks nothing
  ASSERT_EQ(pub.try_publish(junk), PublishStatus::Ok);
  ASSERT_EQ(pub.try_publish(junk), PublishStatus::Ok);
  sub.refresh();
  const PollResult r = sub.poll([](const Event&) { ADD_FAILURE() << "a refused event was handed over"; });
  ASSERT_EQ(r.rejected, 2u);
  const std::string page = render(read_buses({name.name}));
  const std::string series =
      "flowbus_reader_rejected_events_total{bus=\"" + name.name + "\",topic=\"t\",publisher=\"rogue\"";
  const size_t at = page.find(series);
  ASSERT_NE(at, std::string::npos) << page;
  EXPECT_EQ(page.substr(page.find("} ", at) + 2, 2), "2\n") << page.substr(at, 200);
}

TEST(PrometheusText, ReadBusesSaysWhyABusCannotBeReadAndGoesOn) {
  const auto readings = read_buses({"no-such-bus-prometheus-test"});
  ASSERT_EQ(readings.size(), 1u);
  EXPECT_FALSE(readings[0].snapshot.has_value());
  EXPECT_FALSE(readings[0].error.empty());
  EXPECT_TRUE(contains(render(readings), R"(flowbus_bus_up{bus="no-such-bus-prometheus-test"} 0)"));
}
