// Relacy model of the proposed layout-v4 ring protocol (least privilege for
// group readers, docs/proposals/least-privilege.md, issue 15 item 10):
// reader-owned positions, the writer-owned attachment table, the bell, the
// self-clearing wake request. The protocol is in ring_protocol_v4.hpp; the
// v3 model (ring_model.cpp) is unchanged.
//
//   ring_model_v4 [--scenario N] [--iterations K] [--search both|random|bound|full]
//                 [--context-bound N] [--variant NAME]...
//
// Default: scenarios 1..9, each searched twice: every schedule with at most 2
// preemptions (1 in scenarios 2, 6, 8 and 9, which have three threads), then
// `--iterations` (default 100000) random schedules.
// Exit code 1 when a scenario fails, 2 on a usage error. See README.md.
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <iterator>
#include <string>

#include "ring_protocol_v4.hpp"

namespace model {
namespace v4 {

// Reads up to `n` times (peek, then release what it got). Invariant: an
// event handed over as valid is the one the writer put at its position (not
// torn: the record at p carries sequence p; bytes reused by the writer carry
// p + capacity).
inline void read_some(Reader4& rd, int n) {
  for (int k = 0; k < n; ++k) {
    Event ev;
    const Read s = rd.peek(ev);
    if (s != Read::Ok) continue;
    RL_ASSERT(ev.sequence == ev.position);
    rd.release(ev);
  }
}

// Publisher::publish: a refused reserve (Full) is tried again (here once more).
inline void publish_retrying(Writer4& w) {
  for (int k = 0; k < 2; ++k)
    if (w.publish()) return;
}

// Every move of the reader's position past its join point is a delivered
// event or a counted loss: no silent loss.
inline void check_accounting(Reader4& rd) { RL_ASSERT(rd.delivered + rd.losses == rd.position - rd.join_point); }

// For after(): a reader that went to sleep on wake word value `word` and has
// something to read now (a record, or its eviction) was woken.
inline bool woken(Ring4& ring, Reader4& sleeper, uint32_t word) {
  const bool owed = sleeper.has_data() || (sleeper.attached && !sleeper.still_owned());
  return !owed || ring.wake_word($).load(rl::mo_relaxed) != word;
}

// A hostile member of G (it may write .bell), once, at any point: clear a
// bell slot, name an honest reader in a slot, store 0 in `rings` (a plain
// store ends the release sequence of the readers' RMWs and may hide a ring),
// or bump `rings`.
inline void forge_bell(Ring4& ring) {
  switch (rl::rand(4)) {
    case 0:
      ring.bell[0]($).store(0, rl::mo_relaxed);
      break;
    case 1:
      ring.bell[0]($).store(1, rl::mo_relaxed);
      break;
    case 2:
      ring.rings($).store(0, rl::mo_relaxed);
      break;
    default:
      ring.rings($).fetch_add(1, rl::mo_relaxed);
      break;
  }
}

// ---------------------------------------------------------------------------
// Scenario 1: the joining Dekker with admission. Block, ring of 8 units, no
// reader yet; the writer published 7 records (tail 0). J joins at the tail it
// reads (join_earliest) while the writer publishes 3 more, the first of which
// destroys position 0; J reads 3 times.
// Invariants: the writer never destroys a byte at or above the position of a
// joiner that has settled (after its tail load): either J's tail load saw the
// new tail, or the writer saw the ring and admitted J before it raised its
// limit; no torn event; every position past the join point is delivered or
// counted.
// And an honest joiner counts no loss (it skips nothing the writer holds).
// --variant limit-before-bell: the writer raises its limit, then processes
// the bell: it destroys position 0 under a settled J.
// --variant validate-by-tail (the proposal's step 5): J joins at tail 2, the
// writer stores tail 3 (step 2), then sees the ring, admits J at 2 and holds
// its limit at 10; J's validation reads tail 3 > 2 and skips record 2 as lost.
// ---------------------------------------------------------------------------
struct JoinWithAdmission : rl::test_suite<JoinWithAdmission, 2> {
  Ring4 ring;
  Writer4 w;
  Reader4 j;

