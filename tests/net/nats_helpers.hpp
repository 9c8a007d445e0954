// Test helpers for the NATS bridge: a real `nats-server -js` on a free
// loopback port with its own store directory (killed and removed whatever
// happens), `flowbus bridge nats` processes whose log goes to a file, and a
// plain cnats connection for what a client that knows nothing of flowbus does.
#pragma once

#include <nats/nats.h>

#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "sidecar_pair.hpp"

namespace flowbus::testing {

/// `nats-server -js -a 127.0.0.1 -p PORT -sd DIR [extra...]`.
class NatsServer {
 public:
  explicit NatsServer(const std::string& test, std::vector<std::string> extra = {})
      : dir_(::testing::TempDir() + "/nats-" + test + "-" + std::to_string(::getpid())), extra_(std::move(extra)) {
    std::system(("rm -rf '" + dir_ + "' && mkdir -p '" + dir_ + "'").c_str());
    start();
  }
  ~NatsServer() {
    child_.reset();  // SIGKILL and reap
    std::system(("rm -rf '" + dir_ + "'").c_str());
  }
  NatsServer(const NatsServer&) = delete;
  NatsServer& operator=(const NatsServer&) = delete;

  void start() {
    std::string cmd = "exec nats-server -js -a 127.0.0.1 -p " + std::to_string(port_) + " -sd '" + dir_ + "/store'";
    for (const std::string& a : extra_) cmd += " '" + a + "'";
    cmd += " 2>>'" + dir_ + "/server.log' >&2";
    child_ = std::make_unique<ChildProcess>(std::vector<std::string>{"/bin/sh", "-c", cmd},
                                            ChildProcess::Options{.pipe_stdin = false});
    // Ready once it accepts connections.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
      const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_port = htons(port_);
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      const bool up = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
      ::close(fd);
      if (up) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    throw std::runtime_error("nats-server did not start: " + read_file(dir_ + "/server.log"));
  }
  void kill9() { child_->kill_and_reap(); }
  /// SIGTERM: the server shuts down cleanly (JetStream flushes what it acknowledged).
  void terminate() {
    child_->signal(SIGTERM);
    if (!child_->wait(std::chrono::seconds(10))) child_->kill_and_reap();
  }
  std::string url() const { return "nats://127.0.0.1:" + std::to_string(port_); }
  const std::string& dir() const { return dir_; }
  std::string log() const { return read_file(dir_ + "/server.log"); }

 private:
  std::string dir_;
  std::vector<std::string> extra_;
  uint16_t port_ = free_port();
  std::unique_ptr<ChildProcess> child_;
};

/// `flowbus bridge nats ARGS...` as a child process, its stderr appended to a log file.
class BridgeProcess {
 public:
  BridgeProcess(const std::string& log_path, const std::vector<std::string>& args) : log_(log_path) {
    std::string cmd = "exec '" + kFlowbus + "' bridge nats";
    for (const std::string& a : args) cmd += " '" + a + "'";
    cmd += " 2>>'" + log_ + "'";
    child_ = std::make_unique<ChildProcess>(std::vector<std::string>{"/bin/sh", "-c", cmd},
                                            ChildProcess::Options{.pipe_stdin = false});
  }
  std::string log() const { return read_file(log_); }
  bool wait_for_log(const std::string& text, std::chrono::milliseconds timeout) const {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (log().find(text) != std::string::npos) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }
  void kill9() { child_->kill_and_reap(); }
  /// Its exit code once it ended by itself (-1: still running after `timeout`, or killed).
  int exit_code(std::chrono::milliseconds timeout) {
    const auto status = child_->wait(timeout);
    if (!status) return -1;
    return WIFEXITED(*status) ? WEXITSTATUS(*status) : -1;
  }
  int stop() {
    child_->signal(SIGTERM);
    const int code = exit_code(std::chrono::seconds(10));
    if (code == -1) child_->kill_and_reap();
    return code;
  }
  std::optional<std::string> read_line(std::chrono::milliseconds timeout) { return child_->read_line(timeout); }

 private:
  std::string log_;
  std::unique_ptr<ChildProcess> child_;
};

/// A plain cnats connection and JetStream context (no flowbus in it).
struct PlainNats {
  natsConnection* nc = nullptr;
  jsCtx* js = nullptr;
  explicit PlainNats(const std::string& url) {
    if (natsConnection_ConnectTo(&nc, url.c_str()) != NATS_OK) throw std::runtime_error("cannot connect to " + url);
    if (natsConnection_JetStream(&js, nc, nullptr) != NATS_OK) throw std::runtime_error("no JetStream context");
  }
  ~PlainNats() {
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
  }
  PlainNats(const PlainNats&) = delete;
  PlainNats& operator=(const PlainNats&) = delete;
  /// Messages in `stream` (0 if it does not exist).
  uint64_t stream_messages(const std::string& stream) {
    jsStreamInfo* si = nullptr;
    if (js_GetStreamInfo(&si, js, stream.c_str(), nullptr, nullptr) != NATS_OK) return 0;
    const uint64_t n = si->State.Msgs;
    jsStreamInfo_Destroy(si);
    return n;
  }
  bool delete_stream(const std::string& stream) {
    return js_DeleteStream(js, stream.c_str(), nullptr, nullptr) == NATS_OK;
  }
};

}  // namespace flowbus::testing
