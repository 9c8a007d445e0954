// The fault guard's table and SIGBUS handler (fault_guard.hpp says why).
// The handler uses only lock-free atomics and async-signal-safe calls: no
// lock, no allocation, nothing a sanitizer instruments in a way that could
// deadlock (mmap is a raw syscall, so no interceptor runs).
#include "fault_guard.hpp"

#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <string>

#include "flowbus/error.hpp"

namespace flowbus::detail {

namespace {

struct Slot {
  // Owner side only: claimed by guard_mapping (CAS, acquire), given back by
  // reset (release) after begin and end are cleared. The handler never reads it.
  std::atomic<bool> claimed{false};
  // A seqlock over begin and end, odd while the owner rewrites them. The
  // even store (release) pairs with the handler's first load (acquire). A
  // changing slot is skipped: by the rule in fault_guard.hpp no load in a
  // range being registered or unregistered may fault, so it is not the one sought.
  std::atomic<uint32_t> sequence{0};
  // Stored (release) after the odd sequence, loaded (acquire) before the
  // handler's second load of it: a bound being rewritten shows as a changed
  // sequence. No fences: TSan does not model them. begin == end: free.
  std::atomic<uintptr_t> begin{0};
  std::atomic<uintptr_t> end{0};
  // Repairs: the handler's fetch_add (release, after the zero page is mapped)
  // pairs with repairs() (acquire). Cleared by the owner when it claims the slot.
  std::atomic<uint32_t> repairs{0};
};
static_assert(std::atomic<uintptr_t>::is_always_lock_free && std::atomic<uint32_t>::is_always_lock_free &&
              std::atomic<bool>::is_always_lock_free);

std::array<Slot, kGuardedRangeCapacity> g_slots;
// Written once, before our handler is installed (sigaction is the barrier:
// the kernel installs the handler after the store), then only read.
struct sigaction g_previous {};
uintptr_t g_page_size = 0;  // the same

void publish(Slot& slot, uintptr_t begin, uintptr_t end) noexcept {
  const uint32_t s = slot.sequence.load(std::memory_order_relaxed);  // only the owner writes it
  slot.sequence.store(s + 1, std::memory_order_relaxed);
  slot.begin.store(begin, std::memory_order_release);  // odd before the new bounds
  slot.end.store(end, std::memory_order_release);
  slot.sequence.store(s + 2, std::memory_order_release);  // the bounds before even
}

// Maps a zero page over `addr`'s page if a guarded range holds it.
bool repair(uintptr_t addr) noexcept {
  for (Slot& slot : g_slots) {
    const uint32_t s = slot.sequence.load(std::memory_order_acquire);
    if (s & 1) continue;
    const uintptr_t begin = slot.begin.load(std::memory_order_acquire);
    const uintptr_t end = slot.end.load(std::memory_order_acquire);
    if (slot.sequence.load(std::memory_order_relaxed) != s || addr < begin || addr >= end) continue;
    const uintptr_t page = addr & ~(g_page_size - 1);
    // Private anonymous: zeroes, and nothing written to it reaches the file.
    // Read-write whatever the mapping was: the owner may store to it.
    const long mapped =
        ::syscall(SYS_mmap, page, g_page_size, PROT_READ | PROT_WRITE, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mapped != static_cast<long>(page)) return false;  // ENOMEM (map count): die as without the guard
    slot.repairs.fetch_add(1, std::memory_order_release);
    return true;
  }
  return false;
}

// Hands a fault we do not absorb to whoever had SIGBUS before us (its
// sa_mask, SA_NODEFER and SA_RESETHAND are not emulated).
void chain(int sig, siginfo_t* info, void* context) noexcept {
  if (g_previous.sa_flags & SA_SIGINFO) {
    g_previous.sa_sigaction(sig, info, context);  // sanitizers' handlers come this way
    return;
  }
  const bool sent = info->si_code <= 0;                  // SI_USER, SI_QUEUE, SI_TKILL: kill(), not a fault
  if (g_previous.sa_handler == SIG_IGN && sent) return;  // ignored, as before us
  if (g_previous.sa_handler != SIG_DFL && g_previous.sa_handler != SIG_IGN) {
    g_previous.sa_handler(sig);
    return;
  }
  // SIG_DFL, or SIG_IGN for a fault (which the kernel does not let be
  // ignored): die of SIGBUS as without us. The signal stays blocked until
  // this handler returns, so the raised one is delivered to SIG_DFL then,
  // at the faulting instruction (a core dump shows the real fault).
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  ::sigaction(SIGBUS, &dfl, nullptr);
  ::raise(SIGBUS);
}

void on_sigbus(int sig, siginfo_t* info, void* context) {
  const int saved_errno = errno;  // the interrupted code may be about to read it
  // BUS_ADRERR: a page past EOF (truncation) or tmpfs out of space. Not
  // BUS_ADRALN, BUS_OBJERR, BUS_MCEERR_* (hardware) nor a sent signal.
  const bool absorbed = info->si_code == BUS_ADRERR && repair(reinterpret_cast<uintptr_t>(info->si_addr));
  errno = saved_errno;
  if (!absorbed) chain(sig, info, context);
}

void install() {
  g_page_size = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  if (::sigaction(SIGBUS, nullptr, &g_previous) != 0)
    throw Error(ErrorCode::System, std::string("fault guard: sigaction(SIGBUS): ") + std::strerror(errno));
  struct sigaction ours {};
  ours.sa_sigaction = on_sigbus;
  sigemptyset(&ours.sa_mask);
  // SA_SIGINFO: the faulting address and si_code. SA_ONSTACK: a thread's
  // alternate stack if it has one (Go and other runtimes with small thread
  // stacks require it of every handler). No SA_NODEFER: a SIGBUS inside the
  // handler (only a chained handler could fault) finds SIGBUS blocked, so
  // the kernel kills the process, and chain() relies on the raised SIGBUS
  // waiting until it returns. No SA_RESETHAND: every fault must be caught.
  ours.sa_flags = SA_SIGINFO | SA_ONSTACK;
  struct sigaction now {};
  if (::sigaction(SIGBUS, &ours, nullptr) != 0 || ::sigaction(SIGBUS, nullptr, &now) != 0)
    throw Error(ErrorCode::System, std::string("fault guard: sigaction(SIGBUS): ") + std::strerror(errno));
  // ASan with handle_sigbus=2 keeps SIGBUS to itself and drops our sigaction
  // without an error: better a clear error now than a crash at the first fault.
  if (!(now.sa_flags & SA_SIGINFO) || now.sa_sigaction != on_sigbus)
    throw Error(ErrorCode::System,
                "fault guard: our SIGBUS handler did not stay installed (ASAN_OPTIONS=handle_sigbus=2?)");
}

}  // namespace

GuardedRange guard_mapping(const void* base, size_t len) {
  const auto begin = reinterpret_cast<uintptr_t>(base);
  if (base == nullptr || len == 0 || begin + len < begin)
    throw Error(ErrorCode::InvalidArgument, "fault guard: an empty or wrapping range");
  static const bool installed = (install(), true);  // once, thread-safe; retried if it threw
  (void)installed;
  for (size_t i = 0; i < g_slots.size(); ++i) {
    Slot& slot = g_slots[i];
    bool expected = false;
    if (!slot.claimed.compare_exchange_strong(expected, true, std::memory_order_acquire)) continue;
    slot.repairs.store(0, std::memory_order_relaxed);  // before the bounds are published
    publish(slot, begin, begin + len);
    return GuardedRange(static_cast<int>(i));
  }
  throw Error(ErrorCode::NoSpace, "fault guard: " + std::to_string(kGuardedRangeCapacity) +
                                      " mappings are guarded already (each ring a process publishes or "
                                      "reads takes one); close some publishers or subscribers");
}

GuardedRange& GuardedRange::operator=(GuardedRange&& other) noexcept {
  if (this != &other) {
    reset();
    slot_ = other.slot_;
    other.slot_ = -1;
  }
  return *this;
}

uint32_t GuardedRange::repairs() const noexcept {
  return slot_ < 0 ? 0 : g_slots[size_t(slot_)].repairs.load(std::memory_order_acquire);
}

void GuardedRange::reset() noexcept {
  if (slot_ < 0) return;
  Slot& slot = g_slots[size_t(slot_)];
  publish(slot, 0, 0);
  slot.claimed.store(false, std::memory_order_release);
  slot_ = -1;
}

}  // namespace flowbus::detail
