// The export side (see exporter.hpp).
#include "exporter.hpp"

#include <chrono>
#include <cstdio>
#include <deque>
#include <fstream>
#include <map>
#include <set>
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
constexpr size_t kReadBudget = 4096;
constexpr int64_t kPublishMaxWaitMs = 5000;  // an ack not back by then counts as failed: sent again

/// One asynchronous publish's outcome, from a NATS thread to the exporter's.
struct AckNote {
  uint64_t publisher_id = 0, sequence = 0;
  bool ok = false, duplicate = false, stream_gone = false;
  std::string error;
};

struct AckQueue {
  std::mutex mutex;
  std::vector<AckNote> notes;
};

void on_ack(jsCtx*, natsMsg* msg, jsPubAck* pa, jsPubAckErr* pae, void* closure) {
  AckNote n;
  const char* id = nullptr;
  if (natsMsgHeader_Get(msg, "ce-id", &id) == NATS_OK && id != nullptr)
    if (auto parsed = parse_flowbus_id(id)) n.publisher_id = parsed->first, n.sequence = parsed->second;
  if (pa != nullptr) {
    n.ok = true;
    n.duplicate = pa->Duplicate;
  } else if (pae != nullptr) {
    n.error = pae->ErrText != nullptr && *pae->ErrText ? pae->ErrText : natsStatus_GetText(pae->Err);
    n.stream_gone = pae->ErrCode == JSStreamNotFoundErr || pae->Err == NATS_NO_RESPONDERS;
  }
  natsMsg_Destroy(msg);
  auto* q = static_cast<AckQueue*>(closure);
  std::lock_guard<std::mutex> lock(q->mutex);
  q->notes.push_back(std::move(n));
}

bool matches_any(const std::vector<std::string>& patterns, std::string_view topic) {
  for (const std::string& p : patterns)
    if (pattern_matches(p, topic)) return true;
  return false;
}

struct InFlight {
  uint64_t sequence = 0, next_position = 0;
  bool done = false;
};

struct ExportRing {
  bool known = false;
  uint64_t publisher_id = 0;
  std::string topic, subject, origin;
  uint64_t next_sequence = 0;   // next to publish
  uint64_t acked_sequence = 0;  // JetStream holds everything below it
  std::deque<InFlight> inflight;
  bool failed = false;  // a publish failed: rewind once the others are resolved
  uint64_t gaps = 0;
  Policy policy = Policy::Block;
  uint64_t prev_sent = 0;  // the last event published (Flowbus-Prev of the next one)
  bool has_prev = false;
};

/// Acknowledged sequences per origin ring, kept next to the bus's segments so
/// a restarted bridge does not publish again what JetStream holds.
std::string resume_path(const BridgeOptions& o) {
  return "/dev/shm/flowbus." + o.bus + ".~bridge-" + o.node + ".resume";
}

std::map<uint64_t, uint64_t> load_resume(const BridgeOptions& o) {
  std::map<uint64_t, uint64_t> out;
  std::ifstream in(resume_path(o));
  std::string hex;
  uint64_t acked = 0;
  while (in >> hex >> acked) out[std::strtoull(hex.c_str(), nullptr, 16)] = acked;
  return out;
}

class Exporter {
 public:
  Exporter(BridgeContext& ctx) : ctx_(ctx), o_(ctx.options), bus_(Bus::open(o_.bus)) {
    js_ = jetstream(ctx.nc, o_, on_ack, acks_);
    resume_ = load_resume(o_);
    SubscriberOptions so;
    so.from = StartAt::Earliest;
    mirroring::ExportOptions how;
    how.hold_until_acknowledged = true;
    how.accept_ring = [this](const RingContext& ring) {
      if (!matches_any(o_.exports, ring.topic)) return false;
      if (!ring.mirrored()) return true;
      return matches_any(o_.reexports, ring.topic);  // never back by default (no loops)
    };
    how.reserve_new_rings = true;  // JetStream is always "there": new rings wait for it
    sub_ = std::make_unique<Subscriber>(mirroring::export_subscriber(bus_, ">", so, std::move(how)));
  }

  ~Exporter() {
    js_.reset();
    if (pending_ == 0) delete acks_;
  }
  Exporter(const Exporter&) = delete;
  Exporter& operator=(const Exporter&) = delete;

