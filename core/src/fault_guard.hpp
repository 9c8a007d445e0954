// The fault guard: a process-wide SIGBUS handler for mappings that a less
// trusted process can truncate (docs/proposals/least-privilege.md, section 5).
//
// Why: a process that may write a shared file may also ftruncate it. A writer
// that maps reader-writable memory (`.bell`, reader segments) would then die
// of SIGBUS at its next load of a page past the new end of file. Inside a
// guarded range such a fault instead maps a private zero page over the
// faulting page: the load retries and reads 0, and the range is flagged
// damaged, for its owner to notice and recreate the segment.
//
// Limits:
// * Only SIGBUS with si_code BUS_ADRERR (a page past EOF, or tmpfs out of
//   space) is absorbed. SIGSEGV (an munmap, a write through a read-only
//   mapping) is not, nor a hardware memory error, nor a SIGBUS sent by kill().
// * A repaired page is private anonymous memory: writes to it no longer reach
//   the file, and it stays mapped until the owner munmaps the range (munmap
//   of the whole range frees the zero pages too).
// * A syscall given a pointer into a truncated page fails with EFAULT; the
//   kernel raises no signal, so nothing is repaired or flagged.
// * A thread that blocks SIGBUS (a sigfillset mask for worker threads) is
//   not protected: the kernel then resets SIGBUS to SIG_DFL and the process
//   dies at the fault.
// * A repair replaces the whole page: guard whole pages of one mapping.
// * A range must be unregistered (GuardedRange destroyed) only once no thread
//   can still load from it, and before it is unmapped: the same rule munmap
//   has. The handler never synchronizes with unregistration beyond that.
// * An application that installs its own SIGBUS handler after the first
//   guard_mapping() must chain to the previous one, as sanitizers do, or the
//   guard is off.
#pragma once

#include <cstddef>
#include <cstdint>

namespace flowbus::detail {

/// How many ranges may be guarded at once, in the whole process: every ring
/// a process publishes or reads maps its bell through the guard (a bus holds
/// up to 512 rings, a process may open several buses).
inline constexpr size_t kGuardedRangeCapacity = 4096;

/// A registered range [base, base + len): unregistered on destruction. An
/// empty one (default or moved-from) guards nothing.
class GuardedRange {
 public:
  GuardedRange() noexcept = default;
  GuardedRange(GuardedRange&& other) noexcept : slot_(other.slot_) { other.slot_ = -1; }
  GuardedRange& operator=(GuardedRange&& other) noexcept;
  GuardedRange(const GuardedRange&) = delete;
  GuardedRange& operator=(const GuardedRange&) = delete;
  ~GuardedRange() { reset(); }

  /// True once a fault in the range was repaired (acquire: the zero page is
  /// in place when this says so).
  bool damaged() const noexcept { return repairs() != 0; }
  /// How many faults in the range were repaired (one per page, usually).
  uint32_t repairs() const noexcept;
  bool active() const noexcept { return slot_ >= 0; }
  /// Unregisters now; the range is empty after.
  void reset() noexcept;

 private:
  friend GuardedRange guard_mapping(const void* base, size_t len);
  explicit GuardedRange(int slot) noexcept : slot_(slot) {}
  int slot_ = -1;
};

/// Guards [base, base + len), a mapping of a file that another process may
/// truncate. Installs the SIGBUS handler the first time (thread-safe), saving
/// the previous action, to which faults outside every guarded range go.
/// Throws flowbus::Error: NoSpace when kGuardedRangeCapacity ranges are
/// guarded already, InvalidArgument for an empty range, System if sigaction fails.
GuardedRange guard_mapping(const void* base, size_t len);

}  // namespace flowbus::detail
