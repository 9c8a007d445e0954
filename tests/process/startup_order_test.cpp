// Start-up order (issue 15, item 1): a subscriber that exists before the
// publisher must not miss the first events of the publisher's new ring.
//
// Each round makes a fresh bus, starts subscriber processes first and waits
// until they have subscribed (their "ready"), then starts four publisher
// processes at once (flowbus_test_worker earlysub / newpub, see worker.cpp).
// Each publisher creates its ring only after the go, so the ring is brand new
// when its first event is written, and publishes enough events to lap a small
// ring 20 times. Subscribers: one on an exact topic name, one on `t.*`, one
// on `t.>`. Each subscriber waits for its own go, then sleeps a random delay
// (0 to 10 ms) before it reads, so it attaches the new rings at every
// possible moment: before the first write, during it, or laps after.
//
//   block:  every subscriber receives, per ring, exactly N events, sequences
//           0..N-1 in order, and read() says nothing but Ok and Empty.
//   latest: per ring, events received + `missed` reported (ReadStatus::Lost)
//           == N exactly: nothing overwritten before the subscriber attached
//           goes uncounted.
//   both:   every publisher publishes its N events, evicts nobody (every
//           subscriber is alive and reading) and never waits 2 s for room.
//
// Variants: the topics exist beforehand (create_topic, no ring yet), or the
// subscribers subscribe before the topics exist and the publishers create
// them. Rounds: FLOWBUS_STARTUP_ROUNDS (default 200 for the block and latest
// tests on existing topics, half of it for the topic-created-by-publisher
// variants). Label: process.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <cinttypes>
#include <cstdlib>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "child_process.hpp"
#include "flowbus/bus.hpp"
#include "flowbus/detail/layout.hpp"
#include "process/payload.hpp"
#include "process/worker_reports.hpp"
#include "test_bus.hpp"

using namespace flowbus;
using namespace flowbus::testing;
using namespace std::chrono_literals;

