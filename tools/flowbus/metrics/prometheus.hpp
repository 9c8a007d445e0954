// Bus metrics in the Prometheus text exposition format (version 0.0.4), for
// `flowbus exporter` (served over HTTP) and `flowbus inspect BUS --prometheus`
// (printed once). Both gather the same way `flowbus inspect` does, through
// inspect_bus(): segments mapped read-only, no cursor, no participant, so
// being watched changes nothing for the bus. The metric list is in
// docs/design.md ("Metrics").
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "flowbus/inspect.hpp"

namespace flowbus::metrics {

/// The Content-Type of the text format.
inline constexpr const char* kContentType = "text/plain; version=0.0.4; charset=utf-8";

/// A label value as the text format writes it: \ " and newline escaped.
std::string escape_label_value(std::string_view value);
/// A HELP text: \ and newline escaped.
std::string escape_help(std::string_view help);
/// A sample value: integers exactly, others shortest round-trip, NaN, +Inf, -Inf.
std::string format_value(double value);
std::string format_value(uint64_t value);
/// [a-zA-Z_:][a-zA-Z0-9_:]* (metric) and [a-zA-Z_][a-zA-Z0-9_]* not starting with __ (label).
bool valid_metric_name(std::string_view name);
bool valid_label_name(std::string_view name);

using Labels = std::vector<std::pair<std::string_view, std::string>>;

/// Collects samples in any order and writes them grouped by family, each
/// family once with its HELP and TYPE lines, in the order families were
/// declared. A sample whose label set its family already has is dropped (the
/// first one wins), so the output never holds a duplicate series.
class Exposition {
 public:
  enum class Type { Counter, Gauge };
  /// Declares a family; samples of undeclared families are a programming error (std::logic_error).
  void family(std::string_view name, Type type, std::string_view help);
  void add(std::string_view name, const Labels& labels, double value);
  void add(std::string_view name, const Labels& labels, uint64_t value);
  /// Families without samples are left out.
  std::string text() const;

 private:
  struct Family {
    std::string name, help;
    Type type;
    std::vector<std::string> lines;
    std::set<std::string> series;
  };
  void add_formatted(std::string_view name, const Labels& labels, const std::string& value);
  std::vector<Family> families_;
  std::map<std::string, size_t, std::less<>> index_;
};

/// One bus as the exporter saw it: its snapshot, or why it could not be read.
struct BusReading {
  std::string name;
  std::optional<BusSnapshot> snapshot;
  std::string error;  ///< when there is no snapshot: what inspect_bus said
};

/// Reads `names` with inspect_bus(), each on its own (one that fails does not
/// stop the others); with no names, every bus on the host (list_buses()).
std::vector<BusReading> read_buses(const std::vector<std::string>& names);

/// Declares every flowbus_* family (bus, topic, ring, reader, mirror).
void declare_bus_families(Exposition& out);
/// Adds the samples of one bus (flowbus_bus_up 0 and nothing else if it could not be read).
void add_bus(Exposition& out, const BusReading& bus);

/// The whole page for `buses`: declare_bus_families + add_bus for each.
std::string render(const std::vector<BusReading>& buses);

}  // namespace flowbus::metrics
