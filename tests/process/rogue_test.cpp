// A rogue writer: a process with write permission on one topic's ring
// scribbles random and plausible-looking bytes over its header, positions,
// cursor slots, records and commit words, continuously, while publishers
// and subscribers run as real processes (flowbus_test_worker, see
// worker.cpp). Labels: process, torture. It runs in CI's ASan+UBSan build
// with the rest of the suite. Duration: FLOWBUS_ROGUE_SECONDS (default 10).
#include <gtest/gtest.h>
#include <signal.h>

#include <cinttypes>
#include <cstdlib>
#include <iomanip>
#include <sstream>
#include <thread>

#include "child_process.hpp"
#include "flowbus/bus.hpp"
#include "flowbus/error.hpp"
#include "flowbus/inspect.hpp"
#include "process/payload.hpp"
#include "process/worker_reports.hpp"
#include "test_bus.hpp"

using namespace flowbus;
using namespace flowbus::testing;
using namespace std::chrono_literals;

namespace {

uint64_t rogue_seconds() {
  const char* v = std::getenv("FLOWBUS_ROGUE_SECONDS");
  return v != nullptr && *v != 0 ? std::strtoull(v, nullptr, 10) : 10;
}

/// The word after `key` in `line` ("" if absent).
std::string word_after(const std::string& line, const std::string& key) {
  std::istringstream in(line);
  std::string w;
  while (in >> w)
    if (w == key && in >> w) return w;
  return "";
}
uint64_t number_after(const std::string& line, const std::string& key) {
  const std::string w = word_after(line, key);
  return w.empty() ? UINT64_MAX : std::strtoull(w.c_str(), nullptr, 10);
}

struct WatchReport {
  bool done = false;
  std::string healthy, victim, summary, probe, text;
};

WatchReport read_watch(ChildProcess& child, std::chrono::milliseconds timeout) {
  WatchReport r;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (auto line = child.read_line(std::chrono::duration_cast<std::chrono::milliseconds>(
             std::max(deadline - std::chrono::steady_clock::now(), std::chrono::steady_clock::duration(0))))) {
    r.text += *line + "\n";
    if (*line == "done") {
      r.done = true;
      break;
    }
    if (line->rfind("healthy ", 0) == 0) r.healthy = *line;
    if (line->rfind("victim ", 0) == 0) r.victim = *line;
    if (line->rfind("summary ", 0) == 0) r.summary = *line;
    if (line->rfind("probe ", 0) == 0) r.probe = *line;
  }
  return r;
}

}  // namespace

