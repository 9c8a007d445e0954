// Session: the wire protocol of one connection, run by the shared-memory
// thread. Handshake (Hello, Auth), then both directions at once: rings this
// side exports to the peer (a holding subscriber, batches, acks), and
// streams the peer sends here (mirror rings, acks).
#include "session.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "flowbus/error.hpp"
#include "flowbus/inspect.hpp"
#include "flowbus/internal/mirroring.hpp"
#include "flowbus/names.hpp"
#include "flowbus/schema.hpp"
#include "import_spec.hpp"

namespace flowbus::sidecar {

namespace {

constexpr size_t kInFlight = 1024;     // batches sent and not yet acknowledged, per ring
constexpr size_t kBatchEvents = 4096;  // events per batch at most
constexpr size_t kReadBudget = 4096;   // events read per step before looking at the network again
constexpr size_t kProgressBytes = 64 * 1024;  // bytes of an unfinished frame that count as progress
constexpr std::chrono::minutes kHopelessRetry{5};  // redial delay after a refusal retrying cannot fix

uint64_t unix_ns() {
  return uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(
                      std::chrono::system_clock::now().time_since_epoch()).count());
}

bool matches_any(const std::vector<std::string>& patterns, std::string_view topic) {
  for (const std::string& p : patterns)
    if (pattern_matches(p, topic)) return true;
  return false;
}

}  // namespace

Session::Session(EngineContext& ctx, std::shared_ptr<LinkState> link)
    : ctx_(ctx), link_(std::move(link)), who_("peer at " + link_->address) {
  last_progress_ = last_sent_ = Clock::now();
}

void Session::send(std::span<const uint8_t> frame) {
  // Frames share chunks: a batch of one small event must not take a chunk
  // (and a socket write) of its own. flush_out() hands the chunk over.
  if (out_ != nullptr && out_->size + frame.size() > out_->bytes.size()) flush_out();
  if (out_ == nullptr) out_ = ctx_.pump.chunk(frame.size());
  std::memcpy(out_->bytes.data() + out_->size, frame.data(), frame.size());
  out_->size += frame.size();
  last_sent_ = Clock::now();
}

void Session::flush_out() {
  if (out_ == nullptr) return;
  ctx_.pump.send(link_, out_);
  out_ = nullptr;
}

void Session::on_connected() {
  ctx_.log(who_ + ": connected" + (link_->outbound ? "" : " (incoming)"));
  ++ctx_.stats.connections;
  nonce_ = wire::make_nonce();
  send(writer_.hello({wire::kProtocolVersion, ctx_.options.node, nonce_, "flowbus " FLOWBUS_VERSION}));
}

void Session::refuse(const wire::Refusal& refusal) {
  ctx_.log(who_ + ": refused: " + refusal.reason);
  ++ctx_.stats.refused;
  send(writer_.refuse(refusal.view()));
  flush_out();
  ctx_.pump.close(link_);
  closed_ = true;
}

void Session::give_up_retrying(const std::string& why) {
  // Inbound: the peer dials, its own sidecar decides. Said once per connection
  // (both sides may refuse each other).
  if (!link_->outbound || link_->redial_after_ms.load(std::memory_order_relaxed) != 0) return;
  link_->redial_after_ms.store(std::chrono::duration_cast<std::chrono::milliseconds>(kHopelessRetry).count(),
                               std::memory_order_relaxed);
  ctx_.log("peer " + link_->address + ": " + why + "; retrying cannot fix this, so the next attempt is in " +
           std::to_string(kHopelessRetry.count()) + " minutes (fix the configuration and restart this sidecar to retry now)");
}

void Session::drop(const std::string& reason) {
  ctx_.log(who_ + ": disconnecting: " + reason);
  flush_out();
  ctx_.pump.close(link_);
  closed_ = true;
}

void Session::shut(const std::string& reason) {
  if (closed_) return;
  send(writer_.bye({reason}));
  flush_out();
  ctx_.pump.close(link_);
  closed_ = true;
}

void Session::on_bytes(Chunk* chunk) {
  backlog_.push_back(chunk);
  bytes_since_progress_ += chunk->size;
  if (bytes_since_progress_ >= kProgressBytes) {
    last_progress_ = Clock::now();
    bytes_since_progress_ = 0;
  }
  feed_backlog();
}

