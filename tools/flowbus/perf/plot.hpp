// `flowbus perf latency --plot`: the percentiles drawn by gnuplot.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace flowbus::perf {

struct LatencyPoint {
  std::string transport;
  size_t bytes = 0;
  double p50 = 0, p90 = 0, p99 = 0, p999 = 0;  // round trip, ns
};

/// True if a `gnuplot` executable is on the PATH.
bool have_gnuplot();

/// Writes a PNG with one panel per payload size: p50, p90, p99 and p99.9 of
/// each transport as clustered bars on a log scale. gnuplot runs through a
/// pipe with the data inline. Throws if gnuplot is missing or fails.
void plot_latency(const std::string& png_path, const std::vector<LatencyPoint>& points, const std::string& subtitle);

}  // namespace flowbus::perf
