// A model of the proposed layout-v4 ring protocol (docs/proposals/least-privilege.md,
// sections 3..6 and 8 "Relacy") for Relacy, beside the model of today's
// protocol (ring_protocol.hpp, layout v3, which it does not change).
//
// What is new in v4, as modelled here:
// * a reader's position lives in its own segment (Ring4::line[reader]): only
//   the reader stores it, the writer only loads it;
// * the writer-owned attachment table in .ctl (Ring4::att[], admissions):
//   admission, reservation, eviction by bumping the writer's own attachment
//   epoch; nobody CASes a reader's word;
// * the .bell (untrusted): the doorbell (bell slots and the `rings` counter)
//   a reader rings to announce a join, and `wake_request`, the self-clearing
//   word that replaces `waiters`;
// * the joining Dekker (reader: store position, ring seq_cst, load tail
//   seq_cst; writer: store tail seq_cst, fence, load rings, admit, re-scan the
//   admitted positions before raising its limit), and a joining reader that
//   validates every read against tail until it finds itself admitted.
//
// Simplifications on top of ring_protocol.hpp's: every record is one unit
// (32 B) with no padding, and the record at absolute position p carries
// sequence p, so a reader knows the sequence at any position and counts a
// skip from p to t as t - p losses (ring.hpp counts by sequence); one cursor
// line per reader segment; a reader's identity (token, pid, line, attested by
// the kernel in the real design) is its id 1..kMaxReaders4-1, and a bell slot
// holds that id (0: free), claimed by CAS from 0 and cleared by the writer
// (the proposal's seq-counted slot of several fields is one word here); the
// writer's private copy of its table (att_word) is exact because only it
// writes .ctl. Futex: a sleeper is woken iff the wake word changed after it
// read it. Not modelled: the kernel parts (shm_open, fstat, /proc, readdir
// at ring creation, the fault guard), more than one writer, Latest rings.
//
// Ghosts (plain members, for the assertions only; Relacy runs one thread at a
// time): the writer checks at every record it writes that it destroys no byte
// at or above the read position of a reader that is protected (admitted, or
// settled after its join's tail load with an honest bell, or holding a
// reservation), unless it evicted that reader.
#pragma once

#include "ring_protocol.hpp"

namespace model {
namespace v4 {

constexpr unsigned kMaxAtt = 2;               // attachments in a model .ctl
constexpr unsigned kMaxBell = 2;              // bell slots in a model .bell
constexpr unsigned kMaxReaders4 = 3;          // reader ids 1..2 (0: none)
constexpr uint64_t kNoLine = UINT64_MAX - 1;  // a line not filled yet
constexpr uint64_t kLeft = UINT64_MAX;        // leave(): the writer frees the attachment

// The broken variants: each restores one hazard the v4 protocol must avoid,
// and the model must find it (README.md, "v4: expected failures").
struct Variants4 {
  bool limit_before_bell = false;   // the writer raises its limit before it processes the bell and re-scans
  bool no_join_validate = false;    // a joining reader trusts its read without checking tail
  bool check_no_fence = false;      // the ownership check without its acquire fence
  bool request_first = false;       // begin_sleep as the proposal orders it: request, fence, then read the wake word
  bool clear_before_fence = false;  // the writer loads and clears wake_request before its fence
  bool no_recheck = false;          // the reader sleeps without re-checking the data
  bool no_slices = false;           // with a forger around, the reader sleeps unbounded
  bool ignore_reserved = false;     // the writer holds nothing for a reservation that has no line yet
  // The proposal's form: a joining reader validates against tail. The writer
  // stores tail in step 2 (the Dekker's store half), before the bell may
  // admit a joiner below it and step 4 lowers its limit: an honest joiner
  // then skips events the writer still holds, counted as lost.
  bool validate_by_tail = false;
  bool evict_no_wake = false;   // an eviction bumps admissions but does not wake
  bool slot_overwrite = false;  // a joiner takes slot 0 whatever it holds (a slot "free" when merely complete)
};
inline Variants4& variants4() {
  static Variants4 v;  // set once in main(), before any simulation
  return v;
}

// Attachment state word: [epoch:32][who:16][kind:8].
enum Kind : uint64_t { Free = 0, Reserved = 1, Admitted = 2 };
struct AS {
  static uint64_t pack(uint64_t epoch, uint64_t who, uint64_t kind) { return (epoch << 24) | (who << 8) | kind; }
  static uint64_t epoch(uint64_t w) { return w >> 24; }
  static uint32_t who(uint64_t w) { return uint32_t(w >> 8) & 0xffff; }
  static uint64_t kind(uint64_t w) { return w & 0xff; }
  static uint64_t identity(uint64_t w) {
    return w & ~uint64_t(0xff);
  }  // epoch and who: kind may go Reserved -> Admitted
};

struct Reader4;

// ---------------------------------------------------------------------------
// The shared memory: data segment, .ctl (writer only), .bell (anyone in G),
// reader segments (their owner only).
// ---------------------------------------------------------------------------
struct Ring4 {
  unsigned cap = 8, mask = 7;

