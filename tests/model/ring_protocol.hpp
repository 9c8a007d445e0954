// A model of the ring protocol of core/include/flowbus/detail/ring.hpp for
// Relacy: the same steps, as small functions over rl::atomic words, on rings
// of a few records. See README.md in this directory.
//
// Units: every position, length and capacity here counts 32-byte units
// (kRecordAlign), so a ring of 8 units is a ring of 256 bytes and a record of
// length 1 is a header with an empty payload: the arithmetic is the one of
// ring.hpp divided by 32.
//
// MODEL_TODAY=1: the protocol as ring.hpp has it today (issue 16's faults).
// MODEL_TODAY=0: the fixed protocol (F1..F7 of issue 16) with what the model
// showed it needs (README.md, "Found in the fix"): next_sequence stored with
// release before every W store, the mid-burst one of F2 included; waiters
// incremented before the sleep bit is set; an eviction seen in begin_sleep
// reported rather than slept through; an eviction that takes a sleep bit
// wakes. Run-time variants (Variants) restore the fix as first specified.
//
// Record header fields other than the commit word are plain bytes in ring.hpp,
// read racily and validated after (tail, commit); they are relaxed atomics
// here, which gives the same visibility without Relacy reporting the
// (intended) data race.
#pragma once

// Standard headers before relacy.hpp: it #defines new, delete, malloc, assert.
#include <algorithm>
#include <cstdint>
#include <cstdio>

#include <relacy/relacy.hpp>

#ifndef MODEL_TODAY
#define MODEL_TODAY 0
#endif

namespace model {

constexpr unsigned kMaxUnits = 16;         // largest model ring
constexpr unsigned kMaxSlots = 2;          // cursor slots in a model control segment
constexpr unsigned kMaxParticipants = 4;   // participant ids 1..3
constexpr unsigned kGhostPositions = 64;   // absolute positions a scenario may reach
// ring.hpp's retry loops (100 rounds in join_earliest and the write-position
// estimate, 1000 in catch_up_with_tail, 1024 in peek), cut down so that the
// scheduler can exhaust them.
constexpr int kRounds = 3;
constexpr int kPeekRounds = 4;

// The fix as first specified, where the model finds it wrong (fixed build only).
struct Variants {
  bool seq_relaxed = false;  // F1 with next_sequence stored relaxed, as ring.hpp did before 6db5c19
  bool f2_w_only = false;    // F2 stores W mid-burst but not next_sequence before it
  bool bit_first = false;    // F4 as specified: CAS the sleep bit, then waiters.fetch_add
  // F4/F5 as specified: a reader that finds itself evicted in begin_sleep
  // returns without sleep accounting and sleeps anyway (ready() looks at the
  // commit word only), and an eviction that takes a sleep bit only decrements.
  bool evicted_sleeps = false;
  // As commit 6db5c19 has it: a reader that sees its eviction in begin_sleep
  // reports it (evicted_pending), but an eviction that takes a sleep bit only
  // decrements, and ready() does not look at the reader's own word.
  bool no_evict_wake = false;
};
inline Variants& variants() {
  static Variants v;  // set once in main(), before any simulation: deterministic
  return v;
}

enum class Policy { Block, Latest };
enum class Pub { Ok, Full, TooLarge };
enum class Read { Ok, Empty, Evicted, Corrupt };
enum class Gap { Retry, Empty, Corrupt };

// Record header, model form: the length in units and the padding flag in one word.
constexpr uint64_t kPad = 1u << 16;
constexpr uint64_t kLenMask = 0xffff;

/// Largest record (in units) a ring of `cap` units accepts: today half the
/// ring; F3: 7/16 of it.
inline uint64_t max_record_units(uint64_t cap) { return MODEL_TODAY ? cap / 2 : cap * 7 / 16; }
/// A reader publishes its cursor once it has moved this far (capacity / 8).
inline uint64_t publish_every(uint64_t cap) { return std::max<uint64_t>(1, cap / 8); }

// The writer's space arithmetic (reserve, refresh_limit), shared by the
// Relacy model and the exhaustive check of scenario 3.
inline uint64_t padding_before(uint64_t wp, uint64_t len, uint64_t cap) {
  const uint64_t room = cap - (wp & (cap - 1));
  return len > room ? room : 0;
}
/// The end reserve needs below limit: padding, the record, and the next commit word (zeroed).
inline uint64_t needed_end(uint64_t wp, uint64_t len, uint64_t cap) { return wp + padding_before(wp, len, cap) + len + 1; }
/// The limit refresh_limit may move to, given the slowest published cursor (UINT64_MAX: none).
inline uint64_t wanted_limit(uint64_t wp, uint64_t needed, uint64_t cap, uint64_t slowest) {
  const uint64_t run = std::max<uint64_t>(cap / 4, needed - wp);
  return slowest == UINT64_MAX ? wp + run : std::min(wp + run, slowest + cap);
}

// The cursor word: [epoch:8][participant:8][participant epoch:8][position:40]
// today; fixed (F4): bit 39 is the sleep bit and positions keep 39 bits.
struct CW {
  static constexpr uint64_t kSleep = MODEL_TODAY ? 0 : (1ull << 39);
  static constexpr uint64_t kUnitsMask = MODEL_TODAY ? ((1ull << 40) - 1) : ((1ull << 39) - 1);
  static uint64_t pack(uint32_t epoch, uint32_t participant, uint32_t pe, uint64_t units) {
    return (uint64_t(epoch & 0xff) << 56) | (uint64_t(participant & 0xff) << 48) | (uint64_t(pe & 0xff) << 40) |
           (units & kUnitsMask);
  }
  static uint64_t freed(uint64_t w) { return pack(epoch(w) + 1, 0, 0, 0); }
  static uint32_t epoch(uint64_t w) { return uint32_t(w >> 56); }
  static uint32_t participant(uint64_t w) { return uint32_t(w >> 48) & 0xff; }
  static bool owned(uint64_t w) { return (epoch(w) & 1) != 0; }
  static bool sleeping(uint64_t w) { return (w & kSleep) != 0; }
  static uint64_t position(uint64_t w, uint64_t near) {
    const uint64_t behind = (near - (w & kUnitsMask)) & kUnitsMask;
    return near - behind;
  }
};

// ---------------------------------------------------------------------------
// The shared memory: data segment header and records, control segment.
// ---------------------------------------------------------------------------
struct Ring {
  unsigned cap = 8, mask = 7, nslots = 1;
  Policy policy = Policy::Block;

