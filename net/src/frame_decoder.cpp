// FrameDecoder: length prefix, then the FlatBuffers Verifier with explicit
// limits, then the semantic checks the Verifier can not make. Every failure
// names the frame and what is wrong with it, for the sidecar's log.
#include <algorithm>
#include <cstring>

#include "flowbus/wire/codec.hpp"

namespace flowbus::wire {

namespace {

constexpr size_t kMinFrameBytes = 8;  // root offset + file identifier

uint32_t read_le32(const uint8_t* p) noexcept {
  return static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8 | static_cast<uint32_t>(p[2]) << 16 |
         static_cast<uint32_t>(p[3]) << 24;
}

bool starts_with(const uint8_t* p, size_t n, std::string_view prefix) noexcept {
  return n >= prefix.size() && std::memcmp(p, prefix.data(), prefix.size()) == 0;
}

std::span<const uint8_t> byte_span(const flatbuffers::Vector<uint8_t>* v) noexcept {
  if (!v) return {};
  return {v->data(), v->size()};
}

std::string range(uint64_t offset, uint64_t size) {
  // Appends rather than "[" + ...: GCC 12 warns falsely (-Wrestrict) on that.
  std::string r = "[";
  r.append(std::to_string(offset)).append(", ").append(std::to_string(offset + size)).append(")");
  return r;
}

// A peer's string in an error reason: quoted, bytes outside printable ASCII
// as \xNN (a NUL would cut what() short, control bytes would garble the
// log), at most 64 bytes of it.
std::string quoted(std::string_view s) {
  static constexpr size_t kMax = 64;
  static constexpr char kHex[] = "0123456789abcdef";
  std::string q = "\"";
  for (const char c : s.substr(0, kMax)) {
    const auto u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7f && c != '"' && c != '\\') {
      q += c;
    } else {
      q.append("\\x").append(1, kHex[u >> 4]).append(1, kHex[u & 15]);
    }
  }
  q += s.size() > kMax ? "\"..." : "\"";
  return q;
}

}  // namespace

FrameDecoder::FrameDecoder(DecoderLimits limits) : limits_(limits) {}

const std::string& FrameDecoder::error() const noexcept {
  static const std::string kNone;
  return failed_ ? *failed_ : kNone;
}

void FrameDecoder::fail(std::string reason) {
  failed_ = "frame " + std::to_string(frames_ + 1) + ": " + reason;
  throw DecodeError(*failed_);
}

void FrameDecoder::feed(std::span<const uint8_t> bytes) {
  if (failed_ || bytes.empty()) return;
  if (begin_ > 0) {  // drop the frames already handed out; what is left is less than one frame
    buf_.erase(buf_.begin(), buf_.begin() + static_cast<std::ptrdiff_t>(begin_));
    begin_ = 0;
  }
  // Geometric growth (range insert grows to the exact size), so that after
  // warm-up feeding never allocates; capped at what can be needed (less than
  // the largest frame, plus what is fed), so one connection holds at most that.
  const size_t needed = buf_.size() + bytes.size();
  if (needed > buf_.capacity()) {
    const size_t cap = std::max(needed, kLengthPrefixSize + limits_.max_frame_bytes + bytes.size());
    buf_.reserve(std::min(std::max(needed, 2 * buf_.capacity()), cap));
  }
  buf_.insert(buf_.end(), bytes.begin(), bytes.end());
}

// Another protocol on this port is a configuration mistake worth naming.
void FrameDecoder::check_speaker(const uint8_t* p, size_t n) {
  // A TLS record: handshake (0x16) or alert (0x15), version 3.1 to 3.4. Read
  // as a length that is at least 66,326 bytes, which no first frame can be.
  if (n >= 3 && (p[0] == 0x16 || p[0] == 0x15) && p[1] == 0x03 && p[2] >= 0x01 && p[2] <= 0x04) {
    fail("peer speaks TLS; configure --tls-* on both sides");
  }
  for (std::string_view http : {"GET ", "POST", "PUT ", "HEAD", "HTTP", "PRI ", "OPTI", "DELE", "CONN"}) {
    if (starts_with(p, n, http)) fail("peer speaks HTTP, not the flowbus wire protocol");
  }
  if (starts_with(p, n, "SSH-")) fail("peer speaks SSH, not the flowbus wire protocol");
}

