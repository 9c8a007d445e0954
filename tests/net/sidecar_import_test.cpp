// What an importing sidecar does with the topics it is offered: the topics
// it creates, and the existing topics it may (or may not) write into. Real
// `flowbus sidecar` processes on loopback.
#include "flowbus/inspect.hpp"
#include "flowbus/schema.hpp"
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

namespace {

/// A refused stream of topic `topic` in the status of `bus`'s sidecar, once it shows one.
std::optional<MirrorStreamSnapshot> wait_for_stream(const std::string& bus, bool exports, const std::string& topic,
                                                    std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    for (const SidecarSnapshot& side : inspect_bus(bus).sidecars)
      for (const MirrorPeerSnapshot& peer : side.peers)
        for (const MirrorStreamSnapshot& s : exports ? peer.exports : peer.imports)
          if (s.topic == topic && !s.refused.empty()) return s;
    std::this_thread::sleep_for(50ms);
  }
  return std::nullopt;
}

}  // namespace

// Before the fix a topic that existed here with the Order schema took the
// peer's SensorReading events without a word: readers got garbage fields.
TEST(SidecarImportTest, AnExistingTopicOfAnotherTypeIsRefusedOnBothSidesAndTheOtherTopicsFlow) {
  Pair p("import-schema");
  p.bus_a.create_topic(sensor_topic("sensor.temp.line1"));
  TopicSpec order;
  order.name = "sensor.temp.line1";
  order.type = "examples.Order";
  order.schema = compile_schema_file(example_schema("order.fbs"));
  p.bus_b.create_topic(order);
  p.start_a();
  p.start_b();
  Subscriber on_b = subscribe_earliest(p.bus_b, "sensor.>");
  std::atomic<uint64_t> published{0};
  prime(p, on_b, published);  // sensor.temp flows

  // 3,000 events into a 64 KiB ring with a 200 ms timeout: the refused
  // stream must not hold the origin's publisher back.
  {
    Publisher pub = p.bus_a.publisher("sensor.temp.line1", {"line1"});
    flatbuffers::FlatBufferBuilder fbb;
    for (uint64_t i = 0; i < 3000; ++i) {
      build_reading(fbb, i);
      ASSERT_EQ(pub.publish(fbb, 200ms), PublishStatus::Ok) << "event " << i << "\n" << p.logs();
    }
  }
  publish_readings(p.bus_a, 1, 99, published).join();
  const Collected got = collect(on_b, 99, 30s, 1);
  EXPECT_EQ(got.in_order, 99u) << got.first_problem << "\n" << p.logs();
  EXPECT_EQ(got.problems, 0u) << got.first_problem << "\n" << p.logs();
  Event e;
  EXPECT_EQ(on_b.read(e).status, ReadStatus::Empty) << "nothing of sensor.temp.line1 may arrive";

  EXPECT_TRUE(p.side_a->wait_for_log("it refused topic sensor.temp.line1", 5s)) << p.logs();
  EXPECT_TRUE(p.side_b->wait_for_log("refused topic sensor.temp.line1", 5s)) << p.logs();
  for (const std::string& log : {p.side_a->log(), p.side_b->log()}) {
    EXPECT_NE(log.find("topic sensor.temp.line1: local type examples.Order"), std::string::npos) << p.logs();
    EXPECT_NE(log.find("remote type examples.SensorReading"), std::string::npos) << p.logs();
    EXPECT_NE(log.find("SchemaMismatch"), std::string::npos) << p.logs();
  }
  const auto imported = wait_for_stream(p.b.name, false, "sensor.temp.line1", 5s);
  ASSERT_TRUE(imported) << "flowbus inspect shows the refusal on the importing side";
  EXPECT_NE(imported->refused.find("SchemaMismatch: topic sensor.temp.line1: local type examples.Order"), std::string::npos)
      << imported->refused;
  const auto exported = wait_for_stream(p.a.name, true, "sensor.temp.line1", 5s);
  ASSERT_TRUE(exported) << "and on the exporting side";
  bool warned = false;
  for (const std::string& w : inspect_bus(p.b.name).warnings) warned |= w.find("refused topic sensor.temp.line1") != std::string::npos;
  EXPECT_TRUE(warned);
}