void Session::feed_backlog() {
  // While an imported batch waits for room, its view points into the
  // decoder's buffer: feed nothing until it is done.
  uint64_t frames = 0;
  while (!closed_ && !pending_batch_) {
    try {
      while (!closed_ && !pending_batch_) {
        std::optional<wire::FrameView> frame = decoder_.next();
        if (!frame) break;
        ++frames;
        handle(*frame);
      }
    } catch (const wire::DecodeError& e) {
      drop(std::string("it sent something that is not the flowbus wire protocol: ") + e.what());
      break;
    } catch (const std::exception& e) {
      // Our failure, not the peer's (out of file descriptors, memory, ...):
      // this connection ends, the sidecar and its other peers go on.
      drop(std::string("this sidecar failed while handling what it sent: ") + e.what());
      break;
    }
    if (closed_ || pending_batch_ || backlog_.empty()) break;
    Chunk* c = backlog_.front();
    backlog_.erase(backlog_.begin());
    decoder_.feed({c->bytes.data(), c->size});
    ctx_.pump.consumed(link_, c);
    ctx_.pump.recycle(c);
  }
  if (frames != 0) {
    last_progress_ = Clock::now();
    bytes_since_progress_ = 0;
  }
  if (closed_) {
    for (Chunk* c : backlog_) {
      ctx_.pump.consumed(link_, c);
      ctx_.pump.recycle(c);
    }
    backlog_.clear();
  }
}

void Session::handle(const wire::FrameView& frame) {
  std::visit(
      [this](const auto& m) {
        using T = std::decay_t<decltype(m)>;
        if constexpr (std::is_same_v<T, wire::HelloView>) on_hello(m);
        else if constexpr (std::is_same_v<T, wire::AuthView>) on_auth(m);
        else if constexpr (std::is_same_v<T, wire::SubscribeView>) on_subscribe(m);
        else if constexpr (std::is_same_v<T, wire::StreamOpenView>) on_stream_open(m);
        else if constexpr (std::is_same_v<T, wire::EventBatchView>) {
          pending_batch_ = m;
          pending_index_ = 0;
          import_batch();
        } else if constexpr (std::is_same_v<T, wire::GapView>) on_gap(m);
        else if constexpr (std::is_same_v<T, wire::AckView>) on_ack(m);
        else if constexpr (std::is_same_v<T, wire::StreamRefuseView>) on_stream_refuse(m);
        else if constexpr (std::is_same_v<T, wire::RefuseView>) {
          ctx_.log(who_ + ": it refused us (" + wire::to_string(m.code) + "): " + std::string(m.reason));
          if (m.code == wire::RefuseCode::VersionMismatch || m.code == wire::RefuseCode::BadToken ||
              m.code == wire::RefuseCode::TokenRequired)
            give_up_retrying(std::string("refused with ") + wire::to_string(m.code));
          ctx_.pump.close(link_);
          closed_ = true;
        } else if constexpr (std::is_same_v<T, wire::ByeView>) {
          ctx_.log(who_ + ": it said goodbye: " + std::string(m.reason));
          ctx_.pump.close(link_);
          closed_ = true;
        }
        // HeartbeatView: receiving anything is proof of life.
      },
      frame);
}

// ---- handshake ----------------------------------------------------------------

void Session::on_hello(const wire::HelloView& hello) {
  if (auto refusal = wire::check_hello(hello, wire::kProtocolVersion, ctx_.options.node)) {
    refuse(*refusal);
    return give_up_retrying(refusal->code == wire::RefuseCode::VersionMismatch ? "another protocol version"
                                                                                : "the same node name as this sidecar");
  }
  peer_node_ = std::string(hello.node);
  who_ = "peer " + peer_node_ + " (" + link_->address + ")";
  const wire::Mac mac = wire::compute_auth_mac(ctx_.options.token, hello.nonce, ctx_.options.node);
  send(writer_.auth({ctx_.options.token.empty() ? std::span<const uint8_t>() : std::span<const uint8_t>(mac)}));
}

