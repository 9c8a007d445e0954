#include "liveness.hpp"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace flowbus::detail {

namespace {

struct ProcStat {
  char state = 0;
  uint64_t start_time = 0;
};

ProcStat read_proc_stat(pid_t pid) noexcept {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/stat", int(pid));
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ProcStat{errno == ENOENT ? char(0) : '?', 0};  // '?': exists, but hidden from us
  char buf[1024];
  const ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0) return {};
  buf[n] = 0;
  // The command name (field 2) may hold spaces and parentheses: skip to the last ')'.
  const char* p = std::strrchr(buf, ')');
  if (p == nullptr || p[1] != ' ') return {};
  ProcStat st;
  st.state = p[2];
  // Fields after ')': 3 state, 4 ppid, ... 22 starttime.
  for (int field = 2; field < 22 && *p; ++p)
    if (*p == ' ') ++field;
  st.start_time = std::strtoull(p, nullptr, 10);
  return st;
}

}  // namespace

uint64_t process_start_time(pid_t pid) noexcept { return read_proc_stat(pid).start_time; }

namespace {
std::atomic<uint64_t> g_alive_calls{0};  // a statistic: relaxed is enough
}  // namespace

uint64_t process_alive_calls() noexcept { return g_alive_calls.load(std::memory_order_relaxed); }

bool process_alive(pid_t pid, uint64_t start_time) noexcept {
  g_alive_calls.fetch_add(1, std::memory_order_relaxed);
  if (pid <= 0) return false;
  if (::kill(pid, 0) != 0 && errno == ESRCH) return false;
  const ProcStat st = read_proc_stat(pid);
  // A zombie (killed, not yet reaped) still has a /proc entry: it is dead.
  if (st.state == 0 || st.state == 'Z' || st.state == 'X') return false;
  if (st.state == '?') return true;  // /proc hides it (hidepid): kill() said it exists
  return start_time == 0 || st.start_time == start_time;
}

}  // namespace flowbus::detail
