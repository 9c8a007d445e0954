// The sidecar's wire protocol: building and decoding frames
// (docs/wire-protocol.md). No sockets here: bytes in, bytes out.
//
// Sending: FrameWriter writes one ready-to-send frame (length prefix
// included) per call; EventBatchWriter collects events into a batch frame.
// Both reuse their storage, so after warm-up they allocate nothing.
//
// Receiving: FrameDecoder takes byte chunks as they come off a socket and
// hands out each complete frame as a FrameView, checked structurally (the
// FlatBuffers Verifier) and semantically (names, sizes, offsets, order).
// The first violation throws DecodeError, and the decoder stays failed.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <variant>
#include <vector>

#include <flatbuffers/flatbuffers.h>

#include <flowbus/wire_generated.h>

namespace flowbus::wire {

// Generated from schemas/flowbus/wire.fbs and used as is by the views:
// RefuseCode, TopicPolicy, Resume, EventEntry (and the tables themselves).

inline constexpr uint32_t kProtocolVersion = 2;  // docs/wire-protocol.md, "Versions"
inline constexpr size_t kNonceSize = 32;
inline constexpr size_t kMacSize = 32;
inline constexpr size_t kMaxNodeName = 63;
// Default frame limit: a 16 MiB event plus its entry, subject and framing.
inline constexpr size_t kDefaultMaxFrameBytes = (16u << 20) + (64u << 10);
// Frame limit before Auth: Hello, Auth, Refuse and Bye are a few KiB at most
// (strings of 4 KiB), so a peer that has not authenticated cannot make the
// receiver buffer a large frame.
inline constexpr size_t kHandshakeMaxFrameBytes = 16u << 10;
inline constexpr size_t kLengthPrefixSize = 4;

using Nonce = std::array<uint8_t, kNonceSize>;
using Mac = std::array<uint8_t, kMacSize>;

const char* to_string(RefuseCode code) noexcept;
// 1..63 characters of [A-Za-z0-9._-].
bool is_valid_node_name(std::string_view name) noexcept;

// ---- views: one per message, pointing into the decoder's (or the caller's)
// bytes. FrameWriter takes the same structs as input.

struct HelloView {
  uint32_t protocol_version = kProtocolVersion;
  std::string_view node;
  std::span<const uint8_t> nonce;  // kNonceSize bytes
  std::string_view software;
};

struct AuthView {
  std::span<const uint8_t> mac;  // kMacSize bytes, or empty without a token
};

struct RefuseView {
  RefuseCode code = RefuseCode::Protocol;
  std::string_view reason;
  uint32_t local_version = kProtocolVersion;
  uint32_t remote_version = 0;
};

// The decoded Subscribe's patterns, without copying them out of the frame.
class PatternList {
 public:
  PatternList() = default;
  explicit PatternList(const flatbuffers::Vector<flatbuffers::Offset<flatbuffers::String>>* v) : v_(v) {}
  size_t size() const noexcept { return v_ ? v_->size() : 0; }
  bool empty() const noexcept { return size() == 0; }
  std::string_view operator[](size_t i) const { return v_->Get(static_cast<flatbuffers::uoffset_t>(i))->string_view(); }

 private:
  const flatbuffers::Vector<flatbuffers::Offset<flatbuffers::String>>* v_ = nullptr;
};

struct SubscribeView {
  PatternList patterns;
  std::span<const Resume> resume;
};

struct StreamOpenView {
  uint32_t stream = 0;
  std::string_view topic;
  std::string_view type;
  std::string_view schema_id;
  std::span<const uint8_t> schema;  // the topic's binary schema (.bfbs)
  TopicPolicy policy = TopicPolicy::Block;
  uint64_t publisher_id = 0;
  std::string_view publisher;
  std::string_view source;       // CloudEvents source of the origin
  std::string_view origin_node;
  uint64_t first_sequence = 0;
  // The origin topic's (0: not announced).
  uint64_t ring_size = 0;
  uint64_t retention_s = 0;
  uint64_t slow_consumer_timeout_ns = 0;  // UINT64_MAX: never
};

struct EventBatchView {
  uint32_t stream = 0;
  std::span<const EventEntry> entries;  // never empty, sequences strictly increasing
  std::span<const uint8_t> bytes;

