// flowbus inspect: who writes, who reads, who lags, who died, what the events
// say. Read-only; the views live in inspect/.
#include <chrono>
#include <cstdio>
#include <thread>

#include "cli_util.hpp"
#include "flowbus/error.hpp"
#include "flowbus/gc.hpp"
#include "inspect/views.hpp"
#include "metrics/prometheus.hpp"

namespace flowbus::cli {

namespace {

void list_all_buses(bool json) {
  const auto buses = list_buses();
  if (!json) {
    if (buses.empty()) std::printf("no flowbus buses on this host\n");
    else std::printf("%-28s %12s %7s %6s  %s\n", "BUS", "PARTICIPANTS", "TOPICS", "RINGS", "HEALTH");
  }
  std::string out = "[";
  for (const auto& name : buses) {
    try {
      const BusSnapshot s = inspect_bus(name);
      if (json) {
        out += (out.size() > 1 ? "," : "") + snapshot_json(s, {});
      } else {
        char parts[32];
        std::snprintf(parts, sizeof parts, "%zu/%zu live", s.live_participants(), s.participants.size());
        std::printf("%-28s %12s %7zu %6zu  %s\n", name.c_str(), parts, s.topics.size(), s.rings.size(),
                    s.warnings.empty() ? "healthy" : (std::to_string(s.warnings.size()) + " warning(s): " + s.warnings.front()).c_str());
      }
    } catch (const Error& e) {
      if (json) out += std::string(out.size() > 1 ? "," : "") + "{\"bus\":\"" + json_escape(name) + "\",\"error\":\"" + json_escape(e.what()) + "\"}";
      else std::printf("%-28s %s\n", name.c_str(), e.what());
    }
  }
  if (json) std::printf("%s]\n", out.c_str());
  else if (!buses.empty()) std::printf("\n`flowbus inspect BUS` shows one in detail\n");
}

void show_bus(const std::string& bus, double window, bool json) {
  BusSnapshot first = inspect_bus(bus);
  Rates rates;
  BusSnapshot snap = first;
  if (window > 0) {
    std::this_thread::sleep_for(std::chrono::duration<double>(window));
    snap = inspect_bus(bus);
    rates = publish_rates(first, snap, window);
  }
  if (json) std::printf("%s\n", snapshot_json(snap, rates).c_str());
  else std::fputs(render_snapshot(snap, rates).c_str(), stdout);
}

/// `inspect [BUS] --prometheus`: the exporter's page, once. A named bus that
/// cannot be read fails as `inspect BUS` does; the exporter serves flowbus_bus_up 0 instead.
void print_prometheus(const std::string& bus, const std::string& topic, bool json) {
  if (json) throw CLI::ValidationError("--prometheus", "--prometheus and --json are two formats: choose one");
  if (!topic.empty()) throw CLI::ValidationError("topic", "--prometheus shows whole buses: leave out the TOPIC");
  std::vector<metrics::BusReading> readings;
  if (bus.empty()) {
    readings = metrics::read_buses({});
  } else {
    // Read first, then build: an exception thrown from inside the braced
    // initializer of a vector is mishandled by GCC 12 (ASan: stack-use-after-scope).
    BusSnapshot snapshot = inspect_bus(bus);
    readings.push_back(metrics::BusReading{bus, std::move(snapshot), {}});
  }
  std::fputs(metrics::render(readings).c_str(), stdout);
}

}  // namespace

void add_inspect_command(CLI::App& app) {
  struct Args {
    std::string bus, topic, window = "0.25", interval = "1", from = "latest";
    bool json = false, watch = false, check = false, follow = false, raw = false, prometheus = false, raw_data = false;
    uint64_t dump = 0, frames = 0;
  };
  auto args = std::make_shared<Args>();
  CLI::App* inspect = app.add_subcommand("inspect", "Show buses, topics, rings, readers, lag and health; dump events; check invariants (read-only)");
  inspect->footer(
      "Examples:\n"
      "  flowbus inspect                          every bus on this host and its health\n"
      "  flowbus inspect demo --watch             live view, q quits\n"
      "  flowbus inspect demo orders.new --dump 5 the last 5 events, decoded\n"
      "  flowbus inspect demo --check             verify every invariant; exit 1 on damage\n"
      "The inspector maps segments read-only and claims no cursor: it never slows a publisher.");
  inspect->add_option("bus", args->bus, "bus to show in detail (default: list every bus on the host)");
  inspect->add_option("topic", args->topic, "topic to dump (with --dump)");
  inspect->add_option("--rate-window", args->window, "seconds between the two looks that give publish rates, 0 to 60 (default 0.25; 0 skips rates)");
  inspect->add_flag("--json", args->json, "JSON: the snapshot as one object (fields in the README), --dump as one event per line, --check as a report");
  auto* watch = inspect->add_flag("--watch", args->watch, "live view refreshed in place, like top; q or Ctrl-C quits");
  inspect->add_option("--interval", args->interval, "seconds between --watch refreshes (default 1)");
  inspect->add_option("--frames", args->frames, "stop --watch after this many refreshes, 1 or more (for recordings and scripts)")
      ->check(whole_number(1, UINT64_MAX));
  auto* dump = inspect->add_option("--dump", args->dump,
                                   "print N events of TOPIC (N from 1; at most what the rings retain), decoded through its registered schema")
                   ->check(whole_number(1, UINT64_MAX));
  inspect->add_option("--from", args->from, "with --dump: latest (the last N, default) or earliest (the oldest N retained)")
      ->check(CLI::IsMember({"latest", "earliest"}));
  inspect->add_flag("--follow", args->follow, "with --dump: keep printing new events until Ctrl-C");
  inspect->add_flag("--raw", args->raw, "with --dump: record headers and bytes in hex, padding records included");
  inspect->add_flag("--raw-data", args->raw_data,
                    "with --dump --json: the FlatBuffer base64 under \"data_base64\" (application/x-flatbuffers), not "
                    "decoded under \"data\"");
  auto* check = inspect->add_flag("--check", args->check, "verify directory and ring invariants read-only; exit 1 with a report if any fails");
  watch->excludes(dump)->excludes(check);
  auto* prometheus =
      inspect->add_flag("--prometheus", args->prometheus,
                        "print the metrics `flowbus exporter` serves, once, in the Prometheus text format");
  prometheus->excludes(watch)->excludes(dump)->excludes(check);
  dump->excludes(check);
  inspect->callback([args] {
    if (args->prometheus) return print_prometheus(args->bus, args->topic, args->json);
    if (args->bus.empty()) {
      if (args->watch || args->check || args->dump)
        throw CLI::ValidationError("bus", "--watch, --check and --dump need a BUS; `flowbus inspect` lists them");
      list_all_buses(args->json);
      return;
    }
    if (!args->topic.empty() && args->dump == 0)
      throw CLI::ValidationError("topic", "a TOPIC is only used with --dump N, e.g. `flowbus inspect " + args->bus + " " + args->topic + " --dump 10`");
    if (args->check) {
      if (const int code = run_check(args->bus, args->json); code != 0) throw ExitCode{code};
      return;
    }
    if (args->dump > 0) {
      if (args->topic.empty())
        throw CLI::ValidationError("topic",
                                   "--dump N needs a TOPIC: `flowbus inspect " + args->bus + " TOPIC --dump N`");
      DumpOptions o{args->bus, args->topic, args->dump, args->from == "earliest", args->follow, args->raw, args->json};
      o.raw_data = args->raw_data;
      if (const int code = run_dump(o); code != 0) throw ExitCode{code};
      return;
    }
    if (args->watch) {
      const double interval = std::chrono::duration<double>(parse_seconds(args->interval, "--interval")).count();
      if (interval <= 0 || interval > 3600)
        throw CLI::ValidationError(
            "--interval", "--interval " + args->interval + ": give more than 0 and at most 3600 seconds (e.g. 0.5)");
      run_watch(args->bus, interval, args->frames);
      return;
    }
    show_bus(args->bus, parse_bounded_seconds(args->window, "--rate-window", 0, 60), args->json);
  });
}

}  // namespace flowbus::cli
