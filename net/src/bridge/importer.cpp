// The import side (see importer.hpp).
#include "importer.hpp"

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <stdexcept>
#include <thread>
#include <vector>

#include "ce_headers.hpp"
#include "flowbus/bus.hpp"
#include "flowbus/error.hpp"
#include "flowbus/internal/mirroring.hpp"
#include "flowbus/names.hpp"
#include "flowbus/schema.hpp"
#include "nats_link.hpp"

namespace flowbus::bridge {

namespace {

using Clock = std::chrono::steady_clock;
constexpr int64_t kFetchWaitMs = 250;
constexpr auto kConsumerCheck = std::chrono::seconds(2);  // idle this long: is our consumer still there?
constexpr auto kRereadEvery = std::chrono::seconds(2);
constexpr size_t kMaxHeldMessages = 65'536;
constexpr size_t kMaxHeldBytes = size_t(256) << 20;

uint64_t unix_ns() {
  return uint64_t(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count());
}

bool matches_any(const std::vector<std::string>& patterns, std::string_view topic) {
  for (const std::string& p : patterns)
    if (pattern_matches(p, topic)) return true;
  return false;
}

/// Whether messages of one (topic, type, dataschema) may be written here.
struct Decision {
  std::string refusal;                 // empty: yes
  std::unique_ptr<SchemaCodec> codec;  // to verify payloads of publishers that are not flowbus
};

class Importer {
  struct Held {
    std::vector<uint8_t> bytes;
    uint64_t time_ns = 0;
    std::string subject;
  };
  struct Mirror {
    std::unique_ptr<Publisher> publisher;
    std::string topic, source;
    std::map<uint64_t, Held> held;  // by sequence: delivered ahead of a hole the exporter did send
    Clock::time_point held_since{};
  };

 public:
  explicit Importer(BridgeContext& ctx)
      : ctx_(ctx), o_(ctx.options), bus_(Bus::open(o_.bus)), js_(jetstream(ctx.nc, o_)) {}
  ~Importer() { drop_subscription(); }
  Importer(const Importer&) = delete;
  Importer& operator=(const Importer&) = delete;

  void run(const std::atomic<bool>& stop) {
    Clock::time_point last_status{}, last_message = Clock::now();
    while (!stop.load(std::memory_order_relaxed)) {
      const Clock::time_point now = Clock::now();
      if (now - last_status > std::chrono::milliseconds(200)) {
        publish_status();
        last_status = now;
      }
      give_up_overdue_holes(stop);
      if (sub_ == nullptr && !subscribe()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(250));
        continue;
      }
      natsMsgList list{};
      jsErrCode jerr = jsErrCode(0);
      const natsStatus s = fetch(&list, sub_, int(o_.fetch_batch), kFetchWaitMs, &jerr);
      if (s == NATS_TIMEOUT || (s == NATS_OK && list.Count == 0)) {
        natsMsgList_Destroy(&list);
        if (held_count_ != 0) {
          read_again_from_floor();  // all there is now is read, and a hole is still open
        } else if (Clock::now() - last_message > kConsumerCheck) {
          check_consumer();
          last_message = Clock::now();
        }
        continue;
      }
      if (s != NATS_OK) {
        natsMsgList_Destroy(&list);
        log_once(nats_error(s, "fetching from stream " + o_.stream) + " (JetStream error " + std::to_string(int(jerr)) +
                 "); retrying");
        if (jerr == JSConsumerNotFoundErr || jerr == JSStreamNotFoundErr || s == NATS_NOT_FOUND) drop_subscription();
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        continue;
      }
      last_message = Clock::now();
      // Ack policy "all": one ack covers every message up to the acked one, so
      // only a message before which nothing is held (every earlier one
      // committed or dropped) may be acked: a held event is not on the bus yet.
      natsMsg* ackable = nullptr;
      for (int i = 0; i < list.Count; ++i) {
        if (!import(list.Msgs[i], stop)) break;  // stopping: what is not committed is not acknowledged
        if (held_count_ == 0) ackable = list.Msgs[i];
      }
      if (ackable != nullptr) (void)natsMsg_Ack(ackable, nullptr);
      natsMsgList_Destroy(&list);
    }
    publish_status();
  }

