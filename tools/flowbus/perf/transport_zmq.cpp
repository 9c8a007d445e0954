// --- zmq: ZeroMQ PAIR sockets over ipc://, the plain C API ------------------
// The sender's zmq_send copies the payload into a message; the receiver's
// zmq_recv copies it out into its own buffer, so zmq pays both copies, as an
// application using it would. zmq_recv blocks (ZeroMQ's I/O thread and the
// kernel wake it): that is how ZeroMQ is used, so --wait does not apply.
#include <unistd.h>
#include <zmq.h>

#include <atomic>
#include <vector>

#include "transports.hpp"

namespace flowbus::perf {

namespace {

class Zmq : public PingPong {
 public:
  explicit Zmq(size_t bytes) : buffer_(bytes) {
    static std::atomic<int> serial{0};
    path_ = "/tmp/flowbus-perf-zmq-" + std::to_string(getpid()) + "-" + std::to_string(serial++);
  }
  ~Zmq() override {
    if (socket_) {
      const int linger = 0;
      zmq_setsockopt(socket_, ZMQ_LINGER, &linger, sizeof linger);
      zmq_close(socket_);
    }
    if (context_) zmq_ctx_term(context_);
    if (binder_) ::unlink(path_.c_str());
  }
  // A ZeroMQ context does not survive fork, so each side makes its own after it.
  void start_echo_side() override { open(false); }
  void start_ping_side() override { open(true); }
  void round_trip(uint64_t i) override {
    stamp(buffer_.data(), buffer_.size(), i);
    send();
    receive();
    if (!check_stamp(buffer_.data(), buffer_.size(), i)) fail("zmq: echo damaged");
  }
  void echo(uint64_t first, uint64_t count) override {
    for (uint64_t i = first; i < first + count; ++i) {
      receive();
      if (!check_stamp(buffer_.data(), buffer_.size(), i)) fail("zmq: ping damaged");
      stamp(buffer_.data(), buffer_.size(), i);
      send();
    }
  }
  void end_echo_side() override {
    // The echo process _exits next: close with the default linger and end the
    // context, which waits until ZeroMQ's I/O thread has sent the last echo.
    zmq_close(socket_);
    socket_ = nullptr;
    zmq_ctx_term(context_);
    context_ = nullptr;
  }

 private:
  void open(bool bind) {
    context_ = zmq_ctx_new();
    if (!context_) fail("zmq_ctx_new failed");
    socket_ = zmq_socket(context_, ZMQ_PAIR);
    if (!socket_) fail(std::string("zmq_socket: ") + zmq_strerror(zmq_errno()));
    const std::string endpoint = "ipc://" + path_;
    // The connecting side may come first: ZeroMQ retries until the bind exists.
    const int rc = bind ? zmq_bind(socket_, endpoint.c_str()) : zmq_connect(socket_, endpoint.c_str());
    if (rc != 0) fail(endpoint + ": " + zmq_strerror(zmq_errno()));
    binder_ = bind;
  }
  void send() {
    if (zmq_send(socket_, buffer_.data(), buffer_.size(), 0) != int(buffer_.size()))
      fail(std::string("zmq_send: ") + zmq_strerror(zmq_errno()));
  }
  void receive() {
    if (zmq_recv(socket_, buffer_.data(), buffer_.size(), 0) != int(buffer_.size()))
      fail(std::string("zmq_recv: ") + zmq_strerror(zmq_errno()));
  }

  std::vector<uint8_t> buffer_;
  std::string path_;
  void* context_ = nullptr;
  void* socket_ = nullptr;
  bool binder_ = false;
};

}  // namespace

std::unique_ptr<PingPong> make_zmq(size_t bytes) { return std::make_unique<Zmq>(bytes); }

}  // namespace flowbus::perf