  // data segment
  rl::atomic<uint64_t> W, tail;
  // Fix (README.md, "v4: found in the design"): the reuse floor, limit - cap
  // of the limit the writer actually set (after step 4), stored before any
  // byte below it is reused. Joining readers validate against it.
  rl::atomic<uint64_t> floor;
  rl::atomic<uint64_t> commit[kMaxUnits];
  rl::atomic<uint64_t> seq[kMaxUnits];
  // .ctl: written by the writer only
  rl::atomic<uint32_t> wake_word;
  rl::atomic<uint64_t> admissions;
  rl::atomic<uint64_t> att[kMaxAtt];
  // .bell: untrusted
  rl::atomic<uint32_t> wake_request;
  rl::atomic<uint64_t> rings;
  rl::atomic<uint32_t> bell[kMaxBell];
  // reader segments: CursorLine::position of each reader's line for this ring
  rl::atomic<uint64_t> line[kMaxReaders4];

  bool stuck[kMaxReaders4];  // the slow-consumer timeout ran out for this reader

  // Ghosts
  Reader4* g_reader[kMaxReaders4];
  bool g_check_destroy = false;  // honest scenarios: protected readers lose no byte
  uint64_t g_W = 0, g_tail = 0, g_published = 0;
  unsigned g_evictions[kMaxReaders4];

  void init(unsigned cap_units) {
    cap = cap_units;
    mask = cap_units - 1;
    W($).store(0, rl::mo_relaxed);
    tail($).store(0, rl::mo_relaxed);
    floor($).store(0, rl::mo_relaxed);
    for (unsigned i = 0; i < kMaxUnits; ++i) {
      commit[i]($).store(0, rl::mo_relaxed);
      seq[i]($).store(0, rl::mo_relaxed);
    }
    wake_word($).store(0, rl::mo_relaxed);
    admissions($).store(0, rl::mo_relaxed);
    for (unsigned k = 0; k < kMaxAtt; ++k) att[k]($).store(0, rl::mo_relaxed);
    wake_request($).store(0, rl::mo_relaxed);
    rings($).store(0, rl::mo_relaxed);
    for (unsigned s = 0; s < kMaxBell; ++s) bell[s]($).store(0, rl::mo_relaxed);
    for (unsigned i = 0; i < kMaxReaders4; ++i) {
      line[i]($).store(kNoLine, rl::mo_relaxed);
      stuck[i] = false;
      g_reader[i] = nullptr;
      g_evictions[i] = 0;
    }
    g_check_destroy = false;
    g_W = g_tail = g_published = 0;
  }
};

// ---------------------------------------------------------------------------
// Reader (Subscriber's RingReader under Block, v4)
// ---------------------------------------------------------------------------
struct Reader4 {
  Ring4* r = nullptr;
  uint32_t id = 1;
  uint64_t position = 0, published = 0;
  uint64_t join_point = 0;  // where the first join settled: delivered + losses count from here
  bool joining = false, attached = false;
  int k = -1;         // our attachment
  uint64_t mine = 0;  // its state word when we found it
  uint64_t seen_admissions = 0;
  uint64_t delivered = 0, losses = 0;
  unsigned evictions = 0;
  bool evicted_pending = false;
  bool slices = false;  // sleep in bounded slices (the .bell is writable by others)
  // Ghosts
  bool g_protected = false;
  bool g_honest_bell = true;  // no forger in this scenario: a settled join is protected

