// Event time on this machine's TSC (the clock itself is event_clock.hpp).
// clock_gettime through the vDSO costs 20-35 ns here, more than the rest of a
// publish; rdtsc costs ~10. The TSC is used only where the CPU says it is
// invariant (constant_tsc and nonstop_tsc) and can say which CPU a reading
// came from: `rdpid` around `rdtsc` (free here), else `rdtscp` (~10 ns more).
#include <cpuid.h>
#include <x86intrin.h>

#include <cstdio>
#include <cstring>
#include <optional>

#include "event_clock.hpp"
#include "flowbus/detail/platform.hpp"

namespace flowbus::detail {

namespace {

bool tsc_is_invariant() {
  FILE* f = std::fopen("/proc/cpuinfo", "r");
  if (f == nullptr) return false;
  char line[4096];
  bool constant = false, nonstop = false;
  while (std::fgets(line, sizeof line, f)) {
    if (std::strncmp(line, "flags", 5) != 0) continue;
    constant = std::strstr(line, " constant_tsc") != nullptr;
    nonstop = std::strstr(line, " nonstop_tsc") != nullptr;
    break;
  }
  std::fclose(f);
  return constant && nonstop;
}

bool cpu_has_rdpid() {
  unsigned a, b, c, d;
  return __get_cpuid_count(7, 0, &a, &b, &c, &d) && (c & (1u << 22)) != 0;
}

bool cpu_has_rdtscp() {
  unsigned a, b, c, d;
  return __get_cpuid(0x80000001, &a, &b, &c, &d) && (d & (1u << 27)) != 0;
}

// Set once, before any thread has a base (until then every reading takes the
// slow path, which makes the clock first). Relaxed: a plain flag, no data behind it.
std::atomic<bool> g_use_rdpid{false};

uint32_t rdpid() noexcept {
  uint64_t id;
  asm volatile("rdpid %0" : "=r"(id));
  return uint32_t(id);  // Linux keeps (node << 12) | cpu in TSC_AUX
}

struct HardwareSource {
  static Tick tick() noexcept {
    if (g_use_rdpid.load(std::memory_order_relaxed)) [[likely]] {
      // Both ids equal: the rdtsc between ran on that CPU (a move there and
      // back between three instructions would take two preemptions).
      const uint32_t before = rdpid();
      const uint64_t tsc = __rdtsc();
      const uint32_t after = rdpid();
      return {tsc, before == after ? before : Tick::kNoCpu};
    }
    unsigned aux;
    const uint64_t tsc = __rdtscp(&aux);  // the TSC and its CPU in one instruction
    return {tsc, aux};
  }
  static uint64_t monotonic_ns() noexcept { return monotonic_now_ns(); }
  static uint64_t realtime_ns() noexcept { return detail::realtime_ns(); }
};

using HardwareClock = EventClock<HardwareSource>;

/// The process's clock, made at the first slow-path reading; none where the
/// TSC cannot be trusted (event time is then CLOCK_REALTIME).
std::optional<HardwareClock>& process_clock() {
  static std::optional<HardwareClock> clock = []() -> std::optional<HardwareClock> {
    const bool rdpid_ok = cpu_has_rdpid();
    if (!tsc_is_invariant() || !(rdpid_ok || cpu_has_rdtscp())) return std::nullopt;
    g_use_rdpid.store(rdpid_ok, std::memory_order_relaxed);  // before the clock's first reading
    return std::optional<HardwareClock>(std::in_place);  // spins 2 ms to learn the rate
  }();  // thread-safe initialisation (magic static)
  return clock;
}

thread_local ClockBase t_base;

uint64_t slow_path() noexcept {
  std::optional<HardwareClock>& clock = process_clock();
  return clock ? clock->rebase(t_base) : realtime_ns();
}

}  // namespace

bool event_clock_uses_tsc() noexcept { return t_base.rebase_ticks != 0; }

uint64_t unix_now_ns() noexcept { return HardwareClock::now(t_base, slow_path); }

}  // namespace flowbus::detail