void Session::on_auth(const wire::AuthView& auth) {
  if (auto refusal = wire::check_auth(ctx_.options.token, nonce_, peer_node_, auth)) {
    refuse(*refusal);
    return give_up_retrying(std::string("its Auth: ") + wire::to_string(refusal->code));
  }
  if (ctx_.connected.count(peer_node_) != 0) {
    shut("already connected to node " + ctx_.options.node + " by another connection");
    ctx_.log(who_ + ": a second connection from the same node; closed it (one connection per pair of nodes)");
    return;
  }
  authenticated_ = true;
  link_->authenticated.store(true, std::memory_order_relaxed);  // the network thread lifts its handshake limits
  ctx_.connected[peer_node_] = link_->id;
  // What we import, and what we hold already of every origin we mirror.
  std::vector<wire::Resume> resume;
  for (const auto& [id, mirror] : ctx_.mirrors) resume.emplace_back(id, mirror.publisher->next_sequence());
  for (const RingSnapshot& ring : inspect_bus(ctx_.bus.name()).rings) {
    if (ring.origin_node.empty() || ctx_.mirrors.count(ring.publisher_id) != 0) continue;
    resume.emplace_back(ring.publisher_id, ring.next_sequence);
  }
  send(writer_.subscribe(ctx_.options.imports, resume));
}

// ---- exporting ----------------------------------------------------------------

std::function<bool(const RingContext&)> export_filter(const SidecarOptions& options, const PeerExport& peer) {
  // Captures copies: the subscriber outlives this session when it is parked.
  return [&options, node = peer.node, patterns = peer.patterns](const RingContext& ring) {
    if (!matches_any(options.exports, ring.topic) || !matches_any(patterns, ring.topic)) return false;
    if (!ring.mirrored()) return true;
    // Never back towards where it came from; onwards only when re-exported.
    return ring.origin_node != node && matches_any(options.reexports, ring.topic);
  };
}

void Session::on_subscribe(const wire::SubscribeView& subscribe) {
  // Its Subscribe comes after it accepted our Auth: only now is the handshake
  // done both ways (a peer may still refuse us after we accepted its Auth).
  if (!export_)
    ctx_.log(who_ + ": mirroring (handshake complete; " +
             (ctx_.options.token.empty() ? "no token" : "token verified both ways") +
             (ctx_.options.tls_ca.empty() ? "" : ", TLS") + ")");
  std::vector<std::string> patterns;
  for (size_t i = 0; i < subscribe.patterns.size(); ++i) {
    std::string p(subscribe.patterns[i]);
    try {
      validate_pattern(p);
    } catch (const Error& e) {
      return refuse({wire::RefuseCode::Protocol, std::string("its Subscribe holds a bad pattern: ") + e.what()});
    }
    patterns.push_back(std::move(p));
  }
  // A reconnect of a peer we kept positions for resumes from them, as long
  // as it still imports the same topics.
  auto parked = ctx_.parked.find(peer_node_);
  if (parked != ctx_.parked.end()) {
    if (parked->second->patterns == patterns) export_ = std::move(parked->second);
    ctx_.parked.erase(parked);
  }
  if (!export_) {
    export_ = std::make_unique<PeerExport>();
    export_->node = peer_node_;
    export_->patterns = std::move(patterns);
  }
  export_->connected = true;
  export_->resume.clear();
  for (const wire::Resume& r : subscribe.resume) export_->resume[r.publisher_id()] = r.next_sequence();
  if (export_->patterns.empty() || ctx_.options.exports.empty()) return;  // it imports nothing we export
  if (!export_->subscriber) {
    if (!make_room_for_export()) return;
    SubscriberOptions options;
    options.from = StartAt::Earliest;
    mirroring::ExportOptions how;
    how.hold_until_acknowledged = true;
    how.accept_ring = export_filter(ctx_.options, *export_);
    // Not `>` for every ring on the bus: a parked export (peer away) does not
    // look at new rings, so a reservation would hold every new writer back
    // for its timeout. New rings are joined at their start, losses counted.
    how.reserve_new_rings = false;
    export_->subscriber =
        std::make_unique<Subscriber>(mirroring::export_subscriber(ctx_.bus, ">", options, std::move(how)));
  } else {
    // Send again what the peer did not acknowledge; its resume list skips
    // whatever it got anyway.
    for (uint32_t ring = 0; ring < export_->rings.size(); ++ring) mirroring::rewind(*export_->subscriber, ring);
  }
  if (!counted_in_live_exports_) {
    counted_in_live_exports_ = true;
    ++ctx_.live_exports;
  }
  for (ExportStream& s : export_->rings) s = ExportStream{};
}