  // Every entry was checked to lie inside `bytes`.
  std::span<const uint8_t> payload(const EventEntry& e) const noexcept {
    return bytes.subspan(e.payload_offset(), e.payload_size());
  }
  std::string_view subject(const EventEntry& e) const noexcept {
    return {reinterpret_cast<const char*>(bytes.data()) + e.subject_offset(), e.subject_size()};
  }
};

struct GapView {
  uint32_t stream = 0;
  uint64_t from_sequence = 0;  // first missing
  uint64_t to_sequence = 0;    // first not missing
  std::string_view reason;
};

struct AckView {
  uint32_t stream = 0;
  uint64_t next_sequence = 0;
};

// The importer's refusal of one stream (the connection goes on).
struct StreamRefuseView {
  uint32_t stream = 0;
  RefuseCode code = RefuseCode::SchemaMismatch;
  std::string_view reason;
};

struct HeartbeatView {
  uint64_t time_ns = 0;
};

struct ByeView {
  std::string_view reason;
};

using FrameView = std::variant<HelloView, AuthView, RefuseView, SubscribeView, StreamOpenView, EventBatchView,
                               GapView, AckView, HeartbeatView, ByeView, StreamRefuseView>;

// ---- sending --------------------------------------------------------------

// Builds one frame per call into a reused buffer. Each returned span holds a
// whole frame (length prefix included) and is valid until the next call.
class FrameWriter {
 public:
  explicit FrameWriter(size_t initial_capacity = 4096);

  std::span<const uint8_t> hello(const HelloView& m);
  std::span<const uint8_t> auth(const AuthView& m);
  std::span<const uint8_t> refuse(const RefuseView& m);
  std::span<const uint8_t> subscribe(std::span<const std::string> patterns, std::span<const Resume> resume);
  std::span<const uint8_t> stream_open(const StreamOpenView& m);
  std::span<const uint8_t> gap(const GapView& m);
  std::span<const uint8_t> ack(const AckView& m);
  std::span<const uint8_t> heartbeat(const HeartbeatView& m);
  std::span<const uint8_t> bye(const ByeView& m);
  std::span<const uint8_t> stream_refuse(const StreamRefuseView& m);

 private:
  std::span<const uint8_t> finish(Body type, flatbuffers::Offset<void> body);
  flatbuffers::FlatBufferBuilder fbb_;
};

// Collects events for one stream into preallocated storage and writes them as
// one EventBatch frame. Storage is sized in the constructor, so adding events
// and finishing batches never allocates.
class EventBatchWriter {
 public:
  // max_bytes: payloads plus subjects per batch; max_events: entries per
  // batch. The resulting frame always fits kDefaultMaxFrameBytes (checked:
  // throws std::invalid_argument otherwise).
  EventBatchWriter(size_t max_bytes, size_t max_events);

  // Drops the events and starts a batch for `stream`.
  void start(uint32_t stream) noexcept;
  // Appends one event (copied). false: the batch is full; finish it and add
  // the event to the next one. false on an empty batch: the event alone is
  // larger than max_bytes. The caller keeps sequences strictly increasing.
  [[nodiscard]] bool add(uint64_t sequence, uint64_t time_ns, std::string_view subject,
                         std::span<const uint8_t> payload, uint16_t flags = 0) noexcept;
  // Takes the last added event out again (the sidecar found it was
  // overwritten while it was copied).
  void drop_last() noexcept;
  // The frame with every added event, length prefix included; valid until
  // the next call on this builder. Throws std::logic_error when empty.
  std::span<const uint8_t> finish();

  uint32_t stream() const noexcept { return stream_; }
  size_t size() const noexcept { return entries_.size(); }
  bool empty() const noexcept { return entries_.empty(); }
  size_t bytes() const noexcept { return payload_bytes_ + subject_bytes_; }
  size_t max_bytes() const noexcept { return max_bytes_; }
  size_t max_events() const noexcept { return max_events_; }

 private:
  size_t max_bytes_;
  size_t max_events_;
  uint32_t stream_ = 0;
  std::vector<EventEntry> entries_;  // subject_offset: distance from the back of staging_ until finish()
  std::vector<uint8_t> staging_;     // max_bytes: payloads from the front, subjects from the back
  size_t payload_bytes_ = 0;
  size_t subject_bytes_ = 0;
  flatbuffers::FlatBufferBuilder fbb_;
};

// ---- receiving ------------------------------------------------------------

class DecodeError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct DecoderLimits {
  size_t max_frame_bytes = kDefaultMaxFrameBytes;  // N, the length after the prefix
  size_t max_handshake_frame_bytes = kHandshakeMaxFrameBytes;  // N until Auth has been decoded
  uint32_t max_depth = 8;                          // Verifier: nesting of tables and vectors
  uint32_t max_tables = 64;                        // Verifier: tables per frame
  size_t max_streams = 65536;                      // StreamOpen per connection
  size_t max_patterns = 4096;                      // Subscribe patterns
  size_t max_string = 4096;                        // any string but the schema
};

// Turns the bytes of one connection into checked frames. Order rules: the
// first frame is Hello (or Refuse/Bye), the second Auth (or Refuse/Bye),
// Hello and Auth never again, nothing after Refuse or Bye. Streams: a
// StreamOpen announces each stream once; EventBatch and Gap only for an
// announced stream, with sequences strictly increasing across its batches
// and gaps, starting at first_sequence.
class FrameDecoder {
 public:
  explicit FrameDecoder(DecoderLimits limits = {});