  void before() {
    ring.init(8);
    w.attach(ring);
    j.attach(ring, 1);
    for (int k = 0; k < 7; ++k) RL_ASSERT(w.publish());
    ring.g_check_destroy = true;
  }
  void thread(unsigned t) {
    if (t == 0) {
      for (int k = 0; k < 3; ++k) publish_retrying(w);
      return;
    }
    j.join_at(ring.tail($).load(rl::mo_acquire), false);
    read_some(j, 3);
  }
  void after() {
    check_accounting(j);
    RL_ASSERT(j.losses == 0);  // honest: nothing it joined for was destroyed, so nothing is counted lost
  }
};

// ---------------------------------------------------------------------------
// Scenario 2: scenario 1 with a forger: a hostile member of G clears or sets
// a bell slot or `rings` once, at any point. The Dekker may fail now (the
// writer may never see J's ring); J's validation must turn that into a
// counted loss.
// Invariants: no torn event handed over as valid; every position past the
// join point is delivered or counted (losses may happen now); once J has
// found its admission, the writer destroys nothing at or above its position.
// --variant no-join-validate: J trusts its reads while joining: a torn event.
// ---------------------------------------------------------------------------
struct JoinWithForgedBell : rl::test_suite<JoinWithForgedBell, 3> {
  Ring4 ring;
  Writer4 w;
  Reader4 j;

  void before() {
    ring.init(8);
    w.attach(ring);
    j.attach(ring, 1);
    j.g_honest_bell = false;  // protected only once it finds its admission
    for (int k = 0; k < 7; ++k) RL_ASSERT(w.publish());
    ring.g_check_destroy = true;
  }
  void thread(unsigned t) {
    if (t == 0) {
      for (int k = 0; k < 3; ++k) publish_retrying(w);
    } else if (t == 1) {
      j.join_at(ring.tail($).load(rl::mo_acquire), false);
      read_some(j, 3);
    } else {
      forge_bell(ring);
    }
  }
  void after() { check_accounting(j); }
};

// ---------------------------------------------------------------------------
// Scenario 3: eviction without a CAS on the reader's word. A (admitted at 0)
// is stopped past its slow-consumer timeout; the writer (W = 7, blocked on
// A) evicts it by bumping the epoch of its own attachment entry and
// publishes 2 records, destroying positions 0 and 1; A reads 3 times.
// Invariants: a read of bytes the writer reused is never handed over (A
// reports Evicted and rejoins, the skipped events counted); a reader the
// writer evicted notices at its next ownership check; the writer destroys
// nothing under a protected reader; every position is delivered or counted.
// --variant check-no-fence: the ownership check without its acquire fence:
// A takes a torn read for valid.
// ---------------------------------------------------------------------------
template <bool Forger>
struct Eviction : rl::test_suite<Eviction<Forger>, Forger ? 3 : 2> {
  Ring4 ring;
  Writer4 w;
  Reader4 a;