bool Session::make_room_for_export() {
  size_t parked_readers = 0;
  auto longest = ctx_.parked.end();
  for (auto it = ctx_.parked.begin(); it != ctx_.parked.end(); ++it) {
    if (!it->second->subscriber) continue;
    ++parked_readers;
    if (longest == ctx_.parked.end() || it->second->disconnected_at < longest->second->disconnected_at) longest = it;
  }
  if (ctx_.live_exports + parked_readers < ctx_.options.max_peers) return true;
  if (longest != ctx_.parked.end()) {
    ctx_.log("peer " + longest->first + " is away: its read positions are released to make room for " + peer_node_ +
             " (--max-peers " + std::to_string(ctx_.options.max_peers) + ")");
    ctx_.parked.erase(longest);
    return true;
  }
  refuse({wire::RefuseCode::LocalFailure, "this sidecar exports to " + std::to_string(ctx_.options.max_peers) +
                                              " peers already (--max-peers); try again when one leaves"});
  return false;
}

void Session::open_stream(uint32_t ring, ExportStream& s, uint64_t first_sequence) {
  const RingContext& c = export_->subscriber->ring_context(ring);
  const std::optional<TopicInfo> topic = ctx_.bus.find_topic(c.topic);
  if (!topic) return;
  s.stream = next_stream_++;
  s.known = true;
  s.acked_sequence = first_sequence;
  s.publisher_id = c.publisher_id;
  s.topic = c.topic;
  s.next_sequence = first_sequence;
  s.inflight.resize(kInFlight);
  s.inflight_head = s.inflight_count = 0;
  const std::string origin = c.mirrored() ? c.origin_node : ctx_.options.node;
  wire::StreamOpenView open{s.stream,
                            c.topic,
                            topic->type,
                            topic->schema_id,
                            topic->schema,
                            topic->policy == Policy::Latest ? wire::TopicPolicy::Latest : wire::TopicPolicy::Block,
                            c.publisher_id,
                            c.publisher_name,
                            c.source,
                            origin,
                            first_sequence,
                            topic->ring_size,
                            uint64_t(topic->retention.count()),
                            topic->slow_consumer_timeout == kNever ? UINT64_MAX : uint64_t(topic->slow_consumer_timeout.count())};
  send(writer_.stream_open(open));
  if (!s.batch) {
    // Room for the largest event the ring can hold with its subject; small
    // events still go out in batches of options.batch_bytes.
    const size_t largest = size_t(detail::max_record_length(topic->ring_size)) + 64 * 1024;
    const size_t limit = wire::kDefaultMaxFrameBytes - kBatchEvents * sizeof(wire::EventEntry) - 1024;
    s.batch = std::make_unique<wire::EventBatchWriter>(std::min(std::max(ctx_.options.batch_bytes, largest), limit), kBatchEvents);
  }
  s.batch->start(s.stream);
}

void Session::flush(uint32_t ring, ExportStream& s) {
  if (!s.batch || s.batch->empty()) return;
  const size_t events = s.batch->size();
  send(s.batch->finish());
  ctx_.stats.events_sent += events;
  s.batch->start(s.stream);
  // Latest rings do not hold the writer back: nothing to acknowledge.
  if (export_->subscriber->ring_policy(ring) == Policy::Block) {
    InFlight& f = s.inflight[(s.inflight_head + s.inflight_count) % kInFlight];
    f = {s.next_sequence, s.batch_next_position};
    ++s.inflight_count;
  }
}

void Session::flush_all() {
  for (uint32_t ring = 0; ring < export_->rings.size(); ++ring) flush(ring, export_->rings[ring]);
}