  rl::atomic<uint64_t> W;         // RingHeader::write_position
  rl::atomic<uint64_t> next_seq;  // RingHeader::next_sequence
  rl::atomic<uint64_t> tail;      // RingHeader::tail_position
  rl::atomic<uint64_t> commit[kMaxUnits];
  rl::atomic<uint64_t> len[kMaxUnits];  // size + offset_and_flags
  rl::atomic<uint64_t> seq[kMaxUnits];  // sequence
  rl::atomic<uint32_t> waiters;         // ControlHeader::waiters
  rl::atomic<uint32_t> wake_word;       // ControlHeader::wake_word (the futex)
  rl::atomic<uint64_t> word[kMaxSlots];       // CursorSlot::word
  rl::atomic<uint32_t> sleeping[kMaxSlots];   // CursorSlot::sleeping (today only)
  rl::atomic<uint32_t> alive[kMaxParticipants];  // what the liveness probe reads
  bool stuck[kMaxParticipants];  // the slow-consumer timeout ran out for this participant

  // Ghosts: what the writer did, for the assertions only.
  uint64_t g_seq_at[kGhostPositions];  // sequence of the record (or padding) at an absolute position
  bool g_written[kGhostPositions];
  uint64_t g_W = 0, g_tail = 0;        // the values last stored in W and tail
  uint64_t g_committed = 0;            // records committed so far

