// What `flowbus perf latency` and `flowbus perf throughput` share: pinning,
// option lists, a clock readable across processes, and child processes.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace flowbus::perf {

/// Pins the calling thread to the `index`-th CPU it may run on, wrapping
/// around when there are fewer. Best effort: a 1-CPU machine runs unpinned.
void pin_to_cpu(int index);
/// The number of CPUs this process may run on.
int usable_cpus();

/// "64,4096" -> {"64", "4096"}; empty items are dropped.
std::vector<std::string> split_list(const std::string& text, char separator = ',');

/// CLOCK_MONOTONIC in ns: the same clock in every process of the host.
uint64_t monotonic_ns();

/// Forks a child that pins itself to CPU `cpu` and runs `body`; the child
/// exits 0, or 1 with the message on stderr if `body` throws.
pid_t fork_pinned(int cpu, const char* role, const std::function<void()>& body);
/// Waits for `pid`; throws naming `role` unless it exited 0.
void wait_child(pid_t pid, const std::string& role);

}  // namespace flowbus::perf