bool Session::pump_exports() {
  if (!export_ || !export_->subscriber) return false;
  Subscriber& sub = *export_->subscriber;
  Event e;
  size_t done = 0;
  for (; done < kReadBudget; ++done) {
    if (link_->queued_out.load(std::memory_order_relaxed) > ctx_.options.window) break;  // TCP is behind: hold
    const ReadResult r = sub.read(e);
    if (r.status == ReadStatus::Empty) break;
    if (r.status == ReadStatus::Corrupt) {
      ctx_.log("ring " + std::string(r.ring) + " failed a consistency check and is no longer mirrored; `flowbus inspect " +
               ctx_.bus.name() + " --check` says why");
      continue;
    }
    if (r.status != ReadStatus::Ok) continue;  // Lost/Evicted: the sequence jump below reports it as a gap
    const uint32_t ring = e.ring();
    if (export_->rings.size() <= ring) export_->rings.resize(ring + 1);
    ExportStream& s = export_->rings[ring];
    if (!s.refused.empty()) {  // the peer will not take it: let the ring go on without it
      (void)sub.release(e);
      mirroring::acknowledge(sub, ring, e.next_position());
      continue;
    }
    const uint64_t seq = e.sequence();
    const Policy policy = sub.ring_policy(ring);
    if (!s.known) {
      const auto it = export_->resume.find(e.context().publisher_id);
      const bool held = it != export_->resume.end();
      if (held && seq < it->second) {  // the peer has it already
        (void)sub.release(e);
        mirroring::acknowledge(sub, ring, e.next_position());
        continue;
      }
      open_stream(ring, s, held ? it->second : seq);
      if (!s.known) {  // its topic is gone
        (void)sub.release(e);
        continue;
      }
    }
    if (seq < s.next_sequence) {  // read again after a rewind, already sent
      (void)sub.release(e);
      continue;
    }
    if (s.inflight_count == kInFlight) break;  // the peer is far behind with its acks: e stays unreleased
    if (!s.batch->empty() && s.batch->bytes() + e.size() + e.subject().size() > ctx_.options.batch_bytes) flush(ring, s);
    if (seq > s.next_sequence) {
      flush(ring, s);
      send(writer_.gap({s.stream, s.next_sequence, seq, "no longer retained at the source"}));
      ctx_.log("topic " + e.topic() + " from " + e.source() + ": events " + std::to_string(s.next_sequence) + " to " +
               std::to_string(seq - 1) + " can not be mirrored to " + peer_node_ + ": the ring no longer holds them");
      ctx_.stats.gaps_reported += seq - s.next_sequence;
      s.gaps += seq - s.next_sequence;
      s.next_sequence = seq;
    }
    const std::span<const uint8_t> payload(e.data(), e.size());
    if (!s.batch->add(seq, e.time_ns(), e.subject(), payload)) {
      flush(ring, s);
      if (!s.batch->add(seq, e.time_ns(), e.subject(), payload)) {
        // Cannot happen: batches hold the largest event a ring accepts, or 16 MiB.
        ctx_.log("an event of " + std::to_string(e.size()) + " bytes on " + e.topic() + " does not fit a frame; stopped");
        break;
      }
    }
    // Copied; was it intact? Latest: the writer may have lapped us while we
    // copied. Block: only if we were evicted meanwhile (the writer then may
    // reuse the bytes), which release() tells. A torn copy is taken out; the
    // next event's sequence jump turns it into a Gap.
    const bool intact = policy == Policy::Latest ? sub.still_valid(e) : sub.release(e) != ReadStatus::Evicted;
    if (policy == Policy::Latest) (void)sub.release(e);
    if (!intact) {
      s.batch->drop_last();
      continue;
    }
    s.next_sequence = seq + 1;
    s.batch_next_position = e.next_position();
  }
  flush_all();
  return done != 0;
}

void Session::on_ack(const wire::AckView& ack) {
  if (!export_ || !export_->subscriber) return;
  for (uint32_t ring = 0; ring < export_->rings.size(); ++ring) {
    ExportStream& s = export_->rings[ring];
    if (s.stream != ack.stream) continue;
    uint64_t release_to = 0;
    while (s.inflight_count != 0 && s.inflight[s.inflight_head].end_sequence <= ack.next_sequence) {
      release_to = s.inflight[s.inflight_head].next_position;
      s.inflight_head = (s.inflight_head + 1) % kInFlight;
      --s.inflight_count;
    }
    if (release_to != 0) mirroring::acknowledge(*export_->subscriber, ring, release_to);
    s.acked_sequence = std::max(s.acked_sequence, ack.next_sequence);
    return;
  }
}

