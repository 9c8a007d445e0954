// The in-process ceiling of `flowbus perf throughput`: two threads of one
// process and moodycamel::ConcurrentQueue (Debian libconcurrentqueue-dev).
// Built with -Wno-stringop-overflow (tools/CMakeLists.txt): GCC 12 warns
// falsely inside the queue's bulk enqueue.
#include <concurrentqueue/concurrentqueue.h>
#include <x86intrin.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "harness.hpp"
#include "throughput.hpp"
#include "transports.hpp"

namespace flowbus::perf {

ThroughputResult moodycamel_throughput(double seconds, bool bulk) {
  struct Item {
    uint64_t sequence;
    uint8_t rest[56];
  };
  static_assert(sizeof(Item) == 64);
  constexpr size_t kBatch = 256;
  ThroughputResult result{"in-process", bulk ? "moodycamel-bulk" : "moodycamel", sizeof(Item), 1, 1};
  // Preallocated, and try_enqueue never allocates: a bounded queue like a ring.
  moodycamel::ConcurrentQueue<Item> queue(64 * 1024);
  std::atomic<bool> go{false}, stop{false};
  std::atomic<uint64_t> produced{UINT64_MAX};
  uint64_t consumed = 0, errors = 0, done_ns = 0;
  std::thread consumer([&] {
    pin_to_cpu(1);
    moodycamel::ConsumerToken token(queue);
    std::vector<Item> batch(kBatch);
    bool got_some = false;
    for (;;) {
      const size_t n = bulk ? queue.try_dequeue_bulk(token, batch.data(), kBatch)
                            : size_t(queue.try_dequeue(token, batch[0]) ? 1 : 0);
      for (size_t i = 0; i < n; ++i) errors += batch[i].sequence == consumed + i ? 0 : 1;
      consumed += n;
      if (n > 0) {
        got_some = true;
        continue;
      }
      if (got_some) done_ns = monotonic_ns();
      got_some = false;
      if (consumed >= produced.load(std::memory_order_acquire)) break;
      _mm_pause();
    }
  });
  std::thread producer([&] {
    pin_to_cpu(0);
    moodycamel::ProducerToken token(queue);
    Item batch[kBatch] = {};
    uint64_t next = 0;
    while (!go.load(std::memory_order_acquire)) {
    }
    if (bulk) {
      while (!stop.load(std::memory_order_relaxed)) {
        for (size_t i = 0; i < kBatch; ++i) batch[i].sequence = next + i;
        if (queue.try_enqueue_bulk(token, batch, kBatch)) next += kBatch;
      }
    } else {
      // One item per call, as a publisher publishes one event per call; the
      // stop flag is looked at once per kBatch items, like the bulk loop.
      while (!stop.load(std::memory_order_relaxed)) {
        for (size_t i = 0; i < kBatch; ++i) {
          batch[0].sequence = next;
          if (queue.try_enqueue(token, batch[0])) ++next;
        }
      }
    }
    produced.store(next, std::memory_order_release);
  });
  const uint64_t start_ns = monotonic_ns();
  go.store(true, std::memory_order_release);
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop.store(true, std::memory_order_release);
  producer.join();
  consumer.join();
  if (errors != 0) fail("moodycamel: " + std::to_string(errors) + " items out of order");
  result.events = consumed;
  result.seconds = double(std::max<uint64_t>(done_ns, start_ns + 1) - start_ns) / 1e9;
  return result;
}

}  // namespace flowbus::perf