TEST(RogueWriterTest, ScribblingOneTopicsRingNeverCrashesOrStallsAnyoneAndTheOtherTopicFlowsIntact) {
  ::signal(SIGPIPE, SIG_IGN);
  const uint64_t seconds = rogue_seconds();
  ScopedBusName name("rogue");
  Bus bus = Bus::open(name.name);
  const std::string victim_topic = "rogue.victim", healthy_topic = "rogue.healthy";
  // The victim evicts stuck cursors after 300 ms (the rogue forges them);
  // the healthy topic is lossless whatever the load: a reader descheduled
  // for a while on a loaded machine must not be evicted from it.
  for (const std::string& t : {victim_topic, healthy_topic}) {
    TopicSpec spec = sensor_topic(t, Policy::Block, 64 * 1024);
    spec.slow_consumer_timeout = t == victim_topic ? std::chrono::nanoseconds(300ms) : kNever;
    bus.create_topic(spec);
  }
  // The rings exist before anyone subscribes, so the readers start at event 0.
  { Publisher v = bus.publisher(victim_topic, {"v"}), h = bus.publisher(healthy_topic, {"h"}); }
  const std::string victim_ring = "flowbus." + name.name + "." + victim_topic + "@v";

  // Readers: one on both topics (a pattern), one per topic.
  std::vector<std::unique_ptr<ChildProcess>> watchers;
  for (const std::string& pattern : {std::string("rogue.>"), victim_topic, healthy_topic}) {
    // Those that read the victim also probe it: a fresh subscriber each time
    // the last one reported it corrupt, so joining a scribbled ring is tried
    // over and over.
    std::vector<std::string> argv{kWorker, "watch", name.name, pattern, "h", "v", "1000"};
    if (pattern != healthy_topic) argv.push_back(victim_topic);
    watchers.push_back(std::make_unique<ChildProcess>(argv));
    ASSERT_EQ(expect_line(*watchers.back(), "ready"), pattern == "rogue.>" ? "ready 2" : "ready 1");
  }
  ChildProcess healthy_pub({kWorker, "stream", name.name, healthy_topic, "h", "20", "10000"});
  ChildProcess victim_pub({kWorker, "stream", name.name, victim_topic, "v", "20", "200"});
  // "Stalled" below means a call that did not return within kStall: a hang
  // or a livelock. The bound is well above every timeout involved (50 ms
  // waits, 200 ms publishes), because a loaded 2-core machine under ASan
  // deschedules whole processes for a second or two (measured: 2.2 s).
  constexpr uint64_t kStallUs = 5'000'000;
  ASSERT_EQ(expect_line(healthy_pub, "ready"), "ready 0");
  ASSERT_EQ(expect_line(victim_pub, "ready"), "ready 0");
  std::this_thread::sleep_for(300ms);  // events flow on both topics first

  ChildProcess rogue({kWorker, "rogue", name.name, victim_topic, "v", std::to_string(::getpid())});
  ASSERT_EQ(expect_line(rogue, "ready"), "ready");

  // Meanwhile the tools look at the bus: none may crash or hang, and the
  // check must name the damaged ring (and only it).
  const auto start = std::chrono::steady_clock::now();
  int64_t max_check_ms = 0, max_inspect_ms = 0, max_tap_ms = 0;
  uint64_t checks = 0, checks_naming_victim = 0, tap_records = 0, tap_corrupt = 0;
  std::string healthy_findings;
  bool cli_checked = false;
  while (ms_since(start) < int64_t(seconds) * 1000) {
    auto t0 = std::chrono::steady_clock::now();
    const CheckReport report = check_bus(name.name);
    max_check_ms = std::max(max_check_ms, ms_since(t0));
    ++checks;
    bool names_victim = false;
    for (const CheckFinding& f : report.findings) {
      names_victim |= f.where.find(victim_topic + "@v") != std::string::npos;
      if (f.where.find(healthy_topic) != std::string::npos) healthy_findings += f.where + ": " + f.problem + "\n";
    }
    checks_naming_victim += names_victim;
    t0 = std::chrono::steady_clock::now();
    const BusSnapshot snap = inspect_bus(name.name);
    max_inspect_ms = std::max(max_inspect_ms, ms_since(t0));
    EXPECT_EQ(snap.rings.size(), 2u);
    t0 = std::chrono::steady_clock::now();
    try {
      RingTap tap(name.name, victim_topic, "v");
      TapRecord rec;
      for (int i = 0; i < 4096; ++i) {
        const RingTap::Status s = tap.next(rec);
        tap_records += s == RingTap::Status::Ok;
        if (s == RingTap::Status::Corrupt) ++tap_corrupt;
        if (s == RingTap::Status::Corrupt || s == RingTap::Status::Empty) break;
      }
    } catch (const Error& e) {
      ++tap_corrupt;  // a scribbled magic or capacity: refused at open
    }
    max_tap_ms = std::max(max_tap_ms, ms_since(t0));
    if (!cli_checked && ms_since(start) > int64_t(seconds) * 500) {
      // The command line, as an operator would run it, in its own process.
      ChildProcess cli({FLOWBUS_BINARY_DIR "/bin/flowbus", "inspect", name.name, "--check"},
                       {.pipe_stdin = false, .capture_stderr = true});
      const auto o = cli.communicate(60s);
      EXPECT_TRUE(o.finished) << "flowbus inspect --check did not finish";
      EXPECT_EQ(o.exit_code, 1) << o.out << o.err;
      EXPECT_NE((o.out + o.err).find(victim_topic + "@v"), std::string::npos) << o.out << o.err;
      cli_checked = true;
    }
    std::this_thread::sleep_for(200ms);
  }
  EXPECT_TRUE(cli_checked);

  rogue.close_stdin();
  const std::string scribbled = expect_line(rogue, "scribbled", 10s);
  const auto rogue_status = rogue.wait(10s);
  ASSERT_TRUE(rogue_status);
  EXPECT_TRUE(WIFEXITED(*rogue_status) && WEXITSTATUS(*rogue_status) == 0);

  // Publishers: the healthy one never timed out; the victim's may have
  // (forged cursors hold it back), but each call returned within its timeout.
  auto finish = [](ChildProcess& p) {
    const auto o = p.communicate(30s);
    EXPECT_TRUE(o.finished && o.exit_code == 0) << o.out;
    return o.out;
  };
  const std::string healthy_out = finish(healthy_pub), victim_out = finish(victim_pub);
  const uint64_t healthy_published = number_after(healthy_out, "published");
  ASSERT_NE(healthy_published, UINT64_MAX) << healthy_out;
  EXPECT_GT(healthy_published, 0u);
  EXPECT_EQ(number_after(healthy_out, "timeouts"), 0u) << healthy_out;
  EXPECT_LT(number_after(healthy_out, "max_block_us"), kStallUs) << healthy_out;
  ASSERT_NE(number_after(victim_out, "published"), UINT64_MAX) << victim_out;
  EXPECT_LT(number_after(victim_out, "max_block_us"), kStallUs) << victim_out;

  const char* names[] = {"pattern", "victim topic", "healthy topic"};
  std::string figures;
  for (size_t i = 0; i < watchers.size(); ++i) {
    ChildProcess& w = *watchers[i];
    w.close_stdin();
    const WatchReport r = read_watch(w, 60s);
    const auto status = w.wait(10s);
    ASSERT_TRUE(r.done) << names[i] << "\n" << r.text;
    ASSERT_TRUE(status);
    EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << names[i];
    figures += std::string(names[i]) + ": " + r.healthy + " | " + r.victim + " | " + r.summary + " | " + r.probe + "\n";
    // No reader stalled: every read() and wait(50 ms) returned in bounded time.
    EXPECT_LT(number_after(r.summary, "max_read_us"), kStallUs) << names[i] << ": " << r.summary;
    EXPECT_LT(number_after(r.summary, "max_wait_us"), kStallUs) << names[i] << ": " << r.summary;
    const std::string corrupt_rings = word_after(r.summary, "corrupt_rings");
    EXPECT_EQ(corrupt_rings.find(healthy_topic), std::string::npos) << names[i] << ": " << r.summary;
    if (i != 1) {  // it reads the healthy topic: everything, once, in order, intact
      EXPECT_EQ(number_after(r.healthy, "count"), healthy_published) << names[i] << ": " << r.healthy;
      EXPECT_EQ(number_after(r.healthy, "first_sequence"), 0u) << r.healthy;
      EXPECT_EQ(number_after(r.healthy, "first_counter"), 0u) << r.healthy;
      EXPECT_EQ(number_after(r.healthy, "order_errors"), 0u) << r.healthy;
      EXPECT_EQ(number_after(r.healthy, "integrity_errors"), 0u) << r.healthy;
      std::ostringstream digest;
      digest << std::hex << std::setw(16) << std::setfill('0') << expected_digest("h", 0, healthy_published);
      EXPECT_EQ(word_after(r.healthy, "digest"), digest.str()) << names[i] << ": healthy events differ from what was published";
    }
    if (i != 2) {  // it reads the victim: the damage was reported, naming the ring
      EXPECT_GE(number_after(r.summary, "corrupt"), 1u) << names[i] << ": " << r.summary;
      EXPECT_GE(number_after(r.probe, "corrupt"), 1u) << names[i] << ": " << r.probe;
      EXPECT_LT(number_after(r.probe, "max_probe_us"), kStallUs) << names[i] << ": " << r.probe;
      EXPECT_EQ(corrupt_rings, victim_ring) << names[i] << ": " << r.summary;
    } else {
      EXPECT_EQ(number_after(r.summary, "corrupt"), 0u) << r.summary;
      EXPECT_EQ(number_after(r.summary, "evicted"), 0u) << r.summary;
      EXPECT_EQ(number_after(r.summary, "lost"), 0u) << r.summary;
    }
  }
  EXPECT_GE(checks_naming_victim, 1u) << "check_bus never reported the scribbled ring in " << checks << " checks";
  EXPECT_EQ(healthy_findings, "") << "check_bus reported the healthy ring";
  EXPECT_LT(max_check_ms, 10'000);
  EXPECT_LT(max_inspect_ms, 10'000);
  EXPECT_LT(max_tap_ms, 10'000);
  std::printf("rogue writer: %" PRIu64 " s, %s; healthy publisher: %s; victim publisher: %s\n"
              "check_bus: %" PRIu64 " runs, %" PRIu64 " naming the victim, longest %" PRId64 " ms; inspect_bus longest %" PRId64
              " ms; RingTap: %" PRIu64 " records, %" PRIu64 " corrupt reports, longest %" PRId64 " ms\n%s",
              seconds, scribbled.c_str(), healthy_out.c_str(), victim_out.c_str(), checks, checks_naming_victim,
              max_check_ms, max_inspect_ms, tap_records, tap_corrupt, max_tap_ms, figures.c_str());
}