  void init(unsigned cap_units, Policy p, unsigned slots) {
    cap = cap_units;
    mask = cap_units - 1;
    policy = p;
    nslots = slots;
    W($).store(0, rl::mo_relaxed);
    next_seq($).store(0, rl::mo_relaxed);
    tail($).store(0, rl::mo_relaxed);
    for (unsigned i = 0; i < kMaxUnits; ++i) {
      commit[i]($).store(0, rl::mo_relaxed);
      len[i]($).store(0, rl::mo_relaxed);
      seq[i]($).store(0, rl::mo_relaxed);
    }
    waiters($).store(0, rl::mo_relaxed);
    wake_word($).store(0, rl::mo_relaxed);
    for (unsigned i = 0; i < kMaxSlots; ++i) {
      word[i]($).store(0, rl::mo_relaxed);
      sleeping[i]($).store(0, rl::mo_relaxed);
    }
    for (unsigned i = 0; i < kMaxParticipants; ++i) {
      alive[i]($).store(1, rl::mo_relaxed);
      stuck[i] = false;
    }
    for (unsigned i = 0; i < kGhostPositions; ++i) g_seq_at[i] = 0, g_written[i] = false;
    g_W = g_tail = g_committed = 0;
  }

  // control->slots[i]: the index must be a slot (fault 5: begin_sleep used slot -1).
  rl::atomic<uint64_t>& slot_word(int i) {
    RL_ASSERT(i >= 0 && i < int(nslots));
    return word[i < 0 ? 0 : i];
  }
  rl::atomic<uint32_t>& slot_sleeping(int i) {
    RL_ASSERT(i >= 0 && i < int(nslots));
    return sleeping[i < 0 ? 0 : i];
  }
  void ghost_write(uint64_t position, uint64_t sequence) {
    RL_ASSERT(position < kGhostPositions);
    g_seq_at[position % kGhostPositions] = sequence;
    g_written[position % kGhostPositions] = true;
  }
};

#if MODEL_TODAY
/// ring.hpp forget_sleeper: whoever exchanges the slot's flag to 0 decrements.
inline void forget_sleeper(Ring& r, int i) {
  if (r.slot_sleeping(i)($).exchange(0, rl::mo_acq_rel) == 1) r.waiters($).fetch_sub(1, rl::mo_relaxed);
}
#endif

// ---------------------------------------------------------------------------
// RingWriter
// ---------------------------------------------------------------------------
struct Writer {
  Ring* r = nullptr;
  uint64_t wp = 0;          // write_position (local)
  uint64_t nseq = 0;        // next_sequence (local)
  uint64_t limit = 0;
  uint64_t next_early = 0;  // next_early_refresh
  uint64_t tail = 0;
  uint64_t stored_W = 0;    // what we last stored in the header's W (F2 compares tail with it)
  unsigned wakes = 0;

  void attach(Ring& ring) { r = &ring; }
  uint64_t cap() const { return r->cap; }

  static rl::memory_order seq_store_order() {
    // F1 needs release: a joiner that reads next_sequence from a publish must
    // also see the commits made before it.
    return (MODEL_TODAY || variants().seq_relaxed) ? rl::mo_relaxed : rl::mo_release;
  }

  Pub reserve(uint64_t len, uint64_t& position) {
    if (len > max_record_units(cap())) return Pub::TooLarge;
    uint64_t p = wp;
    const uint64_t padding = padding_before(p, len, cap());
    const uint64_t needed = needed_end(p, len, cap());  // + 1 unit: the next record's commit word is zeroed
    if (needed > limit && !refresh_limit(needed, true)) return Pub::Full;
    if (padding != 0) {
      write_padding(p, padding);
      p += padding;
    }
    position = p;
    return Pub::Ok;
  }

  void commit_record(uint64_t position, uint64_t len) {
    const unsigned i = position & r->mask;
    r->len[i]($).store(len, rl::mo_relaxed);
    r->seq[i]($).store(nseq, rl::mo_relaxed);
    r->ghost_write(position, nseq);
    r->commit[(position + len) & r->mask]($).store(0, rl::mo_relaxed);
    r->commit[i]($).store(position + 1, rl::mo_release);
    ++nseq;
    wp = position + len;
    r->g_committed = nseq;
  }

  void end_burst() {
    publish_position();
    refresh_limit_early();
  }

  /// reserve + commit + end_burst. False when the reserve was refused.
  bool publish(uint64_t len) {
    uint64_t position = 0;
    if (reserve(len, position) != Pub::Ok) return false;
    commit_record(position, len);
    end_burst();
    return true;
  }