  void attach(Ring4& ring, uint32_t who) {
    r = &ring;
    id = who;
    ring.g_reader[who] = this;
  }
  uint64_t cap() const { return r->cap; }

  /// join_at(P) under Block (proposal section 3, reader steps 2..5).
  /// `counted`: a rejoin after an eviction counts what it skips.
  void join_at(uint64_t at, bool counted) {
    position = published = at;
    attached = false;
    k = -1;
    joining = true;
    r->line[id]($).store(at, rl::mo_release);            // step 2: the line first
    ring_bell();                                         // step 3
    const uint64_t t = r->tail($).load(rl::mo_seq_cst);  // step 4: the load half of the Dekker
    if (t > position) {
      if (counted) losses += t - position;
      position = published = t;
      r->line[id]($).store(t, rl::mo_release);
    }
    if (!counted) join_point = position;
    g_protected = g_honest_bell;  // settled: from here on the writer must not destroy >= position
  }

  void ring_bell() {
    if (variants4().slot_overwrite) {
      r->bell[0]($).store(id, rl::mo_seq_cst);
      r->rings($).fetch_add(1, rl::mo_seq_cst);
      return;
    }
    for (unsigned s = 0; s < kMaxBell; ++s) {
      uint32_t e = 0;
      if (r->bell[s]($).compare_exchange_strong(e, id, rl::mo_seq_cst)) break;
    }
    r->rings($).fetch_add(1, rl::mo_seq_cst);  // the store half of the joining Dekker
  }

  /// A reservation made by the ring's creator (section 6): adopt it, fill
  /// the line at 0 and ring the bell with it. True if there was one.
  bool adopt_reservation() {
    (void)r->admissions($).load(rl::mo_acquire);
    for (unsigned kk = 0; kk < kMaxAtt; ++kk) {
      const uint64_t w = r->att[kk]($).load(rl::mo_acquire);
      if (AS::kind(w) == Reserved && AS::who(w) == id) {
        k = int(kk);
        mine = w;
        attached = true;
        joining = false;
        position = published = join_point = 0;
        r->line[id]($).store(0, rl::mo_release);
        ring_bell();
        return true;
      }
    }
    return false;
  }

  /// Step 6: on an empty peek while joining, look for our admission.
  void check_admission() {
    const uint64_t a = r->admissions($).load(rl::mo_acquire);
    if (a == seen_admissions) return;
    seen_admissions = a;
    for (unsigned kk = 0; kk < kMaxAtt; ++kk) {
      const uint64_t w = r->att[kk]($).load(rl::mo_relaxed);
      if (AS::kind(w) == Free || AS::who(w) != id) continue;
      k = int(kk);
      mine = w;
      attached = true;
      joining = false;
      // The writer may have admitted us below the tail it had published:
      // what lies below it may be gone.
      if (!still_valid_at(position)) skip_to_tail();
      g_protected = true;  // admitted: the writer holds our line from now on, forger or not
      return;
    }
  }

  /// What a joining reader validates against: the reuse floor (the fix), or
  /// tail (the proposal's form, --variant validate-by-tail).
  rl::atomic<uint64_t>& frontier() { return variants4().validate_by_tail ? r->tail : r->floor; }

  bool still_valid_at(uint64_t at) {
    rl::atomic_thread_fence(rl::mo_acquire, $);
    return at >= frontier()($).load(rl::mo_relaxed);
  }

  /// After a failed validation (the fence is done): move up to the frontier, counting.
  void skip_to_tail() {
    const uint64_t t = frontier()($).load(rl::mo_relaxed);
    if (t > position) {
      losses += t - position;
      position = t;
    }
    if (position - published >= publish_every(cap())) store_line();
  }

  void store_line() {
    r->line[id]($).store(position, rl::mo_release);
    published = position;
  }

