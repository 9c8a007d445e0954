#include "plot.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <sstream>

#include "harness.hpp"
#include "transports.hpp"

namespace flowbus::perf {

namespace {

std::string size_label(size_t bytes) {
  if (bytes >= (1u << 20) && bytes % (1u << 20) == 0) return std::to_string(bytes >> 20) + " MiB";
  if (bytes >= 1024 && bytes % 1024 == 0) return std::to_string(bytes >> 10) + " KiB";
  return std::to_string(bytes) + " B";
}

/// A gnuplot string literal: double quotes, with \ and " escaped and newlines as \n.
std::string quoted(const std::string& text) {
  std::string out = "\"";
  for (char ch : text) {
    if (ch == '\n') {
      out += "\\n";
      continue;
    }
    if (ch == '"' || ch == '\\') out += '\\';
    out += ch;
  }
  return out + "\"";
}

}  // namespace

bool have_gnuplot() {
  const char* path = std::getenv("PATH");
  for (const std::string& dir : split_list(path ? path : "/usr/bin:/bin", ':')) {
    const std::string candidate = dir + "/gnuplot";
    if (::access(candidate.c_str(), X_OK) == 0) return true;
  }
  return false;
}

void plot_latency(const std::string& png_path, const std::vector<LatencyPoint>& points, const std::string& subtitle) {
  if (!have_gnuplot()) fail("--plot needs gnuplot, which is not installed: apt-get install gnuplot-nox");
  if (points.empty()) fail("nothing to plot");
  std::map<size_t, std::vector<const LatencyPoint*>> by_size;
  double lowest = points.front().p50, highest = points.front().p999;
  for (const LatencyPoint& p : points) {
    by_size[p.bytes].push_back(&p);
    lowest = std::min(lowest, p.p50);
    highest = std::max(highest, p.p999);
  }
  std::ostringstream script;
  script << "set terminal pngcairo size " << 400 * by_size.size() + 100 << ",440 font \"sans,10\"\n"
         << "set output " << quoted(png_path) << "\n";
  int block = 0;
  for (const auto& [bytes, rows] : by_size) {  // inline data, one block per size
    script << "$size" << block++ << " << EOD\n";
    for (const LatencyPoint* p : rows)
      script << p->transport << ' ' << p->p50 << ' ' << p->p90 << ' ' << p->p99 << ' ' << p->p999 << "\n";
    script << "EOD\n";
  }
  // One y range for every panel, so that bars compare across sizes.
  const double axis_low = std::pow(10.0, std::floor(std::log10(std::max(lowest, 1.0))));
  const double axis_high = std::pow(10.0, std::ceil(std::log10(std::max(highest, axis_low * 10))));
  script << "set multiplot layout 1," << by_size.size() << " title "
         << quoted("flowbus perf latency: round trip in ns, log scale\n" + subtitle) << "\n"
         << "set logscale y\nset yrange [" << axis_low << ":" << axis_high << "]\nset format y \"10^{%L}\"\n"
         << "set style data histogram\nset style histogram clustered gap 1\n"
         << "set style fill solid 0.85 noborder\nset grid ytics\nset key top left\nset xtics rotate by -30\n";
  block = 0;
  for (const auto& [bytes, rows] : by_size) {
    const bool first = block == 0;  // the key is drawn once, in the first panel
    auto series = [&](int column, const char* name) {
      return "using " + std::to_string(column) + (column == 2 ? ":xtic(1)" : "") +
             (first ? std::string(" title \"") + name + "\"" : std::string(" notitle"));
    };
    script << "set title " << quoted(size_label(bytes)) << "\n"
           << "plot $size" << block++ << " " << series(2, "p50") << ", '' " << series(3, "p90") << ", '' "
           << series(4, "p99") << ", '' " << series(5, "p99.9") << "\n";
  }
  script << "unset multiplot\n";

  // gnuplot's stdout to /dev/null: when it cannot open the output it draws the PNG to stdout.
  FILE* gnuplot = ::popen("gnuplot >/dev/null", "w");
  if (!gnuplot) fail("cannot run gnuplot");
  const std::string text = script.str();
  const bool written = std::fwrite(text.data(), 1, text.size(), gnuplot) == text.size();
  const int status = ::pclose(gnuplot);
  if (!written || status != 0) fail("gnuplot failed to draw " + png_path + " (its message is above)");
  struct stat st;
  if (::stat(png_path.c_str(), &st) != 0 || st.st_size == 0) fail("gnuplot wrote no " + png_path);
}

}  // namespace flowbus::perf
