// Relacy model of the ring protocol (core/include/flowbus/detail/ring.hpp):
// one scenario per fault of issue 16, each checking the invariant the fault
// breaks. Built twice: ring_model (the fixed protocol, every scenario must
// pass) and ring_model_today (-DMODEL_TODAY=1, every scenario must fail).
//
//   ring_model [--scenario N] [--iterations K] [--search both|random|bound|full]
//              [--context-bound N]
//              [--variant seq-relaxed|f2-w-only|bit-first|evicted-sleeps|no-evict-wake]...
//
// Default: scenarios 1..9, each searched twice: every schedule with at most 2
// preemptions (Relacy's context-bound scheduler), then 200000 random
// schedules. Scenario 10 (a known residual) runs only when named.
// Exit code 1 when a scenario fails (Relacy found a bug, or the arithmetic of
// scenario 3 did), 2 on a usage error. See README.md.
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <iostream>
#include <string>

#include "ring_protocol.hpp"

namespace model {

// Publishes one burst (Publisher::try_publish_batch): reserve + commit_record
// per record, then end_burst once. Latest or Block with room: never refused.
inline void burst(Writer& w, std::initializer_list<uint64_t> lens) {
  for (uint64_t len : lens) {
    uint64_t position = 0;
    const Pub s = w.reserve(len, position);
    RL_ASSERT(s == Pub::Ok);
    if (s != Pub::Ok) return;
    w.commit_record(position, len);
  }
  w.end_burst();
}

// Publisher::publish: a refused reserve (Full) is tried again (here once more).
inline void publish_retrying(Writer& w) {
  for (int k = 0; k < 2; ++k)
    if (w.publish(1)) return;
}

// For after(): a reader that went to sleep on wake word value `word` and has
// something to read now (a record, or the news that it was evicted) was woken:
// the word moved after it read it (futex_wait returns at once, or is woken).
// A sleeper with nothing to read is owed nothing.
inline bool woken(Ring& ring, Reader& sleeper, uint32_t word) {
  const bool owed = !sleeper.quarantined && (sleeper.has_data() || !sleeper.still_owned());
  return !owed || ring.wake_word($).load(rl::mo_relaxed) != word;
}

// ---------------------------------------------------------------------------
// Scenario 1, fault 1: a subscriber joins at the write position while the
// writer publishes a burst of 2 records, then one longer than 3/4 of the ring
// (records of 1 and 3 units, one padding record, ring of 8 units, Latest).
// Today: next_sequence = N + k is stored before W, so the joiner can read the
// old W, then N + k, then the old W again, and expect N + k at a record whose
// sequence is N: Corrupt.
// Invariant: the joiner never reports Corrupt, and the expected sequence at
// its join position is exact: at its first read, sequence - missed equals the
// sequence of the record the writer put at the join position.
// (Fixed, with F2: this also needs next_sequence stored before the W that F2
// stores mid-burst; --variant f2-w-only leaves it out. --variant seq-relaxed
// stores next_sequence relaxed, as ring.hpp did before commit 6db5c19.)
// ---------------------------------------------------------------------------
struct JoinAtLatestDuringBurst : rl::test_suite<JoinAtLatestDuringBurst, 2> {
  Ring ring;
  Writer w;
  Reader j;

  void before() {
    ring.init(8, Policy::Latest, 1);
    w.attach(ring);
    j.attach(ring, 1);
  }
  void thread(unsigned t) {
    if (t == 0) {
      burst(w, {1, 1});
      burst(w, {1, 1, 1, 1, 3, 1, 1});  // the 3 needs a padding record of 2 at position 6
      return;
    }
    if (!j.join_latest()) return;
    for (int k = 0; k < 3; ++k) {
      Event ev;
      const Read s = j.peek(ev);
      RL_ASSERT(s != Read::Corrupt);
      if (s != Read::Ok) continue;
      RL_ASSERT(ring.g_written[j.join_point]);
      RL_ASSERT(ev.sequence - j.missed == ring.g_seq_at[j.join_point]);
      return;
    }
  }
};

// ---------------------------------------------------------------------------
// Scenario 2, fault 2: a burst of 8 one-unit records in a ring of 8 units
// (Latest) moves tail (advance_tail, from reserve) past the W stored before
// the burst; the writer is killed after any of its reserves, or before
// end_burst, or ends the burst; then a new writer recovers. A reader checks
// for damage meanwhile.
// Invariants: the stored tail <= the stored W at every step (Relacy's
// invariant(), over the values last stored); the reader's damage check never
// says Corrupt; recover() never takes the healthy ring for a scribbled one
// (tail > W) and resumes the sequence where the committed records stop.
// ---------------------------------------------------------------------------
struct TailNeverAboveW : rl::test_suite<TailNeverAboveW, 2> {
  Ring ring;
  Writer w;
  Reader d;