std::optional<FrameView> FrameDecoder::next() {
  if (failed_) throw DecodeError(*failed_);
  const size_t available = buf_.size() - begin_;
  const uint8_t* p = buf_.data() + begin_;
  if (frames_ == 0 && begin_ == 0) check_speaker(p, available);
  if (available < kLengthPrefixSize) return std::nullopt;
  const uint32_t n = read_le32(p);
  current_ = "";
  if (phase_ == Phase::Closed) fail("bytes after Refuse or Bye");
  if (n < kMinFrameBytes) fail("length " + std::to_string(n) + " is below the minimum of 8 bytes");
  // Checked on the prefix alone, before any of the frame is buffered.
  const bool handshake = phase_ == Phase::ExpectHello || phase_ == Phase::ExpectAuth;
  const size_t limit = handshake ? std::min(limits_.max_handshake_frame_bytes, limits_.max_frame_bytes) : limits_.max_frame_bytes;
  if (n > limit) {
    fail("length " + std::to_string(n) + " exceeds the limit of " + std::to_string(limit) + " bytes" +
         (handshake ? " before authentication (Hello and Auth are small)" : ""));
  }
  if (available - kLengthPrefixSize < n) return std::nullopt;

  // The frame's 8-byte fields are aligned relative to its length prefix, so
  // the prefix must sit at an 8-aligned address for aligned reads.
  const size_t total = kLengthPrefixSize + n;
  const uint8_t* frame = p;
  if (reinterpret_cast<uintptr_t>(p) % alignof(uint64_t) != 0) {
    aligned_.resize((total + 7) / 8);
    std::memcpy(aligned_.data(), p, total);
    frame = reinterpret_cast<const uint8_t*>(aligned_.data());
  }
  begin_ += total;

  if (!flatbuffers::BufferHasIdentifier(frame + kLengthPrefixSize, FrameIdentifier())) {
    fail(std::string("file identifier is not \"") + FrameIdentifier() + "\": not a flowbus wire frame");
  }
  flatbuffers::Verifier::Options options;
  options.max_depth = limits_.max_depth;
  options.max_tables = limits_.max_tables;
  options.check_alignment = true;
  options.check_nested_flatbuffers = false;
  flatbuffers::Verifier verifier(frame, total, options);
  if (!VerifySizePrefixedFrameBuffer(verifier)) {
    fail("not a valid Frame (the FlatBuffers verifier refused it: bad offsets, sizes, alignment, or above " +
         std::to_string(limits_.max_depth) + " levels or " + std::to_string(limits_.max_tables) + " tables)");
  }
  FrameView view = check(*GetSizePrefixedFrame(frame));
  ++frames_;
  return view;
}

std::string_view FrameDecoder::string_field(const flatbuffers::String* s, const char* what, bool required,
                                            size_t max) {
  if (!s) {
    if (required) fail(std::string(current_) + "." + what + " is missing");
    return {};
  }
  if (required && s->size() == 0) fail(std::string(current_) + "." + what + " is empty");
  if (s->size() > max) {
    fail(std::string(current_) + "." + what + " is " + std::to_string(s->size()) + " bytes, above the limit of " +
         std::to_string(max));
  }
  return s->string_view();
}

FrameView FrameDecoder::check(const Frame& frame) {
  const Body type = frame.body_type();
  current_ = EnumNameBody(type);
  if (type == Body::NONE || type > Body::MAX || frame.body() == nullptr) {
    fail("message type " + std::to_string(static_cast<unsigned>(type)) +
         " is unknown or empty (a newer or broken peer)");
  }
  // Order: Hello, then Auth, then the rest; Refuse and Bye at any time end it.
  const bool ends = type == Body::Refuse || type == Body::Bye;
  switch (phase_) {
    case Phase::ExpectHello:
      if (type != Body::Hello && !ends) fail(std::string(current_) + " before Hello: the first frame must be Hello");
      break;
    case Phase::ExpectAuth:
      if (type == Body::Hello) fail("a second Hello");
      if (type != Body::Auth && !ends) fail(std::string(current_) + " before Auth: Auth must follow Hello");
      break;
    case Phase::Open:
      if (type == Body::Hello || type == Body::Auth) fail(std::string("a second ") + current_);
      break;
    case Phase::Closed:
      break;  // refused in next()
  }
  FrameView view;
  switch (type) {
    case Body::Hello: view = check_hello(frame.body_as_Hello()); phase_ = Phase::ExpectAuth; break;
    case Body::Auth: view = check_auth(frame.body_as_Auth()); phase_ = Phase::Open; break;
    case Body::Refuse: view = check_refuse(frame.body_as_Refuse()); break;
    case Body::Subscribe: view = check_subscribe(frame.body_as_Subscribe()); break;
    case Body::StreamOpen: view = check_stream_open(frame.body_as_StreamOpen()); break;
    case Body::EventBatch: view = check_event_batch(frame.body_as_EventBatch()); break;
    case Body::Gap: view = check_gap(frame.body_as_Gap()); break;
    case Body::Ack: {
      const Ack* m = frame.body_as_Ack();
      view = AckView{m->stream(), m->next_sequence()};
      break;
    }
    case Body::Heartbeat: view = HeartbeatView{frame.body_as_Heartbeat()->time_ns()}; break;
    case Body::StreamRefuse: view = check_stream_refuse(frame.body_as_StreamRefuse()); break;
    case Body::Bye:
      view = ByeView{string_field(frame.body_as_Bye()->reason(), "reason", false, limits_.max_string)};
      break;
    case Body::NONE: break;  // refused above
  }
  if (ends) phase_ = Phase::Closed;
  return view;
}