  void publish_position() {
    r->next_seq($).store(nseq, seq_store_order());
    store_W();
    // The wake-up Dekker (full-fence protocol).
    rl::atomic_thread_fence(rl::mo_seq_cst, $);
    if (r->waiters($).load(rl::mo_relaxed) != 0) wake_readers();
  }

  void store_W() {
    r->W($).store(wp, rl::mo_release);
    stored_W = wp;
    r->g_W = wp;
  }

  void wake_readers() {
    r->wake_word($).fetch_add(1, rl::mo_release);  // + futex_wake_all
    ++wakes;
  }

  void write_padding(uint64_t position, uint64_t padding) {
    const unsigned i = position & r->mask;
    r->len[i]($).store(padding | kPad, rl::mo_relaxed);
    r->seq[i]($).store(nseq, rl::mo_relaxed);  // the sequence of the record after it
    r->ghost_write(position, nseq);
    r->commit[(position + padding) & r->mask]($).store(0, rl::mo_relaxed);
    r->commit[i]($).store(position + 1, rl::mo_release);
    wp = position + padding;
  }

  bool probe_alive(uint32_t participant) { return r->alive[participant % kMaxParticipants]($).load(rl::mo_acquire) != 0; }

  uint64_t slowest_cursor(uint64_t blocked_below, rl::memory_order order) {
    uint64_t slowest = UINT64_MAX;
    for (unsigned i = 0; i < r->nslots; ++i) {
      const uint64_t w = r->word[i]($).load(order);
      if (!CW::owned(w)) continue;
      const uint64_t position = CW::position(w, wp);  // fixed: the sleep bit masked
      if (position > wp) continue;
      if (blocked_below != 0 && position < blocked_below && r->policy == Policy::Block) {
        const uint32_t who = CW::participant(w);
        if (r->stuck[who % kMaxParticipants] || !probe_alive(who)) {
          if (evict(i, w)) continue;
        }
      }
      slowest = std::min(slowest, position);
    }
    return slowest;
  }

  bool evict(unsigned i, uint64_t w) {
    uint64_t expected = w;
    if (!r->word[i]($).compare_exchange_strong(expected, CW::freed(w), rl::mo_acq_rel)) return false;
#if MODEL_TODAY
    forget_sleeper(*r, int(i));
#else
    // F4: the sleep bit went with the word: we took the sleeper out, so we
    // decrement; and we wake it, so that it learns it was evicted (its commit
    // word may read 0 now: the writer's frontier is one lap above it).
    if (CW::sleeping(w)) {
      r->waiters($).fetch_sub(1, rl::mo_relaxed);
      if (!variants().evicted_sleeps && !variants().no_evict_wake) wake_readers();
    }
#endif
    return true;
  }

#if !MODEL_TODAY
  /// F7 (Latest): frees the cursors of dead owners, with the eviction CAS.
  void reap_dead() {
    for (unsigned i = 0; i < r->nslots; ++i) {
      const uint64_t w = r->word[i]($).load(rl::mo_acquire);
      if (!CW::owned(w) || probe_alive(CW::participant(w))) continue;
      (void)evict(i, w);
    }
  }
#endif

  void refresh_limit_early() {
    if (limit - wp >= publish_every(cap()) || wp < next_early) return;
    next_early = wp + std::max<uint64_t>(1, cap() / 16);
    (void)refresh_limit(wp + 1, false);
  }

  bool refresh_limit(uint64_t needed, bool watch_stuck) {
#if !MODEL_TODAY
    if (r->policy == Policy::Latest && r->waiters($).load(rl::mo_relaxed) != 0) reap_dead();  // F7
#endif
    uint64_t wanted = wanted_limit(wp, needed, cap(), UINT64_MAX);
    if (r->policy == Policy::Block) {
      const uint64_t blocked_below = watch_stuck && needed > cap() ? needed - cap() : 0;
      wanted = wanted_limit(wp, needed, cap(), slowest_cursor(blocked_below, rl::mo_acquire));
    }
    if (wanted < needed) return false;
    advance_tail(wanted > cap() ? wanted - cap() : 0);
    if (r->policy == Policy::Block) {
      // The joiner Dekker: tail stored seq_cst, fence, re-scan seq_cst.
      rl::atomic_thread_fence(rl::mo_seq_cst, $);
      wanted = std::min(wanted, wanted_limit(wp, needed, cap(), slowest_cursor(0, rl::mo_seq_cst)));
      if (wanted < needed) return false;
    }
    limit = wanted;
    return true;
  }