  void before() {
    ring.init(8);
    w.attach(ring);
    a.attach(ring, 1);
    a.g_honest_bell = !Forger;
    a.join_at(0, false);
    for (int k = 0; k < 7; ++k) RL_ASSERT(w.publish());  // the first one admits A
    Event ev;
    RL_ASSERT(a.peek(ev) == Read::Ok);  // a record is there (validated: A is still joining)
    a.check_admission();
    RL_ASSERT(a.attached);
    ring.stuck[1] = true;
    ring.g_check_destroy = true;
  }
  void thread(unsigned t) {
    if (t == 0) {
      for (int k = 0; k < 2; ++k) publish_retrying(w);
      return;
    }
    if (t == 2) {
      forge_bell(ring);
      return;
    }
    read_some(a, 3);
  }
  void after() {
    if (ring.g_evictions[1] > a.evictions) RL_ASSERT(!a.still_owned());
    check_accounting(a);
  }
};
using EvictionWithoutCas = Eviction<false>;
// Scenario 9: scenario 3 with a forger on the bell (it may name A, so that
// the writer re-admits A at its old line, or clear A's ring after its
// rejoin). A is protected again only once it finds its admission.
using EvictionWithForgedBell = Eviction<true>;

// ---------------------------------------------------------------------------
// Scenario 4: the self-clearing wake request, honest processes. R1 and R2
// are admitted and caught up at W = 0 (ring of 8 units, Block); the writer
// publishes 2 records; each reader reads what there is and goes to sleep
// (twice at most). A stale request (1) is left in wake_request by a reader
// that has gone: requests are never taken back.
// Invariant: a reader that went to sleep and has something to read at the
// end was woken (no slices here: no forger).
// --variant request-first (the proposal's order: request, fence, read the
// wake word): lost wake-up, README.md "v4: found in the design".
// --variant clear-before-fence, --variant no-recheck: lost wake-ups.
// ---------------------------------------------------------------------------
struct WakeRequest : rl::test_suite<WakeRequest, 3> {
  Ring4 ring;
  Writer4 w;
  Reader4 r1, r2;
  bool slept[2];
  uint32_t word[2];

  void before() {
    ring.init(8);
    w.attach(ring);
    r1.attach(ring, 1);
    r2.attach(ring, 2);
    r1.join_at(0, false);
    r2.join_at(0, false);
    w.refresh_limit(1, false);
    r1.check_admission();
    r2.check_admission();
    RL_ASSERT(r1.attached && r2.attached);
    ring.wake_request($).store(1, rl::mo_relaxed);
    slept[0] = slept[1] = false;
    word[0] = word[1] = 0;
  }
  void sleeper(Reader4& rd, int i) {
    for (int round = 0; round < 2; ++round) {
      read_some(rd, 2);
      if (rd.goes_to_sleep(word[i])) {
        slept[i] = true;
        return;
      }
    }
  }
  void thread(unsigned t) {
    if (t == 0) {
      for (int k = 0; k < 2; ++k) RL_ASSERT(w.publish());
    } else {
      sleeper(t == 1 ? r1 : r2, int(t) - 1);
    }
  }
  void after() {
    if (slept[0]) RL_ASSERT(woken(ring, r1, word[0]));
    if (slept[1]) RL_ASSERT(woken(ring, r2, word[1]));
  }
};

// ---------------------------------------------------------------------------
// Scenario 5: wake requests forged. R is admitted and caught up; the writer
// publishes 2 records; a hostile member stores 0 or 1 into wake_request
// twice at any point. R knows the .bell is writable by others, so it sleeps
// in bounded slices and re-checks the data after each.
// Invariants: no torn event; a sleeper with something to read is woken, or
// its slice expires and its re-check finds the data (it sleeps in slices).
// --variant no-slices: R sleeps unbounded: a forged clear loses its wake-up.
// ---------------------------------------------------------------------------
struct ForgedWakeRequest : rl::test_suite<ForgedWakeRequest, 3> {
  Ring4 ring;
  Writer4 w;
  Reader4 rd;
  bool slept;
  uint32_t word;

  void before() {
    ring.init(8);
    w.attach(ring);
    rd.attach(ring, 1);
    rd.join_at(0, false);
    w.refresh_limit(1, false);
    rd.check_admission();
    RL_ASSERT(rd.attached);
    rd.slices = !variants4().no_slices;
    slept = false;
    word = 0;
  }
  void thread(unsigned t) {
    if (t == 0) {
      for (int k = 0; k < 2; ++k) RL_ASSERT(w.publish());
    } else if (t == 1) {
      for (int round = 0; round < 2 && !slept; ++round) {
        read_some(rd, 2);
        slept = rd.goes_to_sleep(word);
      }
    } else {
      for (int k = 0; k < 2; ++k) ring.wake_request($).store(rl::rand(2), rl::mo_relaxed);
    }
  }
  void after() {
    if (!slept) return;
    if (woken(ring, rd, word)) return;
    // Not woken: only a slice ends the sleep; then the re-check must see the data.
    RL_ASSERT(rd.slices);
    RL_ASSERT(rd.ready());
  }
};

// ---------------------------------------------------------------------------
// Scenario 6: reservation adoption. R subscribed before the ring existed;
// the creator (before its first write) holds position 0 for it with a
// Reserved attachment. The writer publishes 9 records in a ring of 8
// (retrying once when Full); R adopts the reservation (fills its line at 0,
// rings the bell) and reads 3 times; a forger clears or sets a bell word
// once (the fallback: a writer blocked on a reservation scans its line).
// Invariants: R loses nothing (losses 0: what the ring has, from 0 on, is
// delivered in order); the writer never destroys a byte at or above R's
// position; no torn event.
// --variant ignore-reserved: a reservation without a line holds nothing:
// the writer overwrites position 0 before R adopts it.
// ---------------------------------------------------------------------------
struct ReservationAdoption : rl::test_suite<ReservationAdoption, 3> {
  Ring4 ring;
  Writer4 w;
  Reader4 rd;