  void before() {
    ring.init(8, Policy::Latest, 1);
    w.attach(ring);
    d.attach(ring, 1);
    d.position = 0;
  }
  void invariant() { RL_ASSERT(ring.g_tail <= ring.g_W); }
  void thread(unsigned t) {
    if (t == 0) {
      // Killed after the reserve of record `crash` (0..7), before end_burst (8), or not at all (9).
      const unsigned crash = rl::rand(10);
      for (unsigned k = 0; k < 8 && k <= crash; ++k) {
        uint64_t position = 0;
        const Pub s = w.reserve(1, position);
        RL_ASSERT(s == Pub::Ok);
        if (k == crash) break;
        w.commit_record(position, 1);
      }
      if (crash == 9) w.end_burst();
      Writer again;  // the publisher restarts
      again.attach(ring);
      bool scribble_seen = false;
      again.recover(scribble_seen);
      RL_ASSERT(!scribble_seen);
      RL_ASSERT(again.nseq == ring.g_committed);
      RL_ASSERT(again.publish(1));
      return;
    }
    for (int k = 0; k < 3; ++k) RL_ASSERT(d.look_for_damage() != Gap::Corrupt);
  }
};

// ---------------------------------------------------------------------------
// Scenario 4, fault 4: A owns the only cursor slot and is stopped (its
// slow-consumer timeout ran out); the writer (Block, ring of 8 units, W = 7)
// is blocked on A, evicts it and publishes. B claims the slot at the write
// position and goes to sleep; A resumes and leaves.
// Today: A's leave() clears the slot's sleeping flag, which is B's now, and
// decrements waiters: the writer sees 0 and does not wake B.
// Invariants: a reader that went to sleep after its last look found nothing,
// and has something to read at the end, is woken (the wake word moved after
// it read it); waiters is 0 once every reader has left.
// ---------------------------------------------------------------------------
struct SleepFlagTiedToOwner : rl::test_suite<SleepFlagTiedToOwner, 3> {
  Ring ring;
  Writer w;
  Reader a, b;
  bool b_slept;
  uint32_t b_word;

  void before() {
    ring.init(8, Policy::Block, 1);
    w.attach(ring);
    a.attach(ring, 1);
    b.attach(ring, 2);
    b_slept = false;
    b_word = 0;
    RL_ASSERT(a.join_at(0));
    for (int k = 0; k < 7; ++k) RL_ASSERT(w.publish(1));
    ring.stuck[1] = true;
  }
  void thread(unsigned t) {
    if (t == 0)
      publish_retrying(w);  // blocked on A: evicts it, publishes, wakes sleepers
    else if (t == 1)
      a.leave();
    else if (b.join_latest())
      b_slept = b.goes_to_sleep(b_word);
  }
  void after() {
    if (b_slept) RL_ASSERT(woken(ring, b, b_word));
    a.leave();
    b.end_sleep();
    b.leave();
    RL_ASSERT(ring.waiters($).load(rl::mo_relaxed) == 0);
  }
};

// ---------------------------------------------------------------------------
// Scenario 5, fault 5: R owns the only slot (Block, ring of 16 units), has
// read one record without publishing it (the lag is below capacity / 8) and
// is stopped past its timeout; the writer, blocked on R, evicts it; C claims
// the slot; R begins to sleep.
// Today: begin_sleep's publish_progress fails (evicted), the rejoin finds no
// free slot, R is quarantined with slot = -1, and begin_sleep then uses
// slots[-1].
// Invariants: no access to a cursor slot with an index < 0; a sleeper is
// woken; waiters is 0 once every reader has left.
// ---------------------------------------------------------------------------
struct NoSleepWithoutSlot : rl::test_suite<NoSleepWithoutSlot, 3> {
  Ring ring;
  Writer w;
  Reader rd, c;
  bool r_slept, c_slept;
  uint32_t r_word, c_word;

