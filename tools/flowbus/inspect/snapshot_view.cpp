// `flowbus inspect BUS`: the snapshot as a table and as JSON.
#include <cstdarg>
#include <cstdio>

#include "../cli_util.hpp"
#include "views.hpp"

namespace flowbus::cli {

namespace {

void appendf(std::string& out, const char* format, ...) __attribute__((format(printf, 2, 3)));
void appendf(std::string& out, const char* format, ...) {
  char buf[512];
  va_list args;
  va_start(args, format);
  const int n = std::vsnprintf(buf, sizeof buf, format, args);
  va_end(args);
  if (n > 0) out.append(buf, std::min<size_t>(size_t(n), sizeof buf - 1));
}

/// [#####.....]: how much of the ring a reader has yet to read.
std::string lag_bar(uint64_t lag_bytes, uint64_t capacity) {
  constexpr int kWidth = 10;
  const int filled = capacity == 0 ? 0 : int(std::min<uint64_t>(kWidth, (lag_bytes * kWidth + capacity - 1) / capacity));
  char bar[kWidth + 3] = "[";
  for (int i = 0; i < kWidth; ++i) bar[1 + i] = i < filled ? '#' : '.';
  bar[kWidth + 1] = ']';
  bar[kWidth + 2] = '\0';
  return bar;
}

std::string format_duration(uint64_t ns) {
  char buf[32];
  if (ns >= 3600ull * 1000000000ull) std::snprintf(buf, sizeof buf, "%.1fh", double(ns) / 3.6e12);
  else if (ns >= 60ull * 1000000000ull) std::snprintf(buf, sizeof buf, "%.1fm", double(ns) / 6e10);
  else std::snprintf(buf, sizeof buf, "%.1fs", double(ns) / 1e9);
  return buf;
}

const char* json_bool(bool b) { return b ? "true" : "false"; }

/// Events a reader has yet to read: exact when its position holds a record;
/// a lapped reader has more than the ring retains.
std::string lag_events_text(const RingSnapshot& r, const CursorSnapshot& c) {
  if (c.lag_events >= 0) return std::to_string(c.lag_events);
  if (c.lapped) return ">" + std::to_string(r.retained_events);
  return "?";
}

/// A block reader can be evicted (too slow, or dead); a latest one is lapped
/// instead, and what it lost to laps is what matters.
std::string reader_line(const RingSnapshot& r, const CursorSnapshot& c) {
  std::string o;
  appendf(o, "    reader pid %-8lld %-4s lag %8s ev %9s %s idle %6s", static_cast<long long>(c.pid), c.alive ? "live" : "DEAD",
          lag_events_text(r, c).c_str(), format_bytes(c.lag_bytes).c_str(), lag_bar(c.lag_bytes, r.capacity).c_str(),
          format_duration(c.idle_ns).c_str());
  if (r.policy == Policy::Latest)
    appendf(o, "  lost to laps %llu%s", static_cast<unsigned long long>(c.losses), c.lapped ? "  (lapped)" : "");
  else
    appendf(o, "  evicted %llu  lost %llu", static_cast<unsigned long long>(c.evictions), static_cast<unsigned long long>(c.losses));
  if (c.rejected != 0) appendf(o, "  REJECTED %llu (failed verification)", static_cast<unsigned long long>(c.rejected));
  return o + (c.sleeping ? "  (asleep)\n" : "\n");
}

}  // namespace

Rates publish_rates(const BusSnapshot& a, const BusSnapshot& b, double seconds) {
  Rates out;
  for (const auto& rb : b.rings)
    for (const auto& ra : a.rings)
      if (ra.segment == rb.segment && ra.publisher_id == rb.publisher_id && rb.next_sequence >= ra.next_sequence)
        out[rb.segment] = double(rb.next_sequence - ra.next_sequence) / seconds;
  return out;
}

std::string render_snapshot(const BusSnapshot& s, const Rates& rate) {
  std::string o;
  appendf(o, "bus %s: %zu live of %zu participants, %zu topics, %zu rings\n", s.name.c_str(), s.live_participants(),
          s.participants.size(), s.topics.size(), s.rings.size());
  appendf(o, "\n%-28s %-26s %-7s %9s %5s %s\n", "TOPIC", "TYPE", "POLICY", "RING", "MODE", "SCHEMA");
  for (const auto& t : s.topics)
    appendf(o, "%-28s %-26s %-7s %9s %04o  %s%s\n", t.info.name.c_str(), t.info.type.c_str(), to_string(t.info.policy),
            format_bytes(t.info.ring_size).c_str(), t.info.mode, t.info.schema_id.c_str(),
            t.info.untrusted ? "  untrusted" : "");
  appendf(o, "\n%-34s %8s %-6s %10s %10s %6s %10s %9s\n", "RING (topic@publisher)", "PID", "WRITER", "SEQ", "WRITTEN", "FILL",
          "EVENTS/S", "RETAINED");
  for (const auto& r : s.rings) {
    if (!r.error.empty()) {  // nothing of it was read: no figures, rather than zeros that look real
      appendf(o, "%-34s %8lld %-6s %10s %10s %6s %10s %9s\n      not read: %s\n", (r.topic + "@" + r.publisher).c_str(),
              static_cast<long long>(r.writer_pid), r.writer_alive ? "live" : "gone", "?", "?", "?", "?", "?",
              r.error.c_str());
      continue;
    }
    const auto it = rate.find(r.segment);
    appendf(o, "%-34s %8lld %-6s %10llu %10s %5.1f%% %10.0f %9llu\n", (r.topic + "@" + r.publisher).c_str(),
            static_cast<long long>(r.writer_pid), r.writer_alive ? "live" : "gone",
            static_cast<unsigned long long>(r.next_sequence), format_bytes(r.write_position).c_str(), r.fill * 100.0,
            it == rate.end() ? 0.0 : it->second, static_cast<unsigned long long>(r.retained_events));
    for (const auto& c : r.cursors) o += reader_line(r, c);
  }
  if (!s.subscriptions.empty())
    appendf(o, "\n%-34s %8s %-6s %s\n", "SUBSCRIPTION (pattern)", "PID", "OWNER", "RINGS");
  for (const auto& sub : s.subscriptions)
    appendf(o, "%-34s %8lld %-6s attached %u, reserved for it %u\n", sub.pattern.c_str(), static_cast<long long>(sub.pid),
            sub.alive ? "live" : "DEAD", sub.rings_attached, sub.rings_reserved);
  for (const auto& side : s.sidecars) {
    appendf(o, "\nSIDECAR %s  pid %lld %s  port %u  sent %llu  received %llu  duplicates %llu  lost at source %llu\n",
            side.node.c_str(), static_cast<long long>(side.pid), side.alive ? "live" : "GONE", side.listen_port,
            static_cast<unsigned long long>(side.events_sent), static_cast<unsigned long long>(side.events_received),
            static_cast<unsigned long long>(side.duplicates_dropped), static_cast<unsigned long long>(side.gaps));
    for (const auto& peer : side.peers) {
      appendf(o, "    peer %-16s %-22s %-12s queued %s\n", peer.node.c_str(), peer.address.c_str(),
              peer.connected ? (peer.outbound ? "connected->" : "connected<-") : "DISCONNECTED",
              format_bytes(peer.queued_bytes).c_str());
      for (const auto& x : peer.exports)
        if (x.refused.empty())
          appendf(o, "      export %-24s %016llx  sent %10llu  acked %10llu  lag %s ev  gaps %llu\n", x.topic.c_str(),
                  static_cast<unsigned long long>(x.publisher_id), static_cast<unsigned long long>(x.sent_sequence),
                  static_cast<unsigned long long>(x.acked_sequence),
                  x.lag_events < 0 ? "?" : std::to_string(x.lag_events).c_str(), static_cast<unsigned long long>(x.gaps));
        else
          appendf(o, "      export %-24s %016llx  REFUSED by the peer: %s\n", x.topic.c_str(),
                  static_cast<unsigned long long>(x.publisher_id), x.refused.c_str());
      for (const auto& x : peer.imports)
        if (x.refused.empty())
          appendf(o, "      import %-24s %016llx  from %-24s next %10llu  gaps %llu\n", x.topic.c_str(),
                  static_cast<unsigned long long>(x.publisher_id), x.origin.c_str(), static_cast<unsigned long long>(x.next_sequence),
                  static_cast<unsigned long long>(x.gaps));
        else
          appendf(o, "      import %-24s %016llx  from %-24s REFUSED: %s\n", x.topic.c_str(),
                  static_cast<unsigned long long>(x.publisher_id), x.origin.c_str(), x.refused.c_str());
    }
  }
  if (s.warnings.empty()) {
    o += "\nhealthy\n";
  } else {
    appendf(o, "\n%zu warning(s):\n", s.warnings.size());
    for (const auto& w : s.warnings) o += "  ! " + w + "\n";
  }
  return o;
}

std::string snapshot_json(const BusSnapshot& s, const Rates& rate) {
  std::string o = "{\"bus\":\"" + json_escape(s.name) + "\",\"layout_version\":" + std::to_string(s.layout_version) +
                  ",\"generation\":" + std::to_string(s.generation) + ",\"participants\":[";
  for (size_t i = 0; i < s.participants.size(); ++i) {
    const auto& p = s.participants[i];
    o += std::string(i ? "," : "") + "{\"pid\":" + std::to_string(p.pid) + ",\"alive\":" + json_bool(p.alive) +
         ",\"attached\":\"" + format_rfc3339(p.attached_ns) + "\"}";
  }
  o += "],\"topics\":[";
  for (size_t i = 0; i < s.topics.size(); ++i) {
    const auto& t = s.topics[i].info;
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", t.mode);
    o += std::string(i ? "," : "") + "{\"topic\":\"" + json_escape(t.name) + "\",\"type\":\"" + json_escape(t.type) +
         "\",\"schema_id\":\"" + t.schema_id + "\",\"policy\":\"" + to_string(t.policy) +
         "\",\"ring_size\":" + std::to_string(t.ring_size) + ",\"mode\":\"" + mode +
         "\",\"group\":" + std::to_string(t.group) + ",\"slow_consumer_timeout_ms\":" +
         (t.slow_consumer_timeout == kNever ? std::string("null")
                                            : std::to_string(t.slow_consumer_timeout.count() / 1000000)) +
         ",\"retention_s\":" + std::to_string(t.retention.count()) + ",\"untrusted\":" + json_bool(t.untrusted) + "}";
  }
  o += "],\"rings\":[";
  for (size_t i = 0; i < s.rings.size(); ++i) {
    const auto& r = s.rings[i];
    const auto it = rate.find(r.segment);
    char fill[32];
    std::snprintf(fill, sizeof fill, "%.4f", r.fill);
    o += std::string(i ? "," : "") + "{\"topic\":\"" + json_escape(r.topic) + "\",\"publisher\":\"" + json_escape(r.publisher) +
         "\",\"policy\":\"" + to_string(r.policy) + "\",\"writer_pid\":" + std::to_string(r.writer_pid) + ",\"writer_alive\":" + json_bool(r.writer_alive) +
         ",\"next_sequence\":" + std::to_string(r.next_sequence) + ",\"write_position\":" + std::to_string(r.write_position) +
         ",\"tail_position\":" + std::to_string(r.tail_position) + ",\"capacity\":" + std::to_string(r.capacity) +
         ",\"retained_events\":" + std::to_string(r.retained_events) + ",\"fill\":" + fill +
         ",\"events_per_s\":" + (it == rate.end() ? std::string("null") : std::to_string(it->second)) +
         ",\"last_publish\":" + (r.last_publish_ns ? "\"" + format_rfc3339(r.last_publish_ns) + "\"" : std::string("null")) +
         ",\"error\":" + (r.error.empty() ? std::string("null") : "\"" + json_escape(r.error) + "\"") + ",\"cursors\":[";
    for (size_t k = 0; k < r.cursors.size(); ++k) {
      const auto& c = r.cursors[k];
      o += std::string(k ? "," : "") + "{\"slot\":" + std::to_string(c.slot) + ",\"pid\":" + std::to_string(c.pid) +
           ",\"alive\":" + json_bool(c.alive) + ",\"position\":" + std::to_string(c.position) +
           ",\"lag_bytes\":" + std::to_string(c.lag_bytes) +
           ",\"lag_events\":" + (c.lag_events < 0 ? std::string("null") : std::to_string(c.lag_events)) +
           ",\"lapped\":" + json_bool(c.lapped) + ",\"idle_ms\":" + std::to_string(c.idle_ns / 1000000) +
           ",\"evictions\":" + std::to_string(c.evictions) + ",\"losses\":" + std::to_string(c.losses) +
           ",\"rejected\":" + std::to_string(c.rejected) + ",\"sleeping\":" + json_bool(c.sleeping) + "}";
    }
    o += "]}";
  }
  o += "],\"subscriptions\":[";
  for (size_t i = 0; i < s.subscriptions.size(); ++i) {
    const auto& sub = s.subscriptions[i];
    o += std::string(i ? "," : "") + "{\"pattern\":\"" + json_escape(sub.pattern) + "\",\"pid\":" + std::to_string(sub.pid) +
         ",\"alive\":" + json_bool(sub.alive) + ",\"uid\":" + std::to_string(sub.uid) +
         ",\"rings_attached\":" + std::to_string(sub.rings_attached) + ",\"rings_reserved\":" + std::to_string(sub.rings_reserved) + "}";
  }
  o += "],\"sidecars\":[";
  const auto streams = [](const std::vector<MirrorStreamSnapshot>& v, bool exports) {
    std::string j;
    for (size_t k = 0; k < v.size(); ++k) {
      const auto& x = v[k];
      char id[20];
      std::snprintf(id, sizeof id, "%016llx", static_cast<unsigned long long>(x.publisher_id));
      j += std::string(k ? "," : "") + "{\"topic\":\"" + json_escape(x.topic) + "\",\"publisher_id\":\"" + id + "\"";
      if (exports)
        j += ",\"sent_sequence\":" + std::to_string(x.sent_sequence) + ",\"acked_sequence\":" + std::to_string(x.acked_sequence) +
             ",\"lag_events\":" + (x.lag_events < 0 ? std::string("null") : std::to_string(x.lag_events));
      else
        j += ",\"origin\":\"" + json_escape(x.origin) + "\",\"next_sequence\":" + std::to_string(x.next_sequence);
      j += ",\"gaps\":" + std::to_string(x.gaps);
      if (!x.refused.empty()) j += ",\"refused\":\"" + json_escape(x.refused) + "\"";
      j += "}";
    }
    return j;
  };
  for (size_t i = 0; i < s.sidecars.size(); ++i) {
    const auto& side = s.sidecars[i];
    o += std::string(i ? "," : "") + "{\"node\":\"" + json_escape(side.node) + "\",\"pid\":" + std::to_string(side.pid) +
         ",\"alive\":" + json_bool(side.alive) + ",\"listen_port\":" + std::to_string(side.listen_port) +
         ",\"events_sent\":" + std::to_string(side.events_sent) + ",\"events_received\":" + std::to_string(side.events_received) +
         ",\"duplicates_dropped\":" + std::to_string(side.duplicates_dropped) + ",\"gaps\":" + std::to_string(side.gaps) +
         ",\"error\":" + (side.error.empty() ? std::string("null") : "\"" + json_escape(side.error) + "\"") + ",\"peers\":[";
    for (size_t k = 0; k < side.peers.size(); ++k) {
      const auto& p = side.peers[k];
      o += std::string(k ? "," : "") + "{\"node\":\"" + json_escape(p.node) + "\",\"address\":\"" + json_escape(p.address) +
           "\",\"connected\":" + json_bool(p.connected) + ",\"outbound\":" + json_bool(p.outbound) +
           ",\"queued_bytes\":" + std::to_string(p.queued_bytes) + ",\"exports\":[" + streams(p.exports, true) +
           "],\"imports\":[" + streams(p.imports, false) + "]}";
    }
    o += "]}";
  }
  return o + "],\"warnings\":" + json_string_array(s.warnings) + "}";
}

}  // namespace flowbus::cli
