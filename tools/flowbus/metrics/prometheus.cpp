// The Prometheus text format of a bus snapshot (prometheus.hpp).
#include "prometheus.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <stdexcept>

#include "flowbus/error.hpp"
#include "flowbus/gc.hpp"

namespace flowbus::metrics {

std::string escape_label_value(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (const char c : value) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

std::string escape_help(std::string_view help) {
  std::string out;
  out.reserve(help.size());
  for (const char c : help) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

std::string format_value(uint64_t value) { return std::to_string(value); }

std::string format_value(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  if (value == std::trunc(value) && std::fabs(value) < 1e15) return std::to_string(int64_t(value));
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof buf, value);
  return std::string(buf, r.ptr);
}

namespace {
bool name_char(char c, bool first, bool colon) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon && c == ':') ||
         (!first && c >= '0' && c <= '9');
}
}  // namespace

bool valid_metric_name(std::string_view name) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i)
    if (!name_char(name[i], i == 0, true)) return false;
  return true;
}

bool valid_label_name(std::string_view name) {
  if (name.empty() || name.substr(0, 2) == "__") return false;
  for (size_t i = 0; i < name.size(); ++i)
    if (!name_char(name[i], i == 0, false)) return false;
  return true;
}

void Exposition::family(std::string_view name, Type type, std::string_view help) {
  if (!valid_metric_name(name)) throw std::logic_error("invalid metric name " + std::string(name));
  if (index_.count(name)) return;
  index_.emplace(std::string(name), families_.size());
  families_.push_back(Family{std::string(name), std::string(help), type, {}, {}});
}

void Exposition::add(std::string_view name, const Labels& labels, double value) {
  add_formatted(name, labels, format_value(value));
}
void Exposition::add(std::string_view name, const Labels& labels, uint64_t value) {
  add_formatted(name, labels, format_value(value));
}

void Exposition::add_formatted(std::string_view name, const Labels& labels, const std::string& value) {
  const auto it = index_.find(name);
  if (it == index_.end()) throw std::logic_error("metric family " + std::string(name) + " was not declared");
  Family& f = families_[it->second];
  std::string set;
  for (const auto& [label, text] : labels) {
    if (!valid_label_name(label)) throw std::logic_error("invalid label name " + std::string(label));
    if (text.empty()) continue;  // an empty label value is the same series as no label
    if (!set.empty()) set += ',';
    set.append(label).append("=\"").append(escape_label_value(text)).append("\"");
  }
  if (!f.series.insert(set).second) return;
  f.lines.push_back(f.name + (set.empty() ? "" : "{" + set + "}") + " " + value + "\n");
}

std::string Exposition::text() const {
  std::string out;
  for (const Family& f : families_) {
    if (f.lines.empty()) continue;
    out += "# HELP " + f.name + " " + escape_help(f.help) + "\n";
    out += "# TYPE " + f.name + (f.type == Type::Counter ? " counter\n" : " gauge\n");
    for (const auto& line : f.lines) out += line;
  }
  return out;
}

std::vector<BusReading> read_buses(const std::vector<std::string>& names) {
  std::vector<BusReading> out;
  for (const auto& name : names.empty() ? list_buses() : names) {
    BusReading r{name, std::nullopt, {}};
    try {
      r.snapshot = inspect_bus(name);
    } catch (const std::exception& e) {  // Error (NotFound, PermissionDenied, ...), bad_alloc of a damaged directory
      r.error = e.what();
    }
    out.push_back(std::move(r));
  }
  return out;
}

