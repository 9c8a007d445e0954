#include "harness.hpp"

#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <ctime>
#include <sstream>

#include "transports.hpp"

namespace flowbus::perf {

namespace {

std::vector<int> allowed_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::vector<int> cpus;
  if (sched_getaffinity(0, sizeof set, &set) == 0)
    for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu)
      if (CPU_ISSET(cpu, &set)) cpus.push_back(cpu);
  return cpus;
}

}  // namespace

void pin_to_cpu(int index) {
  // Read once, before any pinning narrows this process's own mask.
  static const std::vector<int> cpus = allowed_cpus();
  if (cpus.size() < 2) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpus[size_t(index) % cpus.size()], &set);
  (void)sched_setaffinity(0, sizeof set, &set);
}

int usable_cpus() { return int(allowed_cpus().size()); }

std::vector<std::string> split_list(const std::string& text, char separator) {
  std::vector<std::string> out;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, separator);)
    if (!item.empty()) out.push_back(item);
  return out;
}

uint64_t monotonic_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000000000u + uint64_t(ts.tv_nsec);
}

pid_t fork_pinned(int cpu, const char* role, const std::function<void()>& body) {
  std::fflush(nullptr);  // nothing buffered is printed twice
  const pid_t child = fork();
  if (child < 0) fail("fork failed");
  if (child > 0) return child;
  try {
    pin_to_cpu(cpu);
    body();
    _exit(0);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "flowbus perf: %s: %s\n", role, e.what());
    _exit(1);
  }
}

void wait_child(pid_t pid, const std::string& role) {
  int status = 0;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) fail(role + ": waitpid failed");
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) fail(role + " process failed");
}

}  // namespace flowbus::perf