void Session::on_stream_refuse(const wire::StreamRefuseView& refusal) {
  if (!export_ || !export_->subscriber) return;
  for (uint32_t ring = 0; ring < export_->rings.size(); ++ring) {
    ExportStream& s = export_->rings[ring];
    if (s.stream != refusal.stream || !s.refused.empty()) continue;
    s.refused = std::string(wire::to_string(refusal.code)) + ": " + std::string(refusal.reason);
    ctx_.log(who_ + ": it refused topic " + s.topic + " from ring " + hex_id(s.publisher_id) + " (" + s.refused +
             "); not sending it on this connection");
    // What was sent or batched will never be acknowledged: free the ring of it.
    if (s.batch) s.batch->start(s.stream);
    s.inflight_count = 0;
    if (s.batch_next_position != 0) mirroring::acknowledge(*export_->subscriber, ring, s.batch_next_position);
    return;
  }
}

// ---- importing ----------------------------------------------------------------

namespace {

/// Why events of `open` must not be written into the existing topic `local`
/// (another type, or a schema that is not a compatible evolution), or nothing.
std::optional<std::string> schema_mismatch(const TopicInfo& local, const wire::StreamOpenView& open) {
  const std::vector<uint8_t> remote(open.schema.begin(), open.schema.end());
  std::string problem;
  if (local.type != open.type) {
    problem = "another type";
  } else if (local.schema != remote) {
    try {
      check_compatible_evolution(local.schema, remote);
    } catch (const Error& e) {
      problem = std::string("a schema that is not a compatible evolution of the local one: ") + e.what();
    }
  }
  if (problem.empty()) return std::nullopt;
  return "topic " + local.name + ": local type " + local.type + " (schema " + local.schema_id + "), remote type " +
         std::string(open.type) + " (schema " + schema_id(remote) + "): " + problem +
         "; nothing of it is written here (rename the topic on one side, or leave it out of --import)";
}

}  // namespace

void Session::refuse_stream(uint32_t stream, ImportStream in, wire::RefuseCode code, const std::string& reason) {
  ctx_.log(who_ + ": refused topic " + in.topic + " from " + in.origin + " (" + wire::to_string(code) + "): " + reason);
  send(writer_.stream_refuse({stream, code, reason}));
  in.discard = true;  // batches already on their way are acknowledged and dropped
  in.refused = std::string(wire::to_string(code)) + ": " + reason;
  imports_[stream] = std::move(in);
}

void Session::on_stream_open(const wire::StreamOpenView& open) {
  ImportStream in;
  in.topic = std::string(open.topic);
  in.origin = std::string(open.origin_node) + "/" + std::string(open.publisher);
  in.publisher_id = open.publisher_id;
  if (!matches_any(ctx_.options.imports, in.topic))
    return refuse({wire::RefuseCode::NotImported, "topic '" + in.topic + "' is not imported here (--import)"});
  if (imports_.size() >= kMaxImportStreams) {  // refused, and nothing of it kept: that is the bound
    const std::string why = "a connection may open at most " + std::to_string(kMaxImportStreams) + " streams";
    if (!stream_cap_logged_) ctx_.log(who_ + ": refused topic " + in.topic + " and any further stream: " + why);
    stream_cap_logged_ = true;
    send(writer_.stream_refuse({open.stream, wire::RefuseCode::LocalFailure, why}));
    return;
  }
  if (open.origin_node == ctx_.options.node) {
    in.discard = true;  // our own events, come back round a loop: we hold them
    imports_[open.stream] = std::move(in);
    return;
  }
  if (auto mirror = ctx_.mirrors.find(open.publisher_id); mirror != ctx_.mirrors.end()) {
    const auto& [publisher, node, source] = mirror->second;
    if (node != open.origin_node || source != open.source)
      return refuse_stream(open.stream, std::move(in), wire::RefuseCode::OriginConflict,
                           "publisher id " + hex_id(open.publisher_id) + " is mirrored here for origin " + node +
                               " (source " + source + "), not for " + std::string(open.origin_node) + " (source " +
                               std::string(open.source) + ")");
  }
  try {
    if (const std::optional<TopicInfo> local = ctx_.bus.find_topic(in.topic)) {
      if (auto why = schema_mismatch(*local, open))
        return refuse_stream(open.stream, std::move(in), wire::RefuseCode::SchemaMismatch, *why);
    } else {
      const TopicSpec spec = imported_topic_spec(ctx_.options, open);
      ctx_.bus.create_topic(spec);
      ctx_.log("created topic " + in.topic + " for " + who_ + ": " + describe_spec(ctx_.options, open, spec));
    }
    auto mirror = ctx_.mirrors.find(open.publisher_id);
    if (mirror == ctx_.mirrors.end()) {  // made first, then kept: a refused one leaves no empty entry behind
      Publisher made = mirroring::mirror_publisher(
          ctx_.bus, in.topic,
          {open.publisher_id, std::string(open.source), std::string(open.origin_node), open.first_sequence});
      mirror = ctx_.mirrors
                   .emplace(open.publisher_id,
                            EngineContext::Mirror{std::make_unique<Publisher>(std::move(made)),
                                                  std::string(open.origin_node), std::string(open.source)})
                   .first;
    }
    Publisher& slot = *mirror->second.publisher;
    if (slot.topic() != in.topic)
      return refuse_stream(open.stream, std::move(in), wire::RefuseCode::OriginConflict,
                           "origin " + in.origin + " announced topic " + in.topic + " but mirrors topic " +
                               slot.topic() + " here under the same publisher id");
    in.publisher = &slot;
  } catch (const Error& e) {
    // This stream only: the connection and its other streams go on.
    return refuse_stream(
        open.stream, std::move(in),
        e.code() == ErrorCode::NameInUse ? wire::RefuseCode::OriginConflict : wire::RefuseCode::LocalFailure,
        "cannot mirror topic '" + in.topic + "' from " + in.origin + ": " + e.what());
  }
  imports_[open.stream] = std::move(in);
}

