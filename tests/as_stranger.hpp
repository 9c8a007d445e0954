// Runs a test's body as another user: a forked child that drops to an
// unused uid and gid, with chosen supplementary groups (needs root; the
// tests that use it skip otherwise). Used by AccessTest and
// LeastPrivilegeTest.
#pragma once

#include <grp.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <exception>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace flowbus::testing {

// Ids no account uses here (checked below).
constexpr uid_t kStrangerUid = 54321;
constexpr gid_t kStrangerGid = 54321;
constexpr gid_t kTopicGroup = 54322;
constexpr uid_t kOtherStrangerUid = 54323;

/// A child started by start_as_stranger: wait() returns what it wrote to
/// its pipe once it ends. Destroyed without wait() (an ASSERT that returned
/// early), it kills the child and reaps it, so no test hangs on a child.
class StrangerChild {
 public:
  StrangerChild() = default;
  StrangerChild(pid_t pid, int fd) : pid_(pid), fd_(fd) {}
  StrangerChild(StrangerChild&& o) noexcept : pid_(std::exchange(o.pid_, -1)), fd_(std::exchange(o.fd_, -1)) {}
  StrangerChild& operator=(StrangerChild&& o) noexcept {
    std::swap(pid_, o.pid_);
    std::swap(fd_, o.fd_);
    return *this;
  }
  ~StrangerChild() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (fd_ >= 0) ::close(fd_);
  }
  std::string wait() {
    std::string out;
    char buf[4096];
    ssize_t n;
    while (fd_ >= 0 && (n = ::read(fd_, buf, sizeof buf)) > 0) out.append(buf, size_t(n));
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    if (pid_ > 0) ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
    return out;
  }

 private:
  pid_t pid_ = -1;
  int fd_ = -1;
};

/// Starts `body` in a forked child as uid `uid` (kStrangerUid unless given),
/// gid kStrangerGid, with `groups` as its supplementary groups. Forks are
/// serialized: a child forked while another thread of ours is inside a
/// fork (or holds a lock the child needs) could hang in its first call.
template <class F>
StrangerChild start_as_stranger(const std::vector<gid_t>& groups, F body, uid_t uid = kStrangerUid) {
  int fds[2];
  if (::pipe(fds) != 0) return {};
  static std::mutex forking;
  pid_t child;
  {
    const std::lock_guard<std::mutex> one_at_a_time(forking);
    child = ::fork();
  }
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
  return StrangerChild(child, fds[0]);
}

/// Runs `body` in a forked child as uid `uid` (kStrangerUid unless given),
/// gid kStrangerGid, with `groups` as its supplementary groups; returns what
/// it wrote to the pipe.
template <class F>
std::string as_stranger(const std::vector<gid_t>& groups, F body, uid_t uid = kStrangerUid) {
  return start_as_stranger(groups, body, uid).wait();
}

}  // namespace flowbus::testing