namespace {

uint64_t rounds() { return env_count("FLOWBUS_STARTUP_ROUNDS", 200); }

/// Length in the ring of one test event (payload.hpp) of a publisher with a
/// two-letter name: N = 20 rings' worth of them.
uint64_t record_bytes() {
  flatbuffers::FlatBufferBuilder fbb;
  build_payload(fbb, "k0", 123456);
  return detail::record_length(sizeof(detail::RecordHeader), fbb.GetSize());
}

/// One ring as an earlysub worker saw it.
struct RingSeen {
  uint64_t received = 0, reported_missed = 0, silent_gap = 0, over_reported = 0, order_errors = 0, integrity_errors = 0;
  uint64_t torn = 0;  // latest: payload overwritten while read (still_valid() false)
  int64_t first = -1, last = -1;
  std::string problem;
};

struct EarlyReport {
  bool done = false;
  std::map<std::string, RingSeen> rings;
  uint64_t ok = 0, lost = 0, evicted = 0, corrupt = 0, missed = 0, unexpected = 0, unattributed = 0;
  std::string text;
};

/// The value after `key ` in `line` (0 if absent).
int64_t field(const std::string& line, const std::string& key) {
  std::istringstream in(line);
  std::string word;
  while (in >> word)
    if (word == key) {
      int64_t v = 0;
      in >> v;
      return v;
    }
  return 0;
}

EarlyReport read_early_report(ChildProcess& child, std::chrono::milliseconds timeout) {
  EarlyReport r;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (auto line = child.read_line(std::chrono::duration_cast<std::chrono::milliseconds>(
             std::max(deadline - std::chrono::steady_clock::now(), std::chrono::steady_clock::duration(0))))) {
    r.text += *line + "\n";
    std::istringstream in(*line);
    std::string kind, name;
    in >> kind;
    if (kind == "done") {
      r.done = true;
      break;
    }
    if (kind == "ring") {
      in >> name;
      RingSeen& g = r.rings[name];
      g.received = uint64_t(field(*line, "received"));
      g.first = field(*line, "first");
      g.last = field(*line, "last");
      g.reported_missed = uint64_t(field(*line, "reported_missed"));
      g.silent_gap = uint64_t(field(*line, "silent_gap"));
      g.over_reported = uint64_t(field(*line, "over_reported"));
      g.order_errors = uint64_t(field(*line, "order_errors"));
      g.integrity_errors = uint64_t(field(*line, "integrity_errors"));
      g.torn = uint64_t(field(*line, "torn"));
      const size_t p = line->find("problem [");
      if (p != std::string::npos) g.problem = line->substr(p + 9, line->size() - p - 10);
    } else if (kind == "summary") {
      r.ok = uint64_t(field(*line, "ok"));
      r.lost = uint64_t(field(*line, "lost"));
      r.evicted = uint64_t(field(*line, "evicted"));
      r.corrupt = uint64_t(field(*line, "corrupt"));
      r.missed = uint64_t(field(*line, "missed"));
      r.unexpected = uint64_t(field(*line, "unexpected"));
      r.unattributed = uint64_t(field(*line, "unattributed"));
    }
  }
  return r;
}

struct SubscriberSpec {
  std::string pattern;
  std::vector<std::string> names;  // the rings it must see
};

const std::vector<std::string> kNames{"k0", "k1", "m0", "m1"};  // k*: topic t.k, m*: topic t.m
const std::vector<SubscriberSpec> kSubscribers{
    {"t.k", {"k0", "k1"}},              // an exact name
    {"t.*", {"k0", "k1", "m0", "m1"}},  // one-level wildcard
    {"t.>", {"k0", "k1", "m0", "m1"}},  // multi-level wildcard
};

// A publisher may wait for a subscriber that sleeps up to 10 ms before it
// reads; 2 s leaves room for a loaded machine and stays well below the 5 s
// slow-consumer timeout.
constexpr int64_t kMaxBlockUs = 2'000'000;

struct Totals {
  uint64_t rounds = 0, failed_rounds = 0;
  uint64_t rings = 0, bad_rings = 0;         // (subscriber, ring) pairs, and those that broke the rule
  uint64_t events_expected = 0, events_received = 0, missed_reported = 0, silent = 0;
  uint64_t min_received = UINT64_MAX;        // fewest events of one ring delivered to one subscriber
  uint64_t bad_statuses = 0;                 // block: any read() status but Ok/Empty
  int64_t max_block_us = 0;                  // longest a publisher waited for room
  std::string first_failures;                // the first few failing rounds, in full
  std::string table;                         // one line per failing round (the first 30)
};

/// One round; adds to `t`. Returns false if the round broke the rule.
bool run_round(Policy policy, bool topics_by_publisher, uint64_t round, Totals& t) {
  std::mt19937_64 rng(round * 0x9E3779B97F4A7C15ull + (policy == Policy::Latest ? 1 : 0) + (topics_by_publisher ? 2 : 0));
  const uint64_t ring = round % 4 == 3 ? 64 * 1024 : 4 * 1024;  // mostly the smallest ring
  const uint64_t n = 20 * ring / record_bytes();
  const std::string policy_name = policy == Policy::Block ? "block" : "latest";
  ScopedBusName name("startup");
  Bus bus = Bus::open(name.name);
  if (!topics_by_publisher) {
    bus.create_topic(sensor_topic("t.k", policy, ring));
    bus.create_topic(sensor_topic("t.m", policy, ring));
  }

  // Subscribers first, each with its own random delay before it reads.
  static constexpr int64_t kDelaysUs[] = {0, 0, 300, 1000, 3000, 10000};
  std::vector<std::unique_ptr<ChildProcess>> subs;
  std::vector<int64_t> delays;
  for (const SubscriberSpec& spec : kSubscribers) {
    const int64_t delay = kDelaysUs[rng() % std::size(kDelaysUs)];
    std::vector<std::string> argv{kWorker, "earlysub", name.name, spec.pattern, std::to_string(n), std::to_string(delay),
                                  "5000"};
    argv.insert(argv.end(), spec.names.begin(), spec.names.end());
    subs.push_back(std::make_unique<ChildProcess>(argv));
    delays.push_back(delay);
  }
  for (auto& s : subs)
    if (expect_line(*s, "ready 0").empty()) return false;  // subscribed, and no ring exists yet

  std::vector<std::unique_ptr<ChildProcess>> pubs;
  for (const std::string& p : kNames) {
    std::vector<std::string> argv{kWorker, "newpub", name.name, p[0] == 'k' ? "t.k" : "t.m", p, std::to_string(n)};
    if (topics_by_publisher) {
      argv.push_back(policy_name);
      argv.push_back(std::to_string(ring));
    }
    pubs.push_back(std::make_unique<ChildProcess>(argv));
  }
  for (auto& p : pubs)
    if (expect_line(*p, "ready").empty()) return false;

  // Go: subscribers first or publishers first.
  const bool publishers_first = rng() % 2 == 0;
  if (publishers_first)
    for (auto& p : pubs) p->close_stdin();
  for (auto& s : subs) s->close_stdin();
  if (!publishers_first)
    for (auto& p : pubs) p->close_stdin();

  std::vector<EarlyReport> reports;
  for (auto& s : subs) reports.push_back(read_early_report(*s, 60s));
  bool publishers_ok = true;
  std::string publisher_text;
  int64_t max_block_us = 0;
  for (size_t i = 0; i < pubs.size(); ++i) {
    const auto line = pubs[i]->read_line(30s);
    const auto status = pubs[i]->wait(10s);
    publisher_text += "  publisher " + kNames[i] + ": " + line.value_or("(nothing)") + "\n";
    if (!line || line->rfind("published " + std::to_string(n) + " ", 0) != 0 || !status || !WIFEXITED(*status) ||
        WEXITSTATUS(*status) != 0)
      publishers_ok = false;
    // Every subscriber is alive and reading: no writer should evict one, nor
    // wait anywhere near the slow-consumer timeout (5 s) for room; a cursor
    // made for a subscriber that nobody moves would show here.
    if (line && (field(*line, "evictions") != 0 || field(*line, "max_block_us") > kMaxBlockUs)) publishers_ok = false;
    if (line) max_block_us = std::max(max_block_us, field(*line, "max_block_us"));
  }
  t.max_block_us = std::max(t.max_block_us, max_block_us);

  ++t.rounds;
  bool ok = publishers_ok;
  std::ostringstream row;
  row << "round " << round << " (" << policy_name << ", ring " << ring << " B, N " << n << ", "
      << (publishers_first ? "publishers" : "subscribers") << " released first"
      << (publishers_ok ? "" : ", PUBLISHER FAILED, see below") << "):";
  for (size_t k = 0; k < subs.size(); ++k) {
    const EarlyReport& r = reports[k];
    row << " [" << kSubscribers[k].pattern << " delay " << delays[k] << "us";
    bool sub_ok = r.done && r.corrupt == 0 && r.evicted == 0 && r.unexpected == 0 && r.unattributed == 0;
    if (policy == Policy::Block && (r.lost != 0 || r.missed != 0)) sub_ok = false;
    t.bad_statuses += policy == Policy::Block ? r.lost + r.evicted + r.corrupt : r.evicted + r.corrupt;
    for (const std::string& p : kSubscribers[k].names) {
      const auto it = r.rings.find(p);
      const RingSeen g = it == r.rings.end() ? RingSeen{} : it->second;
      ++t.rings;
      t.events_expected += n;
      t.events_received += g.received;
      t.missed_reported += g.reported_missed;
      t.silent += g.silent_gap;
      t.min_received = std::min(t.min_received, g.received);
      const bool ring_ok =
          g.last == int64_t(n) - 1 && g.silent_gap == 0 && g.over_reported == 0 && g.order_errors == 0 &&
          g.integrity_errors == 0 &&
          (policy == Policy::Block ? g.received == n && g.first == 0 && g.reported_missed == 0 && g.torn == 0
                                   : g.received + g.reported_missed == n);
      if (!ring_ok) ++t.bad_rings;
      sub_ok = sub_ok && ring_ok;
      row << " " << p << " " << g.received;
      if (policy == Policy::Latest) row << "+" << g.reported_missed << "lost";
      row << "/" << n;
      if (g.first > 0) row << " from " << g.first;
      if (g.silent_gap != 0) row << " silent " << g.silent_gap;
    }
    row << "]";
    ok = ok && sub_ok;
  }
  if (!ok) {
    ++t.failed_rounds;
    if (t.failed_rounds <= 30) t.table += row.str() + "\n";
    if (t.failed_rounds <= 2 || (!publishers_ok && t.first_failures.size() < 20000)) {
      t.first_failures += row.str() + "\n";
      for (size_t k = 0; k < subs.size(); ++k)
        t.first_failures += "  subscriber '" + kSubscribers[k].pattern + "' printed:\n" + reports[k].text;
      t.first_failures += publisher_text;
    }
  }
  return ok;
}

void run_rounds(Policy policy, bool topics_by_publisher, uint64_t n_rounds) {
  Totals t;
  const auto t0 = std::chrono::steady_clock::now();
  for (uint64_t round = 0; round < n_rounds; ++round) {
    run_round(policy, topics_by_publisher, round, t);
    if (::testing::Test::HasFatalFailure()) break;
  }
  const int64_t ms = ms_since(t0);
  std::printf("%" PRIu64 " rounds in %" PRId64 " ms: %" PRIu64 " failed; %" PRIu64 " of %" PRIu64
              " (subscriber, ring) pairs broke the rule; events received %" PRIu64 " of %" PRIu64
              ", reported missed %" PRIu64 ", silently skipped %" PRIu64 ", fewest received for one ring %" PRIu64
              "; longest publisher wait %" PRId64 " us\n",
              t.rounds, ms, t.failed_rounds, t.bad_rings, t.rings, t.events_received, t.events_expected,
              t.missed_reported, t.silent, t.min_received == UINT64_MAX ? 0 : t.min_received, t.max_block_us);
  EXPECT_EQ(t.failed_rounds, 0u)
      << t.failed_rounds << " of " << t.rounds << " rounds failed; " << t.bad_rings << " of " << t.rings
      << " (subscriber, ring) pairs broke the rule. Events received " << t.events_received << " of "
      << t.events_expected << ", reported missed " << t.missed_reported << ", skipped silently " << t.silent
      << (policy == Policy::Block ? ", read() statuses other than Ok/Empty " + std::to_string(t.bad_statuses) : "")
      << ".\nFailing rounds (received[+reported lost]/N per ring, 'from': first sequence delivered, "
         "'silent': sequences neither delivered nor reported):\n"
      << t.table << "First failures in full:\n" << t.first_failures;
}

class StartupOrderTest : public ::testing::Test {
 protected:
  void SetUp() override { ::signal(SIGPIPE, SIG_IGN); }
};

// Topics exist (create_topic), no ring yet: under block, a live subscriber
// receives every event of every ring created after it subscribed.
TEST_F(StartupOrderTest, BlockSubscriberBeforePublisherGetsEveryEvent) {
  run_rounds(Policy::Block, false, rounds());
}

// Topics exist, no ring yet: under latest, what the subscriber did not
// receive is reported as Lost with its exact count.
TEST_F(StartupOrderTest, LatestSubscriberBeforePublisherCountsWhatItMissed) {
  run_rounds(Policy::Latest, false, rounds());
}

// The subscribers subscribe before the topics exist; each publisher creates
// its topic (block) and then its ring.
TEST_F(StartupOrderTest, BlockSubscriberBeforeTopicExistsGetsEveryEvent) {
  run_rounds(Policy::Block, true, std::max<uint64_t>(1, rounds() / 2));
}

// The same under latest: every event is received or counted as lost.
TEST_F(StartupOrderTest, LatestSubscriberBeforeTopicExistsCountsWhatItMissed) {
  run_rounds(Policy::Latest, true, std::max<uint64_t>(1, rounds() / 2));
}

}  // namespace