  void advance_tail(uint64_t bound) {
    if (tail >= bound) return;
    // The first record start at or above bound (ring.hpp finds it in its chunk
    // notes, or walks its own headers as here).
    uint64_t t = tail;
    while (t < bound && t < wp) {
      const uint64_t l = r->len[t & r->mask]($).load(rl::mo_relaxed) & kLenMask;
      if (l == 0 || l > cap() - (t & r->mask)) {
        t = std::min(bound, wp);
        break;
      }
      t += l;
    }
#if !MODEL_TODAY
    // F2: never a tail above the stored W. Every record below wp is committed,
    // so W = wp is legal mid-burst; next_sequence goes first, as in
    // publish_position (F1's joiner reads it after W).
    if (t > stored_W) {
      if (!variants().f2_w_only) r->next_seq($).store(nseq, seq_store_order());
      store_W();
    }
#endif
    tail = t;
    r->tail($).store(t, rl::mo_seq_cst);
    r->g_tail = t;
    rl::atomic_thread_fence(rl::mo_release, $);
  }

  /// A new writer after a crash. `scribble_seen`: it took tail > W for a
  /// scribbled header (and rewound tail).
  void recover(bool& scribble_seen) {
    wp = r->W($).load(rl::mo_acquire);
    nseq = r->next_seq($).load(rl::mo_relaxed);
    tail = r->tail($).load(rl::mo_relaxed);
    stored_W = wp;
    scribble_seen = tail > wp;
    if (scribble_seen) {
      tail = wp;
      r->tail($).store(tail, rl::mo_seq_cst);
      r->g_tail = tail;
    }
    for (uint64_t walked = 0; walked < cap();) {
      const unsigned i = wp & r->mask;
      if (r->commit[i]($).load(rl::mo_acquire) != wp + 1) break;
      const uint64_t lw = r->len[i]($).load(rl::mo_relaxed);
      const uint64_t l = lw & kLenMask;
      if (l == 0 || l > cap() - i || ((lw & kPad) && l != cap() - i)) break;
      if (!(lw & kPad)) nseq = r->seq[i]($).load(rl::mo_relaxed) + 1;
      wp += l;
      walked += l;
    }
    limit = wp;
    r->next_seq($).store(nseq, seq_store_order());
    store_W();
  }
};

// ---------------------------------------------------------------------------
// RingReader
// ---------------------------------------------------------------------------
struct Event {
  uint64_t sequence = 0, position = 0, next_position = 0;
};

struct Reader {
  Ring* r = nullptr;
  uint32_t participant = 1, pe = 1;
  int slot = -1;
  uint64_t cursor_word = 0;  // fixed: carries the sleep bit while we set it
  uint64_t position = 0, published = 0;
  uint64_t expected = 0;
  bool known = false, estimated = false, quarantined = false, evicted_pending = false;
  uint64_t missed = 0;
  uint64_t join_point = 0;  // ghost: the position whose sequence the join learned
  // Scenario 9: the process is killed right after step `kill_at` of its sleep
  // accounting (1: the first shared write of begin_sleep, 2: the second).
  int kill_at = -1;
  bool killed = false;

  void attach(Ring& ring, uint32_t who) {
    r = &ring;
    participant = who;
  }
  uint64_t cap() const { return r->cap; }

  /// After a step of the sleep accounting: true if the process was killed there.
  bool killed_after(int step) {
    if (step == kill_at) {
      r->alive[participant % kMaxParticipants]($).store(0, rl::mo_seq_cst);  // kill -9
      killed = true;
    }
    return killed;
  }

