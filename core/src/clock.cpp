// Event time from the TSC. clock_gettime through the vDSO costs 20-35 ns here,
// more than the rest of a publish; rdtsc costs a few. The TSC is used only
// where the CPU says it is invariant (constant_tsc and nonstop_tsc), and its
// frequency is learnt against CLOCK_REALTIME over the process's first 50 ms,
// during which the system clock is used as is.
#include <x86intrin.h>

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

struct Calibration {
  bool usable = false;
  uint64_t first_tsc = 0, first_ns = 0;
  // ns per tick in 32.32 fixed point, once learnt (0 until then).
  std::atomic<uint64_t> ns_per_tick_q32{0};
};

struct CalibrationInit : Calibration {
  CalibrationInit() {
    usable = tsc_is_invariant();
    first_ns = realtime_ns();
    first_tsc = __rdtsc();
  }
};

Calibration& calibration() {
  static CalibrationInit c;  // thread-safe initialisation (magic static)
  return c;
}

__extension__ typedef unsigned __int128 u128;

constexpr uint64_t kLearnNs = 50'000'000;    // learn the frequency over 50 ms
constexpr uint64_t kRebaseTicks = 1ull << 28;  // ~100 ms at 2.5 GHz

struct ThreadBase {
  uint64_t tsc = 0, ns = 0, rebase_at = 0, scale = 0;
};
thread_local ThreadBase t_base;

uint64_t slow_path() noexcept {
  Calibration& c = calibration();
  const uint64_t ns = realtime_ns();
  if (!c.usable) return ns;
  uint64_t scale = c.ns_per_tick_q32.load(std::memory_order_relaxed);  // relaxed: a value, no data behind it
  const uint64_t tsc = __rdtsc();
  if (scale == 0) {
    if (ns - c.first_ns < kLearnNs) return ns;
    scale = uint64_t((static_cast<u128>(ns - c.first_ns) << 32) / (tsc - c.first_tsc));
    c.ns_per_tick_q32.store(scale, std::memory_order_relaxed);
  }
  t_base = {tsc, ns, tsc + kRebaseTicks, scale};
  return ns;
}

}  // namespace

uint64_t unix_now_ns() noexcept {
  const uint64_t tsc = __rdtsc();
  const ThreadBase& b = t_base;
  if (tsc >= b.rebase_at || b.scale == 0) return slow_path();
  return b.ns + uint64_t((static_cast<u128>(tsc - b.tsc) * b.scale) >> 32);
}

}  // namespace flowbus::detail
