// --- bmq: boost::interprocess::message_queue, one queue each way ------------
// The queue lives in shared memory (/dev/shm) and is guarded by a
// process-shared mutex and condition variable; send copies the payload in and
// receive copies it out into the receiver's buffer. The largest message is
// the payload size. receive blocks on the condition variable (that is how
// the queue is used), so --wait does not apply.
#include <unistd.h>

#include <atomic>
#include <boost/interprocess/ipc/message_queue.hpp>
#include <optional>
#include <vector>

#include "transports.hpp"

namespace flowbus::perf {

namespace {

namespace bip = boost::interprocess;

class Bmq : public PingPong {
 public:
  // Made before fork: both processes use the same mapping afterwards.
  explicit Bmq(size_t bytes) : buffer_(bytes), owner_(getpid()) {
    static std::atomic<int> serial{0};
    const std::string stem = "flowbus-perf-bmq-" + std::to_string(getpid()) + "-" + std::to_string(serial++);
    ping_name_ = stem + "-ping";
    pong_name_ = stem + "-pong";
    bip::message_queue::remove(ping_name_.c_str());
    bip::message_queue::remove(pong_name_.c_str());
    ping_.emplace(bip::create_only, ping_name_.c_str(), kDepth, bytes);
    pong_.emplace(bip::create_only, pong_name_.c_str(), kDepth, bytes);
  }
  ~Bmq() override {
    ping_.reset();
    pong_.reset();
    if (getpid() == owner_) {
      bip::message_queue::remove(ping_name_.c_str());
      bip::message_queue::remove(pong_name_.c_str());
    }
  }
  void start_echo_side() override {}
  void start_ping_side() override {}
  void round_trip(uint64_t i) override {
    stamp(buffer_.data(), buffer_.size(), i);
    ping_->send(buffer_.data(), buffer_.size(), 0);
    receive(*pong_);
    if (!check_stamp(buffer_.data(), buffer_.size(), i)) fail("bmq: echo damaged");
  }
  void echo(uint64_t first, uint64_t count) override {
    for (uint64_t i = first; i < first + count; ++i) {
      receive(*ping_);
      if (!check_stamp(buffer_.data(), buffer_.size(), i)) fail("bmq: ping damaged");
      stamp(buffer_.data(), buffer_.size(), i);
      pong_->send(buffer_.data(), buffer_.size(), 0);
    }
  }

 private:
  static constexpr size_t kDepth = 4;  // a ping-pong has at most one message in flight per queue
  void receive(bip::message_queue& queue) {
    size_t received = 0;
    unsigned priority = 0;
    queue.receive(buffer_.data(), buffer_.size(), received, priority);
    if (received != buffer_.size()) fail("bmq: short message");
  }

  std::vector<uint8_t> buffer_;
  pid_t owner_;
  std::string ping_name_, pong_name_;
  std::optional<bip::message_queue> ping_, pong_;
};

}  // namespace

std::unique_ptr<PingPong> make_bmq(size_t bytes) { return std::make_unique<Bmq>(bytes); }

}  // namespace flowbus::perf
