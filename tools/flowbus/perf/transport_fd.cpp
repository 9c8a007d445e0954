#include <sys/socket.h>
#include <unistd.h>

#include <vector>

#include "transports.hpp"

namespace flowbus::perf {

namespace {

// --- uds and pipe: copying transports through the kernel ---------------------
class FdPair : public PingPong {
 public:
  FdPair(bool unix_socket, size_t bytes) : buffer_(bytes) {
    if (unix_socket) {
      int sv[2];
      if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) fail("socketpair failed");
      ping_read_ = pong_write_ = sv[1];
      ping_write_ = pong_read_ = sv[0];
    } else {
      int a[2], b[2];
      if (pipe(a) != 0 || pipe(b) != 0) fail("pipe failed");
      ping_read_ = a[0], ping_write_ = a[1], pong_read_ = b[0], pong_write_ = b[1];
    }
  }
  void start_echo_side() override {}
  void start_ping_side() override {}
  void round_trip(uint64_t i) override {
    stamp(buffer_.data(), buffer_.size(), i);
    write_all(ping_write_);
    read_all(pong_read_);
    if (!check_stamp(buffer_.data(), buffer_.size(), i)) fail("echo damaged");
  }
  void echo(uint64_t first, uint64_t count) override {
    for (uint64_t i = first; i < first + count; ++i) {
      read_all(ping_read_);
      if (!check_stamp(buffer_.data(), buffer_.size(), i)) fail("ping damaged");
      stamp(buffer_.data(), buffer_.size(), i);
      write_all(pong_write_);
    }
  }

 private:
  void write_all(int fd) {
    for (size_t done = 0; done < buffer_.size();) {
      const ssize_t n = ::write(fd, buffer_.data() + done, buffer_.size() - done);
      if (n <= 0) fail("write failed");
      done += size_t(n);
    }
  }
  void read_all(int fd) {
    for (size_t done = 0; done < buffer_.size();) {
      const ssize_t n = ::read(fd, buffer_.data() + done, buffer_.size() - done);
      if (n <= 0) fail("read failed");
      done += size_t(n);
    }
  }
  std::vector<uint8_t> buffer_;
  int ping_read_ = -1, ping_write_ = -1, pong_read_ = -1, pong_write_ = -1;
};

}  // namespace

std::unique_ptr<PingPong> make_uds(size_t bytes) { return std::make_unique<FdPair>(true, bytes); }
std::unique_ptr<PingPong> make_pipe(size_t bytes) { return std::make_unique<FdPair>(false, bytes); }

}  // namespace flowbus::perf