namespace {

/// The next StreamRefuse the sidecar sends to `peer` (skipping other frames).
std::optional<wire::StreamRefuseView> next_stream_refusal(HandPeer& peer) {
  for (;;) {
    std::optional<wire::FrameView> f = peer.next_frame(5s);
    if (!f) return std::nullopt;
    if (const auto* r = std::get_if<wire::StreamRefuseView>(&*f)) return *r;
  }
}

}  // namespace

// Before the fix a peer that announced another origin's publisher id was
// given that origin's mirror ring: its sequence 1,000,000 went in, and the
// real origin's next events were then dropped as duplicates (and acknowledged).
TEST(SidecarImportTest, APeerAnnouncingAnotherOriginsPublisherIdIsRefusedAndTheOriginKeepsFlowing) {
  Pair p("import-hijack");
  const uint16_t port_b = free_port();
  p.start_a();
  p.start_b({"--listen", "127.0.0.1:" + std::to_string(port_b)});
  Subscriber on_b = subscribe_earliest(p.bus_b, "sensor.>");
  std::atomic<uint64_t> published{0};
  prime(p, on_b, published);
  uint64_t origin_id = 0;
  for (const RingSnapshot& r : inspect_bus(p.a.name).rings)
    if (r.topic == "sensor.temp") origin_id = r.publisher_id;
  ASSERT_NE(origin_id, 0u);

  HandPeer intruder(port_b);
  ASSERT_EQ(intruder.handshake("node-x"), "node-b");
  intruder.send(intruder.writer().subscribe({}, {}));
  const std::vector<uint8_t> schema = sensor_topic("x").schema;
  intruder.send(intruder.writer().stream_open({7, "sensor.temp", "examples.SensorReading", "fnv1a64:0", schema,
                                               wire::TopicPolicy::Block, origin_id, "line1", "flowbus://x/plant/line1",
                                               "node-x", 1'000'000}));
  wire::EventBatchWriter batch(4096, 8);
  batch.start(7);
  flatbuffers::FlatBufferBuilder fbb;
  build_reading(fbb, 1'000'000);
  ASSERT_TRUE(batch.add(1'000'000, 1, {}, {fbb.GetBufferPointer(), fbb.GetSize()}));
  intruder.send(batch.finish());
  const std::optional<wire::StreamRefuseView> refusal = next_stream_refusal(intruder);
  ASSERT_TRUE(refusal) << p.logs();
  EXPECT_EQ(refusal->stream, 7u);
  EXPECT_EQ(refusal->code, wire::RefuseCode::OriginConflict);
  EXPECT_NE(std::string(refusal->reason).find("is mirrored here for origin node-a"), std::string::npos)
      << refusal->reason;

  // The real origin goes on; nothing of the intruder's arrives.
  publish_readings(p.bus_a, 1, 99, published).join();
  const Collected got = collect(on_b, 99, 30s, 1);
  EXPECT_EQ(got.in_order, 99u) << got.first_problem << "\n" << p.logs();
  EXPECT_EQ(got.problems, 0u) << got.first_problem << "\n" << p.logs();
  std::this_thread::sleep_for(100ms);
  Event e;
  EXPECT_EQ(on_b.read(e).status, ReadStatus::Empty);
}

// Before the fix a peer's words went into the log as they came: a newline in a
// goodbye wrote a line of the peer's choosing, an escape drove the terminal.
TEST(SidecarImportTest, WhatAPeerSaysCannotForgeALogLine) {
  const uint16_t port = free_port();
  ScopedBusName bus("import-log");
  const std::string log = ::testing::TempDir() + "/import-log-forging.log";
  std::remove(log.c_str());
  SidecarProcess listener(log, {"--bus", bus.name, "--node", "node-c", "--listen", "127.0.0.1:" + std::to_string(port),
                                "--import", "sensor.>"});
  HandPeer peer(port);
  ASSERT_EQ(peer.handshake("node-x"), "node-c");
  peer.send(peer.writer().bye({"going\n2026-01-01T00:00:00Z flowbus sidecar: FORGED\x1b[2J"}));
  ASSERT_TRUE(listener.wait_for_log("it said goodbye", 5s)) << listener.log();
  const std::string text = listener.log();
  EXPECT_NE(text.find("it said goodbye: going\\x0a2026-01-01T00:00:00Z flowbus sidecar: FORGED\\x1b[2J"),
            std::string::npos)
      << text;
  EXPECT_EQ(text.find("\nFORGED"), std::string::npos);
  EXPECT_EQ(text.find('\x1b'), std::string::npos);
}
