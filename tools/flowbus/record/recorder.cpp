#include "recorder.hpp"

#include <cstdio>
#include <ctime>

#include "../cli_util.hpp"
#include "conventions.hpp"
#include "flowbus/error.hpp"
#include "flowbus/names.hpp"
#include "flowbus/version.hpp"

namespace flowbus::record {

struct Recorder::RingState {
  RingContext context;
  TopicInfo topic;
  size_t owner_sub = 0;  // the subscription that records it (patterns may overlap)
  uint16_t channel = 0;  // in the current file; 0: not yet
  uint16_t subject_channel = 0;
  bool has_last = false;
  uint64_t last_sequence = 0;
  uint64_t gaps = 0;  // events missing between two recorded ones (sequence gaps)
  uint64_t events = 0;
};

namespace {

uint64_t now_unix_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return uint64_t(ts.tv_sec) * 1'000'000'000ull + uint64_t(ts.tv_nsec);
}

}  // namespace

Recorder::Recorder(RecorderOptions options) : options_(std::move(options)), bus_(Bus::open_existing(options_.bus)) {
  for (const std::string& p : options_.patterns) validate_pattern(p);
  SubscriberOptions so;
  so.from = options_.from;
  for (const std::string& p : options_.patterns) subs_.push_back(bus_.subscribe(p, so));
  by_sub_ring_.resize(subs_.size());
  open_file();
  started_ns_ = now_unix_ns();
}

Recorder::~Recorder() = default;

std::vector<std::string> Recorder::unmatched_patterns() const {
  std::vector<std::string> out;
  const auto topics = bus_.topics();
  for (const std::string& p : options_.patterns) {
    bool any = false;
    for (const TopicInfo& t : topics) any |= pattern_matches(p, t.name);
    if (!any) out.push_back(p);
  }
  return out;
}

std::string Recorder::next_path() const {
  if (file_index_ == 0) return options_.output;
  const std::string& o = options_.output;
  const size_t slash = o.rfind('/');
  const size_t dot = o.rfind('.');
  const bool has_ext = dot != std::string::npos && (slash == std::string::npos || dot > slash + 1);
  const std::string stem = has_ext ? o.substr(0, dot) : o;
  const std::string ext = has_ext ? o.substr(dot) : "";
  return stem + "-" + std::to_string(file_index_) + ext;
}

void Recorder::open_file() {
  mcap::WriterOptions wo;
  wo.compression = options_.compression;
  wo.chunk_size = options_.chunk_size;
  wo.profile = "";
  wo.library = "flowbus " FLOWBUS_VERSION_STRING;
  const std::string path = next_path();
  writer_ = std::make_unique<mcap::Writer>(path, wo);
  totals_.files.push_back(path);
  schema_ids_.clear();
  for (auto& [key, ring] : rings_) ring->channel = ring->subject_channel = 0;
  lost_written_ = 0;
}

void Recorder::write_losses_if_any() {
  if (totals_.lost == lost_written_) return;
  writer_->add_metadata(kLossesRecord, {{"lost", std::to_string(totals_.lost)},
                                        {"evictions", std::to_string(totals_.evictions)},
                                        {"time_ns", std::to_string(now_unix_ns())}});
  lost_written_ = totals_.lost;
}

void Recorder::finish_file() {
  if (!writer_) return;
  write_losses_if_any();
  mcap::KeyValues kv{{"bus", options_.bus},
                     {"patterns", cli::json_string_array(options_.patterns)},
                     {"events", std::to_string(totals_.events)},
                     {"lost", std::to_string(totals_.lost)},
                     {"evictions", std::to_string(totals_.evictions)},
                     {"corrupt_rings", std::to_string(totals_.corrupt_rings)},
                     {"started_ns", std::to_string(started_ns_)},
                     {"stopped_ns", std::to_string(now_unix_ns())},
                     {"stop_reason", stop_reason_},
                     {"compression", mcap::compression_name(options_.compression)}};
  for (const auto& [key, ring] : rings_)
    if (ring->gaps != 0)
      kv.emplace_back("gaps." + ring->context.topic + "@" + ring->context.publisher_name, std::to_string(ring->gaps));
  writer_->add_metadata(kRecordingRecord, std::move(kv));
  writer_->close();
  bytes_before_ += writer_->bytes_written();
  writer_.reset();
}

Recorder::RingState& Recorder::ring_for(size_t sub, const Event& event) {
  auto& slots = by_sub_ring_[sub];
  if (event.ring() >= slots.size()) slots.resize(event.ring() + 1, nullptr);
  RingState*& slot = slots[event.ring()];
  if (slot) return *slot;
  const RingContext& c = subs_[sub].ring_context(event.ring());
  auto& owned = rings_[{c.topic, c.publisher_id}];
  if (!owned) {
    owned = std::make_unique<RingState>();
    owned->context = c;
    owned->owner_sub = sub;
    auto info = bus_.find_topic(c.topic);
    if (!info)
      throw Error(ErrorCode::NotFound,
                  "topic '" + c.topic + "' vanished from bus '" + options_.bus + "' while recording");
    owned->topic = std::move(*info);
    totals_.rings = rings_.size();
  }
  slot = owned.get();
  return *slot;
}