  void before() {
    ring.init(8);
    w.attach(ring);
    rd.attach(ring, 1);
    w.reserve_for(1);
    rd.g_protected = true;  // the writer holds 0 for it from the start
    rd.position = 0;
    ring.g_check_destroy = true;
  }
  void thread(unsigned t) {
    if (t == 0) {
      for (int k = 0; k < 9; ++k) publish_retrying(w);
    } else if (t == 1) {
      RL_ASSERT(rd.adopt_reservation());
      read_some(rd, 3);
    } else {
      forge_bell(ring);
    }
  }
  void after() {
    RL_ASSERT(rd.losses == 0);
    check_accounting(rd);
  }
};

// ---------------------------------------------------------------------------
// Scenario 7: an evicted reader inside its sleep (v3's scenario 9, on v4).
// A is admitted at 0 and stuck; the writer (W = 7, blocked on A) evicts it
// and publishes records 7 and 8, while A goes to sleep. Record 7 zeroes the
// commit word at A's position (the frontier one lap above it), so A's
// re-check may find no record; its news is the eviction.
// Invariant: a reader that went to sleep with something to read (a record,
// or its eviction) was woken.
// --variant evict-no-wake: the eviction bumps admissions without a wake.
// ---------------------------------------------------------------------------
struct EvictedSleeperIsWoken : rl::test_suite<EvictedSleeperIsWoken, 2> {
  Ring4 ring;
  Writer4 w;
  Reader4 a;
  bool slept;
  uint32_t word;

  void before() {
    ring.init(8);
    w.attach(ring);
    a.attach(ring, 1);
    a.join_at(0, false);
    for (int k = 0; k < 7; ++k) RL_ASSERT(w.publish());
    a.check_admission();
    RL_ASSERT(a.attached);
    ring.stuck[1] = true;
    ring.g_check_destroy = true;
    slept = false;
    word = 0;
  }
  void thread(unsigned t) {
    if (t == 0) {
      for (int k = 0; k < 2; ++k) publish_retrying(w);
      return;
    }
    slept = a.goes_to_sleep(word);
  }
  void after() {
    if (slept) RL_ASSERT(woken(ring, a, word));
  }
};

// ---------------------------------------------------------------------------
// Scenario 8: two joiners at once (honest bell, two slots). The writer (W =
// 7, tail 0, no reader) publishes 2 records; J1 and J2 each join at the tail
// they read and read twice.
// Invariants: the ghost invariant for both (each one's Dekker holds with the
// other's ring in flight: a claimed slot is never taken by the other); no
// torn event; neither counts a loss.
// --variant slot-overwrite: a joiner takes a slot that holds an unprocessed
// announcement: the other joiner is never admitted, its bytes destroyed.
// ---------------------------------------------------------------------------
struct TwoJoiners : rl::test_suite<TwoJoiners, 3> {
  Ring4 ring;
  Writer4 w;
  Reader4 j1, j2;

