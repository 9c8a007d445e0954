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
#include <sys/mman.h>
#include <sys/resource.h>
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
  double echo_cpus = 0;  ///< the echo (waiting, responding) process: CPU seconds per wall second
};

/// Spins on the clock for `ns` (0: not at all): the ping side's pause
/// between round trips, so the echo side idles as a subscriber between events.
void pause_for(uint64_t ns) {
  if (ns == 0) return;
  const auto until = std::chrono::steady_clock::now() + std::chrono::nanoseconds(ns);
  while (std::chrono::steady_clock::now() < until) _mm_pause();
}

/// CPU seconds (user + system) the calling process has used: getrusage,
/// exact for the caller (the kernel brings its own running time up to date;
/// another process's CPU clock lags by up to a scheduler tick).
double own_cpu_s() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  auto s = [](const timeval& t) { return double(t.tv_sec) + double(t.tv_usec) / 1e6; };
  return s(u.ru_utime) + s(u.ru_stime);
}

/// The echo side's CPU seconds per wall second over the timed round trips,
/// measured by the echo process itself and handed back in a shared page.
class EchoCpu {
 public:
  EchoCpu() {
    void* m = mmap(nullptr, sizeof(double), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) perf::fail("cannot map a page for the echo's CPU use");
    cpus_ = new (m) double(0);
  }
  ~EchoCpu() { munmap(cpus_, sizeof(double)); }
  /// Child: echoes the untimed warm-up, then the timed messages, measuring the latter.
  void echo(perf::PingPong& pp, uint64_t warmup, uint64_t iters) {
    pp.echo(0, warmup);
    const double cpu0 = own_cpu_s();
    const auto t0 = std::chrono::steady_clock::now();
    pp.echo(warmup, iters);
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    *cpus_ = (own_cpu_s() - cpu0) / wall;
  }
  double cpus() const { return *cpus_; }

 private:
  double* cpus_;
};