  void run(const std::atomic<bool>& stop) {
    Clock::time_point last_status = Clock::now();
    while (!stop.load(std::memory_order_relaxed)) {
      check_disconnects();  // here too: with max_pending in flight, pump() reads nothing
      bool did = drain_acks();
      recover();
      did |= pump();
      const Clock::time_point now = Clock::now();
      if (now - last_status > std::chrono::milliseconds(200)) {
        publish_status();
        last_status = now;
      }
      if (!did) {
        if (pending_ == 0)
          (void)sub_->wait(std::chrono::milliseconds(2));
        else
          std::this_thread::sleep_for(std::chrono::microseconds(50));
      }
    }
    // Give what is in flight a moment to be acknowledged, so a restart resends little.
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = 2000;
    (void)js_PublishAsyncComplete(js_.get(), &po);
    drain_acks();
    publish_status();
  }

 private:
  bool drain_acks() {
    {
      std::lock_guard<std::mutex> lock(acks_->mutex);
      if (acks_->notes.empty()) return false;
      taken_.swap(acks_->notes);
    }
    for (const AckNote& n : taken_) {
      --pending_;
      auto it = by_publisher_.find(n.publisher_id);
      if (it == by_publisher_.end()) continue;
      const uint32_t ring = it->second;
      ExportRing& r = rings_[ring];
      for (InFlight& f : r.inflight)
        if (f.sequence == n.sequence && !f.done) {
          f.done = n.ok;
          break;
        }
      if (n.ok) {
        if (n.duplicate)
          ctx_.stats.duplicates_dropped.fetch_add(1, std::memory_order_relaxed);
        else
          ctx_.stats.events_sent.fetch_add(1, std::memory_order_relaxed);
      } else {
        if (!r.failed && error_logged_.insert(n.error).second)
          ctx_.log("JetStream did not acknowledge an event of " + r.topic + " (" + n.error +
                   "); sending again from event " + std::to_string(r.acked_sequence));
        r.failed = true;
        if (n.stream_gone) stream_gone_ = true;
      }
      uint64_t release_to = 0;
      while (!r.inflight.empty() && r.inflight.front().done) {
        release_to = r.inflight.front().next_position;
        r.acked_sequence = r.inflight.front().sequence + 1;
        r.inflight.pop_front();
      }
      if (release_to != 0 && r.policy == Policy::Block) mirroring::acknowledge(*sub_, ring, release_to);
    }
    taken_.clear();
    return true;
  }

  /// Rings whose publish failed: once nothing of them is pending any more,
  /// read them again from the last acknowledged event.
  void recover() {
    bool any = false;
    for (const ExportRing& r : rings_) any |= r.failed;
    if (!any) return;
    if (pending_ != 0) return;  // every outcome first: then the ring's state is exact
    const Clock::time_point now = Clock::now();
    if (now < retry_at_) return;
    retry_at_ = now + std::chrono::milliseconds(250);
    if (stream_gone_) {
      try {
        if (ensure_stream(js_.get(), o_))
          ctx_.log("stream " + o_.stream + " was gone (deleted?): created it again; what it held is lost, sending on");
        published_schemas_.clear();
        stream_gone_ = false;
      } catch (const Error& e) {
        ctx_.log(std::string("stream ") + o_.stream + " is gone and cannot be created again: " + e.what());
        return;
      }
    }
    for (uint32_t ring = 0; ring < rings_.size(); ++ring) {
      ExportRing& r = rings_[ring];
      if (!r.failed) continue;
      mirroring::rewind(*sub_, ring);
      r.inflight.clear();
      r.next_sequence = r.acked_sequence;
      r.has_prev = r.acked_sequence > 0 && r.has_prev;
      r.prev_sent = r.acked_sequence - 1;
      r.failed = false;
    }
    error_logged_.clear();
  }

  void publish_schema(const std::string& topic) {
    const std::optional<TopicInfo> info = bus_.find_topic(topic);
    if (!info || published_schemas_.count(info->schema_id)) return;
    natsMsg* m = nullptr;
    if (natsMsg_Create(&m, schema_subject(o_.subject_prefix, info->schema_id).c_str(), nullptr,
                       reinterpret_cast<const char*>(info->schema.data()), int(info->schema.size())) != NATS_OK)
      return;
    natsMsgHeader_Set(m, "Nats-Msg-Id", ("schema-" + info->schema_id).c_str());
    natsMsgHeader_Set(m, "content-type", "application/x-flatbuffers-schema");
    natsMsgHeader_Set(m, "flowbus-type", info->type.c_str());
    natsMsgHeader_Set(m, "flowbus-schema-id", info->schema_id.c_str());
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = kPublishMaxWaitMs;
    jsErrCode jerr = jsErrCode(0);
    const natsStatus s = js_PublishMsg(nullptr, js_.get(), m, &po, &jerr);
    natsMsg_Destroy(m);
    if (s == NATS_OK)
      published_schemas_.insert(info->schema_id);
    else
      ctx_.log(nats_error(s, "cannot store the schema of topic " + topic + " in stream " + o_.stream) + "; retrying");
  }