  void before() {
    ring.init(16, Policy::Block, 1);
    w.attach(ring);
    rd.attach(ring, 1);
    c.attach(ring, 2);
    r_slept = c_slept = false;
    r_word = c_word = 0;
    RL_ASSERT(rd.join_at(0));
    for (int k = 0; k < 15; ++k) RL_ASSERT(w.publish(1));
    Event ev;
    RL_ASSERT(rd.peek(ev) == Read::Ok);
    RL_ASSERT(rd.release(ev) == Read::Ok);  // position 1, published 0
    ring.stuck[1] = true;
  }
  void thread(unsigned t) {
    if (t == 0)
      publish_retrying(w);
    else if (t == 1)
      r_slept = rd.goes_to_sleep(r_word);
    else if (c.join_latest())
      c_slept = c.goes_to_sleep(c_word);
  }
  void after() {
    if (r_slept && !rd.quarantined) RL_ASSERT(woken(ring, rd, r_word));
    if (c_slept) RL_ASSERT(woken(ring, c, c_word));
    rd.end_sleep();
    rd.leave();
    c.end_sleep();
    c.leave();
    RL_ASSERT(ring.waiters($).load(rl::mo_relaxed) == 0);
  }
};

// ---------------------------------------------------------------------------
// Scenario 6, fault 6: a Latest reader joins at earliest (tail = 0, W = 6,
// ring of 8 units) while the writer publishes 3 records, the second of which
// destroys the record at 0 (tail moves to 1).
// Today: join_earliest retries at position 0, gives up with the sequence
// unknown, and the first read skips to tail with missed = 0.
// Invariant: at the first read, sequence - missed equals the sequence of the
// record at the join point (the position join_earliest settled on): every
// sequence skipped after the join point is counted.
// ---------------------------------------------------------------------------
struct JoinEarliestCountsLosses : rl::test_suite<JoinEarliestCountsLosses, 2> {
  Ring ring;
  Writer w;
  Reader j;

  void before() {
    ring.init(8, Policy::Latest, 1);
    w.attach(ring);
    j.attach(ring, 1);
    for (int k = 0; k < 6; ++k) RL_ASSERT(w.publish(1));
  }
  void thread(unsigned t) {
    if (t == 0) {
      for (int k = 0; k < 3; ++k) RL_ASSERT(w.publish(1));
      return;
    }
    if (!j.join_earliest()) return;
    for (int k = 0; k < 3; ++k) {
      Event ev;
      const Read s = j.peek(ev);
      RL_ASSERT(s != Read::Corrupt);
      if (s != Read::Ok) continue;
      RL_ASSERT(ring.g_written[j.join_point]);
      RL_ASSERT(ev.sequence - j.missed == ring.g_seq_at[j.join_point]);
      return;
    }
  }
};

// ---------------------------------------------------------------------------
// Scenario 7, fault 7: a Latest reader joins, goes to sleep (or finds data
// and does not), and is killed. The writer publishes 6 one-unit records
// (ring of 8 units: a quarter ring is 2 records).
// Today: Latest writers never evict, so a reader killed asleep stays in
// waiters and every publish wakes (a futex syscall) forever.
// Invariant: once the writer's liveness probe says the reader is dead, waiters
// is 0 within a quarter ring of publishes.
// ---------------------------------------------------------------------------
struct DeadSleeperForgotten : rl::test_suite<DeadSleeperForgotten, 2> {
  Ring ring;
  Writer w;
  Reader d;

