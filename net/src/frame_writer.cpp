// FrameWriter: one reused FlatBufferBuilder, one size-prefixed frame per call.
#include "flowbus/wire/codec.hpp"

namespace flowbus::wire {

namespace {

flatbuffers::Offset<flatbuffers::String> string(flatbuffers::FlatBufferBuilder& fbb, std::string_view s) {
  return fbb.CreateString(s.data(), s.size());
}

flatbuffers::Offset<flatbuffers::Vector<uint8_t>> bytes(flatbuffers::FlatBufferBuilder& fbb,
                                                        std::span<const uint8_t> b) {
  static constexpr uint8_t kNone = 0;  // memcpy from a null pointer is undefined, even for 0 bytes
  return fbb.CreateVector(b.empty() ? &kNone : b.data(), b.size());
}

}  // namespace

FrameWriter::FrameWriter(size_t initial_capacity) : fbb_(initial_capacity) {}

std::span<const uint8_t> FrameWriter::finish(Body type, flatbuffers::Offset<void> body) {
  const auto frame = CreateFrame(fbb_, type, body);
  // The size prefix is our length field: u32 little-endian, then the buffer,
  // whose 8-byte fields are aligned relative to the prefix.
  fbb_.FinishSizePrefixed(frame, FrameIdentifier());
  return {fbb_.GetBufferPointer(), fbb_.GetSize()};
}

std::span<const uint8_t> FrameWriter::hello(const HelloView& m) {
  fbb_.Clear();
  const auto node = string(fbb_, m.node);
  const auto nonce = bytes(fbb_, m.nonce);
  const auto software = string(fbb_, m.software);
  return finish(Body::Hello, CreateHello(fbb_, m.protocol_version, node, nonce, software).Union());
}

std::span<const uint8_t> FrameWriter::auth(const AuthView& m) {
  fbb_.Clear();
  const auto mac = bytes(fbb_, m.mac);
  return finish(Body::Auth, CreateAuth(fbb_, mac).Union());
}

std::span<const uint8_t> FrameWriter::refuse(const RefuseView& m) {
  fbb_.Clear();
  const auto reason = string(fbb_, m.reason);
  return finish(Body::Refuse, CreateRefuse(fbb_, m.code, reason, m.local_version, m.remote_version).Union());
}

std::span<const uint8_t> FrameWriter::subscribe(std::span<const std::string> patterns,
                                                 std::span<const Resume> resume) {
  fbb_.Clear();
  // Subscribe is sent once per connection: a temporary vector of offsets is fine.
  std::vector<flatbuffers::Offset<flatbuffers::String>> offsets;
  offsets.reserve(patterns.size());
  for (const std::string& p : patterns) offsets.push_back(string(fbb_, p));
  const auto pattern_vec = fbb_.CreateVector(offsets);
  static const Resume kNone{};
  const auto resume_vec = fbb_.CreateVectorOfStructs(resume.empty() ? &kNone : resume.data(), resume.size());
  return finish(Body::Subscribe, CreateSubscribe(fbb_, pattern_vec, resume_vec).Union());
}

std::span<const uint8_t> FrameWriter::stream_open(const StreamOpenView& m) {
  fbb_.Clear();
  const auto topic = string(fbb_, m.topic);
  const auto type = string(fbb_, m.type);
  const auto schema_id = string(fbb_, m.schema_id);
  const auto schema = bytes(fbb_, m.schema);
  const auto publisher = string(fbb_, m.publisher);
  const auto source = string(fbb_, m.source);
  const auto origin_node = string(fbb_, m.origin_node);
  return finish(Body::StreamOpen, CreateStreamOpen(fbb_, m.stream, topic, type, schema_id, schema, m.policy,
                                                   m.publisher_id, publisher, source, origin_node,
                                                   m.first_sequence, m.ring_size, m.retention_s,
                                                   m.slow_consumer_timeout_ns)
                                      .Union());
}

std::span<const uint8_t> FrameWriter::gap(const GapView& m) {
  fbb_.Clear();
  const auto reason = string(fbb_, m.reason);
  return finish(Body::Gap, CreateGap(fbb_, m.stream, m.from_sequence, m.to_sequence, reason).Union());
}

std::span<const uint8_t> FrameWriter::ack(const AckView& m) {
  fbb_.Clear();
  return finish(Body::Ack, CreateAck(fbb_, m.stream, m.next_sequence).Union());
}

std::span<const uint8_t> FrameWriter::heartbeat(const HeartbeatView& m) {
  fbb_.Clear();
  return finish(Body::Heartbeat, CreateHeartbeat(fbb_, m.time_ns).Union());
}

std::span<const uint8_t> FrameWriter::bye(const ByeView& m) {
  fbb_.Clear();
  const auto reason = string(fbb_, m.reason);
  return finish(Body::Bye, CreateBye(fbb_, reason).Union());
}

std::span<const uint8_t> FrameWriter::stream_refuse(const StreamRefuseView& m) {
  fbb_.Clear();
  const auto reason = string(fbb_, m.reason);
  return finish(Body::StreamRefuse, CreateStreamRefuse(fbb_, m.stream, m.code, reason).Union());
}

}  // namespace flowbus::wire