 private:
  void log_once(const std::string& line) {
    if (logged_.insert(line).second) ctx_.log(line);
  }

  bool subscribe() {
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = o_.stream.c_str();
    so.Config.Durable = o_.durable.c_str();
    so.Config.AckPolicy = js_AckAll;
    so.Config.DeliverPolicy = js_DeliverAll;
    so.Config.AckWait = int64_t(30) * 1000 * 1000 * 1000;
    // Held messages stay unacknowledged: the server must go on delivering past them.
    so.Config.MaxAckPending = int64_t(o_.fetch_batch) * 16 + int64_t(kMaxHeldMessages);
    // A consumer left with messages delivered and not acknowledged (we were
    // killed mid-batch) would redeliver them only after AckWait, and hand us
    // newer ones first: their sequences would jump ahead of the mirror ring.
    // So start it again right after what was acknowledged, in order. One that
    // is settled is bound as it is: its start (all, or a sequence from an
    // earlier restart) must be asked for again, or the server refuses the bind.
    // One that refused us anyway (created by another version) is started again
    // after its floor too: the floor is what this bus has committed.
    jsConsumerInfo* ci = nullptr;
    jsErrCode jerr = jsErrCode(0);
    const natsStatus looked = js_GetConsumerInfo(&ci, js_.get(), o_.stream.c_str(), o_.durable.c_str(), nullptr, &jerr);
    if (looked != NATS_OK && ci != nullptr) {
      jsConsumerInfo_Destroy(ci);
      ci = nullptr;
    }
    if (ci != nullptr) {
      const uint64_t resume_at = ci->AckFloor.Stream + 1;
      const bool unacked = ci->NumAckPending > 0 || ci->Delivered.Stream > ci->AckFloor.Stream;
      if (!unacked && !restart_consumer_ && ci->Config != nullptr) {
        so.Config.DeliverPolicy = ci->Config->DeliverPolicy;
        so.Config.OptStartSeq = ci->Config->OptStartSeq;
        so.Config.OptStartTime = ci->Config->OptStartTime;
      } else if (js_DeleteConsumer(js_.get(), o_.stream.c_str(), o_.durable.c_str(), nullptr, &jerr) == NATS_OK) {
        so.Config.DeliverPolicy = js_DeliverByStartSequence;
        so.Config.OptStartSeq = resume_at;
      }
      jsConsumerInfo_Destroy(ci);
    }
    jerr = jsErrCode(0);
    const std::string filter = o_.subject_prefix + ".>";
    const natsStatus s = js_PullSubscribe(&sub_, js_.get(), filter.c_str(), o_.durable.c_str(), nullptr, &so, &jerr);
    if (s == NATS_OK) {
      if (subscribed_before_ && !quiet_resubscribe_)
        ctx_.log("pull consumer " + o_.durable + " on stream " + o_.stream + " is back");
      quiet_resubscribe_ = false;
      subscribed_before_ = true;
      restart_consumer_ = false;
      logged_.clear();
      return true;
    }
    sub_ = nullptr;
    if (jerr == JSStreamNotFoundErr || s == NATS_NOT_FOUND) {
      // The exporter (here or on another host) creates it again; an import-only bridge does too.
      try {
        if (ensure_stream(js_.get(), o_)) ctx_.log("stream " + o_.stream + " was gone (deleted?): created it again");
      } catch (const Error& e) {
        log_once(e.what());
      }
    } else {
      restart_consumer_ = true;
      log_once(nats_error(s, "cannot create the pull consumer " + o_.durable + " on stream " + o_.stream) +
               " (JetStream error " + std::to_string(int(jerr)) + "); retrying");
    }
    return false;
  }