bool Session::import_batch() {
  const wire::EventBatchView& b = *pending_batch_;
  auto it = imports_.find(b.stream);
  if (it == imports_.end()) {  // the decoder checks streams are opened: a stream we refused to open
    pending_batch_.reset();
    return true;
  }
  ImportStream& in = it->second;
  if (!in.discard) {
    for (; pending_index_ < b.entries.size(); ++pending_index_) {
      const wire::EventEntry& entry = b.entries[pending_index_];
      const PublishStatus st =
          mirroring::publish_mirrored(*in.publisher, b.payload(entry), entry.sequence(), entry.time_ns(), b.subject(entry), {});
      if (st == PublishStatus::Full) return false;  // a local reader is slow: retried by step()
      if (st == PublishStatus::Duplicate) ++ctx_.stats.duplicates_dropped;
      else if (st == PublishStatus::Ok) ++ctx_.stats.events_received;
      else {
        ctx_.log("an event of " + std::to_string(entry.payload_size()) + " bytes from " + in.origin + " does not fit topic " +
                 in.topic + "'s ring here; dropped and counted");
        ++ctx_.stats.gaps_reported;
        ++in.gaps;
      }
    }
  }
  const uint64_t next = b.entries.empty() ? 0 : b.entries[b.entries.size() - 1].sequence() + 1;
  const uint32_t stream = b.stream;
  pending_batch_.reset();
  send(writer_.ack({stream, next}));
  return true;
}

void Session::on_gap(const wire::GapView& gap) {
  auto it = imports_.find(gap.stream);
  const std::string origin = it == imports_.end() ? "?" : it->second.origin;
  const std::string topic = it == imports_.end() ? "?" : it->second.topic;
  ctx_.log("topic " + topic + " from " + origin + ": events " + std::to_string(gap.from_sequence) + " to " +
           std::to_string(gap.to_sequence - 1) + " were lost at the source (" + std::string(gap.reason) +
           "); readers here are told when the next event arrives");
  ctx_.stats.gaps_reported += gap.to_sequence - gap.from_sequence;
  if (it != imports_.end()) it->second.gaps += gap.to_sequence - gap.from_sequence;
}

// ---- status -------------------------------------------------------------------

std::string hex_id(uint64_t id) {
  char buf[20];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(id));
  return buf;
}

std::string json_text(std::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') out += '\\', out += c;
    else if (static_cast<unsigned char>(c) < 0x20) out += ' ';
    else out += c;
  }
  return out + "\"";
}

