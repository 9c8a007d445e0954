// flowbus inspect: who writes, who reads, who lags, who died. Read-only.
#include <chrono>
#include <cstdio>
#include <map>
#include <thread>

#include "cli_util.hpp"
#include "flowbus/error.hpp"
#include "flowbus/gc.hpp"
#include "flowbus/inspect.hpp"

namespace flowbus::cli {

namespace {

std::string fmt_bytes(uint64_t b) {
  char buf[32];
  if (b >= (1ull << 30)) std::snprintf(buf, sizeof buf, "%.1fGiB", double(b) / double(1ull << 30));
  else if (b >= (1u << 20)) std::snprintf(buf, sizeof buf, "%.1fMiB", double(b) / double(1u << 20));
  else if (b >= 1024) std::snprintf(buf, sizeof buf, "%.1fKiB", double(b) / 1024.0);
  else std::snprintf(buf, sizeof buf, "%lluB", static_cast<unsigned long long>(b));
  return buf;
}

/// Events per second per ring, from two snapshots.
std::map<std::string, double> rates(const BusSnapshot& a, const BusSnapshot& b, double seconds) {
  std::map<std::string, double> out;
  for (const auto& rb : b.rings)
    for (const auto& ra : a.rings)
      if (ra.segment == rb.segment && ra.publisher_id == rb.publisher_id && rb.next_sequence >= ra.next_sequence)
        out[rb.segment] = double(rb.next_sequence - ra.next_sequence) / seconds;
  return out;
}

std::string snapshot_json(const BusSnapshot& s, const std::map<std::string, double>& rate) {
  std::string o = "{\"bus\":\"" + json_escape(s.name) + "\",\"layout_version\":" + std::to_string(s.layout_version) +
                  ",\"generation\":" + std::to_string(s.generation) + ",\"participants\":[";
  for (size_t i = 0; i < s.participants.size(); ++i) {
    const auto& p = s.participants[i];
    o += std::string(i ? "," : "") + "{\"pid\":" + std::to_string(p.pid) + ",\"alive\":" + (p.alive ? "true" : "false") +
         ",\"attached\":\"" + format_rfc3339(p.attached_ns) + "\"}";
  }
  o += "],\"topics\":[";
  for (size_t i = 0; i < s.topics.size(); ++i) {
    const auto& t = s.topics[i].info;
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", t.mode);
    o += std::string(i ? "," : "") + "{\"topic\":\"" + json_escape(t.name) + "\",\"type\":\"" + json_escape(t.type) +
         "\",\"schema_id\":\"" + t.schema_id + "\",\"policy\":\"" + to_string(t.policy) + "\",\"ring_size\":" +
         std::to_string(t.ring_size) + ",\"mode\":\"" + mode + "\",\"group\":" + std::to_string(t.group) +
         ",\"slow_consumer_timeout_ms\":" + (t.slow_consumer_timeout == kNever ? std::string("null") : std::to_string(t.slow_consumer_timeout.count() / 1000000)) +
         ",\"retention_s\":" + std::to_string(t.retention.count()) + "}";
  }
  o += "],\"rings\":[";
  for (size_t i = 0; i < s.rings.size(); ++i) {
    const auto& r = s.rings[i];
    const auto it = rate.find(r.segment);
    char fill[32];
    std::snprintf(fill, sizeof fill, "%.4f", r.fill);
    o += std::string(i ? "," : "") + "{\"topic\":\"" + json_escape(r.topic) + "\",\"publisher\":\"" + json_escape(r.publisher) +
         "\",\"writer_pid\":" + std::to_string(r.writer_pid) + ",\"writer_alive\":" + (r.writer_alive ? "true" : "false") +
         ",\"next_sequence\":" + std::to_string(r.next_sequence) + ",\"write_position\":" + std::to_string(r.write_position) +
         ",\"tail_position\":" + std::to_string(r.tail_position) + ",\"capacity\":" + std::to_string(r.capacity) +
         ",\"retained_events\":" + std::to_string(r.retained_events) + ",\"fill\":" + fill +
         ",\"events_per_s\":" + (it == rate.end() ? std::string("null") : std::to_string(it->second)) +
         ",\"last_publish\":" + (r.last_publish_ns ? "\"" + format_rfc3339(r.last_publish_ns) + "\"" : std::string("null")) +
         ",\"error\":" + (r.error.empty() ? std::string("null") : "\"" + json_escape(r.error) + "\"") + ",\"cursors\":[";
    for (size_t k = 0; k < r.cursors.size(); ++k) {
      const auto& c = r.cursors[k];
      o += std::string(k ? "," : "") + "{\"slot\":" + std::to_string(c.slot) + ",\"pid\":" + std::to_string(c.pid) +
           ",\"alive\":" + (c.alive ? "true" : "false") + ",\"lag_bytes\":" + std::to_string(c.lag_bytes) +
           ",\"lag_events\":" + (c.lag_events < 0 ? std::string("null") : std::to_string(c.lag_events)) +
           ",\"evictions\":" + std::to_string(c.evictions) + ",\"sleeping\":" + (c.sleeping ? "true" : "false") + "}";
    }
    o += "]}";
  }
  return o + "],\"warnings\":" + json_string_array(s.warnings) + "}";
}

void print_snapshot(const BusSnapshot& s, const std::map<std::string, double>& rate) {
  std::printf("bus %s: %zu live of %zu participants, %zu topics, %zu rings\n", s.name.c_str(), s.live_participants(),
              s.participants.size(), s.topics.size(), s.rings.size());
  std::printf("\n%-28s %-26s %-7s %9s %5s %s\n", "TOPIC", "TYPE", "POLICY", "RING", "MODE", "SCHEMA");
  for (const auto& t : s.topics)
    std::printf("%-28s %-26s %-7s %9s %04o  %s\n", t.info.name.c_str(), t.info.type.c_str(), to_string(t.info.policy),
                fmt_bytes(t.info.ring_size).c_str(), t.info.mode, t.info.schema_id.c_str());
  std::printf("\n%-34s %8s %-6s %10s %10s %6s %10s %9s\n", "RING (topic@publisher)", "PID", "WRITER", "SEQ", "WRITTEN", "FILL",
              "EVENTS/S", "RETAINED");
  for (const auto& r : s.rings) {
    const auto it = rate.find(r.segment);
    std::printf("%-34s %8lld %-6s %10llu %10s %5.1f%% %10.0f %9llu\n", (r.topic + "@" + r.publisher).c_str(),
                static_cast<long long>(r.writer_pid), r.writer_alive ? "live" : "gone",
                static_cast<unsigned long long>(r.next_sequence), fmt_bytes(r.write_position).c_str(), r.fill * 100.0,
                it == rate.end() ? 0.0 : it->second, static_cast<unsigned long long>(r.retained_events));
    for (const auto& c : r.cursors)
      std::printf("    reader pid %-8lld %-5s lag %8s events %10s   evictions %llu%s\n", static_cast<long long>(c.pid),
                  c.alive ? "live" : "DEAD", c.lag_events < 0 ? "?" : std::to_string(c.lag_events).c_str(),
                  fmt_bytes(c.lag_bytes).c_str(), static_cast<unsigned long long>(c.evictions), c.sleeping ? "  (asleep)" : "");
  }
  if (s.warnings.empty()) {
    std::printf("\nhealthy\n");
  } else {
    std::printf("\n%zu warning(s):\n", s.warnings.size());
    for (const auto& w : s.warnings) std::printf("  ! %s\n", w.c_str());
  }
}

}  // namespace

void add_inspect_command(CLI::App& app) {
  struct Args {
    std::string bus, window = "0.25";
    bool json = false;
  };
  auto args = std::make_shared<Args>();
  CLI::App* inspect = app.add_subcommand("inspect", "Show buses, topics, rings, readers, lag and health (read-only)");
  inspect->add_option("bus", args->bus, "bus to show in detail (default: list every bus on the host)");
  inspect->add_option("--rate-window", args->window, "seconds between the two looks that give publish rates (default 0.25; 0 skips rates)");
  inspect->add_flag("--json", args->json, "print the snapshot as one JSON object (fields in the README)");
  inspect->callback([args] {
    const double window = std::chrono::duration<double>(parse_seconds(args->window)).count();
    if (args->bus.empty()) {
      const auto buses = list_buses();
      if (!args->json) {
        if (buses.empty()) std::printf("no flowbus buses on this host\n");
        else std::printf("%-28s %12s %7s %6s  %s\n", "BUS", "PARTICIPANTS", "TOPICS", "RINGS", "HEALTH");
      }
      std::string json = "[";
      for (const auto& name : buses) {
        try {
          const BusSnapshot s = inspect_bus(name);
          if (args->json) {
            json += (json.size() > 1 ? "," : "") + snapshot_json(s, {});
          } else {
            char parts[32];
            std::snprintf(parts, sizeof parts, "%zu/%zu live", s.live_participants(), s.participants.size());
            std::printf("%-28s %12s %7zu %6zu  %s\n", name.c_str(), parts, s.topics.size(), s.rings.size(),
                        s.warnings.empty() ? "healthy" : (std::to_string(s.warnings.size()) + " warning(s): " + s.warnings.front()).c_str());
          }
        } catch (const Error& e) {
          if (args->json) json += std::string(json.size() > 1 ? "," : "") + "{\"bus\":\"" + json_escape(name) + "\",\"error\":\"" + json_escape(e.what()) + "\"}";
          else std::printf("%-28s %s\n", name.c_str(), e.what());
        }
      }
      if (args->json) std::printf("%s]\n", json.c_str());
      else if (!buses.empty()) std::printf("\n`flowbus inspect BUS` shows one in detail\n");
      return;
    }
    BusSnapshot first = inspect_bus(args->bus);
    std::map<std::string, double> rate;
    BusSnapshot snap = first;
    if (window > 0) {
      std::this_thread::sleep_for(std::chrono::duration<double>(window));
      snap = inspect_bus(args->bus);
      rate = rates(first, snap, window);
    }
    if (args->json) std::printf("%s\n", snapshot_json(snap, rate).c_str());
    else print_snapshot(snap, rate);
  });
}

}  // namespace flowbus::cli