  void before() {
    ring.init(8);
    w.attach(ring);
    j1.attach(ring, 1);
    j2.attach(ring, 2);
    for (int k = 0; k < 7; ++k) RL_ASSERT(w.publish());
    ring.g_check_destroy = true;
  }
  void thread(unsigned t) {
    if (t == 0) {
      for (int k = 0; k < 2; ++k) publish_retrying(w);
      return;
    }
    Reader4& j = t == 1 ? j1 : j2;
    j.join_at(ring.tail($).load(rl::mo_acquire), false);
    read_some(j, 2);
  }
  void after() {
    check_accounting(j1);
    check_accounting(j2);
    RL_ASSERT(j1.losses == 0 && j2.losses == 0);
  }
};

// ---------------------------------------------------------------------------
// Driver
// ---------------------------------------------------------------------------
constexpr int kScenarios = 9;

enum class Search { Both, Random, Bound, Full };

struct Options {
  int scenario = 0;          // 0: scenarios 1..9
  long iterations = 100000;  // random search
  int context_bound = -1;    // -1: per scenario (default_bound)
  Search search = Search::Both;
};

// The context bound of the default search: 2 preemptions, 1 for the
// scenarios with three threads (2 costs 18 s for scenario 2 and more than
// 100 s for scenario 6).
inline unsigned default_bound(int n) { return n == 2 || n == 6 || n == 8 || n == 9 ? 1 : 2; }

const char* name_of(int n) {
  switch (n) {
    case 1:
      return "v4 JoinWithAdmission (joining Dekker)";
    case 2:
      return "v4 JoinWithForgedBell (validation while joining)";
    case 3:
      return "v4 EvictionWithoutCas (writer-owned epoch)";
    case 4:
      return "v4 WakeRequest (self-clearing, honest)";
    case 5:
      return "v4 ForgedWakeRequest (bounded slices)";
    case 6:
      return "v4 ReservationAdoption (position 0 held)";
    case 7:
      return "v4 EvictedSleeperIsWoken (eviction wakes)";
    case 8:
      return "v4 TwoJoiners (two rings in flight)";
    case 9:
      return "v4 EvictionWithForgedBell (re-admission at an old line)";
  }
  return "?";
}

template <class Suite>
bool run_search(int n, rl::scheduler_type_e type, long iterations, unsigned bound) {
  rl::test_params p;
  p.iteration_count = iterations;
  p.search_type = type;
  p.context_bound = bound;
  std::ostream progress(nullptr);
  p.progress_stream = &progress;
  p.output_stream = &std::cout;
  const auto start = std::chrono::steady_clock::now();
  const bool ok = rl::simulate<Suite>(p);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cout << "RESULT: scenario " << n << " " << name_of(n) << ", ";
  if (type == rl::random_scheduler_type)
    std::cout << "random search: ";
  else if (type == rl::fair_context_bound_scheduler_type)
    std::cout << "context-bound search (" << bound << " preemptions, exhaustive): ";
  else
    std::cout << "full search: ";
  std::cout << (ok ? "passed, " : "FAILED at iteration ") << p.stop_iteration << (ok ? " iterations, " : ", ")
            << seconds << " s" << std::endl;
  return ok;
}

template <class Suite>
bool run_relacy(int n, const Options& o) {
  const unsigned bound = o.context_bound >= 0 ? unsigned(o.context_bound) : default_bound(n);
  switch (o.search) {
    case Search::Random:
      return run_search<Suite>(n, rl::random_scheduler_type, o.iterations, 0);
    case Search::Bound:
      return run_search<Suite>(n, rl::fair_context_bound_scheduler_type, 1l << 40, bound);
    case Search::Full:
      return run_search<Suite>(n, rl::fair_full_search_scheduler_type, 1l << 40, 0);
    case Search::Both:
      break;
  }
  return run_search<Suite>(n, rl::fair_context_bound_scheduler_type, 1l << 40, bound) &&
         run_search<Suite>(n, rl::random_scheduler_type, o.iterations, 0);
}

bool run_scenario(int n, const Options& o) {
  switch (n) {
    case 1:
      return run_relacy<JoinWithAdmission>(n, o);
    case 2:
      return run_relacy<JoinWithForgedBell>(n, o);
    case 3:
      return run_relacy<EvictionWithoutCas>(n, o);
    case 4:
      return run_relacy<WakeRequest>(n, o);
    case 5:
      return run_relacy<ForgedWakeRequest>(n, o);
    case 6:
      return run_relacy<ReservationAdoption>(n, o);
    case 7:
      return run_relacy<EvictedSleeperIsWoken>(n, o);
    case 8:
      return run_relacy<TwoJoiners>(n, o);
    case 9:
      return run_relacy<EvictionWithForgedBell>(n, o);
  }
  return false;
}

int usage() {
  std::cerr << "usage: ring_model_v4 [--scenario 1..9] [--iterations K] [--search both|random|bound|full]\n"
               "                     [--context-bound N]\n"
               "                     [--variant limit-before-bell|no-join-validate|check-no-fence|request-first|\n"
               "                                "
               "clear-before-fence|no-recheck|no-slices|ignore-reserved|validate-by-tail|\n"
               "                                evict-no-wake|slot-overwrite]...\n"
               "  default: scenarios 1..9, each with the context-bound search (2 preemptions; 1 in 2, 6, 8 and 9) and\n"
               "  100000 iterations of the random search\n";
  return 2;
}

}  // namespace v4
}  // namespace model

