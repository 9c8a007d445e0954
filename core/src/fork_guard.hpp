// Handles belong to the process that made them. A child made by fork()
// inherits their memory, not what they own in shared memory (a ring, cursors,
// a participant slot): those are still the parent's, and the parent may go on
// using them. So in the child every call on an inherited handle is refused,
// and its destructor lets go of local memory only. The child opens the bus
// again (docs/design.md, "Handles and fork()").
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <string>

namespace flowbus::detail {

/// Bumped in each fork() child (pthread_atfork): a handle made under another
/// value was inherited.
extern std::atomic<uint32_t> g_process_incarnation;

/// Relaxed: only the child's own thread bumps it, before fork() returns there,
/// and no other thread of the parent exists in the child.
inline uint32_t process_incarnation() noexcept { return g_process_incarnation.load(std::memory_order_relaxed); }

/// "this <what> was made by pid <owner> before fork(); ..." : what to do.
std::string inherited_handle_message(const char* what, pid_t owner);

}  // namespace flowbus::detail
