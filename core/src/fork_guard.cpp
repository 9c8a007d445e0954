// The process incarnation that fork_guard.hpp checks handles against.
#include "fork_guard.hpp"

#include <pthread.h>

namespace flowbus::detail {

std::atomic<uint32_t> g_process_incarnation{0};

namespace {

void bump_in_child() noexcept { g_process_incarnation.fetch_add(1, std::memory_order_relaxed); }

// Registered when the library is loaded: this file is always linked, since
// every handle reads g_process_incarnation.
[[maybe_unused]] const int g_registered = pthread_atfork(nullptr, nullptr, bump_in_child);

}  // namespace

std::string inherited_handle_message(const char* what, pid_t owner) {
  return std::string("this ") + what + " was made by pid " + std::to_string(owner) +
         " and came to this process through fork(); it still belongs to pid " + std::to_string(owner) +
         ": open the bus again in this process (after daemonizing, open the bus in the child)";
}

}  // namespace flowbus::detail