  // Appends bytes as received. Call next() until it returns nullopt before
  // feeding more: unconsumed bytes are buffered. A no-op once failed.
  void feed(std::span<const uint8_t> bytes);

  // The next complete frame, or nullopt when more bytes are needed. Views
  // point into the decoder and are valid until the next feed() or next().
  // Throws DecodeError on the first violation, and again on every call after.
  std::optional<FrameView> next();

  bool failed() const noexcept { return failed_.has_value(); }
  const std::string& error() const noexcept;  // empty unless failed
  uint64_t frames() const noexcept { return frames_; }  // frames decoded so far
  size_t buffered() const noexcept { return buf_.size() - begin_; }

 private:
  [[noreturn]] void fail(std::string reason);
  void check_speaker(const uint8_t* p, size_t n);
  FrameView check(const Frame& frame);
  HelloView check_hello(const Hello* m);
  AuthView check_auth(const Auth* m);
  RefuseView check_refuse(const Refuse* m);
  SubscribeView check_subscribe(const Subscribe* m);
  StreamOpenView check_stream_open(const StreamOpen* m);
  EventBatchView check_event_batch(const EventBatch* m);
  GapView check_gap(const Gap* m);
  StreamRefuseView check_stream_refuse(const StreamRefuse* m);
  void check_struct_alignment(const uint8_t* data, size_t align, const char* what);
  std::string_view string_field(const flatbuffers::String* s, const char* what, bool required, size_t max);
  uint64_t& stream_next(uint32_t stream, const char* what);

  enum class Phase { ExpectHello, ExpectAuth, Open, Closed };

  DecoderLimits limits_;
  std::vector<uint8_t> buf_;      // received bytes; the next frame starts at begin_
  size_t begin_ = 0;
  std::vector<uint64_t> aligned_;  // a frame copied here when not 8-aligned in buf_
  Phase phase_ = Phase::ExpectHello;
  uint64_t frames_ = 0;
  std::unordered_map<uint32_t, uint64_t> next_sequence_;  // stream -> lowest sequence allowed next
  std::optional<std::string> failed_;
  const char* current_ = "";  // the message being checked, for error reasons
};

// ---- handshake ------------------------------------------------------------

// An owned Refuse, to send and log.
struct Refusal {
  RefuseCode code = RefuseCode::Protocol;
  std::string reason;
  uint32_t local_version = kProtocolVersion;
  uint32_t remote_version = 0;
  RefuseView view() const noexcept { return {code, reason, local_version, remote_version}; }
};

// Refuses a peer's Hello of another protocol version (a reason naming both
// versions), or one claiming this side's own node name (when local_node is
// given: such a peer is a loop, or replays this side's Auth to itself).
std::optional<Refusal> check_hello(const HelloView& hello, uint32_t local_version = kProtocolVersion,
                                   std::string_view local_node = {});

// 32 random bytes from the OpenSSL CSPRNG (throws std::runtime_error if it fails).
Nonce make_nonce();
// HMAC-SHA256(token, "flowbus-wire-auth-1" | peer_nonce | own_node): what this
// side sends in Auth after receiving the peer's Hello.
Mac compute_auth_mac(std::string_view token, std::span<const uint8_t> peer_nonce, std::string_view own_node);
// Whether `mac` (from the peer's Auth) proves the peer knows `token`: the
// peer computed it over this side's nonce and its own node name. Constant time.
bool verify_auth_mac(std::string_view token, std::span<const uint8_t> own_nonce, std::string_view peer_node,
                     std::span<const uint8_t> mac);
// The refusal for the peer's Auth, if any: TokenRequired when this side has a
// token and the peer sent no MAC, BadToken when the MAC does not verify.
// Without a local token every Auth is accepted.
std::optional<Refusal> check_auth(std::string_view token, std::span<const uint8_t> own_nonce,
                                  std::string_view peer_node, const AuthView& auth);

}  // namespace flowbus::wire