  void before() {
    ring.init(8, Policy::Latest, 1);
    w.attach(ring);
    d.attach(ring, 1);
  }
  void thread(unsigned t) {
    if (t == 0) {
      const int quarter_ring = int(ring.cap / 4);  // publishes of one unit
      int dead_at = -1;
      for (int k = 0; k < 6; ++k) {
        if (dead_at < 0 && !w.probe_alive(1)) dead_at = k;
        RL_ASSERT(w.publish(1));
        if (dead_at >= 0 && k >= dead_at + quarter_ring) RL_ASSERT(ring.waiters($).load(rl::mo_relaxed) == 0);
      }
      return;
    }
    if (d.join_latest()) {
      uint32_t word;
      if (!d.goes_to_sleep(word)) d.end_sleep();  // found data: reads on (not modelled)
    }
    ring.alive[1]($).store(0, rl::mo_seq_cst);  // kill -9
  }
};

// ---------------------------------------------------------------------------
// Scenarios 8 and 9 (not among the seven: the fix's sleep accounting against
// an eviction). R1 owns slot 0 and is stopped (SIGSTOP) inside begin_sleep,
// past its slow-consumer timeout, while the writer (Block, ring of 8 units,
// W = 7) fills the ring up to it; the writer evicts it and publishes `Records`
// records. L2, caught up in slot 1, goes to sleep meanwhile.
//
// Scenario 8 (Records = 1) checks L2. Today and with F4 as specified (sleep
// bit, then waiters.fetch_add): the eviction takes R1's flag/bit and
// decrements waiters before R1 incremented it; the decrement uses up L2's
// count: the writer reads 0 and does not wake L2 ("a transient underflow only
// costs a spurious wake" does not hold). Fixed: waiters first, then the bit.
//
// Scenario 9 (Records = 2) checks R1: it was evicted, so its next read says
// Evicted, but its commit word reads 0 (the writer's frontier is exactly one
// lap above it), so has_data() says nothing. Today the writer's eviction can
// take R1's count after R1 set its flag: nobody wakes it. With F4/F5 as
// specified, a reader whose sleep-bit CAS fails (evicted) sleeps uncounted,
// and one evicted after its bit is decremented without a wake: nobody wakes
// it either. Fixed: the evictor wakes when it takes a sleep bit, and ready()
// counts an unreported eviction (evicted_pending, or our word gone).
//
// Invariants: a reader that went to sleep with something to read (a record,
// or its eviction) is woken; waiters is 0 once every reader has left.
// ---------------------------------------------------------------------------
template <int Records, bool CheckR1>
struct EvictionInsideBeginSleep : rl::test_suite<EvictionInsideBeginSleep<Records, CheckR1>, 3> {
  Ring ring;
  Writer w;
  Reader r1, l2;
  bool r1_slept, l2_slept;
  uint32_t r1_word, l2_word;

  void before() {
    ring.init(8, Policy::Block, 2);
    w.attach(ring);
    r1.attach(ring, 1);
    l2.attach(ring, 2);
    r1_slept = l2_slept = false;
    r1_word = l2_word = 0;
    RL_ASSERT(r1.join_at(0));
    for (int k = 0; k < 7; ++k) RL_ASSERT(w.publish(1));
    RL_ASSERT(l2.join_latest());
    ring.stuck[1] = true;
  }
  void thread(unsigned t) {
    if (t == 0) {
      for (int k = 0; k < Records; ++k) publish_retrying(w);
    } else if (t == 1) {
      r1_slept = r1.goes_to_sleep(r1_word);
    } else {
      l2_slept = l2.goes_to_sleep(l2_word);
    }
  }
  void after() {
    if (CheckR1 && r1_slept) RL_ASSERT(woken(ring, r1, r1_word));
    if (!CheckR1 && l2_slept) RL_ASSERT(woken(ring, l2, l2_word));
    r1.end_sleep();
    r1.leave();
    l2.end_sleep();
    l2.leave();
    RL_ASSERT(ring.waiters($).load(rl::mo_relaxed) == 0);
  }
};
using SleepCountSurvivesEviction = EvictionInsideBeginSleep<1, false>;
using EvictedSleeperIsWoken = EvictionInsideBeginSleep<2, true>;

// ---------------------------------------------------------------------------
// Scenario 10 (a known residual, not in the default run: no order of two
// separate words passes it): D is killed between the two shared writes of its
// sleep accounting (waiters and the sleep bit; today: the flag and waiters);
// L sleeps; the writer (Latest, ring of 8 units) publishes 6 records, reaping
// dead owners (F7). Then L leaves and the writer publishes a quarter ring more.
// Count first (the fixed default): a kill after the increment leaves waiters
// at 1 for good (a futex wake per publish, fault 7's symptom, for a kill in a
// two-instruction window). Bit first (--variant bit-first): a kill after the
// bit leaves a bit that no count backs; reaping it decrements L's count, and
// waiters ends at UINT32_MAX once L has left (the next sleeper's increment
// makes it 0: the writer then skips the wake-ups that sleeper needs).
// Invariants: L is woken; waiters is 0 once every live reader has left and a
// quarter ring was published.
// ---------------------------------------------------------------------------
struct KillInsideBeginSleep : rl::test_suite<KillInsideBeginSleep, 3> {
  Ring ring;
  Writer w;
  Reader d, l;
  bool l_slept;
  uint32_t l_word;