  /// The ownership check: acquire fence, then our attachment's state word.
  bool still_owned() {
    if (k < 0) return false;
    if (!variants4().check_no_fence) rl::atomic_thread_fence(rl::mo_acquire, $);
    const uint64_t w = r->att[k]($).load(rl::mo_relaxed);
    return AS::kind(w) != Free && AS::identity(w) == AS::identity(mine);
  }

  /// Evicted: report it and rejoin at once, keeping our position (what the
  /// rejoin skips is counted).
  void evicted() {
    ++evictions;
    evicted_pending = true;
    g_protected = false;
    join_at(position, true);
  }

  Read peek(Event& out) {
    for (int round = 0; round < kPeekRounds; ++round) {
      const unsigned i = position & r->mask;
      if (r->commit[i]($).load(rl::mo_acquire) != position + 1) {
        if (joining) check_admission();
        if (joining) {
          if (!still_valid_at(position)) {
            skip_to_tail();
            continue;
          }
        } else if (!still_owned()) {
          evicted();
          return Read::Evicted;
        }
        return Read::Empty;
      }
      const uint64_t sequence = r->seq[i]($).load(rl::mo_relaxed);
      if (joining) {
        // Validated after the fact, as a Latest reader does.
        if (!variants4().no_join_validate && !still_valid_at(position)) {
          skip_to_tail();
          continue;
        }
      } else if (!still_owned()) {
        evicted();
        return Read::Evicted;
      }
      out.sequence = sequence;
      out.position = position;
      out.next_position = position + 1;
      return Read::Ok;
    }
    return Read::Empty;
  }

  void release(const Event& ev) {
    position = ev.next_position;
    ++delivered;
    if (position - published >= publish_every(cap())) store_line();
    if (joining && delivered % 2 == 0) check_admission();  // ring.hpp: every 64 reads while joining
  }

  void leave() {
    r->line[id]($).store(kLeft, rl::mo_release);
    g_protected = false;
  }

  bool has_data() {
    const uint64_t c = r->commit[position & r->mask]($).load(rl::mo_acquire);
    if (c == position + 1) return true;
    if (c == 0) return false;
    return r->W($).load(rl::mo_acquire) != position;
  }

  bool ready() {
    if (evicted_pending) return true;
    if (attached && !still_owned()) return true;  // the next read says Evicted
    return has_data();
  }

  /// Subscriber::wait's last step for this ring (section 5, and the fix of
  /// README.md "v4: found in the design"): read the wake word, then request
  /// a wake-up, fence, re-check. True: it sleeps (futex_wait(wake_word, word)).
  bool goes_to_sleep(uint32_t& word) {
    if (variants4().request_first) {
      r->wake_request($).store(1, rl::mo_seq_cst);
      rl::atomic_thread_fence(rl::mo_seq_cst, $);
      word = r->wake_word($).load(rl::mo_acquire);
    } else {
      word = r->wake_word($).load(rl::mo_acquire);
      r->wake_request($).store(1, rl::mo_seq_cst);
      rl::atomic_thread_fence(rl::mo_seq_cst, $);
    }
    if (variants4().no_recheck) return true;
    return !ready();
  }
};

// ---------------------------------------------------------------------------
// Writer (RingWriter under Block, v4)
// ---------------------------------------------------------------------------
struct Writer4 {
  Ring4* r = nullptr;
  uint64_t wp = 0, limit = 0, next_early = 0, tail = 0, floor = 0;
  uint64_t seen_rings = 0;
  uint64_t att_word[kMaxAtt] = {};  // private copy of .ctl's table (only we write it)
  unsigned wakes = 0;

  void attach(Ring4& ring) {
    r = &ring;
    for (unsigned k = 0; k < kMaxAtt; ++k) att_word[k] = 0;
  }
  uint64_t cap() const { return r->cap; }

  /// The ring's creator found a live matching subscription (section 6):
  /// a Reserved attachment holds position 0 for it. Before any write.
  void reserve_for(uint32_t who) {
    for (unsigned k = 0; k < kMaxAtt; ++k) {
      if (AS::kind(att_word[k]) != Free) continue;
      set_att(k, AS::pack(AS::epoch(att_word[k]) + 1, who, Reserved));
      return;
    }
  }