  /// The server went away: what was in flight may be lost while later
  /// publishes succeed. Every ring with events in flight is resent in order.
  void check_disconnects() {
    const uint64_t now = disconnects();
    if (now == seen_disconnects_) return;
    seen_disconnects_ = now;
    for (ExportRing& r : rings_)
      if (!r.inflight.empty() && !r.failed) r.failed = true;
  }

  bool pump() {
    Event e;
    size_t done = 0;
    for (; done < kReadBudget && pending_ < o_.max_pending; ++done) {
      check_disconnects();
      const ReadResult rr = sub_->read(e);
      if (rr.status == ReadStatus::Empty) break;
      if (rr.status == ReadStatus::Corrupt) {
        ctx_.log("ring " + std::string(rr.ring) +
                 " failed a consistency check and is no longer exported; `flowbus inspect " + o_.bus +
                 " --check` says why");
        continue;
      }
      if (rr.status != ReadStatus::Ok) continue;  // Lost/Evicted: the sequence jump below reports the gap
      const uint32_t ring = e.ring();
      if (rings_.size() <= ring) rings_.resize(ring + 1);
      ExportRing& r = rings_[ring];
      const uint64_t seq = e.sequence();
      if (r.failed) {  // read again after the rewind
        (void)sub_->release(e);
        continue;
      }
      if (!r.known) {
        const RingContext& c = e.context();
        const auto held = resume_.find(c.publisher_id);
        if (held != resume_.end() && seq < held->second) {  // JetStream has it (an earlier run sent it)
          (void)sub_->release(e);
          mirroring::acknowledge(*sub_, ring, e.next_position());
          continue;
        }
        r.known = true;
        r.publisher_id = c.publisher_id;
        r.topic = c.topic;
        r.subject = subject_of(o_.subject_prefix, c.topic);
        r.origin = c.mirrored() ? c.origin_node : o_.node;
        r.policy = sub_->ring_policy(ring);
        r.next_sequence = r.acked_sequence = seq;
        if (held != resume_.end() && seq > held->second) {
          // Overwritten while no bridge held the ring (this one was down longer than the ring's retention).
          ctx_.log("topic " + c.topic + " from " + c.source + ": events " + std::to_string(held->second) + " to " +
                   std::to_string(seq - 1) + " were overwritten while the bridge was away; they can not be exported");
          ctx_.stats.gaps.fetch_add(seq - held->second, std::memory_order_relaxed);
          r.gaps += seq - held->second;
        }
        by_publisher_[c.publisher_id] = ring;
      }
      if (!published_schemas_.count(e.dataschema().substr(std::string_view("flowbus:schema/").size())))
        publish_schema(r.topic);
      if (seq < r.next_sequence) {  // sent already
        (void)sub_->release(e);
        continue;
      }
      if (seq > r.next_sequence) {
        ctx_.log("topic " + r.topic + " from " + e.source() + ": events " + std::to_string(r.next_sequence) + " to " +
                 std::to_string(seq - 1) + " can not be exported: the ring no longer holds them");
        ctx_.stats.gaps.fetch_add(seq - r.next_sequence, std::memory_order_relaxed);
        r.gaps += seq - r.next_sequence;
        if (r.inflight.empty()) r.acked_sequence = seq;
      }
      natsMsg* m = nullptr;
      natsStatus s =
          natsMsg_Create(&m, r.subject.c_str(), nullptr, reinterpret_cast<const char*>(e.data()), int(e.size()));
      if (s == NATS_OK) {
        CeAttributes ce;
        ce.id = e.id();
        ce.source = e.source();
        ce.type = e.type();
        ce.time = format_rfc3339(e.time_ns());
        ce.subject = std::string(e.subject());
        ce.dataschema = e.dataschema();
        ce.flowbustopic = r.topic;
        ce.flowbusseq = std::to_string(seq);
        ce.flowbusorigin = r.origin;
        for (const auto& [k, v] : to_headers(ce)) natsMsgHeader_Set(m, k.c_str(), v.c_str());
        natsMsgHeader_Set(m, "Nats-Msg-Id", ce.id.c_str());
        // The previous event sent of this ring: an importer that misses it knows the stream
        // delivered out of order (a redelivery still to come), not a gap at the source.
        if (r.has_prev) natsMsgHeader_Set(m, "Flowbus-Prev", std::to_string(r.prev_sent).c_str());
      }
      // Copied; intact? (Latest: the writer may have lapped us; Block: only if we were evicted.)
      const bool intact = r.policy == Policy::Latest ? sub_->still_valid(e) : sub_->release(e) != ReadStatus::Evicted;
      if (r.policy == Policy::Latest) (void)sub_->release(e);
      if (s != NATS_OK || !intact) {
        natsMsg_Destroy(m);
        if (s != NATS_OK) {
          r.failed = true;
          break;
        }
        continue;  // the next event's sequence jump reports it
      }
      jsPubOptions po;
      jsPubOptions_Init(&po);
      po.MaxWait = kPublishMaxWaitMs;
      s = js_PublishMsgAsync(js_.get(), &m, &po);
      if (s != NATS_OK) {
        if (m != nullptr) natsMsg_Destroy(m);
        if (error_logged_.insert(natsStatus_GetText(s)).second)
          ctx_.log(nats_error(s, "cannot publish to " + r.subject) + "; sending again");
        r.failed = true;
        break;
      }
      ++pending_;
      r.inflight.push_back({seq, e.next_position(), false});
      r.next_sequence = seq + 1;
      r.prev_sent = seq;
      r.has_prev = true;
    }
    return done != 0;
  }