  bool join_at(uint64_t at) {
    for (unsigned i = 0; i < r->nslots; ++i) {
      uint64_t w = r->word[i]($).load(rl::mo_relaxed);
      if (CW::owned(w)) continue;
      const uint64_t mine = CW::pack(CW::epoch(w) + 1, participant, pe, at);
      if (!r->word[i]($).compare_exchange_strong(w, mine, rl::mo_seq_cst)) continue;
      slot = int(i);
      cursor_word = mine;
      position = published = at;
      if (catch_up_with_tail()) return true;
      leave();
      return false;
    }
    return false;
  }

#if MODEL_TODAY
  /// Today: the write position, read between two equal reads of W, with
  /// next_sequence read in between: the true sequence or (it is hoped) one above.
  uint64_t estimate_sequence_at_write_position() {
    uint64_t at = r->W($).load(rl::mo_acquire);
    for (int i = 0; i < kRounds; ++i) {
      expected = r->next_seq($).load(rl::mo_acquire);
      const uint64_t again = r->W($).load(rl::mo_acquire);
      if (again == at) break;
      at = again;
    }
    known = estimated = true;
    return at;
  }
#else
  /// F1: W1, next_sequence, then the commit word at W1 (all acquire).
  bool locate_write_position(uint64_t& at) {
    for (int round = 0; round < kRounds; ++round) {
      const uint64_t w1 = r->W($).load(rl::mo_acquire);
      const uint64_t sq = r->next_seq($).load(rl::mo_acquire);
      const unsigned i = w1 & r->mask;
      const uint64_t c = r->commit[i]($).load(rl::mo_acquire);
      uint64_t e;
      if (c == w1 + 1)
        e = r->seq[i]($).load(rl::mo_relaxed);  // the record's own (padding: the next record's)
      else if (c == 0)
        e = sq;  // the frontier: sq is exact
      else
        continue;  // lapped or scribbled
      if (!still_valid_at(w1)) continue;  // a later lap: tail passed W1
      expected = e;
      known = true;
      estimated = false;
      at = w1;
      return true;
    }
    return false;
  }
#endif

  bool join_latest() {
#if MODEL_TODAY
    const uint64_t at = estimate_sequence_at_write_position();
#else
    uint64_t at;
    if (!locate_write_position(at)) return false;
#endif
    join_point = at;
    return join_at(at);
  }

  bool join_earliest() {
    known = estimated = false;
    if (!join_at(r->tail($).load(rl::mo_acquire))) return false;
    for (int round = 0; round < kRounds; ++round) {
      const unsigned i = position & r->mask;
      if (r->commit[i]($).load(rl::mo_acquire) != position + 1) {
#if MODEL_TODAY
        const uint64_t at = estimate_sequence_at_write_position();
        join_point = position;
        if (at == position) return true;
        continue;  // the writer moved meanwhile: look again (at the same position)
#else
        uint64_t at;
        if (locate_write_position(at) && at == position) {
          join_point = position;
          return true;
        }
        known = false;
        // F6: the writer moved: go up to tail before looking again.
        position = std::max(position, r->tail($).load(rl::mo_acquire));
        continue;
#endif
      }
      const uint64_t sequence = r->seq[i]($).load(rl::mo_relaxed);
      if (still_valid_at(position)) {
        expected = sequence;
        known = true;
        estimated = false;
        join_point = position;
        return true;
      }
      position = std::max(position, r->tail($).load(rl::mo_acquire));
    }
#if MODEL_TODAY
    known = estimated = false;  // the first read decides
    join_point = position;
    return true;
#else
    // F6: still unknown: join at W, with F1's exact sequence.
    uint64_t at;
    if (!locate_write_position(at)) {
      leave();
      return false;
    }
    position = at;  // >= every tail we saw: F1 checked tail <= at
    join_point = at;
    (void)publish_progress();
    return slot >= 0;
#endif
  }

  void leave() {
    if (slot < 0) return;
#if MODEL_TODAY
    forget_sleeper(*r, slot);
    uint64_t e = cursor_word;
    r->slot_word(slot)($).compare_exchange_strong(e, CW::freed(cursor_word), rl::mo_release, rl::mo_relaxed);
#else
    uint64_t e = cursor_word;
    // F4: only the party whose CAS removed the sleep bit decrements.
    if (r->slot_word(slot)($).compare_exchange_strong(e, CW::freed(cursor_word), rl::mo_release, rl::mo_relaxed) &&
        CW::sleeping(cursor_word))
      r->waiters($).fetch_sub(1, rl::mo_relaxed);
#endif
    slot = -1;
  }

