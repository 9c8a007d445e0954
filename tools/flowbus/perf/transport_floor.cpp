#include <sys/mman.h>

#include <atomic>
#include <new>

#include "flowbus/detail/platform.hpp"
#include "transports.hpp"

namespace flowbus::perf {

namespace {

// --- floor: a cache-line flag per direction plus the payload write ----------
class Floor : public PingPong {
 public:
  Floor(size_t bytes, WaitMode) : bytes_(bytes) {
    size_ = 256 + 2 * ((bytes + 127) & ~size_t(127));
    void* m = mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) fail("cannot map the floor's shared memory");
    base_ = static_cast<uint8_t*>(m);
    new (base_) std::atomic<uint64_t>(UINT64_MAX);
    new (base_ + 128) std::atomic<uint64_t>(UINT64_MAX);
  }
  ~Floor() override { munmap(base_, size_); }
  void start_echo_side() override {}
  void start_ping_side() override {}
  void round_trip(uint64_t i) override {
    stamp(ping_payload(), bytes_, i);
    flag(0)->store(i, std::memory_order_release);  // publishes the payload written above
    // Both spin loops pause, as flowbus's does: fewer snoops of the line the
    // other side is writing (measured: a lower floor on this machine).
    while (flag(128)->load(std::memory_order_acquire) != i) detail::cpu_relax();
    if (!check_stamp(pong_payload(), bytes_, i)) fail("floor: echo damaged");
  }
  void echo(uint64_t first, uint64_t count) override {
    for (uint64_t i = first; i < first + count; ++i) {
      while (flag(0)->load(std::memory_order_acquire) != i) detail::cpu_relax();
      if (!check_stamp(ping_payload(), bytes_, i)) fail("floor: ping damaged");
      stamp(pong_payload(), bytes_, i);
      flag(128)->store(i, std::memory_order_release);
    }
  }

 private:
  std::atomic<uint64_t>* flag(size_t offset) { return reinterpret_cast<std::atomic<uint64_t>*>(base_ + offset); }
  uint8_t* ping_payload() { return base_ + 256; }
  uint8_t* pong_payload() { return base_ + 256 + ((bytes_ + 127) & ~size_t(127)); }
  size_t bytes_, size_ = 0;
  uint8_t* base_ = nullptr;
};

}  // namespace

std::unique_ptr<PingPong> make_floor(size_t bytes) { return std::make_unique<Floor>(bytes, WaitMode::Spin); }

}  // namespace flowbus::perf
