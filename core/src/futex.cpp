// Shared futexes: the only syscalls of the data path, and only when a reader sleeps.
#include <linux/futex.h>
#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <ctime>

#include "flowbus/detail/platform.hpp"

#ifndef SYS_futex_waitv
#define SYS_futex_waitv 449
#endif

namespace flowbus::detail {

namespace {
struct WaitV {  // struct futex_waitv (Linux 5.16)
  uint64_t val;
  uint64_t uaddr;
  uint32_t flags;
  uint32_t reserved;
};
constexpr uint32_t kFutex32 = 2;  // FUTEX2_SIZE_U32, shared (no private flag)
}  // namespace

namespace {
std::atomic<uint64_t> g_wake_calls{0};
}  // namespace

bool enable_light_writer_fence() noexcept {
  // FLOWBUS_WAKE=full forces the symmetric protocol (for tests, and for
  // sandboxes that allow membarrier but should not be interrupted by IPIs).
  if (const char* mode = std::getenv("FLOWBUS_WAKE"); mode != nullptr && std::strcmp(mode, "full") == 0) return false;
  // Registration belongs to the process: remember for which pid it was done,
  // so a forked child registers itself.
  static std::atomic<pid_t> registered_for{0};
  const pid_t me = ::getpid();
  if (registered_for.load(std::memory_order_relaxed) == me) return true;  // relaxed: a per-process cache
  if (::syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED, 0, 0) != 0) return false;
  registered_for.store(me, std::memory_order_relaxed);
  return true;
}

bool heavy_barrier() noexcept { return ::syscall(SYS_membarrier, MEMBARRIER_CMD_GLOBAL_EXPEDITED, 0, 0) == 0; }

uint64_t futex_wake_calls() noexcept { return g_wake_calls.load(std::memory_order_relaxed); }

void futex_wake_all(std::atomic<uint32_t>* word) noexcept {
  g_wake_calls.fetch_add(1, std::memory_order_relaxed);  // a statistic: relaxed is enough
  // Not FUTEX_PRIVATE: the word lives in memory shared between processes.
  ::syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
}

void futex_wait_any(const std::atomic<uint32_t>* const* words, const uint32_t* expected, unsigned count,
                    uint64_t timeout_ns) noexcept {
  if (count == 0) return;
  if (count == 1) {
    timespec rel{time_t(timeout_ns / 1000000000ull), long(timeout_ns % 1000000000ull)};
    ::syscall(SYS_futex, reinterpret_cast<const uint32_t*>(words[0]), FUTEX_WAIT, expected[0], &rel, nullptr, 0);
    return;
  }
  WaitV waiters[128];
  if (count > 128) count = 128;
  for (unsigned i = 0; i < count; ++i)
    waiters[i] = {expected[i], reinterpret_cast<uint64_t>(words[i]), kFutex32, 0};
  timespec abs{};
  clock_gettime(CLOCK_MONOTONIC, &abs);
  const uint64_t end = uint64_t(abs.tv_sec) * 1000000000ull + uint64_t(abs.tv_nsec) + timeout_ns;
  abs.tv_sec = time_t(end / 1000000000ull);
  abs.tv_nsec = long(end % 1000000000ull);
  if (::syscall(SYS_futex_waitv, waiters, count, 0, &abs, CLOCK_MONOTONIC) == -1 && errno == ENOSYS) {
    // Kernels before 5.16: wait on the first word, but wake up often to look at the rest.
    const uint64_t slice = timeout_ns < 1000000 ? timeout_ns : 1000000;
    timespec rel{0, long(slice)};
    ::syscall(SYS_futex, reinterpret_cast<const uint32_t*>(words[0]), FUTEX_WAIT, expected[0], &rel, nullptr, 0);
  }
}

}  // namespace flowbus::detail
