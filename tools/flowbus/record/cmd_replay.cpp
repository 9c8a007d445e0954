// flowbus replay: publish a recording's events again, with their original
// identity (id, source, time) on mirror rings marked with the origin node
// "replay", so a consumer tells them from live events.
#include <signal.h>

#include <cmath>
#include <csignal>
#include <cstdio>
#include <map>
#include <optional>
#include <thread>

#include "../cli_util.hpp"
#include "conventions.hpp"
#include "flowbus/bus.hpp"
#include "flowbus/error.hpp"
#include "flowbus/internal/mirroring.hpp"
#include "flowbus/mcap/reader.hpp"
#include "flowbus/names.hpp"
#include "flowbus/schema.hpp"

namespace flowbus::cli {

namespace {

volatile std::sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }

/// --speed: "max" -> 0 (no pacing), else a factor above 0.
double parse_speed(const std::string& text) {
  if (text == "max") return 0;
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(text, &used);
  } catch (...) {
  }
  if (text.empty() || used != text.size() || !std::isfinite(v) || v <= 0 || v > 1e6)
    throw CLI::ValidationError("--speed",
                               "'" + text +
                                   "' is not a speed: give a factor above 0 and at most 1000000 (1.0 "
                                   "keeps the recorded spacing, 2 is twice as fast) or max (as fast as possible)");
  return v;
}

/// The subject a side-channel message carries: {"subject":"..."} as the recorder writes it.
std::string subject_from_json(std::span<const uint8_t> data) {
  const std::string text(reinterpret_cast<const char*>(data.data()), data.size());
  const std::string key = "{\"subject\":\"", tail = "\"}";
  if (text.size() < key.size() + tail.size() || text.rfind(key, 0) != 0 || text.compare(text.size() - 2, 2, tail) != 0)
    throw mcap::McapError("a subject message is not {\"subject\":\"...\"}");
  const size_t end = text.size() - tail.size();
  std::string out;
  for (size_t i = key.size(); i < end; ++i) {
    char c = text[i];
    if (c == '\\' && i + 1 < end) {
      const char n = text[++i];
      if (n == 'n')
        c = '\n';
      else if (n == 't')
        c = '\t';
      else if (n == 'r')
        c = '\r';
      else if (n == 'u' && i + 4 < end) {
        c = char(std::stoi(text.substr(i + 1, 4), nullptr, 16));
        i += 4;
      } else
        c = n;
    }
    out += c;
  }
  return out;
}

struct ReplayRing {
  record::RecordedRing info;
  uint16_t schema_id = 0;
  bool selected = false;
  std::optional<Publisher> publisher;
  bool has_last = false;
  uint64_t last_sequence = 0;                            // full sequence of the last message read (this pass)
  uint64_t min_sequence = UINT64_MAX, max_sequence = 0;  // over the first pass
  std::optional<std::pair<uint32_t, std::string>> pending_subject;  // (sequence low bits, subject)
};

}  // namespace

