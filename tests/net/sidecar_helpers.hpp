// Test helpers for the sidecar: sidecar processes (the real flowbus binary)
// whose log goes to a file, free loopback ports, and a hand-driven peer that
// speaks the wire protocol (or garbage) over a real socket.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "child_process.hpp"
#include "flowbus/wire/codec.hpp"

namespace flowbus::testing {

inline const std::string kFlowbus = FLOWBUS_BINARY_DIR "/bin/flowbus";

/// A loopback port nobody listens on right now.
inline uint16_t free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

inline std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

/// `flowbus sidecar ARGS...` as a child process, its stderr appended to a log file.
class SidecarProcess {
 public:
  /// `prefix`: a command to run it under, e.g. "ip netns exec NS".
  SidecarProcess(const std::string& log_path, const std::vector<std::string>& args, const std::string& prefix = {})
      : log_(log_path) {
    std::string cmd = "exec " + prefix + " '" + kFlowbus + "' sidecar";
    for (const std::string& a : args) cmd += " '" + a + "'";
    cmd += " 2>>'" + log_ + "'";
    child_ = std::make_unique<ChildProcess>(std::vector<std::string>{"/bin/sh", "-c", cmd},
                                            ChildProcess::Options{.pipe_stdin = false});
  }
  pid_t pid() const { return child_->pid(); }
  std::string log() const { return read_file(log_); }
  /// Waits until the log holds `text` (true) or the timeout passes.
  bool wait_for_log(const std::string& text, std::chrono::milliseconds timeout) const {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (log().find(text) != std::string::npos) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }
  void kill9() { child_->kill_and_reap(); }
  /// SIGTERM, then the exit code (-1: killed by a signal or did not stop).
  int stop() {
    child_->signal(SIGTERM);
    const auto status = child_->wait(std::chrono::seconds(10));
    if (!status) {
      child_->kill_and_reap();
      return -1;
    }
    return WIFEXITED(*status) ? WEXITSTATUS(*status) : -1;
  }

 private:
  std::string log_;
  std::unique_ptr<ChildProcess> child_;
};

/// A peer driven by the test: raw bytes or wire frames over a real socket.
class HandPeer {
 public:
  explicit HandPeer(uint16_t port, std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_port = htons(port);
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) break;
      ::close(fd_);
      fd_ = -1;
      if (std::chrono::steady_clock::now() > deadline) throw std::runtime_error("cannot connect to port " + std::to_string(port));
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    const int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  ~HandPeer() {
    if (fd_ >= 0) ::close(fd_);
  }
  HandPeer(const HandPeer&) = delete;
  HandPeer& operator=(const HandPeer&) = delete;

  void send(std::span<const uint8_t> bytes) {
    size_t done = 0;
    while (done < bytes.size()) {
      const ssize_t n = ::send(fd_, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
      if (n <= 0) return;  // the sidecar closed on us: the test looks at what it said
      done += size_t(n);
    }
  }
  void send(const std::string& text) { send(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(text.data()), text.size())); }

  /// True once the sidecar closed the connection (reads to EOF meanwhile).
  bool closed_by_peer(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    uint8_t buf[4096];
    while (std::chrono::steady_clock::now() < deadline) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 20) <= 0) continue;
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) return true;
      if (n > 0) decoder_.feed({buf, size_t(n)});
    }
    return false;
  }

  /// The next frame the sidecar sent, or nullopt on timeout or close. Valid
  /// until the next call.
  std::optional<wire::FrameView> next_frame(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    uint8_t buf[65536];
    for (;;) {
      if (auto f = decoder_.next()) return f;
      if (std::chrono::steady_clock::now() > deadline) return std::nullopt;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 20) <= 0) continue;
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) return std::nullopt;
      decoder_.feed({buf, size_t(n)});
    }
  }

  /// Hello and Auth as node `node` with `token`; returns the sidecar's Hello node.
  std::string handshake(const std::string& node, const std::string& token = {}, uint32_t version = wire::kProtocolVersion) {
    nonce_ = wire::make_nonce();
    send(writer_.hello({version, node, nonce_, "hand-peer"}));
    auto f = next_frame(std::chrono::seconds(5));
    if (!f || !std::holds_alternative<wire::HelloView>(*f)) return {};
    const auto& hello = std::get<wire::HelloView>(*f);
    std::string peer(hello.node);
    const wire::Mac mac = wire::compute_auth_mac(token, hello.nonce, node);
    send(writer_.auth({token.empty() ? std::span<const uint8_t>() : std::span<const uint8_t>(mac)}));
    return peer;
  }

  wire::FrameWriter& writer() { return writer_; }

 private:
  int fd_ = -1;
  wire::FrameWriter writer_;
  wire::FrameDecoder decoder_;
  wire::Nonce nonce_{};
};

