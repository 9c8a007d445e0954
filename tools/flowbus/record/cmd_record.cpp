// flowbus record: subscribe and write what comes into an MCAP file.
#include <signal.h>
#include <unistd.h>

#include <cstdio>

#include "../cli_util.hpp"
#include "flowbus/error.hpp"
#include "flowbus/mcap/error.hpp"
#include "info.hpp"
#include "recorder.hpp"

namespace flowbus::cli {

namespace {

volatile std::sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }

void install_signals() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: a wait returns at once
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  // A file size limit (ulimit -f) makes write() fail with EFBIG, which the
  // writer reports, instead of killing the recorder with SIGXFSZ.
  signal(SIGXFSZ, SIG_IGN);
  // A closed stderr (`record ... 2>&1 | head`) must not kill it before the file is finished.
  signal(SIGPIPE, SIG_IGN);
}

std::string progress_line(const record::RecorderTotals& t, double seconds) {
  char buf[256];
  std::snprintf(buf, sizeof buf, "recording: %llu events, %s written, %.0f events/s, %s/s, lost %llu",
                static_cast<unsigned long long>(t.events), format_bytes(t.file_bytes).c_str(),
                seconds > 0 ? double(t.events) / seconds : 0.0,
                format_bytes(seconds > 0 ? uint64_t(double(t.payload_bytes) / seconds) : 0).c_str(),
                static_cast<unsigned long long>(t.lost));
  return buf;
}

}  // namespace

void add_record_command(CLI::App& app) {
  struct Args {
    std::string bus, output, duration, max_size, compression = "zstd", from = "latest", chunk_size = "1MiB";
    std::vector<std::string> patterns;
    bool split = false, quiet = false;
    uint64_t count = 0;
  };
  auto args = std::make_shared<Args>();
  CLI::App* rec = app.add_subcommand(
      "record",
      "Record the events of topics matching patterns into an MCAP file (https://mcap.dev), readable by Foxglove and "
      "the "
      "MCAP tools; `flowbus record info FILE` describes one. Ctrl-C or SIGTERM finishes the file. Exit 1 if any event "
      "was lost.");
  rec->add_option("bus", args->bus, "bus name");
  rec->add_option("patterns", args->patterns, "topics or patterns: '*' matches one token, '>' the rest (orders.>)");
  rec->add_option("-o,--output", args->output, "the MCAP file to write (replaced if it exists)");
  rec->add_option("--duration", args->duration,
                  "stop after this long: seconds, or with a unit (500ms); default: until Ctrl-C");
  rec->add_option("--count", args->count, "stop after this many events, 1 or more")->check(whole_number(1, UINT64_MAX));
  rec->add_option("--max-size", args->max_size,
                  "stop (or with --split, start the next file) at about this size, e.g. 1GiB");
  rec->add_flag("--split", args->split, "at --max-size start the next file: run.mcap, run-1.mcap, run-2.mcap, ...");
  rec->add_option("--compression", args->compression, "chunk compression: zstd (default), lz4 or none")
      ->check(CLI::IsMember({"zstd", "lz4", "none"}));
  rec->add_option("--from", args->from,
                  "latest (default): what is published from now on; earliest: also what the rings retain")
      ->check(CLI::IsMember({"latest", "earliest"}));
  rec->add_option("--chunk-size", args->chunk_size,
                  "uncompressed bytes per chunk (default 1MiB; a chunk is also written every second)");
  rec->add_flag("-q,--quiet", args->quiet, "no progress line");
  add_record_info_command(*rec);
  rec->callback([rec, args] {
    if (rec->got_subcommand("info")) return;
    if (args->bus.empty() || args->patterns.empty() || args->output.empty()) {
      std::fprintf(stderr,
                   "flowbus record: give a bus, one or more patterns and -o FILE, e.g. "
                   "`flowbus record plant 'sensor.>' -o run.mcap` (see --help)\n");
      throw ExitCode{2};
    }
    record::RecorderOptions o;
    o.bus = args->bus;
    o.patterns = args->patterns;
    o.output = args->output;
    o.duration = args->duration.empty() ? kNever : parse_seconds(args->duration, "--duration");
    o.max_size = args->max_size.empty() ? 0 : parse_size(args->max_size, "--max-size");
    if (!args->max_size.empty() && o.max_size < 4096)
      throw CLI::ValidationError("--max-size",
                                 "'" + args->max_size + "' is too small: give at least 4KiB (e.g. 64MiB, 1GiB)");
    if (args->split && o.max_size == 0)
      throw CLI::ValidationError("--split", "needs --max-size (the size of each file)");
    const uint64_t chunk = parse_size(args->chunk_size, "--chunk-size");
    if (chunk < 1024 || chunk > (256u << 20))
      throw CLI::ValidationError("--chunk-size", "'" + args->chunk_size + "' is out of range: from 1KiB to 256MiB");
    o.chunk_size = size_t(chunk);
    o.split = args->split;
    o.count = args->count;
    o.compression = mcap::parse_compression(args->compression);
    o.from = args->from == "earliest" ? StartAt::Earliest : StartAt::Latest;
    install_signals();
    std::unique_ptr<record::Recorder> recorder;
    try {
      recorder = std::make_unique<record::Recorder>(o);
    } catch (const mcap::McapError& e) {
      std::fprintf(stderr, "flowbus record: %s\n", e.what());
      throw ExitCode{1};
    }
    for (const std::string& p : recorder->unmatched_patterns())
      std::fprintf(stderr,
                   "flowbus record: no topic on bus '%s' matches '%s' yet; its topics are recorded once created "
                   "(see them with `flowbus topic ls %s`)\n",
                   o.bus.c_str(), p.c_str(), o.bus.c_str());
    const bool tty = ::isatty(2) != 0;
    const auto start = std::chrono::steady_clock::now();
    auto seconds = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };
    try {
      recorder->run(g_stop, [&](const record::RecorderTotals& t) {
        if (args->quiet) return;
        std::fprintf(stderr, tty ? "\r%s\033[K" : "%s\n", progress_line(t, seconds()).c_str());
      });
    } catch (const mcap::McapError& e) {
      if (tty && !args->quiet) std::fputc('\n', stderr);
      std::fprintf(stderr, "flowbus record: %s (%llu events recorded)\n", e.what(),
                   static_cast<unsigned long long>(recorder->totals().events));
      throw ExitCode{1};
    }
    const record::RecorderTotals& t = recorder->totals();
    if (tty && !args->quiet) std::fputc('\n', stderr);
    std::string files;
    for (const std::string& f : t.files) files += (files.empty() ? "" : ", ") + f;
    std::fprintf(stderr, "recorded %llu events from %llu ring(s) into %s (%s, %s), %s after %.1fs; lost %llu\n",
                 static_cast<unsigned long long>(t.events), static_cast<unsigned long long>(t.rings), files.c_str(),
                 format_bytes(t.file_bytes).c_str(), args->compression.c_str(), recorder->stop_reason().c_str(),
                 seconds(), static_cast<unsigned long long>(t.lost));
    if (t.lost != 0 || t.corrupt_rings != 0) {
      std::fprintf(stderr,
                   "flowbus record: %llu event(s) lost (%llu eviction(s)) and %llu ring(s) corrupt; the file says so "
                   "too (`flowbus record info %s`); exiting with 1\n",
                   static_cast<unsigned long long>(t.lost), static_cast<unsigned long long>(t.evictions),
                   static_cast<unsigned long long>(t.corrupt_rings), t.files.front().c_str());
      throw ExitCode{1};
    }
  });
}

}  // namespace flowbus::cli