  void drop_subscription() {
    if (sub_ == nullptr) return;
    natsSubscription_Destroy(sub_);
    sub_ = nullptr;
  }

  /// A deleted stream takes our consumer with it, and a fetch then only times out.
  void check_consumer() {
    if (sub_ == nullptr) return;
    jsConsumerInfo* ci = nullptr;
    jsErrCode jerr = jsErrCode(0);
    const natsStatus s = js_GetConsumerInfo(&ci, js_.get(), o_.stream.c_str(), o_.durable.c_str(), nullptr, &jerr);
    if (ci != nullptr) jsConsumerInfo_Destroy(ci);
    if (s == NATS_NOT_FOUND || jerr == JSConsumerNotFoundErr || jerr == JSStreamNotFoundErr) {
      ctx_.log("pull consumer " + o_.durable + " on stream " + o_.stream +
               " is gone (the stream was deleted?); creating it again");
      drop_subscription();
    }
  }

  std::optional<std::vector<uint8_t>> fetch_schema(const std::string& id) {
    natsMsg* m = nullptr;
    jsErrCode jerr = jsErrCode(0);
    const natsStatus s =
        js_GetLastMsg(&m, js_.get(), o_.stream.c_str(), schema_subject(o_.subject_prefix, id).c_str(), nullptr, &jerr);
    if (s != NATS_OK || m == nullptr) return std::nullopt;
    const auto* d = reinterpret_cast<const uint8_t*>(natsMsg_GetData(m));
    std::vector<uint8_t> bytes(d, d + natsMsg_GetDataLength(m));
    natsMsg_Destroy(m);
    return bytes;
  }

  Decision decide(const std::string& topic, const CeAttributes& ce) {
    Decision d;
    const std::optional<std::string> sid = flowbus_schema_id(ce.dataschema);
    std::optional<TopicInfo> local = bus_.find_topic(topic);
    if (!local) {
      if (!sid) {
        d.refusal = "topic " + topic + " does not exist on bus " + o_.bus +
                    " and the message names no flowbus schema (ce-dataschema '" + ce.dataschema +
                    "'): create the topic here first (`flowbus topic create`), then its events are imported";
        return d;
      }
      const std::optional<std::vector<uint8_t>> schema = fetch_schema(*sid);
      if (!schema || schema_id(*schema) != *sid) {
        d.refusal = "topic " + topic + ": its schema " + *sid + " is not in stream " + o_.stream + " (subject " +
                    schema_subject(o_.subject_prefix, *sid) + "); create the topic here first";
        return d;
      }
      TopicSpec spec;
      spec.name = topic;
      spec.type = ce.type;
      spec.schema = *schema;
      spec.ring_size = o_.import_ring_size;
      try {
        local = bus_.create_topic(spec);
        ctx_.log("created topic " + topic + " (" + ce.type + ", schema " + *sid + ") for events from " + o_.stream);
      } catch (const Error& e) {
        d.refusal = "cannot create topic " + topic + ": " + e.what();
        return d;
      }
    }
    std::string problem;
    if (local->type != ce.type) {
      problem = "another type";
    } else if (sid && *sid != local->schema_id) {
      const std::optional<std::vector<uint8_t>> remote = fetch_schema(*sid);
      if (!remote) {
        problem = "a schema (" + *sid + ") that is not in stream " + o_.stream;
      } else {
        try {
          check_compatible_evolution(local->schema, *remote);
        } catch (const Error& e) {
          problem = std::string("a schema that is not a compatible evolution of the local one: ") + e.what();
        }
      }
    }
    if (!problem.empty()) {
      d.refusal = "schema mismatch on topic " + topic + ": local type " + local->type + " (schema " + local->schema_id +
                  "), message type " + ce.type + " (dataschema '" + ce.dataschema + "'): " + problem +
                  "; not imported (rename the topic on one side, or leave it out of --import)";
      return d;
    }
    d.codec = std::make_unique<SchemaCodec>(local->schema, local->type);
    return d;
  }

