// What an importing sidecar creates from a peer's StreamOpen: a peer names
// its stream but does not size this host's memory or keep rings forever
// (the review found a peer could ask for 1 GiB rings and 2^62 s retention).
#include <gtest/gtest.h>

#include "flowbus/sidecar.hpp"
#include "sidecar/import_spec.hpp"

using namespace flowbus;
using namespace flowbus::sidecar;

namespace {

wire::StreamOpenView open_asking(uint64_t ring, uint64_t retention_s, uint64_t timeout_ns) {
  wire::StreamOpenView open;
  open.topic = "t";
  open.type = "examples.SensorReading";
  open.ring_size = ring;
  open.retention_s = retention_s;
  open.slow_consumer_timeout_ns = timeout_ns;
  return open;
}

}  // namespace

TEST(ImportSpecTest, AnnouncedSizesAreTakenWithinThisSidesLimits) {
  const SidecarOptions options;
  const TopicSpec modest = imported_topic_spec(options, open_asking(64u << 20, 120, 7'000'000'000));
  EXPECT_EQ(modest.ring_size, 64u << 20);
  EXPECT_EQ(modest.retention, std::chrono::seconds(120));
  EXPECT_EQ(modest.slow_consumer_timeout, std::chrono::seconds(7));
  const TopicSpec never = imported_topic_spec(options, open_asking(0, 0, UINT64_MAX));
  EXPECT_EQ(never.slow_consumer_timeout, kNever);

  const TopicSpec greedy = imported_topic_spec(options, open_asking(uint64_t(1) << 40, uint64_t(1) << 62, UINT64_MAX - 1));
  EXPECT_EQ(greedy.ring_size, uint64_t(256) << 20);
  EXPECT_EQ(greedy.retention, std::chrono::hours(24 * 30));  // not negative, not 0: it would be removed at once
  EXPECT_EQ(greedy.slow_consumer_timeout, std::chrono::hours(1));
  EXPECT_NE(describe_spec(options, open_asking(uint64_t(1) << 40, 1, 1), greedy).find("cut to this side's limit"),
            std::string::npos);
  const TopicSpec wrapped = imported_topic_spec(options, open_asking(0, UINT64_MAX, 0));
  EXPECT_GT(wrapped.retention.count(), 0);
}

TEST(ImportSpecTest, TheImportersOwnChoiceWinsOverTheLimits) {
  SidecarOptions options;
  options.import_ring_size = uint64_t(1) << 30;
  const TopicSpec spec = imported_topic_spec(options, open_asking(4096, 0, 0));
  EXPECT_EQ(spec.ring_size, uint64_t(1) << 30);
}