namespace {
// --variant NAME: each breaks one mechanism on purpose (ring_protocol_v4.hpp, Variants4).
struct VariantFlag {
  const char* name;
  bool model::v4::Variants4::*flag;
};
using V4 = model::v4::Variants4;
constexpr VariantFlag kVariants[] = {
    {"limit-before-bell", &V4::limit_before_bell},
    {"no-join-validate", &V4::no_join_validate},
    {"check-no-fence", &V4::check_no_fence},
    {"request-first", &V4::request_first},
    {"clear-before-fence", &V4::clear_before_fence},
    {"no-recheck", &V4::no_recheck},
    {"no-slices", &V4::no_slices},
    {"ignore-reserved", &V4::ignore_reserved},
    {"evict-no-wake", &V4::evict_no_wake},
    {"slot-overwrite", &V4::slot_overwrite},
    {"validate-by-tail", &V4::validate_by_tail},
};
}  // namespace

int main(int argc, char** argv) {
  using namespace model::v4;
  Options o;
  std::string names;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const char* value = i + 1 < argc ? argv[i + 1] : nullptr;
    if (!value) return usage();
    const std::string v = value;
    ++i;
    if (arg == "--scenario") {
      o.scenario = std::atoi(value);
      if (o.scenario < 1 || o.scenario > kScenarios) return usage();
    } else if (arg == "--iterations") {
      o.iterations = std::atol(value);
      if (o.iterations < 1) return usage();
    } else if (arg == "--context-bound") {
      o.context_bound = std::atoi(value);
      if (o.context_bound < 0) return usage();
    } else if (arg == "--search") {
      if (v == "both")
        o.search = Search::Both;
      else if (v == "random")
        o.search = Search::Random;
      else if (v == "bound")
        o.search = Search::Bound;
      else if (v == "full")
        o.search = Search::Full;
      else
        return usage();
    } else if (arg == "--variant") {
      const auto* known =
          std::find_if(std::begin(kVariants), std::end(kVariants), [&](const VariantFlag& f) { return v == f.name; });
      if (known == std::end(kVariants)) return usage();
      variants4().*(known->flag) = true;
      names += " [variant " + v + "]";
    } else {
      return usage();
    }
  }
  std::cout << "ring model: the proposed v4 protocol (least privilege)" << names << std::endl;
  const auto start = std::chrono::steady_clock::now();
  bool all_ok = true;
  for (int n = 1; n <= kScenarios; ++n) {
    if (o.scenario != 0 && n != o.scenario) continue;
    if (!run_scenario(n, o)) all_ok = false;
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cout << (all_ok ? "ALL PASSED" : "SOME FAILED") << " in " << seconds << " s" << std::endl;
  return all_ok ? 0 : 1;
}