void describe_exports(const std::vector<ExportStream>& rings, std::string& out) {
  bool first = true;
  for (const ExportStream& s : rings) {
    if (s.stream == 0) continue;
    out += std::string(first ? "" : ",") + "{\"topic\":" + json_text(s.topic) + ",\"publisher_id\":" +
           json_text(hex_id(s.publisher_id)) + ",\"sent_sequence\":" + std::to_string(s.next_sequence) +
           ",\"acked_sequence\":" + std::to_string(s.acked_sequence) + ",\"gaps\":" + std::to_string(s.gaps) +
           (s.refused.empty() ? "" : ",\"refused\":" + json_text(s.refused)) + "}";
    first = false;
  }
}

void Session::describe(std::string& out) const {
  out += "{\"node\":" + json_text(peer_node_) + ",\"address\":" + json_text(link_->address) +
         ",\"outbound\":" + (link_->outbound ? "true" : "false") + ",\"connected\":" + (authenticated_ && !closed_ ? "true" : "false") +
         ",\"queued_bytes\":" + std::to_string(link_->queued_out.load(std::memory_order_relaxed)) + ",\"exports\":[";
  if (export_) describe_exports(export_->rings, out);
  out += "],\"imports\":[";
  bool first = true;
  for (const auto& [id, in] : imports_) {
    if (in.publisher == nullptr && in.refused.empty()) continue;  // our own events, come back
    out += std::string(first ? "" : ",") + "{\"topic\":" + json_text(in.topic) + ",\"origin\":" + json_text(in.origin) +
           ",\"publisher_id\":" + json_text(hex_id(in.publisher_id)) +
           ",\"next_sequence\":" + std::to_string(in.publisher ? in.publisher->next_sequence() : 0) +
           ",\"gaps\":" + std::to_string(in.gaps) + (in.refused.empty() ? "" : ",\"refused\":" + json_text(in.refused)) + "}";
    first = false;
  }
  out += "]}";
}

// ---- the loop -----------------------------------------------------------------

bool Session::step(Clock::time_point now) {
  if (closed_) return false;
  bool did = false;
  if (pending_batch_) {
    if (import_batch()) {
      did = true;
      feed_backlog();
    }
  }
  if (authenticated_) did |= pump_exports();
  if (pending_batch_) last_progress_ = now;  // we are the slow side: it waits for us
  if (now - last_progress_ > ctx_.options.peer_timeout) {
    const std::string ms = std::to_string(ctx_.options.peer_timeout.count());
    if (bytes_since_progress_ == 0 && decoder_.buffered() == 0) {
      drop("silent for " + ms + " ms");
    } else {
      drop("it trickles: no whole frame and only " + std::to_string(bytes_since_progress_) + " bytes in " + ms +
           " ms (" + std::to_string(decoder_.buffered()) + " bytes of an unfinished frame buffered); a peer must send a frame, or " +
           std::to_string(kProgressBytes / 1024) + " KiB of one, within --peer-timeout-ms");
    }
    return true;
  }
  if (authenticated_ && now - last_sent_ > ctx_.options.heartbeat) send(writer_.heartbeat({unix_ns()}));
  return did;
}

void Session::on_closed(const std::string& reason) {
  // A TLS listener closes a plain peer's connection without a word.
  const bool before_hello = link_->outbound && decoder_.frames() == 0 && ctx_.options.tls_ca.empty();
  if (!closed_ || authenticated_)
    ctx_.log(who_ + ": connection closed: " + reason +
             (before_hello ? " before sending its Hello (a TLS listener does that to a peer without TLS: if it uses TLS, "
                             "configure --tls-cert, --tls-key and --tls-ca here too)"
                           : ""));
  closed_ = true;
  if (authenticated_) {
    auto it = ctx_.connected.find(peer_node_);
    if (it != ctx_.connected.end() && it->second == link_->id) ctx_.connected.erase(it);
  }
  for (Chunk* c : backlog_) {
    ctx_.pump.consumed(link_, c);
    ctx_.pump.recycle(c);
  }
  backlog_.clear();
  ctx_.pump.recycle(out_);
  out_ = nullptr;
  if (counted_in_live_exports_) {
    counted_in_live_exports_ = false;
    --ctx_.live_exports;
  }
  if (export_) {
    // Keep the read positions (and what they hold) for a reconnect.
    export_->connected = false;
    export_->disconnected_at = Clock::now();
    ctx_.parked[export_->node] = std::move(export_);
  }
}

}  // namespace flowbus::sidecar
