// What the bridge's exporter and importer share: options, the connection,
// counters, the log, and each side's latest status fragment for inspect.
#pragma once

#include <nats/nats.h>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>

#include "flowbus/bridge.hpp"

namespace flowbus::bridge {

struct SharedStats {
  std::atomic<uint64_t> events_sent{0}, events_received{0}, duplicates_dropped{0}, refused{0}, gaps{0};
};

struct BridgeContext {
  const BridgeOptions& options;
  natsConnection* nc;
  SharedStats stats;
  // The exporter's and importer's JSON arrays for the status file (inspect).
  std::mutex status_mutex;
  std::string exports_json = "[]", imports_json = "[]";
  uint64_t pending_acks = 0;  // under status_mutex
  void log(const std::string& line) const { options.log(line); }
};

/// JSON string literal of `text`.
std::string json_text(std::string_view text);
std::string hex_id(uint64_t id);

}  // namespace flowbus::bridge