  void before() {
    ring.init(8, Policy::Latest, 2);
    w.attach(ring);
    d.attach(ring, 1);
    l.attach(ring, 2);
    l_slept = false;
    l_word = 0;
  }
  void thread(unsigned t) {
    if (t == 0) {
      for (int k = 0; k < 6; ++k) RL_ASSERT(w.publish(1));
    } else if (t == 1) {
      d.kill_at = 1 + int(rl::rand(2));
      uint32_t word;
      if (d.join_latest()) (void)d.goes_to_sleep(word);
      if (!d.killed) ring.alive[1]($).store(0, rl::mo_seq_cst);  // killed anyway, asleep
    } else if (l.join_latest()) {
      l_slept = l.goes_to_sleep(l_word);
    }
  }
  void after() {
    if (l_slept) RL_ASSERT(woken(ring, l, l_word));
    l.end_sleep();
    l.leave();
    for (unsigned k = 0; k <= ring.cap / 4; ++k) RL_ASSERT(w.publish(1));
    RL_ASSERT(ring.waiters($).load(rl::mo_relaxed) == 0);
  }
};

// ---------------------------------------------------------------------------
// Scenario 3, fault 3 (arithmetic: no threads). A reader that has read
// everything (position == W) but publishes its cursor only every capacity / 8
// holds the writer back by its unpublished lag, up to capacity / 8 - 32 B;
// the writer needs padding + len + 32 B past W. Checked exhaustively for
// capacities 4 KiB..64 KiB, every record length the ring accepts (not
// TooLarge), every W offset in the ring and the largest lag (every lag for
// 4 KiB and 8 KiB).
// Invariant: with every reader caught up, the writer can reserve any record
// the ring accepts: refresh_limit's wanted >= needed_end.
// ---------------------------------------------------------------------------
struct ArithmeticResult {
  uint64_t checked = 0, failures = 0;
  uint64_t cap = 0, len = 0, offset = 0, lag = 0, needed = 0, wanted = 0;  // the first failure
};

inline ArithmeticResult check_caught_up_reader_never_blocks() {
  ArithmeticResult res;
  for (uint64_t cap_bytes = 4096; cap_bytes <= 65536; cap_bytes *= 2) {
    const uint64_t cap = cap_bytes / 32;
    const uint64_t most_lag = publish_every(cap) - 1;  // lag after a release < capacity / 8
    for (uint64_t len = 1; len <= max_record_units(cap); ++len)
      for (uint64_t offset = 0; offset < cap; ++offset)
        for (uint64_t lag = cap_bytes <= 8192 ? 0 : most_lag; lag <= most_lag; ++lag) {
          const uint64_t wp = 4 * cap + offset;  // the reader is at wp, its cursor at wp - lag
          const uint64_t needed = needed_end(wp, len, cap);
          const uint64_t wanted = wanted_limit(wp, needed, cap, wp - lag);
          ++res.checked;
          if (wanted >= needed) continue;
          if (res.failures++ == 0) res.cap = cap, res.len = len, res.offset = offset, res.lag = lag, res.needed = needed, res.wanted = wanted;
        }
  }
  return res;
}

/// The example of issue 16 on 4 KiB: publish 2016 B, 32 B, the reader reads
/// both (publishing only the first), publish 2016 B. Returns the third status.
inline Pub issue_example() {
  const uint64_t cap = 4096 / 32;
  uint64_t wp = 0, limit = 0, position = 0, published = 0;
  auto publish = [&](uint64_t len) {
    if (len > max_record_units(cap)) return Pub::TooLarge;
    const uint64_t needed = needed_end(wp, len, cap);
    if (needed > limit) {
      const uint64_t wanted = wanted_limit(wp, needed, cap, published);
      if (wanted < needed) return Pub::Full;
      limit = wanted;
    }
    wp += padding_before(wp, len, cap) + len;
    return Pub::Ok;
  };
  auto read_all = [&] {  // release() after each record: publishes every capacity / 8
    position = wp;
    if (position - published >= publish_every(cap)) published = position;
  };
  const uint64_t big = (32 + 2016) / 32, small = (32 + 32) / 32;
  for (const uint64_t len : {big, small}) {
    const Pub s = publish(len);
    if (s != Pub::Ok) return s;
    read_all();
  }
  return publish(big);
}

// ---------------------------------------------------------------------------
// Driver
// ---------------------------------------------------------------------------
enum class Search { Both, Random, Bound, Full };

struct Options {
  int scenario = 0;          // 0: scenarios 1..9
  long iterations = 200000;  // random search
  unsigned context_bound = 2;
  Search search = Search::Both;
};

const char* name_of(int n) {
  switch (n) {
    case 1: return "JoinAtLatestDuringBurst (fault 1)";
    case 2: return "TailNeverAboveW (fault 2)";
    case 3: return "CaughtUpReaderNeverBlocks (fault 3, arithmetic)";
    case 4: return "SleepFlagTiedToOwner (fault 4)";
    case 5: return "NoSleepWithoutSlot (fault 5)";
    case 6: return "JoinEarliestCountsLosses (fault 6)";
    case 7: return "DeadSleeperForgotten (fault 7)";
    case 8: return "SleepCountSurvivesEviction (F4: waiters before the bit)";
    case 9: return "EvictedSleeperIsWoken (F4/F5: an evicted sleeper learns it)";
    case 10: return "KillInsideBeginSleep (residual: kill -9 between two words)";
  }
  return "?";
}

template <class Suite>
bool run_search(int n, rl::scheduler_type_e type, long iterations, unsigned bound) {
  rl::test_params p;
  // The context-bound and full searches stop when they have seen every
  // schedule (within the bound); the cap only keeps a run finite.
  p.iteration_count = iterations;
  p.search_type = type;
  p.context_bound = bound;
  std::ostream progress(nullptr);  // Relacy's percentages: dropped (no `new`: relacy.hpp redefines it)
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
  switch (o.search) {
    case Search::Random: return run_search<Suite>(n, rl::random_scheduler_type, o.iterations, 0);
    case Search::Bound: return run_search<Suite>(n, rl::fair_context_bound_scheduler_type, 1l << 40, o.context_bound);
    case Search::Full: return run_search<Suite>(n, rl::fair_full_search_scheduler_type, 1l << 40, 0);
    case Search::Both: break;
  }
  // Both: every schedule with at most `context_bound` preemptions (it reaches
  // a joiner acting after a long run of the writer, which random scheduling
  // almost never does), then random schedules with many preemptions.
  return run_search<Suite>(n, rl::fair_context_bound_scheduler_type, 1l << 40, o.context_bound) &&
         run_search<Suite>(n, rl::random_scheduler_type, o.iterations, 0);
}

bool run_arithmetic() {
  const auto start = std::chrono::steady_clock::now();
  const ArithmeticResult res = check_caught_up_reader_never_blocks();
  const Pub example = issue_example();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (res.failures != 0)
    std::cout << "caught-up reader blocks the writer in " << res.failures << " of " << res.checked
              << " cases; first: capacity " << res.cap * 32 << " B, record " << res.len * 32 << " B at W offset "
              << res.offset * 32 << " B, unpublished lag " << res.lag * 32 << " B: needs limit " << res.needed * 32
              << " B, readers allow " << res.wanted * 32 << " B" << std::endl;
  std::cout << "issue example (4 KiB: 2016 B, 32 B, read both, 2016 B): "
            << (example == Pub::Ok ? "Ok" : example == Pub::Full ? "Full (forever: the reader is caught up)" : "TooLarge")
            << std::endl;
  const bool ok = res.failures == 0 && example != Pub::Full;
  std::cout << "RESULT: scenario 3 " << name_of(3) << ", exhaustive: " << (ok ? "passed, " : "FAILED, ") << res.checked
            << " cases, " << seconds << " s" << std::endl;
  return ok;
}

bool run_scenario(int n, const Options& o) {
  switch (n) {
    case 1: return run_relacy<JoinAtLatestDuringBurst>(n, o);
    case 2: return run_relacy<TailNeverAboveW>(n, o);
    case 3: return run_arithmetic();
    case 4: return run_relacy<SleepFlagTiedToOwner>(n, o);
    case 5: return run_relacy<NoSleepWithoutSlot>(n, o);
    case 6: return run_relacy<JoinEarliestCountsLosses>(n, o);
    case 7: return run_relacy<DeadSleeperForgotten>(n, o);
    case 8: return run_relacy<SleepCountSurvivesEviction>(n, o);
    case 9: return run_relacy<EvictedSleeperIsWoken>(n, o);
    case 10: return run_relacy<KillInsideBeginSleep>(n, o);
  }
  return false;
}

int usage() {
  std::cerr << "usage: ring_model [--scenario 1..10] [--iterations K] [--search both|random|bound|full]\n"
               "                  [--context-bound N]\n"
               "                  [--variant seq-relaxed|f2-w-only|bit-first|evicted-sleeps|no-evict-wake]...\n"
               "  default: scenarios 1..9, each with the context-bound search (2 preemptions) and\n"
               "  200000 iterations of the random search; scenario 10 (a known residual) runs only when named\n";
  return 2;
}

}  // namespace model

