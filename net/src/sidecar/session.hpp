// One connection to a peer, as the shared-memory thread sees it: the
// handshake, the rings it exports to that peer and the streams it imports.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "flowbus/bus.hpp"
#include "flowbus/sidecar.hpp"
#include "flowbus/wire/codec.hpp"
#include "pump.hpp"

namespace flowbus::sidecar {

using Clock = std::chrono::steady_clock;

struct PeerExport;

/// Streams one connection may open (refused ones count): a bus holds at most
/// 512 rings, so more can only be a peer that fills this side's memory.
inline constexpr size_t kMaxImportStreams = 512;

/// What the engine shares with every session.
struct EngineContext {
  const SidecarOptions& options;
  Bus& bus;
  Pump& pump;
  SidecarStats& stats;
  /// A mirror ring this sidecar writes and the origin it was made for: a
  /// stream that announces the same publisher id from another node or source
  /// is refused, never written into it.
  struct Mirror {
    std::unique_ptr<Publisher> publisher;
    std::string origin_node;
    std::string source;
  };
  /// Mirror rings this sidecar writes, by origin publisher id (one writer each).
  std::unordered_map<uint64_t, Mirror> mirrors;
  /// Export state of peers that disconnected, by node name, kept for
  /// options.resume_window so that a reconnect resumes from it.
  std::unordered_map<std::string, std::unique_ptr<PeerExport>> parked;
  /// Peers with an authenticated connection now (one connection per peer).
  std::unordered_map<std::string, uint32_t> connected;
  /// Connected peers whose export holds a subscriber (parked ones are in
  /// `parked`): with those, bounded by options.max_peers.
  size_t live_exports = 0;
  void log(const std::string& line) const { options.log(line); }
};

/// A batch sent and not yet acknowledged: the peer holds the stream below
/// end_sequence once it acks that, and the ring may then reuse the bytes
/// before next_position.
struct InFlight {
  uint64_t end_sequence = 0;
  uint64_t next_position = 0;
};

/// One exported ring on the current connection.
struct ExportStream {
  uint32_t stream = 0;          // 0: not announced on this connection yet
  bool known = false;           // next_sequence holds the next sequence to send
  uint64_t next_sequence = 0;
  std::unique_ptr<wire::EventBatchWriter> batch;
  uint64_t batch_next_position = 0;
  uint64_t acked_sequence = 0;  // the peer holds everything below it (Block)
  uint64_t gaps = 0;            // events this stream could not send (the ring no longer held them)
  uint64_t publisher_id = 0;
  std::string topic;
  std::string refused;          // the peer refused this stream (why): nothing more is sent
  std::vector<InFlight> inflight;  // a circular buffer, kInFlight entries
  size_t inflight_head = 0, inflight_count = 0;
};

/// The read positions kept for a peer (by node name) across reconnects:
/// a holding subscriber whose cursors move only on that peer's acks.
struct PeerExport {
  std::string node;
  std::vector<std::string> patterns;  // what the peer imports
  std::unique_ptr<Subscriber> subscriber;
  std::vector<ExportStream> rings;    // by Event::ring()
  std::unordered_map<uint64_t, uint64_t> resume;  // origin publisher id -> next sequence the peer needs
  bool connected = false;
  Clock::time_point disconnected_at{};
};

struct ImportStream {
  Publisher* publisher = nullptr;
  std::string topic;
  std::string origin;  // for messages: "<node>/<publisher>"
  bool discard = false;  // our own events come back, or a refused stream: acknowledged, not written
  uint64_t gaps = 0;     // events announced lost at the source, or too large for our ring
  uint64_t publisher_id = 0;  // the origin ring's
  std::string refused;   // why this side refused the stream (StreamRefuse), else empty
};

/// JSON helpers for the status file.
std::string hex_id(uint64_t id);
std::string json_text(std::string_view text);
/// The announced streams of `rings` as JSON objects, comma-separated.
void describe_exports(const std::vector<ExportStream>& rings, std::string& out);

class Session {
 public:
  Session(EngineContext& ctx, std::shared_ptr<LinkState> link);
  void on_connected();
  void on_bytes(Chunk* chunk);
  /// Exports, retries, heartbeats and timeouts. Returns true if it did work.
  bool step(Clock::time_point now);
  void on_closed(const std::string& reason);
  /// Says Bye and closes.
  void shut(const std::string& reason);
  /// Hands what send() gathered to the network thread (the engine calls it
  /// after each round of work, so a round's frames leave in one write).
  void flush_out();
  bool closed() const noexcept { return closed_; }
  /// This connection as JSON members (for the status file `flowbus inspect` reads).
  void describe(std::string& out) const;
  const std::string& peer_node() const noexcept { return peer_node_; }

 private:
  void send(std::span<const uint8_t> frame);
  void refuse(const wire::Refusal& refusal);
  /// A refusal that retrying cannot fix (version, node name, token): an
  /// outbound connection redials only after kHopelessRetry, and says so.
  void give_up_retrying(const std::string& why);
  void drop(const std::string& reason);
  void handle(const wire::FrameView& frame);
  void on_hello(const wire::HelloView& hello);
  void on_auth(const wire::AuthView& auth);
  void on_subscribe(const wire::SubscribeView& subscribe);
  void on_stream_open(const wire::StreamOpenView& open);
  /// Whether one more peer may hold export readers (--max-peers); may release
  /// the longest-parked peer's; refuses this peer when none is parked.
  bool make_room_for_export();
  bool import_batch();  // false: a ring is full; try again later
  void on_gap(const wire::GapView& gap);
  void on_ack(const wire::AckView& ack);
  void on_stream_refuse(const wire::StreamRefuseView& refusal);
  void refuse_stream(uint32_t stream, ImportStream in, wire::RefuseCode code, const std::string& reason);
  bool pump_exports();
  void flush(uint32_t ring, ExportStream& s);
  void flush_all();
  void open_stream(uint32_t ring, ExportStream& s, uint64_t first_sequence);
  void feed_backlog();

  EngineContext& ctx_;
  std::shared_ptr<LinkState> link_;
  wire::FrameWriter writer_;
  wire::FrameDecoder decoder_;
  wire::Nonce nonce_{};
  std::string peer_node_;
  std::string who_;  // "peer NODE (ADDRESS)" for log lines
  bool authenticated_ = false;
  bool counted_in_live_exports_ = false;
  bool stream_cap_logged_ = false;  // said once per connection
  bool closed_ = false;
  Clock::time_point last_sent_{};
  // The peer's progress: a whole frame, or kProgressBytes of one. A peer
  // that makes none for peer_timeout (silent, or trickling a frame) is dropped.
  Clock::time_point last_progress_{};
  size_t bytes_since_progress_ = 0;
  Chunk* out_ = nullptr;          // frames gathered for the socket, not yet handed over
  std::vector<Chunk*> backlog_;  // bytes not fed to the decoder while a batch waits for room
  // An imported batch that found a ring full: kept (a view into the
  // decoder's buffer, which is not fed meanwhile) and retried.
  std::optional<wire::EventBatchView> pending_batch_;
  size_t pending_index_ = 0;
  std::unordered_map<uint32_t, ImportStream> imports_;
  std::unique_ptr<PeerExport> export_;  // after the peer's Subscribe
  uint32_t next_stream_ = 1;
};

}  // namespace flowbus::sidecar
