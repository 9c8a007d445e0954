// Runs a test's body as another user: a forked child that drops to an
// unused uid and gid, with chosen supplementary groups (needs root; the
// tests that use it skip otherwise). Used by AccessTest and
// LeastPrivilegeTest.
#pragma once

#include <grp.h>
#include <sys/wait.h>
#include <unistd.h>

#include <exception>
#include <string>
#include <vector>

namespace flowbus::testing {

// Ids no account uses here (checked below).
constexpr uid_t kStrangerUid = 54321;
constexpr gid_t kStrangerGid = 54321;
constexpr gid_t kTopicGroup = 54322;
constexpr uid_t kOtherStrangerUid = 54323;

/// Runs `body` in a forked child as uid `uid` (kStrangerUid unless given),
/// gid kStrangerGid, with `groups` as its supplementary groups; returns what
/// it wrote to the pipe.
template <class F>
std::string as_stranger(const std::vector<gid_t>& groups, F body, uid_t uid = kStrangerUid) {
  int fds[2];
  if (::pipe(fds) != 0) return "pipe failed";
  const pid_t child = ::fork();
  if (child == 0) {
    ::close(fds[0]);
    std::string out;
    if (::setgroups(groups.size(), groups.data()) != 0 || ::setgid(kStrangerGid) != 0 || ::setuid(uid) != 0) {
      out = "could not drop privileges";
    } else if (::getuid() != uid || ::setuid(0) == 0) {
      out = "privileges not dropped";
    } else {
      try {
        out = body();
      } catch (const std::exception& e) {
        out = std::string("unexpected: ") + e.what();
      }
    }
    (void)!::write(fds[1], out.data(), out.size());
    ::_exit(0);
  }
  ::close(fds[1]);
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fds[0], buf, sizeof buf)) > 0) out.append(buf, size_t(n));
  ::close(fds[0]);
  ::waitpid(child, nullptr, 0);
  return out;
}

}  // namespace flowbus::testing