  /// One record of one unit: reserve, commit, end_burst.
  bool publish() {
    const uint64_t needed = wp + 2;  // the record and the next commit word (zeroed)
    if (needed > limit && !refresh_limit(needed, true)) return false;
    check_destroy(wp + 1);
    const unsigned i = wp & r->mask;
    r->seq[i]($).store(wp, rl::mo_relaxed);
    r->commit[(wp + 1) & r->mask]($).store(0, rl::mo_relaxed);
    r->commit[i]($).store(wp + 1, rl::mo_release);
    ++wp;
    r->g_published = wp;
    publish_position();
    refresh_limit_early();
    return true;
  }

  /// Ghost: writing the record at wp destroys positions up to wp + 1 - cap.
  void check_destroy(uint64_t highest) {
    if (!r->g_check_destroy || highest < cap()) return;
    const uint64_t destroyed = highest - cap();
    for (unsigned who = 1; who < kMaxReaders4; ++who) {
      Reader4* rd = r->g_reader[who];
      if (rd && rd->g_protected) RL_ASSERT(destroyed < rd->position);
    }
  }

  void publish_position() {
    r->W($).store(wp, rl::mo_release);
    r->g_W = wp;
    if (variants4().clear_before_fence) {
      take_wake_request();
      rl::atomic_thread_fence(rl::mo_seq_cst, $);
      return;
    }
    rl::atomic_thread_fence(rl::mo_seq_cst, $);
    take_wake_request();
  }

  void take_wake_request() {
    if (r->wake_request($).load(rl::mo_relaxed) == 0) return;
    r->wake_request($).store(0, rl::mo_relaxed);
    wake();
  }

  void wake() {
    r->wake_word($).fetch_add(1, rl::mo_release);  // + futex_wake_all
    ++wakes;
  }

  void refresh_limit_early() {
    if (limit - wp >= publish_every(cap()) || wp < next_early) return;
    next_early = wp + std::max<uint64_t>(1, cap() / 16);
    (void)refresh_limit(wp + 1, false);
  }

  void set_att(unsigned k, uint64_t w) {
    att_word[k] = w;
    r->att[k]($).store(w, rl::mo_release);
  }
  void announce(bool wakes = true) {
    r->admissions($).fetch_add(1, rl::mo_release);
    if (wakes) wake();  // a joiner or an evicted reader may be asleep
  }

  void evict(unsigned k) {
    const uint32_t who = AS::who(att_word[k]);
    set_att(k, AS::pack(AS::epoch(att_word[k]) + 1, 0, Free));
    announce(!variants4().evict_no_wake);
    if (who < kMaxReaders4) {
      ++r->g_evictions[who];
      if (r->g_reader[who]) r->g_reader[who]->g_protected = false;
    }
  }

  void admit_reserved(unsigned k) {
    set_att(k, AS::pack(AS::epoch(att_word[k]), AS::who(att_word[k]), Admitted));
    announce();
  }

  static bool valid_line(uint64_t p, uint64_t wp) { return p != kNoLine && p != kLeft && p <= wp; }

  /// The slowest position the attachments hold (UINT64_MAX: none); evicts a
  /// stuck admitted reader below `blocked_below`.
  uint64_t slowest(uint64_t blocked_below, rl::memory_order order) {
    uint64_t slowest = UINT64_MAX;
    for (unsigned k = 0; k < kMaxAtt; ++k) {
      const uint64_t w = att_word[k];
      const uint64_t kind = AS::kind(w);
      if (kind == Free) continue;
      const uint32_t who = AS::who(w);
      uint64_t pos;
      if (kind == Reserved) {
        if (variants4().ignore_reserved) continue;
        pos = 0;  // admitted_at = 0 until adopted
        if (blocked_below != 0) {
          // Blocked on a reservation: look for its line ourselves (the bell
          // is untrusted).
          const uint64_t p = r->line[who]($).load(order);
          if (valid_line(p, wp)) {
            admit_reserved(k);
            pos = p;
          }
        }
      } else {
        const uint64_t p = r->line[who]($).load(order);
        if (p == kLeft) {
          set_att(k, AS::pack(AS::epoch(w) + 1, 0, Free));
          announce();
          continue;
        }
        if (!valid_line(p, wp)) continue;  // a lie holds nothing back
        pos = p;
        if (blocked_below != 0 && pos < blocked_below && r->stuck[who]) {
          evict(k);
          continue;
        }
      }
      slowest = std::min(slowest, pos);
    }
    return slowest;
  }

