// Clocks and futex calls used by the ring protocol.
//
// Internal: publisher.hpp and subscriber.hpp include this so the hot path
// inlines. Not API: user code needs nothing from it, and it may change in any
// release (flowbus/flowbus.hpp is the API).
#pragma once

#include <atomic>
#include <cstdint>
#include <ctime>

namespace flowbus::detail {

/// CLOCK_REALTIME in ns since the Unix epoch (vDSO, no syscall; ~20-35 ns).
inline uint64_t realtime_ns() noexcept {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
}

/// Event time: ns since the Unix epoch, from the TSC where it is invariant
/// (a few ns), rebased on CLOCK_REALTIME every ~100 ms per thread, so it
/// stays within about a microsecond of the system clock. The process's first
/// call spins 2 ms to learn the TSC rate (Publisher creation makes it). A
/// reading is only compared with readings of the same CPU. See event_clock.hpp.
uint64_t unix_now_ns() noexcept;

/// True once this thread's unix_now_ns() reads the TSC rather than the system
/// clock (tests prove with it that no publish pays clock_gettime).
bool event_clock_uses_tsc() noexcept;

/// Timeouts and slow-consumer watches: monotonic, shared by every process on the host.
inline uint64_t monotonic_now_ns() noexcept {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
}

/// A spin-wait hint: the core stops issuing loads for a few dozen cycles.
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

/// The writer's half of the asymmetric wake-up fence: registers this process
/// for MEMBARRIER_CMD_GLOBAL_EXPEDITED once. False if the kernel refuses (then
/// writers fall back to a full fence per publish).
bool enable_light_writer_fence() noexcept;
/// The sleeper's half: makes every registered process execute a full memory
/// barrier. False if the kernel refuses.
bool heavy_barrier() noexcept;

/// Wakes every process sleeping on `word` (a shared futex).
void futex_wake_all(std::atomic<uint32_t>* word) noexcept;

/// futex_wake_all calls made by this process so far (tests prove with it that
/// publishing makes no syscall while nobody sleeps).
uint64_t futex_wake_calls() noexcept;

/// Sleeps while *words[i] == expected[i] for all i, up to timeout_ns.
/// Returns early on any wake, signal or change. At most 128 words.
void futex_wait_any(const std::atomic<uint32_t>* const* words, const uint32_t* expected, unsigned count,
                    uint64_t timeout_ns) noexcept;

}  // namespace flowbus::detail