  Read peek(Event& out) {
    for (int round = 0; round < kPeekRounds; ++round) {
      if (quarantined) return Read::Corrupt;
      const unsigned i = position & r->mask;
      if (r->commit[i]($).load(rl::mo_acquire) != position + 1) {
        const Gap gap = no_record_at_cursor();
        if (gap == Gap::Retry) continue;
        if (gap == Gap::Empty) return Read::Empty;
        quarantine();
        return Read::Corrupt;
      }
      const uint64_t lw = r->len[i]($).load(rl::mo_relaxed);
      const uint64_t sequence = r->seq[i]($).load(rl::mo_relaxed);
      const uint64_t l = lw & kLenMask;
      const uint64_t room = cap() - i;
      if (l == 0 || l > room || ((lw & kPad) && l != room)) {
        if (torn_by_lap()) continue;
        quarantine();
        return Read::Corrupt;
      }
      if (lw & kPad) {
        position += l;
        continue;
      }
      out.sequence = sequence;
      out.position = position;
      out.next_position = position + l;
      if (r->policy == Policy::Latest && torn_by_lap()) continue;
#if MODEL_TODAY
      if (estimated && sequence + 1 == expected) expected = sequence;  // the off-by-one correction
#endif
      estimated = false;
      if (known && sequence != expected) {
        if (sequence < expected) {
          quarantine();
          return Read::Corrupt;
        }
        missed += sequence - expected;
        expected = sequence;
      }
      return Read::Ok;
    }
    return Read::Empty;
  }

  Read release(const Event& ev) {
    position = ev.next_position;
    expected = ev.sequence + 1;
    known = true;
    estimated = false;
    if (position - published >= publish_every(cap())) {
      if (store_cursor()) return Read::Ok;
    } else if (r->policy == Policy::Latest || still_owned()) {
      return Read::Ok;
    }
    rejoin_after_eviction();
    return Read::Evicted;
  }

  bool still_valid_at(uint64_t at) {
    rl::atomic_thread_fence(rl::mo_acquire, $);
    return at >= r->tail($).load(rl::mo_relaxed);
  }

  bool has_data() {
    const uint64_t c = r->commit[position & r->mask]($).load(rl::mo_acquire);
    if (c == position + 1) return true;
    if (c == 0) return false;
    return r->W($).load(rl::mo_acquire) != position;
  }

  void begin_sleep() {
    if (slot < 0) return;
#if MODEL_TODAY
    publish_progress();
    if (r->slot_sleeping(slot)($).exchange(1, rl::mo_seq_cst) == 0) {
      if (killed_after(1)) return;
      r->waiters($).fetch_add(1, rl::mo_seq_cst);
      if (killed_after(2)) return;
    }
#else
    // F5: publish progress first; if we were evicted (rejoined, or quarantined
    // with slot -1), no sleep accounting: evicted_pending is set, and ready()
    // says so, so the subscriber does not sleep but reports Evicted.
    if (!publish_progress() || slot < 0) return;
    uint64_t e = cursor_word;
    if (variants().bit_first) {
      // F4 as specified: the bit, then the count.
      if (!r->slot_word(slot)($).compare_exchange_strong(e, cursor_word | CW::kSleep, rl::mo_seq_cst)) {
        if (!variants().evicted_sleeps) rejoin_after_eviction();
        return;
      }
      cursor_word |= CW::kSleep;
      if (killed_after(1)) return;
      r->waiters($).fetch_add(1, rl::mo_seq_cst);
      if (killed_after(2)) return;
    } else {
      // The count, then the bit: waiters never drops below the number of sleep bits.
      r->waiters($).fetch_add(1, rl::mo_seq_cst);
      if (killed_after(1)) return;
      if (!r->slot_word(slot)($).compare_exchange_strong(e, cursor_word | CW::kSleep, rl::mo_seq_cst)) {
        r->waiters($).fetch_sub(1, rl::mo_relaxed);  // evicted meanwhile: take our count back
        if (!variants().evicted_sleeps) rejoin_after_eviction();  // and report it rather than sleep
        return;
      }
      cursor_word |= CW::kSleep;
      if (killed_after(2)) return;
    }
#endif
    rl::atomic_thread_fence(rl::mo_seq_cst, $);
  }