  void refuse(const std::string& why) {
    ctx_.stats.refused.fetch_add(1, std::memory_order_relaxed);
    ++refused_;
    log_once(why);
  }

  /// False only when stopping before the message was committed.
  bool import(natsMsg* msg, const std::atomic<bool>& stop) {
    const std::optional<std::string> topic = topic_of(o_.subject_prefix, natsMsg_GetSubject(msg));
    if (!topic || !matches_any(o_.imports, *topic)) return true;
    CeAttributes ce;
    try {
      ce = from_headers([msg](std::string_view key) -> std::optional<std::string> {
        const char* v = nullptr;
        if (natsMsgHeader_Get(msg, std::string(key).c_str(), &v) != NATS_OK || v == nullptr) return std::nullopt;
        return std::string(v);
      });
    } catch (const std::invalid_argument& e) {
      refuse("a message on " + std::string(natsMsg_GetSubject(msg)) + " was not imported: " + e.what());
      return true;
    }
    if (ce.flowbusorigin == o_.node) return true;  // ours, come back: we hold it
    if (!ce.datacontenttype.empty() && ce.datacontenttype != kFlatBuffersContentType) {
      refuse("a message on " + std::string(natsMsg_GetSubject(msg)) + " was not imported: content-type '" +
             ce.datacontenttype + "' (a bus carries " + std::string(kFlatBuffersContentType) + " only)");
      return true;
    }
    const std::string key = *topic + "\n" + ce.type + "\n" + ce.dataschema;
    auto dit = decisions_.find(key);
    if (dit == decisions_.end()) dit = decisions_.emplace(key, decide(*topic, ce)).first;
    const Decision& d = dit->second;
    if (!d.refusal.empty()) {
      refuse(d.refusal);
      topic_refusals_[*topic] = d.refusal;
      return true;
    }
    const auto* data = reinterpret_cast<const uint8_t*>(natsMsg_GetData(msg));
    const size_t size = size_t(natsMsg_GetDataLength(msg));
    const std::optional<std::pair<uint64_t, uint64_t>> id = parse_flowbus_id(ce.id);
    const bool foreign = !id || ce.flowbusorigin.empty();
    if (foreign && !d.codec->verify(data, size)) {
      refuse("a message on " + std::string(natsMsg_GetSubject(msg)) + " (ce-id " + ce.id +
             ") was not imported: its payload is not a " + ce.type + " FlatBuffer");
      return true;
    }
    const uint64_t publisher_id = id && !ce.flowbusorigin.empty() ? id->first : foreign_publisher_id(ce.source);
    auto mit = mirrors_.find(publisher_id);
    if (mit == mirrors_.end()) {
      try {
        Publisher made = mirroring::mirror_publisher(
            bus_, *topic,
            {publisher_id, ce.source, ce.flowbusorigin.empty() ? std::string("nats") : ce.flowbusorigin,
             foreign ? UINT64_MAX : id->second});
        mit = mirrors_.emplace(publisher_id, Mirror{std::make_unique<Publisher>(std::move(made)), *topic, ce.source})
                  .first;
      } catch (const Error& e) {
        refuse("cannot mirror topic " + *topic + " from " + ce.source + ": " + e.what());
        return true;
      }
    }
    Mirror& mirror = mit->second;
    if (mirror.publisher->topic() != *topic) {
      refuse("source " + ce.source + " publishes topic " + *topic + " but is mirrored on topic " +
             mirror.publisher->topic() + " here; not imported");
      return true;
    }
    // A flowbus event keeps its id: (source, id) held already is a redelivery, dropped by
    // publish_mirrored. Another publisher's event takes the mirror ring's next sequence.
    const uint64_t seq = foreign ? mirror.publisher->next_sequence() : id->second;
    const uint64_t time_ns = parse_rfc3339_ns(ce.time).value_or(unix_ns());
    if (!foreign && seq > mirror.publisher->next_sequence()) {
      // A hole. If the exporter sent the missing events before this one
      // (Flowbus-Prev), the stream has them out of order (resent after a lost
      // connection, or redelivered after newer ones): hold this one until they
      // come. Otherwise the exporter could not send them: a gap, committed now.
      const char* prev = nullptr;
      const bool sent_before = natsMsgHeader_Get(msg, "Flowbus-Prev", &prev) == NATS_OK && prev != nullptr &&
                               std::strtoull(prev, nullptr, 10) >= mirror.publisher->next_sequence();
      if (sent_before || !mirror.held.empty()) {
        hold(mirror, seq, {data, data + size}, time_ns, ce.subject);
        return true;
      }
    }
    if (!commit(mirror, {data, size}, seq, time_ns, ce.subject, stop)) return false;
    return commit_held(mirror, stop);
  }

