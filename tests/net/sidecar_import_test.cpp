// What an importing sidecar does with the topics it is offered: the topics
// it creates, and the existing topics it may (or may not) write into. Real
// `flowbus sidecar` processes on loopback.
#include "sidecar_pair.hpp"

using namespace flowbus;
using namespace flowbus::testing;
using namespace std::chrono_literals;

namespace {

/// Publishes `count` sensor readings on `topic` of `bus`.
void publish_on(Bus& bus, const std::string& topic, uint64_t count) {
  Publisher pub = bus.publisher(topic, {"line1"});
  flatbuffers::FlatBufferBuilder fbb;
  for (uint64_t i = 0; i < count; ++i) {
    build_reading(fbb, i);
    ASSERT_EQ(pub.publish(fbb, 5s), PublishStatus::Ok);
  }
}

std::optional<TopicInfo> wait_for_topic(Bus& bus, const std::string& name, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (auto t = bus.find_topic(name)) return t;
    std::this_thread::sleep_for(10ms);
  }
  return std::nullopt;
}

}  // namespace

// Before the fix every topic created on import got a 4 MiB ring, 1 h
// retention and a 5 s timeout, whatever the origin's.
TEST(SidecarImportTest, ATopicCreatedOnImportGetsTheOriginsRingRetentionAndTimeoutOrTheImportersChoice) {
  Pair p("import-spec");
  TopicSpec big = sensor_topic("sensor.big", Policy::Block, 64u << 20);
  big.retention = 120s;
  big.slow_consumer_timeout = kNever;
  p.bus_a.create_topic(big);
  p.start_a();
  p.start_b();
  publish_on(p.bus_a, "sensor.big", 1);
  const std::optional<TopicInfo> mirrored = wait_for_topic(p.bus_b, "sensor.big", 10s);
  ASSERT_TRUE(mirrored) << p.logs();
  EXPECT_EQ(mirrored->ring_size, 64u << 20) << p.logs();
  EXPECT_EQ(mirrored->retention, 120s);
  EXPECT_EQ(mirrored->slow_consumer_timeout, kNever);
  EXPECT_TRUE(p.side_b->wait_for_log("created topic sensor.big", 5s)) << p.logs();
  EXPECT_NE(p.side_b->log().find("ring 64 MiB (the origin's), retention 120 s (the origin's), slow-consumer timeout never"),
            std::string::npos) << p.logs();

  // An importer that says what it wants gets that.
  ScopedBusName c("sidecar-c");
  const std::string log_c = ::testing::TempDir() + "/import-spec-c.log";
  std::remove(log_c.c_str());
  SidecarProcess side_c(log_c, {"--bus", c.name, "--node", "node-c", "--peer", "127.0.0.1:" + std::to_string(p.port),
                                "--import", "sensor.>", "--import-ring-size", "2MiB", "--import-retention", "30",
                                "--import-timeout", "7"});
  Bus bus_c = Bus::open(c.name);
  const std::optional<TopicInfo> chosen = wait_for_topic(bus_c, "sensor.big", 10s);
  ASSERT_TRUE(chosen) << read_file(log_c);
  EXPECT_EQ(chosen->ring_size, 2u << 20);
  EXPECT_EQ(chosen->retention, 30s);
  EXPECT_EQ(chosen->slow_consumer_timeout, 7s);
  EXPECT_TRUE(side_c.wait_for_log("ring 2 MiB (--import-*)", 5s)) << read_file(log_c);
}
