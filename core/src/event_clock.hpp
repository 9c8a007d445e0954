// Event time from the TSC, over any source of (tick, cpu) readings so tests
// can drive it with a made-up one. clock.cpp instantiates it on the hardware.
//
// Every CPU's TSC runs at one rate, but a VM's vCPUs may each count from
// their own offset (CI saw two 480 µs apart), so a reading is only ever
// compared with an earlier reading of the same CPU. A thread keeps a base
// (tick, Unix ns) for the CPU it was on; a reading from another CPU, or one
// taken across a migration, rebases on the system clock (a clock_gettime per
// migration, not per event).
//
// The rate is learnt against the monotonic clock (slewed by NTP like the
// system clock, never stepped): a first estimate over 2 ms of spinning when
// the process first asks for event time (creating a Publisher does, so no
// publish waits), refined at each rebase on the same CPU from the whole span
// since then. Each thread rebases on the system clock every ~100 ms, sooner
// while the estimate is young, so event time stays within a microsecond or so
// of the system clock.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>

namespace flowbus::detail {

/// A TSC reading and the CPU whose TSC it is (kNoCpu: the thread moved while
/// it was read, so it belongs to no CPU).
struct Tick {
  static constexpr uint32_t kNoCpu = UINT32_MAX;
  uint64_t tsc = 0;
  uint32_t cpu = kNoCpu;
};

/// A thread's base: event time is ns + (tsc - base tsc) * scale while the
/// thread stays on `cpu` and within `rebase_ticks` of the base.
struct ClockBase {
  uint64_t tsc = 0, ns = 0;
  uint64_t rebase_ticks = 0;    // 0: the next reading rebases (no base yet)
  uint64_t scale = 0;           // ns per tick, 32.32 fixed point
  uint32_t cpu = Tick::kNoCpu;
};

/// Source: static Tick tick(), uint64_t monotonic_ns(), uint64_t realtime_ns().
template <class Source>
class EventClock {
 public:
  static constexpr uint64_t kFirstLearnNs = 2'000'000;  // the first estimate: 2 ms of spinning, once per process
  static constexpr uint64_t kRebaseNs = 100'000'000;    // rebase on the system clock every 100 ms...
  static constexpr uint64_t kRebasePerLearnt = 8;       // ...or sooner: 8x the span the rate was learnt over

  EventClock() {
    first_ = Pair::now(Source::monotonic_ns);
    Pair last;
    for (;;) {
      last = Pair::now(Source::monotonic_ns);
      if (last.cpu != first_.cpu || last.tsc <= first_.tsc) {
        first_ = last;  // moved to another CPU: its TSC may count from elsewhere; start again there
        continue;
      }
      if (last.ns - first_.ns >= kFirstLearnNs) break;
    }
    scale_.store(scale_between(first_, last), std::memory_order_relaxed);
    learnt_over_ns_.store(last.ns - first_.ns, std::memory_order_relaxed);
  }

  /// The hot path: one reading, one compare, a multiply. `slow` (which
  /// rebases b, normally on this clock) runs only when b does not cover the
  /// reading; it is a parameter so the hot path never touches the clock object.
  template <class Slow>
  static uint64_t now(const ClockBase& b, Slow&& slow) noexcept {
    const Tick t = Source::tick();
    // Unsigned: a TSC behind the base (never on one CPU) is a huge difference and rebases too.
    const uint64_t since = t.tsc - b.tsc;
    if (t.cpu == b.cpu && since < b.rebase_ticks) [[likely]]
      return b.ns + uint64_t((static_cast<u128>(since) * b.scale) >> 32);
    return slow();
  }

  /// Rebases `b` on the system clock on the CPU the thread is on now.
  uint64_t rebase(ClockBase& b) noexcept {
    uint64_t learnt = learnt_over_ns_.load(std::memory_order_relaxed);
    uint64_t scale = scale_.load(std::memory_order_relaxed);
    // The longer the span since the first pair, the better the rate: refine it
    // once the span has doubled since the last estimate. Only a pair on the
    // first pair's CPU measures the rate; elsewhere the offset would be in it.
    const Pair mono = Pair::now(Source::monotonic_ns);
    if (mono.cpu == first_.cpu && mono.tsc > first_.tsc && mono.ns - first_.ns >= 2 * learnt) {
      learnt = mono.ns - first_.ns;
      scale = scale_between(first_, mono);
      scale_.store(scale, std::memory_order_relaxed);
      learnt_over_ns_.store(learnt, std::memory_order_relaxed);
    }
    const uint64_t rebase_ns = std::min(kRebaseNs, kRebasePerLearnt * learnt);
    const Pair base = Pair::now(Source::realtime_ns);
    // A pair of no CPU gets no span: the next reading rebases again.
    const uint64_t ticks = base.cpu == Tick::kNoCpu ? 0 : uint64_t((static_cast<u128>(rebase_ns) << 32) / scale);
    b = {base.tsc, base.ns, ticks, scale, base.cpu};
    return base.ns;
  }

 private:
  __extension__ typedef unsigned __int128 u128;

  /// A TSC reading and a clock read taken together: the tick halfway between
  /// two readings around the clock read, of the tightest of four tries whose
  /// two readings are of one CPU (a vCPU descheduled inside one try would skew
  /// the rate by far more than the 2 ms it is first learnt over can absorb).
  /// If every try straddles a migration, the pair has no CPU and no base made
  /// from it matches a reading: the next event time rebases again.
  struct Pair {
    uint64_t tsc = 0, ns = 0;
    uint32_t cpu = Tick::kNoCpu;
    static Pair now(uint64_t (*clock)() noexcept) noexcept {
      Pair best;
      uint64_t best_window = UINT64_MAX;
      for (int attempt = 0; attempt < 4; ++attempt) {
        const Tick before = Source::tick();
        const uint64_t ns = clock();
        const Tick after = Source::tick();
        if (before.cpu != after.cpu || before.cpu == Tick::kNoCpu || after.tsc < before.tsc) continue;
        if (after.tsc - before.tsc < best_window) {
          best_window = after.tsc - before.tsc;
          best = {before.tsc + (after.tsc - before.tsc) / 2, ns, before.cpu};
        }
      }
      if (best.cpu == Tick::kNoCpu) best.ns = clock();  // still a correct time, just no TSC base
      return best;
    }
  };

  /// ns per tick in 32.32 fixed point from two pairs of one CPU.
  static uint64_t scale_between(const Pair& a, const Pair& b) noexcept {
    return uint64_t((static_cast<u128>(b.ns - a.ns) << 32) / (b.tsc - a.tsc));
  }

  Pair first_;  // written once, by the constructor
  // Relaxed atomics: plain values shared by threads, no data behind them; a
  // thread that reads a new scale with an old span only rebases a bit early.
  std::atomic<uint64_t> scale_{0};
  std::atomic<uint64_t> learnt_over_ns_{0};
};

}  // namespace flowbus::detail