int main(int argc, char** argv) {
  using namespace model;
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const char* value = i + 1 < argc ? argv[i + 1] : nullptr;
    if (!value) return usage();
    const std::string v = value;
    ++i;
    if (arg == "--scenario") {
      o.scenario = std::atoi(value);
      if (o.scenario < 1 || o.scenario > 10) return usage();
    } else if (arg == "--iterations") {
      o.iterations = std::atol(value);
      if (o.iterations < 1) return usage();
    } else if (arg == "--context-bound") {
      o.context_bound = unsigned(std::atoi(value));
    } else if (arg == "--search") {
      if (v == "both") o.search = Search::Both;
      else if (v == "random") o.search = Search::Random;
      else if (v == "bound") o.search = Search::Bound;
      else if (v == "full") o.search = Search::Full;
      else return usage();
    } else if (arg == "--variant") {
      if (MODEL_TODAY) {
        std::cerr << "--variant applies to the fixed protocol (ring_model) only\n";
        return 2;
      }
      if (v == "seq-relaxed") variants().seq_relaxed = true;
      else if (v == "f2-w-only") variants().f2_w_only = true;
      else if (v == "bit-first") variants().bit_first = true;
      else if (v == "evicted-sleeps") variants().evicted_sleeps = true;
      else if (v == "no-evict-wake") variants().no_evict_wake = true;
      else return usage();
    } else {
      return usage();
    }
  }
  std::cout << "ring model: " << (MODEL_TODAY ? "TODAY's protocol" : "the FIXED protocol")
            << (variants().seq_relaxed ? " [variant seq-relaxed]" : "") << (variants().f2_w_only ? " [variant f2-w-only]" : "")
            << (variants().bit_first ? " [variant bit-first]" : "")
            << (variants().evicted_sleeps ? " [variant evicted-sleeps]" : "")
            << (variants().no_evict_wake ? " [variant no-evict-wake]" : "") << std::endl;
  const auto start = std::chrono::steady_clock::now();
  bool all_ok = true;
  for (int n = 1; n <= 10; ++n) {
    if (o.scenario != 0 ? n != o.scenario : n == 10) continue;
    if (!run_scenario(n, o)) all_ok = false;
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cout << (all_ok ? "ALL PASSED" : "SOME FAILED") << " in " << seconds << " s" << std::endl;
  return all_ok ? 0 : 1;
}
