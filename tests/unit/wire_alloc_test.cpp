// The sidecar's steady path allocates nothing: building event batches and
// decoding them, counted with a replaced operator new. Its own executable
// (and a name with AllocTest, which .ci/run skips under ASan) because the
// sanitizer runtime owns operator new there.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>
#include <string>
#include <vector>

#include "flowbus/wire/codec.hpp"

#include "counting_new.hpp"

using flowbus::testing::g_allocations;

using namespace flowbus::wire;

TEST(WireAllocTest, BatchWritingAndDecodingAllocateNothing) {
  constexpr size_t kMaxBytes = 64 << 10, kMaxEvents = 256;
  EventBatchWriter batch(kMaxBytes, kMaxEvents);
  FrameWriter writer;
  FrameDecoder decoder;
  const std::vector<uint8_t> payload(200, 0xab);
  const std::string subject = "plant.press-1";
  const Nonce nonce = make_nonce();
  StreamOpenView open;
  open.stream = 1;
  open.topic = open.type = open.schema_id = open.publisher = open.source = "x";
  open.origin_node = "a";
  const uint8_t schema[] = {1};
  open.schema = schema;
  open.first_sequence = 1;
  decoder.feed(writer.hello({kProtocolVersion, "a", nonce, ""}));
  decoder.feed(writer.auth({}));
  decoder.feed(writer.stream_open(open));
  while (decoder.next()) {
  }

  uint64_t sequence = 1, decoded = 0, payload_bytes = 0;
  // One batch: fill it until full (payload sizes vary from 0 to 200 bytes),
  // write the frame, decode it in two chunks.
  auto round = [&] {
    batch.start(1);
    while (batch.add(sequence, sequence * 10, subject, std::span(payload).first(sequence % 201))) ++sequence;
    const auto frame = batch.finish();
    decoder.feed(frame.first(frame.size() / 3));
    while (decoder.next()) {
    }
    decoder.feed(frame.subspan(frame.size() / 3));
    while (auto f = decoder.next()) {
      const auto& b = std::get<EventBatchView>(*f);
      decoded += b.entries.size();
      for (const EventEntry& e : b.entries) payload_bytes += b.payload(e).size();
    }
    // A heartbeat and an ack between batches, as on a live connection.
    decoder.feed(writer.heartbeat({sequence}));
    decoder.feed(writer.ack({1, sequence}));
    while (decoder.next()) {
    }
  };
  for (int i = 0; i < 3; ++i) round();  // warm-up: every buffer at its steady size
  const uint64_t before = g_allocations.load();
  const uint64_t decoded_before = decoded;
  for (int i = 0; i < 2000; ++i) round();
  const uint64_t after = g_allocations.load();
  EXPECT_EQ(after - before, 0u);
  EXPECT_EQ(decoded, sequence - 1);
  EXPECT_GT(decoded - decoded_before, 2000u * 100);  // batches were full-sized
  EXPECT_GT(payload_bytes, 0u);
  EXPECT_FALSE(decoder.failed());
}