HelloView FrameDecoder::check_hello(const Hello* m) {
  HelloView v;
  v.protocol_version = m->protocol_version();
  v.node = string_field(m->node(), "node", true, kMaxNodeName);
  if (!is_valid_node_name(v.node)) {
    fail("Hello.node " + quoted(v.node) + " is not 1 to 63 characters of A-Z a-z 0-9 . _ -");
  }
  v.nonce = byte_span(m->nonce());
  if (v.nonce.size() != kNonceSize) {
    fail("Hello.nonce is " + std::to_string(v.nonce.size()) + " bytes, must be " + std::to_string(kNonceSize));
  }
  v.software = string_field(m->software(), "software", false, limits_.max_string);
  return v;
}

AuthView FrameDecoder::check_auth(const Auth* m) {
  AuthView v{byte_span(m->mac())};
  if (!v.mac.empty() && v.mac.size() != kMacSize) {
    fail("Auth.mac is " + std::to_string(v.mac.size()) + " bytes, must be " + std::to_string(kMacSize) +
         " or empty");
  }
  return v;
}

RefuseView FrameDecoder::check_refuse(const Refuse* m) {
  RefuseView v;
  v.code = m->code();
  if (v.code > RefuseCode::MAX) {
    fail("Refuse.code " + std::to_string(static_cast<unsigned>(v.code)) + " is unknown");
  }
  v.reason = string_field(m->reason(), "reason", false, limits_.max_string);
  v.local_version = m->local_version();
  v.remote_version = m->remote_version();
  return v;
}

SubscribeView FrameDecoder::check_subscribe(const Subscribe* m) {
  SubscribeView v{PatternList(m->patterns()), {}};
  if (v.patterns.size() > limits_.max_patterns) {
    fail("Subscribe has " + std::to_string(v.patterns.size()) + " patterns, above the limit of " +
         std::to_string(limits_.max_patterns));
  }
  if (const auto* patterns = m->patterns()) {
    for (const flatbuffers::String* pattern : *patterns) string_field(pattern, "patterns[i]", true, limits_.max_string);
  }
  if (const auto* r = m->resume()) {
    check_struct_alignment(r->Data(), alignof(Resume), "Subscribe.resume");
    v.resume = {reinterpret_cast<const Resume*>(r->Data()), r->size()};
  }
  return v;
}

// FlatBuffers 2.0.8's Verifier checks a vector's length field for 4-byte
// alignment but not its elements: a struct vector with 8-byte fields could
// sit at 4 mod 8 and be read misaligned. The frame itself is 8-aligned in
// memory (next() sees to that), so the address tells. Builders align them.
void FrameDecoder::check_struct_alignment(const uint8_t* data, size_t align, const char* what) {
  if (reinterpret_cast<uintptr_t>(data) % align != 0) {
    fail(std::string(what) + " is not " + std::to_string(align) + "-byte aligned in the frame");
  }
}

// The lowest sequence the stream may carry next; fails for an unannounced stream.
uint64_t& FrameDecoder::stream_next(uint32_t stream, const char* what) {
  const auto it = next_sequence_.find(stream);
  if (it == next_sequence_.end()) {
    fail(std::string(what) + " for stream " + std::to_string(stream) + ", which no StreamOpen announced");
  }
  return it->second;
}

