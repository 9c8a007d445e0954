// The sidecar: mirrors chosen topics of a local bus to peers on other hosts
// and takes in what they send (docs/wire-protocol.md, docs/design.md).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace flowbus {

struct SidecarOptions {
  std::string bus;
  std::string listen;                  ///< "host:port" to accept peers on; empty: none ("127.0.0.1:0": any free port)
  std::vector<std::string> peers;      ///< "host:port" to connect to (and reconnect to, forever)
  std::vector<std::string> exports;    ///< topic patterns that may leave this host
  std::vector<std::string> imports;    ///< topic patterns peers may write here
  std::vector<std::string> reexports;  ///< patterns whose mirrored (imported) rings are passed on too
  std::string node;                    ///< this sidecar's node name; default: the host name
  std::string tls_cert, tls_key, tls_ca;  ///< PEM files; all three: TLS with mutual authentication
  std::string token;                   ///< shared secret (from --token-file); empty: none
  /// Topics this sidecar creates on import get the origin topic's ring size,
  /// retention and slow-consumer timeout, or these where set (0: the origin's).
  uint64_t import_ring_size = 0;
  std::chrono::seconds import_retention{0};
  std::chrono::nanoseconds import_slow_consumer_timeout{0};  ///< kNever: never
  size_t batch_bytes = 256 * 1024;     ///< payload bytes per event batch at most
  size_t window = 8 << 20;             ///< bytes in flight per connection and direction
  std::chrono::milliseconds heartbeat{1000};     ///< sent when a connection is otherwise idle
  std::chrono::milliseconds peer_timeout{5000};  ///< a silent peer is dropped after this
  std::chrono::milliseconds reconnect{500};      ///< first retry delay to a --peer (doubles to 8 s)
  /// Until a peer has authenticated: how long it may take (TLS and Hello/Auth),
  /// and how many incoming connections may be at it at once (more are closed).
  std::chrono::milliseconds handshake_timeout{5000};
  size_t max_pending = 32;
  /// Peers this sidecar exports to at once, connected or parked (see
  /// resume_window): each holds a reader slot in every ring it mirrors, of a
  /// ring's 64, so at most 48 leave 16 to local subscribers. A further peer
  /// takes the place of the longest-parked one, or is refused if none is parked.
  size_t max_peers = 16;
  /// How long the read positions of a disconnected peer are kept (its
  /// unacknowledged events are held for it meanwhile, as a slow consumer).
  std::chrono::milliseconds resume_window{60000};
  /// Log lines (default: stderr with a timestamp).
  std::function<void(const std::string&)> log;
};

/// Figures for `flowbus inspect` and tests.
struct SidecarStats {
  uint64_t events_sent = 0, events_received = 0, bytes_sent = 0, bytes_received = 0;
  uint64_t duplicates_dropped = 0;  ///< events a peer sent that this bus held already
  uint64_t gaps_reported = 0;       ///< events that could not be mirrored (lost at the source)
  uint64_t connections = 0, refused = 0;
};

class Sidecar {
 public:
  /// Checks the options (throws Error naming what is wrong and how to fix it).
  explicit Sidecar(SidecarOptions options);
  ~Sidecar();
  /// Binds the listener; listen_port() is known after it. Throws Error.
  void start();
  /// Runs until `stop` becomes true (the shared-memory thread is the caller's).
  void run(const std::atomic<bool>& stop);
  uint16_t listen_port() const noexcept;
  SidecarStats stats() const noexcept;

 private:
  struct Engine;
  std::unique_ptr<Engine> engine_;
};

}  // namespace flowbus