  /// Step 3 of refresh_limit: the bell's slots, untrusted.
  void process_bell() {
    for (unsigned s = 0; s < kMaxBell; ++s) {
      const uint32_t who = r->bell[s]($).load(rl::mo_acquire);
      if (who == 0) continue;
      admit(who);
      uint32_t e = who;
      r->bell[s]($).compare_exchange_strong(e, 0, rl::mo_relaxed);  // clear it (ours to write)
    }
  }

  void admit(uint32_t who) {
    if (who >= kMaxReaders4) return;  // garbage: no such segment
    const uint64_t p = r->line[who]($).load(rl::mo_acquire);
    if (!valid_line(p, wp)) return;  // no line for our ring, left, or a lie
    for (unsigned k = 0; k < kMaxAtt; ++k) {
      if (AS::kind(att_word[k]) == Free || AS::who(att_word[k]) != who) continue;
      if (AS::kind(att_word[k]) == Reserved) admit_reserved(k);  // the adoption's fast path
      return;                                                    // else: admitted already
    }
    for (unsigned k = 0; k < kMaxAtt; ++k) {
      if (AS::kind(att_word[k]) != Free) continue;
      set_att(k, AS::pack(AS::epoch(att_word[k]) + 1, who, Admitted));
      announce();
      return;
    }
    // No free attachment: the joiner keeps reading with validation.
  }

  bool refresh_limit(uint64_t needed, bool watch_stuck) {
    const uint64_t blocked_below = watch_stuck && needed > cap() ? needed - cap() : 0;
    uint64_t wanted = wanted_limit(wp, needed, cap(), slowest(blocked_below, rl::mo_acquire));
    if (variants4().limit_before_bell) {
      if (wanted < needed) return false;
      advance_tail(wanted > cap() ? wanted - cap() : 0);
      set_limit(wanted);  // raised before the bell is processed
      rl::atomic_thread_fence(rl::mo_seq_cst, $);
      const uint64_t rg = r->rings($).load(rl::mo_seq_cst);
      if (rg != seen_rings) {
        seen_rings = rg;
        process_bell();
      }
      return true;
    }
    if (wanted >= needed) advance_tail(wanted > cap() ? wanted - cap() : 0);
    // The joining Dekker: tail stored seq_cst (advance_tail), fence, the bell.
    rl::atomic_thread_fence(rl::mo_seq_cst, $);
    const uint64_t rg = r->rings($).load(rl::mo_seq_cst);
    if (rg != seen_rings) {
      seen_rings = rg;
      process_bell();
    }
    // Step 4: re-scan the admitted lines (new admissions included).
    wanted = std::min(wanted, wanted_limit(wp, needed, cap(), slowest(0, rl::mo_seq_cst)));
    if (wanted < needed) return false;
    set_limit(wanted);
    return true;
  }

  /// The reuse floor goes up with the limit, before any byte below it is
  /// reused (release fence: a reader that read reused bytes sees it).
  void set_limit(uint64_t wanted) {
    limit = wanted;
    if (wanted > cap() && wanted - cap() > floor) {
      floor = wanted - cap();
      r->floor($).store(floor, rl::mo_relaxed);
      rl::atomic_thread_fence(rl::mo_release, $);
    }
  }

  void advance_tail(uint64_t bound) {
    if (tail >= bound) return;
    tail = std::min(bound, wp);  // every record is one unit: every position is a record start
    r->tail($).store(tail, rl::mo_seq_cst);
    r->g_tail = tail;
    rl::atomic_thread_fence(rl::mo_release, $);
  }
};

}  // namespace v4
}  // namespace model