/// A TCP proxy on loopback that forwards to `upstream_port` and, while
/// cutting, shuts every connection it carries down at random moments
/// (1 to 5 s apart): a network that keeps failing.
class CuttingProxy {
 public:
  explicit CuttingProxy(uint16_t upstream_port) : upstream_(upstream_port) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const int one = 1;
    ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    ::listen(listen_fd_, 16);
    socklen_t len = sizeof a;
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    acceptor_ = std::thread([this] { accept_loop(); });
  }
  ~CuttingProxy() {
    stop_ = true;
    cutting_ = false;
    if (cutter_.joinable()) cutter_.join();
    acceptor_.join();
    cut_all();
    for (std::thread& t : pumps_) t.join();
    ::close(listen_fd_);
  }
  uint16_t port() const { return port_; }
  /// Cuts every 1 to 5 s (random) until stop_cutting().
  void start_cutting(uint32_t seed) {
    cutting_ = true;
    cutter_ = std::thread([this, seed] {
      uint32_t x = seed | 1;
      while (cutting_) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        const auto wait = std::chrono::milliseconds(1000 + x % 4001);
        const auto until = std::chrono::steady_clock::now() + wait;
        while (cutting_ && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(std::chrono::milliseconds(10));
        if (cutting_) {
          cut_all();
          ++cuts_;
        }
      }
    });
  }
  void stop_cutting() {
    cutting_ = false;
    if (cutter_.joinable()) cutter_.join();
  }
  int cuts() const { return cuts_; }

 private:
  void accept_loop() {
    while (!stop_) {
      pollfd p{listen_fd_, POLLIN, 0};
      if (::poll(&p, 1, 20) <= 0) continue;
      const int client = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (client < 0) continue;
      const int up = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_port = htons(upstream_);
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      if (::connect(up, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        ::close(up);
        ::close(client);
        continue;
      }
      {
        std::lock_guard<std::mutex> lock(mutex_);
        live_.push_back({client, up});
      }
      pumps_.emplace_back([this, client, up] {
        pump(client, up);
        std::lock_guard<std::mutex> lock(mutex_);
        live_.erase(std::remove(live_.begin(), live_.end(), std::pair<int, int>{client, up}), live_.end());
        ::close(client);
        ::close(up);
      });
    }
  }
  static void pump(int a, int b) {
    char buf[65536];
    for (;;) {
      pollfd p[2] = {{a, POLLIN, 0}, {b, POLLIN, 0}};
      if (::poll(p, 2, 100) < 0 && errno != EINTR) return;
      for (int i = 0; i < 2; ++i) {
        if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        const ssize_t n = ::recv(p[i].fd, buf, sizeof buf, 0);
        if (n <= 0) return;
        const int to = i == 0 ? b : a;
        for (ssize_t done = 0; done < n;) {
          const ssize_t w = ::send(to, buf + done, size_t(n - done), MSG_NOSIGNAL);
          if (w <= 0) return;
          done += w;
        }
      }
    }
  }
  void cut_all() {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto [c, u] : live_) {
      ::shutdown(c, SHUT_RDWR);
      ::shutdown(u, SHUT_RDWR);
    }
  }

  uint16_t upstream_;
  uint16_t port_ = 0;
  int listen_fd_ = -1;
  std::atomic<bool> stop_{false}, cutting_{false};
  std::atomic<int> cuts_{0};
  std::mutex mutex_;
  std::vector<std::pair<int, int>> live_;
  std::vector<std::thread> pumps_;
  std::thread acceptor_, cutter_;
};

}  // namespace flowbus::testing