namespace {

using Type = Exposition::Type;

constexpr Type C = Type::Counter, G = Type::Gauge;

struct FamilySpec {
  const char* name;
  Type type;
  const char* help;
};

// The order here is the order of the page; docs/design.md lists the same.
constexpr FamilySpec kFamilies[] = {
    {"flowbus_bus_up", G,
     "1 if the bus could be read (inspect_bus), 0 if not: missing, permission denied, other layout version, damaged"},
    {"flowbus_bus_participants", G,
     "Processes attached to the bus, by state (alive, or dead with slots not yet reclaimed)"},
    {"flowbus_bus_topics", G, "Topics registered on the bus"},
    {"flowbus_bus_rings", G, "Rings (one per topic and publisher) on the bus"},
    {"flowbus_bus_subscriptions", G,
     "Pattern subscriptions on the bus (in its readers' segments this exporter may read)"},
    {"flowbus_bus_warnings", G, "Problems flowbus inspect warns about on this bus (flowbus inspect BUS lists them)"},
    {"flowbus_topic_info", G, "A topic's type, policy and schema id as labels; always 1"},
    {"flowbus_ring_readable", G,
     "1 if the ring could be read; 0 (permission, damage, being removed) and its other ring series are absent"},
    {"flowbus_ring_events_total", C, "Events published into the ring since it was created (its next sequence)"},
    {"flowbus_ring_bytes_total", C,
     "Bytes written into the ring since it was created, record headers and padding included"},
    {"flowbus_ring_capacity_bytes", G, "Size of the ring's record area"},
    {"flowbus_ring_fill_ratio", G,
     "Share of the ring the slowest live reader has yet to read, 0 to 1; at 1 a block writer waits, a latest writer "
     "overwrites"},
    {"flowbus_ring_retained_events", G, "Events the ring still holds (its retention)"},
    {"flowbus_ring_retained_bytes", G, "Bytes the ring still holds, between its tail and its write position"},
    {"flowbus_ring_writer_alive", G,
     "1 if a live publisher holds the ring, 0 if its writer is gone (the ring stays readable)"},
    {"flowbus_ring_last_publish_timestamp_seconds", G, "Unix time of the ring's last event"},
    {"flowbus_ring_readers", G, "Reader cursors in the ring"},
    {"flowbus_reader_alive", G, "1 if the process owning the cursor is alive"},
    {"flowbus_reader_lag_events", G,
     "Events the reader has yet to read; absent when not known (a lapped reader has more than the ring retains)"},
    {"flowbus_reader_lag_bytes", G, "Bytes the reader has yet to read (write position minus its cursor)"},
    {"flowbus_reader_lapped", G, "1 if the writer of a latest ring overwrote events this reader had not read"},
    {"flowbus_reader_evictions_total", C,
     "Times the owners of this cursor slot were evicted (too slow or dead on a block ring)"},
    {"flowbus_reader_lost_events_total", C,
     "Events the owners of this cursor slot were told they missed (lapped or evicted)"},
    {"flowbus_reader_rejected_events_total", C,
     "Untrusted topics: events the owners of this cursor slot refused because they failed verification"},
    {"flowbus_reader_asleep", G, "1 if the reader is asleep on the ring's wake word, waiting for events"},
    {"flowbus_reader_idle_seconds", G, "Seconds since the reader last moved its cursor (or joined)"},
    {"flowbus_mirror_alive", G, "1 if the mirroring process (kind: sidecar, bridge) is alive"},
    {"flowbus_mirror_last_status_timestamp_seconds", G,
     "Unix time of the mirroring process's last status (written twice a second)"},
    {"flowbus_mirror_sent_events_total", C, "Events the mirroring process sent to its peers"},
    {"flowbus_mirror_received_events_total", C, "Events the mirroring process received and published on this bus"},
    {"flowbus_mirror_duplicate_events_total", C, "Events received twice (after a reconnect) and dropped"},
    {"flowbus_mirror_gap_events_total", C, "Events that could not be mirrored because the source had lost them"},
    {"flowbus_mirror_peer_connected", G, "1 if the connection to the peer is up"},
    {"flowbus_mirror_peer_queued_bytes", G, "Bytes queued for the peer's socket"},
    {"flowbus_mirror_stream_connected", G, "1 if the stream's connection is up"},
    {"flowbus_mirror_stream_refused", G, "1 if the other side refused the stream (schema mismatch and the like)"},
    {"flowbus_mirror_stream_sent_events_total", C, "Exports: the origin ring's sequence up to which events were sent"},
    {"flowbus_mirror_stream_acked_events_total", C,
     "Exports: the origin ring's sequence up to which the peer confirmed it holds the events"},
    {"flowbus_mirror_stream_unacked_events", G,
     "Exports: events of the ring the peer has not confirmed yet; absent if the ring is not found"},
    {"flowbus_mirror_stream_received_events_total", C,
     "Imports: the origin ring's sequence up to which this bus holds the events"},
    {"flowbus_mirror_stream_gap_events_total", C, "Events of the stream lost at the source (never mirrored)"},
};

double seconds_of(uint64_t ns) { return double(ns) / 1e9; }
uint64_t flag(bool b) { return b ? 1 : 0; }

std::string hex_id(uint64_t id) {
  char buf[20];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(id));
  return buf;
}

