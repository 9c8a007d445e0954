// The mirror series of `flowbus inspect BUS --prometheus` with real
// `flowbus sidecar` processes on loopback: per stream sent, acknowledged,
// received and connected on both sides, the receiving sidecar killed -9,
// and promtool passing both pages.
#include <gtest/gtest.h>

#include <regex>

#include "sidecar_pair.hpp"

using namespace flowbus;
using namespace flowbus::testing;

namespace {

std::string prometheus_page(const std::string& bus) {
  ChildProcess c({kFlowbus, "inspect", bus, "--prometheus"}, {.pipe_stdin = false, .capture_stderr = true});
  const auto o = c.communicate(30s);
  EXPECT_EQ(o.exit_code, 0) << o.err;
  return o.out;
}

/// The value of the one sample of `metric` whose labels include each of `has` (label="value"), if any.
std::optional<double> value_of(const std::string& page, const std::string& metric,
                               const std::vector<std::string>& has) {
  std::istringstream in(page);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(metric + "{", 0) != 0) continue;
    bool all = true;
    for (const auto& h : has) all = all && line.find(h) != std::string::npos;
    if (all) return std::stod(line.substr(line.rfind(' ') + 1));
  }
  return std::nullopt;
}

/// Polls the page of `bus` until `ok` holds (at most 5 s); the last page.
std::string settled(const std::string& bus, const std::function<bool(const std::string&)>& ok) {
  std::string page;
  for (int i = 0; i < 100; ++i) {
    page = prometheus_page(bus);
    if (ok(page)) break;
    std::this_thread::sleep_for(50ms);
  }
  return page;
}

void expect_promtool_passes(const std::string& page) {
  const std::string file = ::testing::TempDir() + "/metrics-sidecar-" + std::to_string(::getpid()) + ".prom";
  std::ofstream(file) << page;
  ChildProcess lint({"/bin/sh", "-c", "promtool check metrics < '" + file + "'"},
                    {.pipe_stdin = false, .capture_stderr = true});
  const auto o = lint.communicate(30s);
  std::remove(file.c_str());
  EXPECT_EQ(o.exit_code, 0) << o.out << o.err << "\npage:\n" << page;
  EXPECT_EQ(o.out + o.err, "") << "\npage:\n" << page;
}

}  // namespace

TEST(MetricsSidecarTest, StreamsShowSentAckedReceivedAndConnectedAndADeadSidecar) {
  Pair p("metrics");
  p.start_a();
  p.start_b();
  Subscriber on_b = subscribe_earliest(p.bus_b, "sensor.>");
  std::atomic<uint64_t> published{0};
  prime(p, on_b, published);
  publish_readings(p.bus_a, 1, 99, published).join();
  ASSERT_EQ(collect(on_b, 99, 30s, 1).in_order, 99u) << p.logs();

  const std::vector<std::string> a_export{"bus=\"" + p.a.name + "\"", "kind=\"sidecar\"",     "node=\"node-a\"",
                                          "peer=\"node-b\"",          "direction=\"export\"", "topic=\"sensor.temp\""};
  const std::string a = settled(p.a.name, [&](const std::string& page) {
    return value_of(page, "flowbus_mirror_stream_acked_events_total", a_export) == 100.0;
  });
  EXPECT_EQ(value_of(a, "flowbus_mirror_stream_sent_events_total", a_export), 100.0) << a;
  EXPECT_EQ(value_of(a, "flowbus_mirror_stream_acked_events_total", a_export), 100.0) << a;
  EXPECT_EQ(value_of(a, "flowbus_mirror_stream_unacked_events", a_export), 0.0) << a;
  EXPECT_EQ(value_of(a, "flowbus_mirror_stream_connected", a_export), 1.0) << a;
  EXPECT_EQ(value_of(a, "flowbus_mirror_stream_gap_events_total", a_export), 0.0) << a;
  EXPECT_EQ(value_of(a, "flowbus_mirror_alive", {"node=\"node-a\""}), 1.0) << a;
  EXPECT_EQ(value_of(a, "flowbus_mirror_peer_connected", {"node=\"node-a\"", "peer=\"node-b\""}), 1.0) << a;
  expect_promtool_passes(a);

  const std::vector<std::string> b_import{"bus=\"" + p.b.name + "\"", "node=\"node-b\"", "peer=\"node-a\"",
                                          "direction=\"import\"", "topic=\"sensor.temp\""};
  const std::string b = settled(p.b.name, [&](const std::string& page) {
    return value_of(page, "flowbus_mirror_stream_received_events_total", b_import) == 100.0;
  });
  EXPECT_EQ(value_of(b, "flowbus_mirror_stream_received_events_total", b_import), 100.0) << b;
  EXPECT_EQ(value_of(b, "flowbus_mirror_stream_connected", b_import), 1.0) << b;
  // The mirror ring on B counts the same 100 events as any ring.
  EXPECT_TRUE(std::regex_search(
      b, std::regex("\nflowbus_ring_events_total\\{bus=\"" + p.b.name + "\",topic=\"sensor.temp\",[^}]*\\} 100\n")))
      << b;
  expect_promtool_passes(b);

  // B's sidecar is killed -9: A shows its peer and stream disconnected, B its sidecar dead and not connected.
  p.side_b->kill9();
  const std::string a2 = settled(p.a.name, [&](const std::string& page) {
    return value_of(page, "flowbus_mirror_peer_connected", {"node=\"node-a\"", "peer=\"node-b\""}) == 0.0;
  });
  EXPECT_EQ(value_of(a2, "flowbus_mirror_peer_connected", {"node=\"node-a\"", "peer=\"node-b\""}), 0.0) << a2;
  EXPECT_EQ(value_of(a2, "flowbus_mirror_stream_connected", a_export), 0.0) << a2;
  EXPECT_EQ(value_of(a2, "flowbus_mirror_stream_acked_events_total", a_export), 100.0) << a2;
  const std::string b2 = prometheus_page(p.b.name);
  EXPECT_EQ(value_of(b2, "flowbus_mirror_alive", {"node=\"node-b\""}), 0.0) << b2;
  EXPECT_EQ(value_of(b2, "flowbus_mirror_stream_connected", b_import), 0.0) << b2;
  expect_promtool_passes(b2);
}
