// The views of `flowbus inspect`, one file each: the snapshot (table and
// JSON), the live --watch screen, --dump of events, and --check.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "flowbus/inspect.hpp"

namespace flowbus::cli {

/// Events per second per ring segment, from two snapshots `seconds` apart.
using Rates = std::map<std::string, double>;
Rates publish_rates(const BusSnapshot& before, const BusSnapshot& after, double seconds);

/// The snapshot as the human table (lag bars included) or as one JSON object.
std::string render_snapshot(const BusSnapshot& snap, const Rates& rates);
std::string snapshot_json(const BusSnapshot& snap, const Rates& rates);

/// Refreshes the snapshot in place every `interval_s` until q, Ctrl-C, or
/// `frames` frames (0: no limit). Without a terminal, prints frames one after another.
void run_watch(const std::string& bus, double interval_s, uint64_t frames);

struct DumpOptions {
  std::string bus, topic;
  uint64_t count = 10;
  bool from_earliest = false, follow = false, raw = false, json = false;
  bool raw_data = false;  ///< with json: data_base64 (application/x-flatbuffers), not the decoded data
};
/// Prints events of `topic` decoded through its registered schema. Returns the exit code.
int run_dump(const DumpOptions& options);

/// Verifies the bus's invariants and prints the report. Returns the exit code.
int run_check(const std::string& bus, bool json);

}  // namespace flowbus::cli
