// The NATS JetStream bridge: exports chosen topics of a local bus to a
// JetStream stream and imports from it, in the CloudEvents NATS binding's
// binary mode (docs/design.md, "NATS JetStream bridge").
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace flowbus {

struct BridgeOptions {
  std::string bus;
  std::string url = "nats://127.0.0.1:4222";
  std::string stream = "FLOWBUS";          ///< the JetStream stream; created if missing
  std::string subject_prefix = "flowbus";  ///< topic a.b.c <-> subject <prefix>.a.b.c
  std::vector<std::string> exports;        ///< topic patterns that go to NATS
  std::vector<std::string> imports;        ///< topic patterns taken from NATS onto the bus
  std::vector<std::string> reexports;      ///< patterns of mirrored rings (from a sidecar or NATS) passed on too
  std::string node;        ///< this bridge's node name (origin header, durable name); default: host name
  std::string durable;     ///< the pull consumer's durable name; default "flowbus-<node>"
  std::string creds_file;  ///< NATS credentials (.creds)
  std::string token;       ///< NATS token (from --token-file)
  std::string tls_ca, tls_cert, tls_key;
  size_t max_pending = 4096;  ///< asynchronous publishes not yet acknowledged by JetStream
  size_t fetch_batch = 256;   ///< messages per pull request
  /// How long an importer waits for events the exporter sent that the stream
  /// holds after later ones (resent after a lost connection), holding the later
  /// ones; then the missing ones count as lost.
  std::chrono::seconds reorder_wait{20};
  std::chrono::seconds duplicate_window{120};  ///< of a stream the bridge creates
  uint64_t import_ring_size = 4u << 20;        ///< ring size of topics created on import
  std::chrono::milliseconds connect_timeout{5000};
  std::function<void(const std::string&)> log;  ///< default: stderr with a timestamp
};

struct BridgeStats {
  uint64_t events_sent = 0;         ///< acknowledged by JetStream
  uint64_t events_received = 0;     ///< committed to the bus
  uint64_t duplicates_dropped = 0;  ///< imports this bus held already, and exports JetStream had already
  uint64_t refused = 0;             ///< NATS messages not imported (not a CloudEvent, schema mismatch, ...)
  uint64_t gaps = 0;                ///< events that could not be exported (lost at the source)
};

class Bridge {
 public:
  /// Checks the options, connects and checks (or creates) the stream: throws
  /// Error naming what is wrong and how to fix it (wrong token, wrong CA,
  /// a stream whose subjects do not cover the prefix, ...).
  explicit Bridge(BridgeOptions options);
  ~Bridge();
  /// Runs until `stop` becomes true: one thread exports, one imports.
  void run(const std::atomic<bool>& stop);
  BridgeStats stats() const noexcept;

 private:
  struct Engine;
  std::unique_ptr<Engine> engine_;
};

}  // namespace flowbus