  /// Writes one event to its mirror ring; false only when stopping first.
  bool commit(Mirror& mirror, std::span<const uint8_t> bytes, uint64_t seq, uint64_t time_ns,
              const std::string& subject, const std::atomic<bool>& stop) {
    for (;;) {
      const PublishStatus st =
          mirroring::publish_mirrored(*mirror.publisher, bytes, seq, time_ns, subject, std::chrono::milliseconds(100));
      if (st == PublishStatus::Full) {
        if (stop.load(std::memory_order_relaxed)) return false;
        continue;  // a local reader is slow: JetStream keeps the rest meanwhile
      }
      if (st == PublishStatus::Ok)
        ctx_.stats.events_received.fetch_add(1, std::memory_order_relaxed);
      else if (st == PublishStatus::Duplicate)
        ctx_.stats.duplicates_dropped.fetch_add(1, std::memory_order_relaxed);
      else
        refuse("an event of " + std::to_string(bytes.size()) + " bytes on " + mirror.topic +
               " was not imported: " + to_string(st));
      return true;
    }
  }

  void hold(Mirror& mirror, uint64_t seq, std::vector<uint8_t> bytes, uint64_t time_ns, const std::string& subject) {
    if (mirror.held.empty()) {
      mirror.held_since = Clock::now();
      ctx_.log("events from " + std::to_string(mirror.publisher->next_sequence()) + " of " + mirror.source +
               " come later in stream " + o_.stream + " than event " + std::to_string(seq) +
               ": holding what follows until they come");
    }
    auto [it, added] = mirror.held.try_emplace(seq);
    if (!added) return;  // delivered again (read from the floor again): held already
    held_bytes_ += bytes.size();
    ++held_count_;
    it->second = {std::move(bytes), time_ns, subject};
    if (held_count_ > kMaxHeldMessages || held_bytes_ > kMaxHeldBytes) give_up_hole(mirror, "too much held");
  }

  /// Commits what is held of `mirror` that is next in line.
  bool commit_held(Mirror& mirror, const std::atomic<bool>& stop) {
    while (!mirror.held.empty() && mirror.held.begin()->first <= mirror.publisher->next_sequence()) {
      auto it = mirror.held.begin();
      if (!commit(mirror, it->second.bytes, it->first, it->second.time_ns, it->second.subject, stop)) return false;
      release(mirror, it);
      if (mirror.held.empty())
        ctx_.log("events of " + mirror.source + " are in order again (up to " +
                 std::to_string(mirror.publisher->next_sequence() - 1) + ")");
    }
    return true;
  }

  void release(Mirror& mirror, std::map<uint64_t, Held>::iterator it) {
    held_bytes_ -= it->second.bytes.size();
    --held_count_;
    mirror.held.erase(it);
  }