void add_replay_command(CLI::App& app) {
  struct Args {
    std::string file, bus, topics = ">", speed = "1.0", start, end, timeout = "30";
    bool loop = false, recover = false, quiet = false;
  };
  auto args = std::make_shared<Args>();
  CLI::App* rep =
      app.add_subcommand("replay",
                         "Publish the events of an MCAP recording into a bus with their original ids, sources and "
                         "times, spaced as recorded "
                         "(or as fast as possible); creates missing topics with the recorded schemas. Replayed events "
                         "come from mirror rings "
                         "whose origin node is \"replay\" (`sub --json` shows \"flowbusorigin\":\"replay\").");
  rep->add_option("file", args->file, "the MCAP file (from `flowbus record`)")->required();
  rep->add_option("--bus", args->bus, "the bus to publish into (created if missing)")->required();
  rep->add_option("--topics", args->topics, "only the topics matching this pattern (default: all, '>')");
  rep->add_option("--speed", args->speed,
                  "1.0 (default): the recorded spacing; 2: twice as fast; max: as fast as possible");
  rep->add_flag("--loop", args->loop,
                "start again at the end, until Ctrl-C; pass n > 0 moves sequences and times on by n recordings, so ids "
                "stay unique");
  rep->add_option("--start", args->start,
                  "skip events before this long after the recording's first event (seconds, or 500ms)");
  rep->add_option("--end", args->end, "stop at this long after the recording's first event");
  rep->add_option("--timeout", args->timeout,
                  "how long to wait for room when a block topic's ring is full (default 30s)");
  rep->add_flag("--recover", args->recover,
                "replay what is whole in a file the recorder did not finish (killed, disk full)");
  rep->add_flag("-q,--quiet", args->quiet, "print no summary");
  rep->callback([args] {
    const double speed = parse_speed(args->speed);
    validate_pattern(args->topics);
    const auto start_offset = args->start.empty() ? std::chrono::nanoseconds(0) : parse_seconds(args->start, "--start");
    const auto end_offset = args->end.empty() ? kNever : parse_seconds(args->end, "--end");
    if (end_offset <= start_offset)
      throw CLI::ValidationError("--end", "'" + args->end + "' is not after --start (" + args->start + ")");
    const auto timeout = parse_seconds(args->timeout, "--timeout");
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);

    std::unique_ptr<mcap::Reader> reader;
    std::optional<mcap::Summary> summary;
    try {
      reader = std::make_unique<mcap::Reader>(args->file);
      summary = reader->summary();
    } catch (const mcap::McapError& e) {
      std::fprintf(stderr, "flowbus replay: %s\n", e.what());
      throw ExitCode{1};
    }
    if (!summary && !args->recover) {
      std::fprintf(stderr,
                   "flowbus replay: '%s' is incomplete: the recorder did not finish it (killed, or the disk filled "
                   "up); `flowbus record info %s` tells what is recoverable, and --recover replays that\n",
                   args->file.c_str(), args->file.c_str());
      throw ExitCode{1};
    }
    Bus bus = Bus::open(args->bus);
    std::map<uint16_t, mcap::Schema> schemas;
    std::map<uint16_t, ReplayRing> rings;
    std::map<uint16_t, uint16_t> subject_of;  // subject channel -> event channel
    std::optional<uint64_t> base;             // the recording's first event time
    if (summary && summary->statistics && summary->statistics->message_count != 0)
      base = summary->statistics->message_start_time;
    uint64_t published = 0, duplicates = 0, matched_rings = 0, time_shift = 0, pass = 0, last_time = 0,
             first_time = UINT64_MAX;
    const auto wall_start = std::chrono::steady_clock::now();
    auto pass_start = wall_start;

    auto make_publisher = [&](ReplayRing& r, uint64_t first_sequence) {
      const auto found = schemas.find(r.schema_id);
      if (found == schemas.end())
        throw mcap::McapError("channel of " + r.info.topic + " names schema " + std::to_string(r.schema_id) +
                              ", which the file lacks");
      const mcap::Schema& schema = found->second;
      if (auto existing = bus.find_topic(r.info.topic)) {
        if (existing->schema != schema.data) {
          try {
            check_compatible_evolution(existing->schema, schema.data);
          } catch (const Error& e) {
            throw Error(ErrorCode::IncompatibleSchema,
                        "topic '" + r.info.topic + "' on bus '" + args->bus +
                            "' has a schema the recording's events do not fit: " + e.what());
          }
        }
      } else {
        TopicSpec spec;
        spec.name = r.info.topic;
        spec.type = schema.name;
        spec.schema = schema.data;
        spec.policy = r.info.policy;
        if (r.info.ring_size) spec.ring_size = r.info.ring_size;
        spec.slow_consumer_timeout =
            r.info.slow_consumer_timeout_ns < 0 ? kNever : std::chrono::nanoseconds(r.info.slow_consumer_timeout_ns);
        spec.retention = r.info.retention_s < 0 ? std::chrono::duration_cast<std::chrono::seconds>(kNever)
                                                : std::chrono::seconds(r.info.retention_s);
        bus.create_topic(spec);
        if (!args->quiet)
          std::fprintf(stderr, "flowbus replay: created topic %s (%s, %s) on bus %s\n", r.info.topic.c_str(),
                       schema.name.c_str(), to_string(spec.policy), args->bus.c_str());
      }
      r.publisher.emplace(mirroring::mirror_publisher(bus, r.info.topic,
                                                      {r.info.publisher_id, r.info.source, "replay", first_sequence}));
      ++matched_rings;
    };

    mcap::ScanHandlers h;
    h.on_schema = [&](const mcap::Schema& s) { schemas[s.id] = s; };
    h.on_channel = [&](const mcap::Channel& c) {
      if (auto of = record::subject_channel_of(c)) {
        subject_of[c.id] = *of;
        return;
      }
      auto info = record::recorded_ring(c);
      if (!info || rings.count(c.id)) return;
      ReplayRing& r = rings[c.id];
      r.selected = pattern_matches(args->topics, info->topic);
      r.info = std::move(*info);
      r.schema_id = c.schema_id;
    };
    h.on_message = [&](const mcap::Message& m) {
      if (g_stop) throw ExitCode{130};
      if (auto s = subject_of.find(m.channel_id); s != subject_of.end()) {
        if (auto r = rings.find(s->second); r != rings.end())
          r->second.pending_subject.emplace(m.sequence, subject_from_json(m.data));
        return;
      }
      auto it = rings.find(m.channel_id);
      if (it == rings.end()) return;
      ReplayRing& r = it->second;
      const uint64_t seq = record::widen_sequence(r.has_last ? r.last_sequence + 1 : r.info.first_sequence, m.sequence);
      r.has_last = true;
      r.last_sequence = seq;
      std::string subject;
      if (r.pending_subject && r.pending_subject->first == m.sequence) subject = std::move(r.pending_subject->second);
      r.pending_subject.reset();
      if (pass == 0) {
        r.min_sequence = std::min(r.min_sequence, seq);
        r.max_sequence = std::max(r.max_sequence, seq);
        first_time = std::min(first_time, m.log_time);
        last_time = std::max(last_time, m.log_time);
      }
      if (!base) base = m.log_time;
      if (!r.selected) return;
      const uint64_t rel = m.log_time >= *base ? m.log_time - *base : 0;
      if (rel < uint64_t(start_offset.count()) || (end_offset != kNever && rel > uint64_t(end_offset.count()))) return;
      if (speed > 0) {
        const auto due =
            pass_start + std::chrono::nanoseconds(int64_t(double(rel - uint64_t(start_offset.count())) / speed));
        while (!g_stop && std::chrono::steady_clock::now() < due)
          std::this_thread::sleep_until(
              std::min(due, std::chrono::steady_clock::now() + std::chrono::milliseconds(100)));
        if (g_stop) throw ExitCode{130};
      }
      const uint64_t shifted = seq + pass * (r.max_sequence - r.min_sequence + 1);
      if (!r.publisher) make_publisher(r, shifted);
      const PublishStatus st =
          mirroring::publish_mirrored(*r.publisher, m.data, shifted, m.log_time + pass * time_shift, subject, timeout);
      if (st == PublishStatus::Ok)
        ++published;
      else if (st == PublishStatus::Duplicate)
        ++duplicates;
      else
        throw Error(ErrorCode::InvalidArgument,
                    "publishing event " + record::hex16(r.info.publisher_id) + "-" + std::to_string(seq) + " on " +
                        r.info.topic + " failed: " + to_string(st) +
                        (st == PublishStatus::Full
                             ? " (a subscriber held the ring full; raise --timeout or look with `flowbus inspect`)"
                             : ""));
    };
    int code = 0;
    try {
      for (;; ++pass) {
        pass_start = std::chrono::steady_clock::now();
        for (auto& [id, r] : rings) {
          r.has_last = false;
          r.pending_subject.reset();
        }
        const mcap::ScanResult res = reader->scan(h, args->recover);
        if (!res.complete && !args->quiet && pass == 0)
          std::fprintf(stderr, "flowbus replay: recovered %llu events from %llu whole chunk(s); the file stops %s\n",
                       static_cast<unsigned long long>(res.messages), static_cast<unsigned long long>(res.chunks),
                       res.stopped_because.c_str());
        if (pass == 0) time_shift = first_time == UINT64_MAX ? 0 : last_time - first_time + 1;
        if (!args->loop || g_stop || published + duplicates == 0) break;
      }
    } catch (const mcap::McapError& e) {
      std::fprintf(stderr, "flowbus replay: %s (after %llu events)\n", e.what(),
                   static_cast<unsigned long long>(published));
      code = 1;
    } catch (const ExitCode& e) {
      code = e.code == 130 ? 0 : e.code;  // Ctrl-C: a summary, exit 0
    }
    bool any_selected = false;
    for (const auto& [id, r] : rings) any_selected |= r.selected;
    if (!any_selected && code == 0) {
      std::fprintf(stderr,
                   "flowbus replay: no recorded topic in '%s' matches '%s'; see them with `flowbus record info %s`\n",
                   args->file.c_str(), args->topics.c_str(), args->file.c_str());
      throw ExitCode{1};
    }
    if (!args->quiet)
      std::fprintf(
          stderr, "replayed %llu events of %llu ring(s) into bus %s in %.1fs%s%s\n",
          static_cast<unsigned long long>(published), static_cast<unsigned long long>(matched_rings), args->bus.c_str(),
          std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count(),
          duplicates ? (" (" + std::to_string(duplicates) + " already on the bus with the same id, skipped)").c_str()
                     : "",
          g_stop ? ", interrupted" : "");
    if (code != 0) throw ExitCode{code};
  });
}

}  // namespace flowbus::cli