/// One process that mirrors the bus elsewhere. `kind` tells them apart in
/// the same families: "sidecar" (SidecarSnapshot, from its status file); a
/// NATS bridge that reports the same figures joins as "bridge".
void add_mirror(Exposition& out, const std::string& bus, const std::string& kind, const SidecarSnapshot& side) {
  const Labels proc{{"bus", bus}, {"kind", kind}, {"node", side.node}, {"pid", std::to_string(side.pid)}};
  out.add("flowbus_mirror_alive", proc, flag(side.alive));
  if (!side.error.empty()) return;
  if (side.updated_ns) out.add("flowbus_mirror_last_status_timestamp_seconds", proc, seconds_of(side.updated_ns));
  out.add("flowbus_mirror_sent_events_total", proc, side.events_sent);
  out.add("flowbus_mirror_received_events_total", proc, side.events_received);
  out.add("flowbus_mirror_duplicate_events_total", proc, side.duplicates_dropped);
  out.add("flowbus_mirror_gap_events_total", proc, side.gaps);
  for (const auto& peer : side.peers) {
    // A dead process's last status still says "connected": it is not.
    const bool connected = side.alive && peer.connected;
    const Labels p{{"bus", bus}, {"kind", kind}, {"node", side.node}, {"peer", peer.node}, {"address", peer.address}};
    out.add("flowbus_mirror_peer_connected", p, flag(connected));
    out.add("flowbus_mirror_peer_queued_bytes", p, peer.queued_bytes);
    for (const bool exports : {true, false})
      for (const auto& x : exports ? peer.exports : peer.imports) {
        const Labels s{{"bus", bus},
                       {"kind", kind},
                       {"node", side.node},
                       {"peer", peer.node},
                       {"direction", exports ? "export" : "import"},
                       {"topic", x.topic},
                       {"publisher_id", hex_id(x.publisher_id)},
                       {"origin", x.origin}};
        out.add("flowbus_mirror_stream_connected", s, flag(connected && x.refused.empty()));
        out.add("flowbus_mirror_stream_refused", s, flag(!x.refused.empty()));
        if (exports) {
          out.add("flowbus_mirror_stream_sent_events_total", s, x.sent_sequence);
          out.add("flowbus_mirror_stream_acked_events_total", s, x.acked_sequence);
          if (x.lag_events >= 0) out.add("flowbus_mirror_stream_unacked_events", s, uint64_t(x.lag_events));
        } else {
          out.add("flowbus_mirror_stream_received_events_total", s, x.next_sequence);
        }
        out.add("flowbus_mirror_stream_gap_events_total", s, x.gaps);
      }
  }
}

}  // namespace

void declare_bus_families(Exposition& out) {
  for (const auto& f : kFamilies) out.family(f.name, f.type, f.help);
}