/// One transport at one size: round-trip times in ns and the CPU they cost.
/// `gap_ns` passes between round trips, untimed.
Run run_one(const std::string& transport, size_t bytes, uint64_t iters, perf::WaitMode wait, uint64_t gap_ns,
            const BackoffOptions& backoff) {
  auto pp = perf::make_transport(transport, bytes, wait, backoff);
  const uint64_t warmup = std::max<uint64_t>(1000, iters / 10);
  EchoCpu echo_cpu;
  const pid_t child = perf::fork_pinned(1, "echo side", [&] {
    pp->start_echo_side();
    echo_cpu.echo(*pp, warmup, iters);
    pp->end_echo_side();
  });
  perf::pin_to_cpu(0);
  pp->start_ping_side();
  for (uint64_t i = 0; i < warmup; ++i) {
    pause_for(gap_ns);
    pp->round_trip(i);
  }
  std::vector<uint64_t> ticks(iters);
  const double self0 = cpu_ns(CLOCK_PROCESS_CPUTIME_ID);
  const auto t0 = std::chrono::steady_clock::now();
  const uint64_t c0 = __rdtsc();
  for (uint64_t i = 0; i < iters; ++i) {
    pause_for(gap_ns);
    const uint64_t start = __rdtsc();
    pp->round_trip(warmup + i);
    ticks[i] = __rdtsc() - start;
  }
  const uint64_t c1 = __rdtsc();
  const double wall_ns = double(std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count());
  const double self1 = cpu_ns(CLOCK_PROCESS_CPUTIME_ID);
  const double ns_per_tick = wall_ns / double(c1 - c0);
  perf::wait_child(child, transport + ": the echo");
  Run run;
  run.rtt_ns.resize(iters);
  for (uint64_t i = 0; i < iters; ++i) run.rtt_ns[i] = double(ticks[i]) * ns_per_tick;
  run.echo_cpus = echo_cpu.cpus();
  run.wall_ns_per_rtt = wall_ns / double(iters);
  run.cpu_ns_per_rtt = (self1 - self0) / double(iters) + run.echo_cpus * run.wall_ns_per_rtt;
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

/// Every --wait of a latency run, checked before anything is measured.
std::vector<perf::WaitMode> latency_waits(const std::string& text) {
  std::vector<perf::WaitMode> waits;
  for (const std::string& w : perf::split_list(text)) {
    perf::WaitMode mode;
    if (w == "spin")
      mode = perf::WaitMode::Spin;
    else if (w == "backoff")
      mode = perf::WaitMode::Backoff;
    else if (w == "futex")
      mode = perf::WaitMode::Futex;
    else
      throw CLI::ValidationError("--wait", "unknown wait '" + w + "': use spin, backoff or futex, comma separated");
    if (std::find(waits.begin(), waits.end(), mode) == waits.end()) waits.push_back(mode);
  }
  if (waits.empty()) throw CLI::ValidationError("--wait", "give at least one of spin, backoff or futex");
  return waits;
}

bool is_flowbus(const std::string& transport) {
  return transport == "flowbus" || transport == perf::kUntrustedTransport;
}

/// How a transport's receiver waits: flowbus as --wait says, the floor
/// spins, the others block in the kernel.
std::string receiver_wait(const std::string& transport, perf::WaitMode wait) {
  if (is_flowbus(transport)) return perf::to_string(wait);
  return transport == "floor" ? "spin" : "kernel";
}

/// One row of a latency table.
struct LatencyRow {
  std::string wait;
  Percentiles p;
  double cpus = 0, echo_cpus = 0;
  uint64_t iters = 0;
};

void add_latency_command(CLI::App& perf) {
  struct Args {
    std::string sizes = "64,4096,1048576", transports = perf::kTransportNames, wait = "spin", plot;
    uint64_t iters = 100000;
    uint64_t gap_us = 0;
    uint64_t max_park_us = uint64_t(BackoffOptions{}.max_park.count() / 1000);
    bool untrusted = false;
    bool json = false;
  };
  auto args = std::make_shared<Args>();
  CLI::App* latency = perf.add_subcommand("latency", "Round-trip latency between two pinned processes, per size and transport");
  latency->add_option("--size", args->sizes, "payload sizes in bytes, comma separated (default 64,4096,1048576)");
  latency->add_option("--iters", args->iters, "round trips measured per size and transport, 1 to 10000000 (default 100000; 10% more warm up)")
      ->check(whole_number(1, 10'000'000));
  latency->add_option("--transport", args->transports, std::string("any of ") + perf::kTransportNames + " (default all)");
  latency->add_option("--wait", args->wait,
                      "how flowbus's receivers wait, comma separated, each measured in the same run: spin (busy poll), "
                      "backoff (Subscriber::wait with WaitStrategy::Backoff: spin, yield, then sleeps of 1 us doubling "
                      "to 1 ms) or futex (sleep on the futex at once); default spin");
  latency
      ->add_option("--gap-us", args->gap_us,
                   "the ping side pauses this long between round trips (untimed), so the echo side idles between "
                   "events as a real subscriber does: 0 to 1000000 us (default 0: back to back)")
      ->check(whole_number(0, 1'000'000));
  latency
      ->add_option("--backoff-max-park-us", args->max_park_us,
                   "--wait backoff: the longest sleep (BackoffOptions::max_park), 1 to 1000000 us (default 1000); "
                   "the other settings keep their defaults")
      ->check(whole_number(1, 1'000'000));
  latency->add_option("--plot", args->plot, "also draw p50/p90/p99/p99.9 per transport and size into this PNG (needs gnuplot)");
  latency->add_flag("--untrusted", args->untrusted,
                    "also measure flowbus on untrusted topics (flowbus-untrusted: readers copy and verify each event), "
                    "right after flowbus");
  latency->add_flag("--json", args->json, "one JSON object per transport, wait and size");
  latency->callback([args] {
    // Every argument before measuring anything: a typo should not cost a whole run.
    const std::vector<size_t> sizes = parse_payload_sizes(args->sizes, "--size", uint64_t(1) << 30);
    const std::vector<std::string> transports = latency_transports(args->transports, args->untrusted);
    const std::vector<perf::WaitMode> waits = latency_waits(args->wait);
    const uint64_t gap_ns = args->gap_us * 1000;
    BackoffOptions backoff;
    backoff.max_park = std::chrono::microseconds(args->max_park_us);
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
    std::vector<perf::LatencyPoint> plotted;
    for (const size_t bytes : sizes) {
      std::map<std::string, LatencyRow> rows;  // by label: the transport, "/<wait>" after flowbus's when several
      for (const std::string& t : transports) {
        for (const perf::WaitMode wait : waits) {
          if (!is_flowbus(t) && wait != waits.front()) continue;  // --wait is flowbus's: the others run once
          const std::string label = is_flowbus(t) && waits.size() > 1 ? t + "/" + perf::to_string(wait) : t;
          auto iters = args->iters;
          if (bytes >= (1u << 20) && iters > 20000) iters = 20000;  // large copies: keep the run short
          if (!args->json)
            std::fprintf(stderr, "  %s, %zu bytes, %llu round trips...\n", label.c_str(), bytes,
                         static_cast<unsigned long long>(iters));
          Run run = run_one(t, bytes, iters, wait, gap_ns, backoff);
          LatencyRow& row = rows[label];
          row = {receiver_wait(t, wait), percentiles(run.rtt_ns), run.cpu_ns_per_rtt / run.wall_ns_per_rtt,
                 run.echo_cpus, iters};
          const Percentiles& p = row.p;
          plotted.push_back({label, bytes, p.p50, p.p90, p.p99, p.p999});
          if (args->json)
            std::printf(
                "{\"transport\":\"%s\",\"bytes\":%zu,\"iters\":%llu,\"wait\":\"%s\",\"gap_ns\":%llu,\"max_park_ns\":%"
                "lld,"
                "\"rtt_p50_ns\":%.0f,\"rtt_p90_ns\":%.0f,\"rtt_p99_ns\":%.0f,\"rtt_p999_ns\":%.0f,"
                "\"rtt_max_ns\":%.0f,\"cpu_ns_per_rtt\":%.0f,\"cpus_busy\":%.2f,\"echo_cpus\":%.3f}\n",
                t.c_str(), bytes, static_cast<unsigned long long>(iters), row.wait.c_str(),
                static_cast<unsigned long long>(gap_ns),
                static_cast<long long>(row.wait == "backoff" ? backoff.max_park.count() : 0), p.p50, p.p90, p.p99,
                p.p999, p.max, run.cpu_ns_per_rtt, row.cpus, row.echo_cpus);
        }
      }
      std::fflush(stdout);
      if (args->json) continue;
      const auto floor = rows.find("floor");
      std::printf(
          "\n%zu bytes, round trip in ns (flowbus waits: %s, backoff sleeping up to %llu us; %llu us between "
          "round trips)\n",
          bytes, args->wait.c_str(), static_cast<unsigned long long>(args->max_park_us),
          static_cast<unsigned long long>(args->gap_us));
      std::printf("%-22s %-8s %10s %10s %10s %10s %12s %10s %10s %9s\n", "transport", "wait", "p50", "p90", "p99",
                  "p99.9", "max", "p50/floor", "CPUs busy", "echo CPU");
      for (const auto& [name, row] : rows) {
        const Percentiles& p = row.p;
        char ratio[32] = "-";
        if (floor != rows.end()) std::snprintf(ratio, sizeof ratio, "%.2fx", p.p50 / floor->second.p.p50);
        std::printf("%-22s %-8s %10.0f %10.0f %10.0f %10.0f %12.0f %10s %10.2f %9.3f\n", name.c_str(), row.wait.c_str(),
                    p.p50, p.p90, p.p99, p.p999, p.max, ratio, row.cpus, row.echo_cpus);
      }
      std::printf(
          "(CPUs busy: both processes' CPU seconds per wall second; echo CPU: the echo side's, the one that "
          "waits for each ping and answers it)\n");
      std::fflush(stdout);
    }
    if (!args->plot.empty()) {
      perf::plot_latency(args->plot, plotted, "wait " + args->wait + ", 2 processes pinned to 2 CPUs");
      if (!args->json) std::fprintf(stderr, "plot written to %s\n", args->plot.c_str());
    }
  });
}

/// "12.3M": events/s in a column.
std::string millions(double events_per_s) {
  char text[32];
  std::snprintf(text, sizeof text, "%.2fM", events_per_s / 1e6);
  return text;
}

/// The per-process rates of a 1->K or P->1 run as a JSON array.
std::string json_list(const std::vector<double>& rates) {
  std::string out = "[";
  for (size_t i = 0; i < rates.size(); ++i) {
    char item[32];
    std::snprintf(item, sizeof item, "%s%.0f", i == 0 ? "" : ",", rates[i]);
    out += item;
  }
  return out + "]";
}

/// `one_to_one`: the events/s of this size's plain flowbus 1->1 run (0: not run yet).
void print_throughput(const perf::ThroughputResult& r, double ceiling_events_per_s, double floor_events_per_s,
                      double one_to_one, bool json) {
  std::vector<double> sorted = r.per_process;
  std::sort(sorted.begin(), sorted.end());
  if (json) {
    std::printf(
        "{\"mode\":\"%s\",\"transport\":\"%s\",\"bytes\":%zu,\"publishers\":%d,\"subscribers\":%d,\"seconds\":%.3f,"
        "\"events\":%llu,\"events_per_s\":%.0f,\"mb_per_s\":%.1f,\"coalesce_ns\":%llu,\"batch\":%zu,\"untrusted\":%s,"
        "\"wait\":\"%s\",\"total_events_per_s\":%.0f,\"per_process_events_per_s\":%s,\"one_to_one_events_per_s\":%.0f,"
        "\"time_shared\":%s}\n",
        r.mode.c_str(), r.transport.c_str(), r.bytes, r.publishers, r.subscribers, r.seconds,
        static_cast<unsigned long long>(r.events), r.events_per_s(), r.mb_per_s(),
        static_cast<unsigned long long>(r.coalesce_ns), r.batch, r.untrusted ? "true" : "false",
        r.backoff ? "backoff" : "futex", r.total_events_per_s(), json_list(r.per_process).c_str(), one_to_one,
        r.time_shared ? "true" : "false");
  } else {
    // The ceiling moves 64-byte items: a ratio is only meaningful at that size.
    char ratio[32] = "-";
    if (ceiling_events_per_s > 0 && r.bytes == 64) std::snprintf(ratio, sizeof ratio, "%.3f", r.events_per_s() / ceiling_events_per_s);
    // The floor moves this payload's lines from one process to one other.
    char to_floor[32] = "-";
    if (floor_events_per_s > 0 && r.mode == "1->1") std::snprintf(to_floor, sizeof to_floor, "%.3f", r.events_per_s() / floor_events_per_s);
    // 1->K and P->1: each process's rate, and all of them against 1->1.
    std::string spread = "-";
    if (!sorted.empty())
      spread = millions(sorted.front()) + "/" + millions(sorted[sorted.size() / 2]) + "/" + millions(sorted.back());
    char to_one[32] = "-";
    if (one_to_one > 0 && r.mode != "1->1" && r.mode != "in-process")
      std::snprintf(to_one, sizeof to_one, "%.3f", r.total_events_per_s() / one_to_one);
    std::string label = r.transport;
    if (r.coalesce_ns > 0) label += "+" + std::to_string(r.coalesce_ns / 1000) + "us";  // coalescing subscribers
    if (r.batch > 1) label += " x" + std::to_string(r.batch);                            // publish_batch bursts
    if (r.untrusted) label += " untrusted";  // readers verify a copy of each event
    if (r.backoff) label += " backoff";      // subscribers wait with WaitStrategy::Backoff
    std::printf("%-10s %-18s %9zu %4d %4d %8.2f %12llu %14.0f %10.1f %12s %7s %14.0f %-26s %7s\n", r.mode.c_str(),
                label.c_str(), r.bytes, r.publishers, r.subscribers, r.seconds,
                static_cast<unsigned long long>(r.events), r.events_per_s(), r.mb_per_s(), ratio, to_floor,
                r.total_events_per_s(), spread.c_str(), to_one);
  }
  std::fflush(stdout);
}

void add_throughput_command(CLI::App& perf) {
  struct Args {
    std::string sizes = "64,65536", wait = "futex", rows = "all";
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
  throughput->add_option("--wait", args->wait,
                         "how the subscribers of 1->K and P->1 wait when they run dry, comma separated, each run in "
                         "turn: futex (spin 50 us, then sleep on the futex: the default SubscriberOptions) or backoff "
                         "(WaitStrategy::Backoff: spin, sched_yield, short sleeps; lets subscribers that share a CPU "
                         "take turns); 1->1 always uses futex (default futex)");
  throughput->add_flag(
      "--untrusted", args->untrusted,
      "also run 1->1 on an untrusted topic (the subscriber copies and verifies each event), right after "
      "the plain 1->1 run");
  throughput->add_option("--rows", args->rows,
                         "which runs, comma separated: moodycamel, floor, flowbus (1->1, one event per call), batch, "
                         "coalesce, untrusted, uds, pipe, distributor (1->K), collector (P->1); batch, coalesce and "
                         "untrusted also need their option; a ratio whose baseline did not run shows as - (default "
                         "all)");
  throughput->add_flag("--json", args->json, "one JSON object per run");
  throughput->callback([args] {
    static const std::vector<std::string> kRows{"moodycamel", "floor", "flowbus", "batch",       "coalesce",
                                                "untrusted",  "uds",   "pipe",    "distributor", "collector"};
    std::vector<std::string> rows = perf::split_list(args->rows);  // checked before anything runs
    if (rows == std::vector<std::string>{"all"}) rows = kRows;
    if (rows.empty()) throw CLI::ValidationError("--rows", "give all, or at least one row");
    for (const std::string& row : rows)
      if (std::find(kRows.begin(), kRows.end(), row) == kRows.end())
        throw CLI::ValidationError("--rows", "unknown row '" + row +
                                                 "': use all, or some of moodycamel, floor, flowbus, batch, coalesce, "
                                                 "untrusted, uds, pipe, distributor, collector");
    const auto wanted = [&rows](const char* row) { return std::find(rows.begin(), rows.end(), row) != rows.end(); };
    std::vector<bool> backoffs;  // the --wait list, checked before anything runs
    for (const std::string& w : perf::split_list(args->wait)) {
      if (w != "futex" && w != "backoff")
        throw CLI::ValidationError("--wait", "unknown wait '" + w + "': use futex or backoff, comma separated");
      if (std::find(backoffs.begin(), backoffs.end(), w == "backoff") == backoffs.end())
        backoffs.push_back(w == "backoff");
    }
    if (backoffs.empty()) throw CLI::ValidationError("--wait", "give futex, backoff or both");
    if (!args->json)
      std::printf("%-10s %-18s %9s %4s %4s %8s %12s %14s %10s %12s %7s %14s %-26s %7s\n", "mode", "transport", "bytes",
                  "P", "K", "seconds", "events", "events/s", "MB/s", "/moodycamel", "/floor", "total/s",
                  "per process min/med/max", "/1->1");
    // The in-process ceilings first. Every 64-byte row is compared with
    // moodycamel moving one item per call, as flowbus moves one event per
    // publish and per read; its bulk figure (256 items a call) is shown too.
    const std::vector<size_t> sizes = parse_payload_sizes(args->sizes, "--size", uint64_t(1) << 30);  // all checked first
    perf::ThroughputResult ceiling;  // events_per_s() 0: not run, no ratio to it
    if (wanted("moodycamel")) {
      ceiling = perf::moodycamel_throughput(args->seconds, false);
      print_throughput(ceiling, ceiling.events_per_s(), 0, 0, args->json);
      print_throughput(perf::moodycamel_throughput(args->seconds, true), ceiling.events_per_s(), 0, 0, args->json);
    }
    bool time_shared = false;
    for (const size_t bytes : sizes) {
      const double s = args->seconds;
      // The floor first: every 1->1 row of this size is compared with it.
      perf::ThroughputResult floor, one;  // not run: 0 events/s, no ratio to them
      if (wanted("floor")) {
        floor = perf::floor_throughput(bytes, s);
        print_throughput(floor, ceiling.events_per_s(), floor.events_per_s(), 0, args->json);
      }
      // Then plain flowbus 1->1: every 1->K and P->1 row of this size is compared with it.
      if (wanted("flowbus")) {
        one = perf::flowbus_throughput(bytes, 1, 1, s);
        print_throughput(one, ceiling.events_per_s(), floor.events_per_s(), one.events_per_s(), args->json);
      }
      std::vector<std::function<perf::ThroughputResult()>> runs{
          [&] { return perf::flowbus_throughput(bytes, 1, 1, s, 0, 1, /*untrusted=*/true); },
          [&] { return perf::flowbus_throughput(bytes, 1, 1, s, uint64_t(args->coalesce_us * 1000)); },
          [&] { return perf::flowbus_throughput(bytes, 1, 1, s, 0, size_t(args->batch)); },
          [&] { return perf::fd_throughput(true, bytes, s); },   // uds
          [&] { return perf::fd_throughput(false, bytes, s); },  // pipe
      };
      const char* run_rows[] = {"untrusted", "coalesce", "batch", "uds", "pipe"};
      for (size_t i = 0; i < runs.size(); ++i)
        if (wanted(run_rows[i]) && (i != 0 || args->untrusted) && (i != 1 || args->coalesce_us > 0) &&
            (i != 2 || args->batch > 1))
          print_throughput(runs[i](), ceiling.events_per_s(), floor.events_per_s(), one.events_per_s(), args->json);
      for (const bool backoff : backoffs) {
        for (const auto& [p, k] : {std::pair{1, args->subscribers}, std::pair{args->publishers, 1}}) {
          if (!wanted(p == 1 ? "distributor" : "collector")) continue;
          const perf::ThroughputResult r = perf::flowbus_throughput(bytes, p, k, s, 0, 1, false, backoff);
          time_shared |= r.time_shared;
          print_throughput(r, ceiling.events_per_s(), floor.events_per_s(), one.events_per_s(), args->json);
        }
      }
    }
    if (time_shared && !args->json)
      std::printf(
          "\nnote: more processes than the %d CPUs: the single side (the publisher of 1->K, the subscriber of "
          "P->1) has CPU 0 and the others take turns on the rest, so those rows measure the scheduler as "
          "much as the bus (a spinning subscriber holds its CPU until its time slice ends; backoff yields it)\n",
          perf::usable_cpus());
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