  void end_sleep() {
#if MODEL_TODAY
    if (slot >= 0) forget_sleeper(*r, slot);
#else
    if (slot < 0 || !CW::sleeping(cursor_word)) return;
    uint64_t e = cursor_word;
    const uint64_t plain = cursor_word & ~CW::kSleep;
    if (r->slot_word(slot)($).compare_exchange_strong(e, plain, rl::mo_seq_cst))
      r->waiters($).fetch_sub(1, rl::mo_relaxed);
    cursor_word = plain;  // if the CAS failed we were evicted: the next CAS fails too
#endif
  }

  /// Subscriber::wait's ready() for this ring. Fixed: an eviction not yet
  /// reported counts too (the next read says Evicted).
  bool ready() {
    if (quarantined) return false;  // skipped
    if (!MODEL_TODAY && !variants().evicted_sleeps) {
      if (evicted_pending) return true;
      // Evicted after our sleep bit was set: the evictor's wake may have come
      // before we read the wake word. It freed our word before it woke, so a
      // reader that read the wake word after that wake sees the freed word here.
      if (!variants().no_evict_wake && slot >= 0 && !still_owned()) return true;
    }
    return has_data();
  }

  /// Subscriber::wait's last step for this ring: begin_sleep, read the wake
  /// word, look once more. True: it calls futex_wait(wake_word, *word).
  bool goes_to_sleep(uint32_t& word) {
    if (quarantined) return false;
    begin_sleep();
    if (killed) return false;
    word = r->wake_word($).load(rl::mo_acquire);
    if (quarantined) return false;  // ready() skips it; nobody owes it a wake-up
    return !ready();
  }

  bool store_cursor() {
    if (slot < 0) return false;
    RL_ASSERT(!CW::sleeping(cursor_word));  // a reader never moves while counted as asleep
    const uint64_t next = CW::pack(CW::epoch(cursor_word), participant, pe, position);
    if (next == cursor_word) return still_owned();
    uint64_t e = cursor_word;
    if (!r->slot_word(slot)($).compare_exchange_strong(e, next, rl::mo_release, rl::mo_relaxed)) return false;
    cursor_word = next;
    published = position;
    return true;
  }

  bool still_owned() { return slot >= 0 && r->slot_word(slot)($).load(rl::mo_relaxed) == cursor_word; }

  /// False if we found ourselves evicted (and rejoined, or were quarantined).
  bool publish_progress() {
    if (position != published && !store_cursor()) {
      rejoin_after_eviction();
      return false;
    }
    return true;
  }

  void quarantine() {
    quarantined = true;
    leave();
  }

  bool catch_up_with_tail() {
    for (int round = 0; round < kRounds; ++round) {
      const uint64_t t = r->tail($).load(rl::mo_seq_cst);
      if (t <= position) return true;
      position = t;
      if (!store_cursor()) return false;
    }
    return false;
  }

  void rejoin_after_eviction() {
    evicted_pending = true;
    slot = -1;
    if (!join_at(position)) quarantine();
  }

  Gap no_record_at_cursor() {
    if (r->policy == Policy::Block) {
      if (!still_owned()) {
        rejoin_after_eviction();
        return quarantined ? Gap::Corrupt : Gap::Retry;
      }
    } else {
      rl::atomic_thread_fence(rl::mo_acquire, $);
      const uint64_t t = r->tail($).load(rl::mo_relaxed);
      if (t > position) {
        position = t;
        return Gap::Retry;
      }
    }
    return look_for_damage();  // ring.hpp: every 64th empty peek; the model: every one
  }

  Gap look_for_damage() {
    const uint64_t t = r->tail($).load(rl::mo_acquire);
    const uint64_t w = r->W($).load(rl::mo_acquire);
    if (t > w) return Gap::Corrupt;
    if (w > position && r->commit[position & r->mask]($).load(rl::mo_acquire) != position + 1)
      return still_valid_at(position) ? Gap::Corrupt : Gap::Retry;
    return Gap::Empty;
  }

  bool torn_by_lap() {
    if (still_valid_at(position)) return false;
    const uint64_t t = r->tail($).load(rl::mo_relaxed);
    if (t > position) position = t;
    return true;
  }
};

}  // namespace model