void add_bus(Exposition& out, const BusReading& reading) {
  const std::string& bus = reading.name;
  out.add("flowbus_bus_up", {{"bus", bus}}, flag(reading.snapshot.has_value()));
  if (!reading.snapshot) return;
  const BusSnapshot& s = *reading.snapshot;
  const size_t alive = s.live_participants();
  out.add("flowbus_bus_participants", {{"bus", bus}, {"state", "alive"}}, uint64_t(alive));
  out.add("flowbus_bus_participants", {{"bus", bus}, {"state", "dead"}}, uint64_t(s.participants.size() - alive));
  out.add("flowbus_bus_topics", {{"bus", bus}}, uint64_t(s.topics.size()));
  out.add("flowbus_bus_rings", {{"bus", bus}}, uint64_t(s.rings.size()));
  out.add("flowbus_bus_subscriptions", {{"bus", bus}}, uint64_t(s.subscriptions.size()));
  out.add("flowbus_bus_warnings", {{"bus", bus}}, uint64_t(s.warnings.size()));
  for (const auto& t : s.topics)
    out.add("flowbus_topic_info",
            {{"bus", bus},
             {"topic", t.info.name},
             {"type", t.info.type},
             {"policy", to_string(t.info.policy)},
             {"schema_id", t.info.schema_id}},
            uint64_t(1));
  for (const auto& r : s.rings) {
    const Labels ring{{"bus", bus}, {"topic", r.topic}, {"publisher", r.publisher}};
    out.add("flowbus_ring_readable", ring, flag(r.error.empty()));
    if (!r.error.empty()) continue;
    out.add("flowbus_ring_events_total", ring, r.next_sequence);
    out.add("flowbus_ring_bytes_total", ring, r.write_position);
    out.add("flowbus_ring_capacity_bytes", ring, r.capacity);
    out.add("flowbus_ring_fill_ratio", ring, r.fill);
    out.add("flowbus_ring_retained_events", ring, r.retained_events);
    out.add("flowbus_ring_retained_bytes", ring,
            r.write_position >= r.tail_position ? r.write_position - r.tail_position : 0);
    out.add("flowbus_ring_writer_alive", ring, flag(r.writer_alive));
    if (r.last_publish_ns) out.add("flowbus_ring_last_publish_timestamp_seconds", ring, seconds_of(r.last_publish_ns));
    out.add("flowbus_ring_readers", ring, uint64_t(r.cursors.size()));
    for (const auto& c : r.cursors) {
      const Labels reader{{"bus", bus},
                          {"topic", r.topic},
                          {"publisher", r.publisher},
                          {"slot", std::to_string(c.slot)},
                          {"pid", std::to_string(c.pid)}};
      out.add("flowbus_reader_alive", reader, flag(c.alive));
      if (c.lag_events >= 0) out.add("flowbus_reader_lag_events", reader, uint64_t(c.lag_events));
      out.add("flowbus_reader_lag_bytes", reader, c.lag_bytes);
      out.add("flowbus_reader_lapped", reader, flag(c.lapped));
      out.add("flowbus_reader_evictions_total", reader, c.evictions);
      out.add("flowbus_reader_lost_events_total", reader, c.losses);
      out.add("flowbus_reader_rejected_events_total", reader, c.rejected);
      out.add("flowbus_reader_asleep", reader, flag(c.sleeping));
      out.add("flowbus_reader_idle_seconds", reader, seconds_of(c.idle_ns));
    }
  }
  // Live processes first: if a dead one left a status under the same node
  // name, the live one's series are the ones kept.
  std::vector<const SidecarSnapshot*> sides;
  for (const auto& side : s.sidecars) sides.push_back(&side);
  std::stable_sort(sides.begin(), sides.end(), [](auto* a, auto* b) { return a->alive && !b->alive; });
  for (const auto* side : sides) add_mirror(out, bus, "sidecar", *side);
}

std::string render(const std::vector<BusReading>& buses) {
  Exposition out;
  declare_bus_families(out);
  for (const auto& b : buses) add_bus(out, b);
  return out.text();
}

}  // namespace flowbus::metrics