StreamOpenView FrameDecoder::check_stream_open(const StreamOpen* m) {
  StreamOpenView v;
  v.stream = m->stream();
  v.topic = string_field(m->topic(), "topic", true, limits_.max_string);
  v.type = string_field(m->type(), "type", true, limits_.max_string);
  v.schema_id = string_field(m->schema_id(), "schema_id", true, limits_.max_string);
  v.schema = byte_span(m->schema());
  if (v.schema.empty()) fail("StreamOpen.schema is missing");
  v.policy = m->policy();
  if (v.policy > TopicPolicy::MAX) {
    fail("StreamOpen.policy " + std::to_string(static_cast<unsigned>(v.policy)) + " is neither Block nor Latest");
  }
  v.publisher_id = m->publisher_id();
  v.publisher = string_field(m->publisher(), "publisher", true, limits_.max_string);
  v.source = string_field(m->source(), "source", true, limits_.max_string);
  v.origin_node = string_field(m->origin_node(), "origin_node", true, kMaxNodeName);
  if (!is_valid_node_name(v.origin_node)) {
    fail("StreamOpen.origin_node " + quoted(v.origin_node) + " is not a valid node name");
  }
  v.first_sequence = m->first_sequence();
  v.ring_size = m->ring_size();
  v.retention_s = m->retention_s();
  v.slow_consumer_timeout_ns = m->slow_consumer_timeout_ns();
  if (next_sequence_.count(v.stream)) fail("StreamOpen for stream " + std::to_string(v.stream) + ", already open");
  if (next_sequence_.size() >= limits_.max_streams) {
    fail("StreamOpen: more than " + std::to_string(limits_.max_streams) + " streams on one connection");
  }
  next_sequence_.emplace(v.stream, v.first_sequence);
  return v;
}

// The stream is one the receiver opened: the session checks it, not the decoder.
StreamRefuseView FrameDecoder::check_stream_refuse(const StreamRefuse* m) {
  StreamRefuseView v;
  v.stream = m->stream();
  v.code = m->code();
  if (v.code > RefuseCode::MAX) {
    fail("StreamRefuse.code " + std::to_string(static_cast<unsigned>(v.code)) + " is unknown");
  }
  v.reason = string_field(m->reason(), "reason", false, limits_.max_string);
  return v;
}

EventBatchView FrameDecoder::check_event_batch(const EventBatch* m) {
  EventBatchView v;
  v.stream = m->stream();
  uint64_t& next = stream_next(v.stream, "EventBatch");
  v.bytes = byte_span(m->bytes());
  if (const auto* e = m->entries()) {
    check_struct_alignment(e->Data(), alignof(EventEntry), "EventBatch.entries");
    v.entries = {reinterpret_cast<const EventEntry*>(e->Data()), e->size()};
  }
  if (v.entries.empty()) fail("EventBatch for stream " + std::to_string(v.stream) + " has no events");
  const uint64_t size = v.bytes.size();
  uint64_t lowest = next;
  for (size_t i = 0; i < v.entries.size(); ++i) {
    const EventEntry& e = v.entries[i];
    // Named only when failing: the loop allocates nothing.
    const auto entry = [&] {
      return "EventBatch entry " + std::to_string(i) + " (sequence " + std::to_string(e.sequence()) + ")";
    };
    // 64-bit sums: offset + size of two u32 can not wrap.
    if (uint64_t{e.payload_offset()} + e.payload_size() > size) {
      fail(entry() + ": payload " + range(e.payload_offset(), e.payload_size()) + " lies outside the batch's " +
           std::to_string(size) + " bytes");
    }
    if (uint64_t{e.subject_offset()} + e.subject_size() > size) {
      fail(entry() + ": subject " + range(e.subject_offset(), e.subject_size()) + " lies outside the batch's " +
           std::to_string(size) + " bytes");
    }
    if (e.sequence() < lowest) {
      fail(entry() + ": sequences must increase, expected at least " + std::to_string(lowest) +
           (i == 0 ? " (after the stream's earlier events)" : ""));
    }
    if (e.sequence() == UINT64_MAX) fail(entry() + ": sequence is the maximum, reserved");
    lowest = e.sequence() + 1;
  }
  next = lowest;
  return v;
}

GapView FrameDecoder::check_gap(const Gap* m) {
  GapView v{m->stream(), m->from_sequence(), m->to_sequence(), {}};
  uint64_t& next = stream_next(v.stream, "Gap");
  if (v.from_sequence >= v.to_sequence) {
    fail("Gap [" + std::to_string(v.from_sequence) + ", " +
         std::to_string(v.to_sequence) + ") of stream " + std::to_string(v.stream) + " is empty or reversed");
  }
  if (v.from_sequence < next) {
    fail("Gap [" + std::to_string(v.from_sequence) + ", " + std::to_string(v.to_sequence) + ") of stream " +
         std::to_string(v.stream) + " starts below " + std::to_string(next) + ", already sent or skipped");
  }
  v.reason = string_field(m->reason(), "reason", false, limits_.max_string);
  next = v.to_sequence;
  return v;
}

}  // namespace flowbus::wire
