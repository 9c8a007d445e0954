// Test helpers: real child processes started with posix_spawn (a clean exec,
// no copy of the test's address space), talking to the test through pipes.
// A ChildProcess that is still running when it goes out of scope is killed
// with SIGKILL and reaped, so a failing test never leaves a process behind.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace flowbus::testing {

inline int64_t ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
}

class ChildProcess {
 public:
  struct Options {
    bool pipe_stdin = true;        ///< else /dev/null
    bool capture_stderr = false;   ///< else inherited: the child's complaints land in the test log
  };

  explicit ChildProcess(const std::vector<std::string>& argv) : ChildProcess(argv, Options{}) {}
  ChildProcess(const std::vector<std::string>& argv, Options options) {
    int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1};
    if (options.pipe_stdin ? ::pipe2(in, O_CLOEXEC) != 0 : (in[0] = ::open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0)
      throw std::runtime_error("pipe: " + std::string(std::strerror(errno)));
    if (::pipe2(out, O_CLOEXEC) != 0) throw std::runtime_error("pipe: " + std::string(std::strerror(errno)));
    if (options.capture_stderr && ::pipe2(err, O_CLOEXEC) != 0)
      throw std::runtime_error("pipe: " + std::string(std::strerror(errno)));
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    // dup2 clears O_CLOEXEC on the target: the child keeps exactly 0, 1 (and 2).
    posix_spawn_file_actions_adddup2(&actions, in[0], 0);
    posix_spawn_file_actions_adddup2(&actions, out[1], 1);
    if (options.capture_stderr) posix_spawn_file_actions_adddup2(&actions, err[1], 2);
    std::vector<char*> raw;
    for (const std::string& a : argv) raw.push_back(const_cast<char*>(a.c_str()));
    raw.push_back(nullptr);
    const int rc = ::posix_spawn(&pid_, raw[0], &actions, nullptr, raw.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    ::close(in[0]);
    ::close(out[1]);
    if (err[1] >= 0) ::close(err[1]);
    stdin_ = options.pipe_stdin ? in[1] : -1;
    stdout_ = out[0];
    stderr_ = err[0];
    if (rc != 0) {
      pid_ = -1;
      throw std::runtime_error("posix_spawn " + argv[0] + ": " + std::strerror(rc));
    }
  }

  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  ~ChildProcess() {
    if (pid_ > 0 && !status_) {
      ::kill(pid_, SIGKILL);
      ::kill(pid_, SIGCONT);  // a stopped child dies too
      int status = 0;
      ::waitpid(pid_, &status, 0);
    }
    for (int fd : {stdin_, stdout_, stderr_})
      if (fd >= 0) ::close(fd);
  }

  pid_t pid() const { return pid_; }

  /// Closing stdin is how the test says "go" to a waiting worker (EOF).
  void close_stdin() {
    if (stdin_ >= 0) ::close(stdin_);
    stdin_ = -1;
  }

  void signal(int sig) { ::kill(pid_, sig); }

  /// The next line of stdout without its newline; nullopt at EOF or timeout.
  std::optional<std::string> read_line(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      const size_t nl = out_buffer_.find('\n');
      if (nl != std::string::npos) {
        std::string line = out_buffer_.substr(0, nl);
        out_buffer_.erase(0, nl + 1);
        return line;
      }
      if (stdout_ < 0) return std::nullopt;
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return std::nullopt;
      pollfd p{stdout_, POLLIN, 0};
      const int n = ::poll(&p, 1, int(left.count()));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return std::nullopt;
      if (!drain(stdout_, out_buffer_)) {
        ::close(stdout_);
        stdout_ = -1;
      }
    }
  }

  /// Waits for the child to end; its wait status, or nullopt on timeout.
  std::optional<int> wait(std::chrono::milliseconds timeout) {
    if (status_) return status_;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      int status = 0;
      const pid_t r = ::waitpid(pid_, &status, WNOHANG);
      if (r == pid_) return status_ = status;
      if (r < 0 && errno != EINTR) return std::nullopt;
      if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  }

  /// Kills with SIGKILL and reaps.
  void kill_and_reap() {
    if (status_) return;
    ::kill(pid_, SIGKILL);
    ::kill(pid_, SIGCONT);
    int status = 0;
    if (::waitpid(pid_, &status, 0) == pid_) status_ = status;
  }

  /// Reads stdout and stderr to EOF (or the deadline), then waits for the exit.
  struct Outcome {
    pid_t pid = -1;         ///< the child's pid (tools name their temporary segments after it)
    bool finished = false;  ///< false: it overran the timeout and was killed
    int exit_code = -1;     ///< -1 if it died of a signal
    std::string out, err;
  };
  Outcome communicate(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    close_stdin();
    Outcome o;
    o.pid = pid_;
    while (stdout_ >= 0 || stderr_ >= 0) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) break;
      pollfd p[2];
      nfds_t n = 0;
      if (stdout_ >= 0) p[n++] = {stdout_, POLLIN, 0};
      if (stderr_ >= 0) p[n++] = {stderr_, POLLIN, 0};
      const int r = ::poll(p, n, int(left.count()));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) break;
      for (nfds_t i = 0; i < n; ++i) {
        if (p[i].revents == 0) continue;
        int& fd = p[i].fd == stdout_ ? stdout_ : stderr_;
        std::string& buffer = p[i].fd == stdout_ ? out_buffer_ : err_buffer_;
        if (!drain(fd, buffer)) {
          ::close(fd);
          fd = -1;
        }
      }
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    const auto status = wait(std::max(left, std::chrono::milliseconds(0)));
    if (!status) {
      kill_and_reap();
    } else {
      o.finished = true;
      o.exit_code = WIFEXITED(*status) ? WEXITSTATUS(*status) : -1;
    }
    o.out = std::move(out_buffer_);
    o.err = std::move(err_buffer_);
    return o;
  }

 private:
  // Reads what is there; false at EOF.
  static bool drain(int fd, std::string& buffer) {
    char chunk[4096];
    for (;;) {
      const ssize_t n = ::read(fd, chunk, sizeof chunk);
      if (n > 0) {
        buffer.append(chunk, size_t(n));
        return true;
      }
      if (n < 0 && errno == EINTR) continue;
      return n < 0 && errno == EAGAIN;
    }
  }

  pid_t pid_ = -1;
  int stdin_ = -1, stdout_ = -1, stderr_ = -1;
  std::string out_buffer_, err_buffer_;
  std::optional<int> status_;
};

}  // namespace flowbus::testing
