// The sidecar's network side: Boost.Asio on one thread moves bytes between
// sockets (plain TCP or TLS) and the shared-memory thread. It knows nothing
// of frames; the protocol lives in the shared-memory thread (session.cpp).
//
// Between the two threads: moodycamel queues of pooled chunks, so the steady
// path allocates nothing. Each thread takes chunks only from its own pool and
// a chunk goes back to the pool it came from, whoever recycles it: every
// queue here has exactly one consumer. (With two consumers of one queue,
// moodycamel's block reuse is ordered only by a release-only fetch_add that
// the other consumer never acquires: ThreadSanitizer caught a dequeue's read
// racing the next enqueue into the same slot.) Flow control both ways: the shared-memory thread
// stops reading its rings when a connection has `window` bytes queued for
// the socket, and the network thread stops reading a socket while the
// shared-memory thread has `window` of its bytes unprocessed.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <concurrentqueue/concurrentqueue.h>

#include "flowbus/sidecar.hpp"

namespace flowbus::sidecar {

struct Chunk {
  std::vector<uint8_t> bytes;  // capacity kept when the chunk is recycled
  size_t size = 0;             // bytes used
  bool network_owned = false;  // which thread's pool it returns to (the thread that took it first)
  /// What the chunk holds down, counted against the windows: its capacity,
  /// so the windows bound the number of chunks in flight (and the pool).
  size_t footprint() const noexcept { return bytes.size(); }
};

/// Counters a connection shares between the two threads.
struct LinkState {
  uint32_t id = 0;
  std::string address;  // "host:port" of the peer
  bool outbound = false;
  // Relaxed: flow-control estimates; a stale value only delays a read by one round.
  std::atomic<uint64_t> queued_out{0};      // footprint of chunks handed to the network thread, not yet written
  std::atomic<uint64_t> unprocessed_in{0};  // footprint of chunks read, not yet given back by the shm thread
  // Set by the shared-memory thread once the peer's Auth checked out. Until
  // then the network thread reads one chunk at a time, counts the connection
  // against --max-pending and closes it at the handshake deadline.
  std::atomic<bool> authenticated{false};
  // Outbound: the delay before redialing after this connection closes, when
  // it was refused for a reason retrying cannot fix (0: the usual one).
  std::atomic<int64_t> redial_after_ms{0};
};

/// Network thread -> shared-memory thread.
struct NetEvent {
  enum class Kind : uint8_t { Connected, Bytes, Closed };
  Kind kind = Kind::Bytes;
  std::shared_ptr<LinkState> link;
  Chunk* chunk = nullptr;  // Bytes: hand back with Pump::recycle
  std::string reason;      // Closed: why
};

class Pump {
 public:
  explicit Pump(const SidecarOptions& options);
  ~Pump();
  /// Binds the listener (throws Error naming the address) and starts the thread.
  void start();
  void stop();

  /// Shared-memory thread: what happened on the network since the last call.
  bool poll(NetEvent& out) { return events_.try_dequeue(out); }
  /// Shared-memory thread only: a chunk to fill with at least `size` bytes (pooled).
  Chunk* chunk(size_t size);
  /// Either thread: gives a chunk back to the pool it came from.
  void recycle(Chunk* c);
  /// Queues bytes for a connection; they are written in order. Takes the chunk.
  void send(const std::shared_ptr<LinkState>& link, Chunk* c);
  /// The shared-memory thread is done with input chunk `c` (call before recycle).
  void consumed(const std::shared_ptr<LinkState>& link, const Chunk* c);
  /// Closes a connection after what is queued for it was written.
  void close(const std::shared_ptr<LinkState>& link);
  uint16_t listen_port() const noexcept { return listen_port_.load(std::memory_order_acquire); }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  moodycamel::ConcurrentQueue<NetEvent> events_;
  Chunk* take(moodycamel::ConcurrentQueue<Chunk*>& pool, size_t size, bool network_owned);
  moodycamel::ConcurrentQueue<Chunk*> free_shm_chunks_;      // consumed by the shared-memory thread only
  moodycamel::ConcurrentQueue<Chunk*> free_network_chunks_;  // consumed by the network thread only
  std::atomic<uint16_t> listen_port_{0};
  friend struct Impl;
};

}  // namespace flowbus::sidecar