uint16_t Recorder::channel_for(RingState& ring, const Event& event) {
  if (ring.channel != 0) return ring.channel;
  auto [it, fresh] = schema_ids_.try_emplace(ring.topic.schema_id, 0);
  if (fresh) it->second = writer_->add_schema(ring.topic.type, kEncoding, ring.topic.schema);
  ring.channel = writer_->add_channel(it->second, ring.context.topic, kEncoding,
                                      channel_metadata(ring.context, ring.topic, options_.bus, event.sequence()));
  return ring.channel;
}

uint16_t Recorder::subject_channel_for(RingState& ring) {
  if (ring.subject_channel != 0) return ring.subject_channel;
  ring.subject_channel = writer_->add_channel(0, ring.context.topic + kSubjectSuffix, kSubjectEncoding,
                                              {{"flowbus.subject_of", std::to_string(ring.channel)}});
  return ring.subject_channel;
}

void Recorder::run(const volatile std::sig_atomic_t& stop, const std::function<void(const RecorderTotals&)>& progress) {
  using clock = std::chrono::steady_clock;
  const auto start = clock::now();
  auto last_progress = start;
  bool done = false;
  auto record_event = [&](size_t sub, const Event& e) {
    RingState& ring = ring_for(sub, e);
    if (ring.owner_sub != sub) return;  // an earlier pattern records this ring
    std::span<const uint8_t> data(e.data(), e.size());
    if (subs_[sub].ring_policy(e.ring()) == Policy::Latest) {
      // The writer may lap us while we copy: copy first, then check.
      scratch_.assign(e.data(), e.data() + e.size());
      if (!subs_[sub].still_valid(e)) {
        ++totals_.lost;
        return;
      }
      data = scratch_;
    }
    const uint16_t channel = channel_for(ring, e);
    const uint64_t seq = e.sequence();
    if (ring.has_last && seq > ring.last_sequence + 1) ring.gaps += seq - ring.last_sequence - 1;
    ring.has_last = true;
    ring.last_sequence = seq;
    const uint64_t t = e.time_ns();
    if (!e.subject().empty()) {
      const std::string json = "{\"subject\":\"" + cli::json_escape(e.subject()) + "\"}";
      writer_->add_message(subject_channel_for(ring), uint32_t(seq), t, t,
                           {reinterpret_cast<const uint8_t*>(json.data()), json.size()});
    }
    writer_->add_message(channel, uint32_t(seq), t, t, data);
    ++ring.events;
    ++totals_.events;
    totals_.payload_bytes += e.size();
  };
  while (!done) {
    if (stop) {
      stop_reason_ = "interrupted";
      break;
    }
    size_t got = 0;
    for (size_t s = 0; s < subs_.size() && !done; ++s) {
      for (int k = 0; k < 512; ++k) {
        Event e;
        const ReadResult r = subs_[s].read(e);
        if (r.status == ReadStatus::Ok) {
          try {
            record_event(s, e);
          } catch (...) {
            (void)subs_[s].release(e);
            throw;
          }
          if (subs_[s].release(e) == ReadStatus::Evicted) ++totals_.lost;  // its bytes may be torn: counted, kept
          ++got;
          if (options_.count != 0 && totals_.events >= options_.count) {
            stop_reason_ = "count reached";
            done = true;
            break;
          }
          if (options_.max_size != 0 && writer_->bytes_written() + writer_->pending_bytes() >= options_.max_size) {
            if (!options_.split) {
              stop_reason_ = "max size reached";
              done = true;
              break;
            }
            finish_file();
            ++file_index_;
            open_file();
          }
          continue;
        }
        if (r.status == ReadStatus::Empty || r.status == ReadStatus::WrongProcess) break;
        totals_.lost += r.missed;
        if (r.status == ReadStatus::Evicted) ++totals_.evictions;
        if (r.status == ReadStatus::Corrupt) {
          ++totals_.corrupt_rings;
          std::fprintf(stderr, "flowbus record: ring %s is corrupt and no longer recorded\n",
                       std::string(r.ring).c_str());
        }
      }
    }
    const auto now = clock::now();
    if (!done && options_.duration != kNever && now - start >= options_.duration) {
      stop_reason_ = "duration reached";
      done = true;
    }
    if (writer_->pending_bytes() != 0 && now - writer_->chunk_opened() >= options_.chunk_age) {
      writer_->flush_chunk();
      write_losses_if_any();
    }
    if (now - last_progress >= std::chrono::seconds(1)) {
      last_progress = now;
      totals_.file_bytes = bytes_before_ + writer_->bytes_written();
      if (progress) progress(totals_);
    }
    if (got == 0 && !done) {
      const auto slice = subs_.size() == 1 ? std::chrono::milliseconds(50) : std::chrono::milliseconds(2);
      for (auto& s : subs_) s.wait(slice);
    }
  }
  finish_file();
  totals_.file_bytes = bytes_before_;
}

}  // namespace flowbus::record
