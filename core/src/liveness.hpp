// Is a process alive, and is it still the same process? pid + start time.
#pragma once

#include <cstdint>
#include <sys/types.h>

namespace flowbus::detail {

/// Start time of `pid` in clock ticks since boot (field 22 of /proc/pid/stat),
/// or 0 if there is no such process.
uint64_t process_start_time(pid_t pid) noexcept;

/// True while `pid` exists and started at `start_time` (0 = don't check).
/// A kill() and a /proc read: never on a hot path.
bool process_alive(pid_t pid, uint64_t start_time) noexcept;

/// How many times this process called process_alive (tests: a blocked
/// writer's retries must not probe each time).
uint64_t process_alive_calls() noexcept;

}  // namespace flowbus::detail