  /// The missing events did not come: commit what is held, with the gap
  /// before it (the mirror ring counts it, and readers are told Lost).
  void give_up_hole(Mirror& mirror, const std::string& why) {
    const uint64_t from = mirror.publisher->next_sequence(), to = mirror.held.begin()->first - 1;
    ctx_.log("events " + std::to_string(from) + " to " + std::to_string(to) + " of " + mirror.source +
             " did not come (" + why + "); readers on this bus are told they are lost");
    ctx_.stats.gaps.fetch_add(to - from + 1, std::memory_order_relaxed);
    const std::atomic<bool> go_on{false};
    while (!mirror.held.empty()) {
      auto it = mirror.held.begin();
      (void)commit(mirror, it->second.bytes, it->first, it->second.time_ns, it->second.subject, go_on);
      release(mirror, it);
      if (!mirror.held.empty() && mirror.held.begin()->first > mirror.publisher->next_sequence()) break;
    }
    if (!mirror.held.empty()) mirror.held_since = Clock::now();  // another hole behind this one
  }

  void give_up_overdue_holes(const std::atomic<bool>& stop) {
    if (held_count_ == 0 || stop.load(std::memory_order_relaxed)) return;
    for (auto& [id, mirror] : mirrors_)
      if (!mirror.held.empty() && Clock::now() - mirror.held_since > o_.reorder_wait)
        give_up_hole(mirror, "waited --reorder-wait-s " + std::to_string(o_.reorder_wait.count()) + " s");
  }

  /// With a hole open and nothing more to read: the missing events may be in
  /// the stream before what was delivered (the server redelivers what it
  /// delivered without an ack only after AckWait), so start the consumer
  /// again after the acknowledged floor, which lies before every held event.
  void read_again_from_floor() {
    const Clock::time_point now = Clock::now();
    if (now - last_reread_ < kRereadEvery) return;
    last_reread_ = now;
    restart_consumer_ = quiet_resubscribe_ = true;
    drop_subscription();
  }

  void publish_status() {
    std::string json = "[";
    bool first = true;
    for (const auto& [id, m] : mirrors_) {
      json += std::string(first ? "" : ",") + "{\"topic\":" + json_text(m.topic) +
              ",\"origin\":" + json_text(o_.stream + " (" + o_.durable + ")") +
              ",\"publisher_id\":" + json_text(hex_id(id)) +
              ",\"next_sequence\":" + std::to_string(m.publisher->next_sequence()) + ",\"gaps\":0}";
      first = false;
    }
    for (const auto& [topic, why] : topic_refusals_) {
      json += std::string(first ? "" : ",") + "{\"topic\":" + json_text(topic) + ",\"origin\":" + json_text(o_.stream) +
              ",\"publisher_id\":\"0000000000000000\",\"next_sequence\":0,\"gaps\":0,\"refused\":" + json_text(why) +
              "}";
      first = false;
    }
    json += "]";
    std::lock_guard<std::mutex> lock(ctx_.status_mutex);
    ctx_.imports_json = json;
  }

  BridgeContext& ctx_;
  const BridgeOptions& o_;
  Bus bus_;
  JetStream js_;
  natsSubscription* sub_ = nullptr;
  bool subscribed_before_ = false;
  bool restart_consumer_ = false;   // start our consumer again after its floor (refused, or reading again)
  bool quiet_resubscribe_ = false;  // a planned re-read from the floor: not worth a log line
  std::map<std::string, Decision> decisions_;
  std::map<std::string, std::string> topic_refusals_;
  std::map<uint64_t, Mirror> mirrors_;
  std::set<std::string> logged_;
  size_t held_count_ = 0, held_bytes_ = 0;
  Clock::time_point last_reread_{};
  uint64_t refused_ = 0;
};

}  // namespace

void run_importer(BridgeContext& ctx, const std::atomic<bool>& stop) {
  if (ctx.options.imports.empty()) return;
  Importer(ctx).run(stop);
}

}  // namespace flowbus::bridge