  void publish_status() {
    std::string json = "[";
    std::string resume;
    bool first = true;
    for (const ExportRing& r : rings_) {
      if (!r.known) continue;
      json += std::string(first ? "" : ",") + "{\"topic\":" + json_text(r.topic) +
              ",\"publisher_id\":" + json_text(hex_id(r.publisher_id)) +
              ",\"sent_sequence\":" + std::to_string(r.next_sequence) +
              ",\"acked_sequence\":" + std::to_string(r.acked_sequence) +
              ",\"pending_acks\":" + std::to_string(r.inflight.size()) + ",\"gaps\":" + std::to_string(r.gaps) + "}";
      first = false;
      resume += hex_id(r.publisher_id) + " " + std::to_string(r.acked_sequence) + "\n";
      resume_[r.publisher_id] = r.acked_sequence;
    }
    json += "]";
    {
      std::lock_guard<std::mutex> lock(ctx_.status_mutex);
      ctx_.exports_json = json;
      ctx_.pending_acks = pending_;
    }
    for (const auto& [id, acked] : resume_)
      if (!by_publisher_.count(id)) resume += hex_id(id) + " " + std::to_string(acked) + "\n";
    if (resume == last_resume_) return;
    const std::string path = resume_path(o_), tmp = path + ".tmp";
    if (FILE* f = std::fopen(tmp.c_str(), "w")) {
      const bool ok = std::fwrite(resume.data(), 1, resume.size(), f) == resume.size();
      if (std::fclose(f) == 0 && ok && std::rename(tmp.c_str(), path.c_str()) == 0)
        last_resume_ = resume;
      else
        std::remove(tmp.c_str());
    }
  }

  BridgeContext& ctx_;
  const BridgeOptions& o_;
  Bus bus_;
  // A NATS thread may still call on_ack after this exporter is gone if a
  // publish is pending at exit: then the queue is left to the process's end.
  AckQueue* acks_ = new AckQueue;
  JetStream js_;
  std::unique_ptr<Subscriber> sub_;
  std::vector<ExportRing> rings_;
  std::map<uint64_t, uint32_t> by_publisher_;
  std::map<uint64_t, uint64_t> resume_;
  std::set<std::string> published_schemas_, error_logged_;
  std::vector<AckNote> taken_;
  size_t pending_ = 0;
  uint64_t seen_disconnects_ = disconnects();
  bool stream_gone_ = false;
  Clock::time_point retry_at_{};
  std::string last_resume_;
};

}  // namespace

void run_exporter(BridgeContext& ctx, const std::atomic<bool>& stop) {
  if (ctx.options.exports.empty()) return;
  Exporter(ctx).run(stop);
}

}  // namespace flowbus::bridge
