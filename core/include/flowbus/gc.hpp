// Garbage collection of stale buses and rings (`flowbus gc`).
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace flowbus {

struct GcReport {
  std::vector<std::string> removed_segments;  ///< names under /dev/shm
  std::vector<std::string> removed_buses;
  std::vector<std::string> kept_buses;        ///< with a reason: "plant: 2 live participants"
  size_t participants_cleaned = 0;
  std::vector<std::string> errors;            ///< buses that could not be examined, and why
};

/// Frees what dead participants left on `bus` (or every bus), removes rings
/// whose writer is gone and whose retention has passed, and removes buses with
/// no live participant, no topic and nothing retained (a topic is
/// configuration, not garbage). `force` also removes dead buses that still
/// have topics or retained rings, and damaged or foreign-version buses.
GcReport collect_garbage(const std::optional<std::string>& bus, bool force);

/// Names of the buses on this host.
std::vector<std::string> list_buses();

}  // namespace flowbus
