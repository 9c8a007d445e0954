// Event time from the TSC. clock_gettime through the vDSO costs 20-35 ns here,
// more than the rest of a publish; rdtsc costs a few. The TSC is used only
// where the CPU says it is invariant (constant_tsc and nonstop_tsc).
//
// Its rate is learnt against CLOCK_MONOTONIC (slewed by NTP like the system
// clock, never stepped): a first estimate over 2 ms of spinning when the
// process first asks for event time (creating a Publisher does, so no publish
// waits), refined at each rebase from the whole span since then. Each thread
// rebases on CLOCK_REALTIME every ~100 ms, sooner while the estimate is
// young, so event time stays within a microsecond or so of the system clock.
#include <x86intrin.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>

#include "flowbus/detail/platform.hpp"

namespace flowbus::detail {

namespace {

bool tsc_is_invariant() {
  FILE* f = std::fopen("/proc/cpuinfo", "r");
  if (f == nullptr) return false;
  char line[4096];
  bool constant = false, nonstop = false;
  while (std::fgets(line, sizeof line, f) && !(constant && nonstop)) {
    if (std::strncmp(line, "flags", 5) != 0) continue;
    constant = std::strstr(line, " constant_tsc") != nullptr;
    nonstop = std::strstr(line, " nonstop_tsc") != nullptr;
    break;
  }
  std::fclose(f);
  return constant && nonstop;
}

__extension__ typedef unsigned __int128 u128;

constexpr uint64_t kFirstLearnNs = 2'000'000;  // the first estimate: 2 ms of spinning, once per process
constexpr uint64_t kRebaseNs = 100'000'000;    // rebase on the system clock every 100 ms...
constexpr uint64_t kRebasePerLearnt = 8;       // ...or sooner: 8x the span the rate was learnt over

/// A TSC reading and a system clock read taken together: the TSC halfway
/// between two reads around the clock read, of the tightest of four tries
/// (a vCPU descheduled inside one try would skew the rate by far more than
/// the 2 ms it is first learnt over can absorb).
struct ClockPair {
  uint64_t tsc = 0, ns = 0;
  static ClockPair now(uint64_t (*clock)() noexcept = monotonic_now_ns) noexcept {
    ClockPair best;
    uint64_t best_window = UINT64_MAX;
    for (int attempt = 0; attempt < 4; ++attempt) {
      const uint64_t before = __rdtsc();
      const uint64_t ns = clock();
      const uint64_t after = __rdtsc();
      if (after - before < best_window) {
        best_window = after - before;
        best = {before + (after - before) / 2, ns};
      }
    }
    return best;
  }
};

/// ns per tick in 32.32 fixed point from two pairs.
uint64_t scale_between(const ClockPair& a, const ClockPair& b) noexcept {
  return uint64_t((static_cast<u128>(b.ns - a.ns) << 32) / (b.tsc - a.tsc));
}

struct Calibration {
  bool usable = false;
  ClockPair first;
  // Relaxed atomics: plain values shared by threads, no data behind them; a
  // thread that reads a new scale with an old span only rebases a bit early.
  std::atomic<uint64_t> ns_per_tick_q32{0};
  std::atomic<uint64_t> learnt_over_ns{0};
};

struct CalibrationInit : Calibration {
  CalibrationInit() {
    usable = tsc_is_invariant();
    if (!usable) return;
    first = ClockPair::now();
    ClockPair last;
    do last = ClockPair::now();
    while (last.ns - first.ns < kFirstLearnNs || last.tsc <= first.tsc);
    ns_per_tick_q32.store(scale_between(first, last), std::memory_order_relaxed);
    learnt_over_ns.store(last.ns - first.ns, std::memory_order_relaxed);
  }
};

Calibration& calibration() {
  static CalibrationInit c;  // thread-safe initialisation (magic static)
  return c;
}

struct ThreadBase {
  uint64_t tsc = 0, ns = 0, rebase_at = 0, scale = 0;
};
thread_local ThreadBase t_base;

uint64_t slow_path() noexcept {
  Calibration& c = calibration();
  if (!c.usable) return realtime_ns();
  // The longer the span since the first pair, the better the rate: refine it
  // once the span has doubled since the last estimate.
  const ClockPair now = ClockPair::now();
  uint64_t learnt = c.learnt_over_ns.load(std::memory_order_relaxed);
  uint64_t scale = c.ns_per_tick_q32.load(std::memory_order_relaxed);
  if (now.ns - c.first.ns >= 2 * learnt && now.tsc > c.first.tsc) {
    learnt = now.ns - c.first.ns;
    scale = scale_between(c.first, now);
    c.ns_per_tick_q32.store(scale, std::memory_order_relaxed);
    c.learnt_over_ns.store(learnt, std::memory_order_relaxed);
  }
  const uint64_t rebase_ns = std::min(kRebaseNs, kRebasePerLearnt * learnt);
  const uint64_t rebase_ticks = uint64_t((static_cast<u128>(rebase_ns) << 32) / scale);
  const ClockPair base = ClockPair::now(realtime_ns);
  t_base = {base.tsc, base.ns, base.tsc + rebase_ticks, scale};
  return base.ns;
}

}  // namespace

bool event_clock_uses_tsc() noexcept { return t_base.scale != 0; }

uint64_t unix_now_ns() noexcept {
  const uint64_t tsc = __rdtsc();
  const ThreadBase& b = t_base;
  if (tsc >= b.rebase_at || b.scale == 0) return slow_path();
  return b.ns + uint64_t((static_cast<u128>(tsc - b.tsc) * b.scale) >> 32);
}

}  // namespace flowbus::detail
