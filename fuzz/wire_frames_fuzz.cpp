// Fuzz target: arbitrary bytes as what a peer sends to the sidecar. The first
// input byte picks how the rest is cut into chunks (all at once, byte by byte,
// or varying sizes), as a socket would deliver it; every frame is decoded and
// every field of its view read (and written back out with the writers).
// Each input must decode or throw DecodeError, and a failed decoder must stay
// failed with the same reason.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "flowbus/wire/codec.hpp"

using namespace flowbus::wire;

namespace {

volatile uint64_t g_sink;

void touch(std::span<const uint8_t> bytes) {
  uint64_t h = bytes.size();
  for (uint8_t b : bytes) h = h * 31 + b;
  g_sink = g_sink + h;
}
void touch(std::string_view s) { touch({reinterpret_cast<const uint8_t*>(s.data()), s.size()}); }
void touch(uint64_t v) { g_sink = g_sink + v; }

struct Visitor {
  FrameWriter& writer;
  EventBatchWriter& batch;

  void operator()(const HelloView& m) {
    touch(m.protocol_version), touch(m.node), touch(m.nonce), touch(m.software);
    if (auto r = check_hello(m, kProtocolVersion, "fuzz-node")) touch(r->reason);
    // The decoder guarantees what compute_auth_mac requires (it throws otherwise).
    touch(compute_auth_mac("token", m.nonce, m.node));
    touch(writer.hello(m));
  }
  void operator()(const AuthView& m) {
    touch(m.mac);
    const Nonce nonce{};
    if (auto r = check_auth("token", nonce, "peer", m)) touch(r->reason);
    touch(writer.auth(m));
  }
  void operator()(const RefuseView& m) {
    touch(to_string(m.code)), touch(m.reason), touch(m.local_version), touch(m.remote_version);
    touch(writer.refuse(m));
  }
  void operator()(const SubscribeView& m) {
    std::vector<std::string> patterns;
    for (size_t i = 0; i < m.patterns.size(); ++i) patterns.emplace_back(m.patterns[i]);
    for (const Resume& r : m.resume) touch(r.publisher_id()), touch(r.next_sequence());
    touch(writer.subscribe(patterns, m.resume));
  }
  void operator()(const StreamOpenView& m) {
    touch(m.stream), touch(m.topic), touch(m.type), touch(m.schema_id), touch(m.schema);
    touch(static_cast<uint64_t>(m.policy)), touch(m.publisher_id), touch(m.publisher), touch(m.source);
    touch(m.origin_node), touch(m.first_sequence);
    touch(writer.stream_open(m));
  }
  void operator()(const EventBatchView& m) {
    if (m.entries.empty()) std::abort();  // the decoder refuses empty batches
    batch.start(m.stream);
    for (const EventEntry& e : m.entries) {
      touch(e.sequence()), touch(e.time_ns()), touch(e.flags()), touch(m.payload(e)), touch(m.subject(e));
      if (!batch.add(e.sequence(), e.time_ns(), m.subject(e), m.payload(e), e.flags())) {
        touch(batch.finish());
        batch.start(m.stream);
        (void)batch.add(e.sequence(), e.time_ns(), m.subject(e), m.payload(e), e.flags());
      }
    }
    if (!batch.empty()) touch(batch.finish());
  }
  void operator()(const GapView& m) {
    if (m.from_sequence >= m.to_sequence) std::abort();
    touch(m.stream), touch(m.from_sequence), touch(m.to_sequence), touch(m.reason);
    touch(writer.gap(m));
  }
  void operator()(const AckView& m) { touch(m.stream), touch(m.next_sequence), touch(writer.ack(m)); }
  void operator()(const HeartbeatView& m) { touch(m.time_ns), touch(writer.heartbeat(m)); }
  void operator()(const StreamRefuseView& m) {
    touch(m.stream), touch(to_string(m.code)), touch(m.reason);
    touch(writer.stream_refuse(m));
  }
  void operator()(const ByeView& m) { touch(m.reason), touch(writer.bye(m)); }
};

// Chunk i's size for mode `mode`: 0 = everything at once, 1 = byte by byte,
// otherwise sizes cycling through 1..mode.
size_t chunk_size(uint8_t mode, size_t i, size_t left) {
  if (mode == 0) return left;
  if (mode == 1) return 1;
  return std::min(left, 1 + (i * 7919) % mode);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t mode = data[0];
  ++data, --size;
  static FrameWriter writer;
  static EventBatchWriter batch(1 << 20, 4096);
  Visitor visit{writer, batch};
  DecoderLimits limits;
  limits.max_streams = 64;  // reachable by the fuzzer
  FrameDecoder decoder(limits);
  size_t at = 0;
  try {
    for (size_t i = 0; at < size; ++i) {
      const size_t n = chunk_size(mode, i, size - at);
      decoder.feed({data + at, n});
      at += n;
      while (auto frame = decoder.next()) std::visit(visit, *frame);
    }
  } catch (const DecodeError& e) {
    const std::string reason = e.what();
    if (!decoder.failed() || decoder.error() != reason || reason.empty()) std::abort();
    decoder.feed({data, size});
    try {
      (void)decoder.next();
      std::abort();  // a failed decoder must keep failing
    } catch (const DecodeError& again) {
      if (reason != again.what()) std::abort();
    }
  }
  return 0;
}
