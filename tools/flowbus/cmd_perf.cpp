// flowbus perf: how flowbus compares with other transports on this machine.
//  * latency: two processes pinned to two CPUs ping-pong events of each size
//    over each transport, in the same run; round-trip percentiles and the
//    ratio to `floor`, the bare shared-memory flag plus payload write.
//  * throughput: events per second from 1 publisher to K subscriber processes
//    and from P publishers to 1, against the 1->1 floor (a bare ring moving
//    the same lines), uds/pipe and the in-process ceiling
//    of moodycamel::ConcurrentQueue, in the same run.
//  * mirror: events through two in-process sidecars on loopback TCP (bus A ->
//    sidecar A -> sidecar B -> bus B): events/s and MB/s per size, and the
//    round trip ping (A) -> echo (B) -> pong (A) against a plain loopback TCP
//    echo measured in the same run.
#include <x86intrin.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>

#include "cli_util.hpp"
#include "perf/harness.hpp"
#include "perf/mirror.hpp"
#include "perf/nats.hpp"
#include "perf/plot.hpp"
#include "perf/throughput.hpp"
#include "perf/transports.hpp"

namespace flowbus::cli {

namespace {

struct Percentiles {
  double p50, p90, p99, p999, max;
};

Percentiles percentiles(std::vector<double>& v) {
  std::sort(v.begin(), v.end());
  auto at = [&](double q) { return v[std::min(v.size() - 1, size_t(q * double(v.size())))]; };
  return {at(0.50), at(0.90), at(0.99), at(0.999), v.back()};
}

/// CPU time (user + system) a process has used so far, from its CPU-time clock.
double cpu_ns(clockid_t clock) {
  timespec ts{};
  clock_gettime(clock, &ts);
  return double(ts.tv_sec) * 1e9 + double(ts.tv_nsec);
}

struct Run {
  std::vector<double> rtt_ns;
  double cpu_ns_per_rtt = 0;  ///< CPU time of both processes (user + system) per round trip
  double wall_ns_per_rtt = 0;
};

/// One transport at one size: round-trip times in ns and the CPU they cost.
Run run_one(const std::string& transport, size_t bytes, uint64_t iters, perf::WaitMode wait) {
  auto pp = perf::make_transport(transport, bytes, wait);
  const uint64_t warmup = std::max<uint64_t>(1000, iters / 10);
  const pid_t child = perf::fork_pinned(1, "echo side", [&] {
    pp->start_echo_side();
    pp->echo(warmup + iters);
  });
  perf::pin_to_cpu(0);
  pp->start_ping_side();
  for (uint64_t i = 0; i < warmup; ++i) pp->round_trip(i);
  std::vector<uint64_t> ticks(iters);
  clockid_t echo_clock = CLOCK_PROCESS_CPUTIME_ID;
  const bool echo_known = clock_getcpuclockid(child, &echo_clock) == 0;
  const double self0 = cpu_ns(CLOCK_PROCESS_CPUTIME_ID), echo0 = echo_known ? cpu_ns(echo_clock) : 0;
  const auto t0 = std::chrono::steady_clock::now();
  const uint64_t c0 = __rdtsc();
  for (uint64_t i = 0; i < iters; ++i) {
    const uint64_t start = __rdtsc();
    pp->round_trip(warmup + i);
    ticks[i] = __rdtsc() - start;
  }
  const uint64_t c1 = __rdtsc();
  const double wall_ns = double(std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count());
  const double self1 = cpu_ns(CLOCK_PROCESS_CPUTIME_ID), echo1 = echo_known ? cpu_ns(echo_clock) : 0;
  const double ns_per_tick = wall_ns / double(c1 - c0);
  perf::wait_child(child, transport + ": the echo");
  Run run;
  run.rtt_ns.resize(iters);
  for (uint64_t i = 0; i < iters; ++i) run.rtt_ns[i] = double(ticks[i]) * ns_per_tick;
  run.cpu_ns_per_rtt = (self1 - self0 + echo1 - echo0) / double(iters);
  run.wall_ns_per_rtt = wall_ns / double(iters);
  return run;
}

/// Every --transport of a latency run, checked before anything is measured.
/// With `untrusted`, flowbus on untrusted topics is measured right after
/// flowbus (or alone, if flowbus is not asked for), in the same run.
std::vector<std::string> latency_transports(const std::string& text, bool untrusted) {
  std::vector<std::string> known = perf::split_list(perf::kTransportNames);
  known.push_back(perf::kUntrustedTransport);
  std::vector<std::string> transports = perf::split_list(text);
  for (const std::string& t : transports)
    if (std::find(known.begin(), known.end(), t) == known.end())
      throw CLI::ValidationError(
          "--transport",
          "unknown transport '" + t + "': use flowbus, floor, uds, pipe, zmq or bmq (or flowbus-untrusted)");
  if (transports.empty()) throw CLI::ValidationError("--transport", "give at least one of flowbus, floor, uds, pipe, zmq or bmq");
  if (untrusted && std::find(transports.begin(), transports.end(), perf::kUntrustedTransport) == transports.end()) {
    const auto plain = std::find(transports.begin(), transports.end(), "flowbus");
    transports.insert(plain == transports.end() ? plain : plain + 1, perf::kUntrustedTransport);
  }
  return transports;
}

void add_latency_command(CLI::App& perf) {
  struct Args {
    std::string sizes = "64,4096,1048576", transports = perf::kTransportNames, wait = "spin", plot;
    uint64_t iters = 100000;
    bool untrusted = false;
    bool json = false;
  };
  auto args = std::make_shared<Args>();
  CLI::App* latency = perf.add_subcommand("latency", "Round-trip latency between two pinned processes, per size and transport");
  latency->add_option("--size", args->sizes, "payload sizes in bytes, comma separated (default 64,4096,1048576)");
  latency->add_option("--iters", args->iters, "round trips measured per size and transport, 1 to 10000000 (default 100000; 10% more warm up)")
      ->check(whole_number(1, 10'000'000));
  latency->add_option("--transport", args->transports, std::string("any of ") + perf::kTransportNames + " (default all)");
  latency->add_option("--wait", args->wait, "spin (busy poll) or futex (flowbus sleeps after a short spin)")->check(CLI::IsMember({"spin", "futex"}));
  latency->add_option("--plot", args->plot, "also draw p50/p90/p99/p99.9 per transport and size into this PNG (needs gnuplot)");
  latency->add_flag("--untrusted", args->untrusted,
                    "also measure flowbus on untrusted topics (flowbus-untrusted: readers copy and verify each event), "
                    "right after flowbus");
  latency->add_flag("--json", args->json, "one JSON object per transport and size");
  latency->callback([args] {
    // Every argument before measuring anything: a typo should not cost a whole run.
    const std::vector<size_t> sizes = parse_payload_sizes(args->sizes, "--size", uint64_t(1) << 30);
    const std::vector<std::string> transports = latency_transports(args->transports, args->untrusted);
    if (!args->plot.empty() && !perf::have_gnuplot()) {
      std::fprintf(stderr, "flowbus perf latency: --plot needs gnuplot, which is not installed: apt-get install gnuplot-nox\n");
      throw ExitCode{1};
    }
    if (!args->plot.empty()) {
      FILE* png = std::fopen(args->plot.c_str(), "wb");
      if (!png) {
        std::fprintf(stderr, "flowbus perf latency: cannot write %s: %s\n", args->plot.c_str(), std::strerror(errno));
        throw ExitCode{1};
      }
      std::fclose(png);
    }
    const perf::WaitMode wait = args->wait == "futex" ? perf::WaitMode::Futex : perf::WaitMode::Spin;
    std::vector<perf::LatencyPoint> plotted;
    for (const size_t bytes : sizes) {
      std::map<std::string, Percentiles> results;
      std::map<std::string, double> cpu;  // CPUs kept busy by the two processes (2.0: both spin all the time)
      for (const std::string& t : transports) {
        auto iters = args->iters;
        if (bytes >= (1u << 20) && iters > 20000) iters = 20000;  // large copies: keep the run short
        if (!args->json) std::fprintf(stderr, "  %s, %zu bytes, %llu round trips...\n", t.c_str(), bytes, static_cast<unsigned long long>(iters));
        Run run = run_one(t, bytes, iters, wait);
        results[t] = percentiles(run.rtt_ns);
        cpu[t] = run.cpu_ns_per_rtt / run.wall_ns_per_rtt;
        const Percentiles& p = results[t];
        plotted.push_back({t, bytes, p.p50, p.p90, p.p99, p.p999});
        if (args->json)
          std::printf("{\"transport\":\"%s\",\"bytes\":%zu,\"iters\":%llu,\"wait\":\"%s\",\"rtt_p50_ns\":%.0f,\"rtt_p90_ns\":%.0f,"
                      "\"rtt_p99_ns\":%.0f,\"rtt_p999_ns\":%.0f,\"rtt_max_ns\":%.0f,\"cpu_ns_per_rtt\":%.0f,\"cpus_busy\":%.2f}\n",
                      t.c_str(), bytes, static_cast<unsigned long long>(iters), args->wait.c_str(), p.p50, p.p90, p.p99, p.p999, p.max,
                      run.cpu_ns_per_rtt, cpu[t]);
      }
      std::fflush(stdout);
      if (args->json) continue;
      const auto floor = results.find("floor");
      std::printf("\n%zu bytes, round trip in ns (wait %s)\n", bytes, args->wait.c_str());
      std::printf("%-17s %10s %10s %10s %10s %12s %12s %10s\n", "transport", "p50", "p90", "p99", "p99.9", "max",
                  "p50/floor", "CPUs busy");
      for (const auto& [name, p] : results) {
        char ratio[32] = "-";
        if (floor != results.end()) std::snprintf(ratio, sizeof ratio, "%.2fx", p.p50 / floor->second.p50);
        std::printf("%-17s %10.0f %10.0f %10.0f %10.0f %12.0f %12s %10.2f\n", name.c_str(), p.p50, p.p90, p.p99, p.p999,
                    p.max, ratio, cpu[name]);
      }
      std::fflush(stdout);
    }
    if (!args->plot.empty()) {
      perf::plot_latency(args->plot, plotted, "wait " + args->wait + ", 2 processes pinned to 2 CPUs");
      if (!args->json) std::fprintf(stderr, "plot written to %s\n", args->plot.c_str());
    }
  });
}

void print_throughput(const perf::ThroughputResult& r, double ceiling_events_per_s, double floor_events_per_s, bool json) {
  if (json) {
    std::printf(
        "{\"mode\":\"%s\",\"transport\":\"%s\",\"bytes\":%zu,\"publishers\":%d,\"subscribers\":%d,\"seconds\":%.3f,"
        "\"events\":%llu,\"events_per_s\":%.0f,\"mb_per_s\":%.1f,\"coalesce_ns\":%llu,\"batch\":%zu,\"untrusted\":%s}"
        "\n",
        r.mode.c_str(), r.transport.c_str(), r.bytes, r.publishers, r.subscribers, r.seconds,
        static_cast<unsigned long long>(r.events), r.events_per_s(), r.mb_per_s(),
        static_cast<unsigned long long>(r.coalesce_ns), r.batch, r.untrusted ? "true" : "false");
  } else {
    // The ceiling moves 64-byte items: a ratio is only meaningful at that size.
    char ratio[32] = "-";
    if (ceiling_events_per_s > 0 && r.bytes == 64) std::snprintf(ratio, sizeof ratio, "%.3f", r.events_per_s() / ceiling_events_per_s);
    // The floor moves this payload's lines from one process to one other.
    char to_floor[32] = "-";
    if (floor_events_per_s > 0 && r.mode == "1->1") std::snprintf(to_floor, sizeof to_floor, "%.3f", r.events_per_s() / floor_events_per_s);
    std::string label = r.transport;
    if (r.coalesce_ns > 0) label += "+" + std::to_string(r.coalesce_ns / 1000) + "us";  // coalescing subscribers
    if (r.batch > 1) label += " x" + std::to_string(r.batch);                            // publish_batch bursts
    if (r.untrusted) label += " untrusted";  // readers verify a copy of each event
    std::printf("%-10s %-18s %9zu %4d %4d %8.2f %12llu %14.0f %10.1f %12s %7s\n", r.mode.c_str(), label.c_str(),
                r.bytes, r.publishers, r.subscribers, r.seconds, static_cast<unsigned long long>(r.events),
                r.events_per_s(), r.mb_per_s(), ratio, to_floor);
  }
  std::fflush(stdout);
}

void add_throughput_command(CLI::App& perf) {
  struct Args {
    std::string sizes = "64,65536";
    int publishers = 2, subscribers = 2;
    double seconds = 1, coalesce_us = 0;
    int batch = 64;
    bool untrusted = false;
    bool json = false;
  };
  auto args = std::make_shared<Args>();
  CLI::App* throughput = perf.add_subcommand(
      "throughput", "Events per second between pinned processes: 1->1, 1->K, P->1, against a bare-ring floor, uds, pipe and moodycamel");
  throughput->add_option("--size", args->sizes, "payload sizes in bytes, comma separated (default 64,65536)");
  throughput->add_option("--publishers", args->publishers, "P, publisher processes of the P->1 run (default 2)")->check(CLI::Range(1, 32));
  throughput->add_option("--subscribers", args->subscribers, "K, subscriber processes of the 1->K run (default 2)")->check(CLI::Range(1, 32));
  throughput->add_option("--seconds", args->seconds, "how long each run publishes (default 1)")->check(CLI::Range(0.01, 3600.0));
  throughput->add_option("--coalesce-us", args->coalesce_us,
                         "also run 1->1 with subscribers that wait this long for a batch once events show up "
                         "(SubscriberOptions::coalesce; default 0: not run)")
      ->check(CLI::Range(0.0, 1000.0));
  throughput->add_option("--batch", args->batch,
                         "also run 1->1 with a publisher that hands this many events at a time to publish_batch "
                         "(default 64; 1: not run)")
      ->check(CLI::Range(1, 4096));
  throughput->add_flag(
      "--untrusted", args->untrusted,
      "also run 1->1 on an untrusted topic (the subscriber copies and verifies each event), right after "
      "the plain 1->1 run");
  throughput->add_flag("--json", args->json, "one JSON object per run");
  throughput->callback([args] {
    if (!args->json)
      std::printf("%-10s %-18s %9s %4s %4s %8s %12s %14s %10s %12s %7s\n", "mode", "transport", "bytes", "P", "K",
                  "seconds", "events", "events/s", "MB/s", "/moodycamel", "/floor");
    // The in-process ceilings first. Every 64-byte row is compared with
    // moodycamel moving one item per call, as flowbus moves one event per
    // publish and per read; its bulk figure (256 items a call) is shown too.
    const std::vector<size_t> sizes = parse_payload_sizes(args->sizes, "--size", uint64_t(1) << 30);  // all checked first
    const perf::ThroughputResult ceiling = perf::moodycamel_throughput(args->seconds, false);
    print_throughput(ceiling, ceiling.events_per_s(), 0, args->json);
    print_throughput(perf::moodycamel_throughput(args->seconds, true), ceiling.events_per_s(), 0, args->json);
    for (const size_t bytes : sizes) {
      const double s = args->seconds;
      // The floor first: every 1->1 row of this size is compared with it.
      const perf::ThroughputResult floor = perf::floor_throughput(bytes, s);
      print_throughput(floor, ceiling.events_per_s(), floor.events_per_s(), args->json);
      const std::vector<std::function<perf::ThroughputResult()>> runs{
          [&] { return perf::flowbus_throughput(bytes, 1, 1, s); },
          [&] { return perf::flowbus_throughput(bytes, 1, 1, s, 0, 1, /*untrusted=*/true); },
          [&] { return perf::flowbus_throughput(bytes, 1, 1, s, uint64_t(args->coalesce_us * 1000)); },
          [&] { return perf::flowbus_throughput(bytes, 1, 1, s, 0, size_t(args->batch)); },
          [&] { return perf::fd_throughput(true, bytes, s); },   // uds
          [&] { return perf::fd_throughput(false, bytes, s); },  // pipe
          [&] { return perf::flowbus_throughput(bytes, 1, args->subscribers, s); },
          [&] { return perf::flowbus_throughput(bytes, args->publishers, 1, s); },
      };
      for (size_t i = 0; i < runs.size(); ++i)
        if ((i != 1 || args->untrusted) && (i != 2 || args->coalesce_us > 0) && (i != 3 || args->batch > 1))
          print_throughput(runs[i](), ceiling.events_per_s(), floor.events_per_s(), args->json);
    }
  });
}

void print_rtt(const char* transport, size_t bytes, uint64_t iters, const Percentiles& p, bool json) {
  if (json)
    std::printf("{\"mode\":\"mirror_rtt\",\"transport\":\"%s\",\"bytes\":%zu,\"iters\":%llu,\"rtt_p50_ns\":%.0f,\"rtt_p90_ns\":%.0f,"
                "\"rtt_p99_ns\":%.0f,\"rtt_p999_ns\":%.0f,\"rtt_max_ns\":%.0f}\n",
                transport, bytes, static_cast<unsigned long long>(iters), p.p50, p.p90, p.p99, p.p999, p.max);
  else
    std::printf("%-10s %9zu %10.0f %10.0f %10.0f %10.0f %12.0f\n", transport, bytes, p.p50, p.p90, p.p99, p.p999, p.max);
  std::fflush(stdout);
}

void add_mirror_command(CLI::App& perf) {
  struct Args {
    std::string sizes = "64,65536";
    size_t rtt_bytes = 64;
    double seconds = 3;
    uint64_t iters = 20000;
    bool json = false;
  };
  auto args = std::make_shared<Args>();
  CLI::App* mirror = perf.add_subcommand(
      "mirror",
      "Events through two sidecars on loopback (bus A -> sidecar A -> TCP -> sidecar B -> bus B): events/s and MB/s per "
      "size, and the round trip they add over a plain loopback TCP echo, in the same run");
  mirror->add_option("--size", args->sizes, "payload sizes of the throughput runs, in bytes, comma separated (default 64,65536)");
  mirror->add_option("--seconds", args->seconds, "how long each throughput run publishes (default 3)")->check(CLI::Range(0.01, 3600.0));
  mirror->add_option("--iters", args->iters, "round trips measured per transport (default 20000; 10% more warm up)")
      ->check(CLI::Range(uint64_t(1), uint64_t(100000000)));
  mirror->add_option("--rtt-size", args->rtt_bytes, "payload bytes of the round trips (default 64)")->check(CLI::Range(size_t(64), size_t(1) << 20));
  mirror->add_flag("--json", args->json, "one JSON object per line: mode mirror (per size), mirror_rtt (per transport), mirror_added");
  mirror->callback([args] {
    const std::vector<size_t> sizes = parse_payload_sizes(args->sizes, "--size", 4u << 20);
    const uint64_t iters = args->iters, warmup = std::max<uint64_t>(200, iters / 10);
    const size_t rtt_bytes = args->rtt_bytes;
    const bool json = args->json;
    if (!json) std::fprintf(stderr, "  starting two sidecars on loopback...\n");
    perf::MirrorRig rig(sizes, rtt_bytes);  // its destructor stops them and removes both buses, also on error

    // Latency first, on a quiet rig: the baseline, then through the sidecars.
    if (!json) std::fprintf(stderr, "  tcp echo, %zu bytes, %llu round trips...\n", rtt_bytes, static_cast<unsigned long long>(iters));
    std::vector<double> tcp = perf::tcp_round_trips(rtt_bytes, iters, warmup);
    if (!json) std::fprintf(stderr, "  sidecar, %zu bytes, %llu round trips...\n", rtt_bytes, static_cast<unsigned long long>(iters));
    std::vector<double> side = rig.round_trips(iters, warmup);
    const Percentiles pt = percentiles(tcp), ps = percentiles(side);
    if (!json) {
      std::printf("\nround trip in ns: ping on bus A -> sidecar A -> TCP -> sidecar B -> echo on bus B -> back (sidecar),\n"
                  "against a blocking loopback TCP echo with TCP_NODELAY (tcp); %llu round trips each\n",
                  static_cast<unsigned long long>(iters));
      std::printf("%-10s %9s %10s %10s %10s %10s %12s\n", "transport", "bytes", "p50", "p90", "p99", "p99.9", "max");
    }
    print_rtt("tcp", rtt_bytes, iters, pt, json);
    print_rtt("sidecar", rtt_bytes, iters, ps, json);
    const double added = ps.p50 - pt.p50;
    if (json)
      std::printf("{\"mode\":\"mirror_added\",\"bytes\":%zu,\"p50_ratio\":%.2f,\"added_rtt_ns\":%.0f,\"added_per_hop_ns\":%.0f}\n",
                  rtt_bytes, ps.p50 / pt.p50, added, added / 2);
    else
      std::printf("sidecar/tcp at p50: %.2fx; the sidecars add %.1f us per round trip, %.1f us per hop (A->B or B->A)\n",
                  ps.p50 / pt.p50, added / 1000, added / 2000);
    std::fflush(stdout);

    if (!json)
      std::printf("\nmirrored throughput, bus A -> sidecar A -> TCP -> sidecar B -> bus B, every event checked in order on B\n"
                  "(MB/s counts payload bytes only)\n%-10s %9s %8s %12s %14s %10s\n",
                  "mode", "bytes", "seconds", "events", "events/s", "MB/s");
    for (size_t bytes : sizes) {
      if (!json) std::fprintf(stderr, "  mirror, %zu bytes, %.2f s...\n", bytes, args->seconds);
      const perf::MirrorThroughput r = rig.throughput(bytes, args->seconds);
      if (json)
        std::printf("{\"mode\":\"mirror\",\"bytes\":%zu,\"seconds\":%.3f,\"events\":%llu,\"events_per_s\":%.0f,\"mb_per_s\":%.1f}\n",
                    r.bytes, r.seconds, static_cast<unsigned long long>(r.events), r.events_per_s(), r.mb_per_s());
      else
        std::printf("%-10s %9zu %8.2f %12llu %14.0f %10.1f\n", "mirror", r.bytes, r.seconds,
                    static_cast<unsigned long long>(r.events), r.events_per_s(), r.mb_per_s());
      std::fflush(stdout);
    }
  });
}

}  // namespace

void add_perf_command(CLI::App& app) {
  CLI::App* perf = app.add_subcommand("perf", "Measure flowbus against other transports on this machine");
  perf->require_subcommand(1);
  add_latency_command(*perf);
  add_throughput_command(*perf);
  add_mirror_command(*perf);
  perf::add_nats_command(*perf);
}

}  // namespace flowbus::cli
