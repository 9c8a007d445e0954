// `flowbus inspect BUS --check`: the invariant report, exit 1 on any finding.
#include <cstdio>

#include "../cli_util.hpp"
#include "views.hpp"

namespace flowbus::cli {

int run_check(const std::string& bus, bool json) {
  const CheckReport r = check_bus(bus);
  if (json) {
    std::string o = "{\"bus\":\"" + json_escape(r.bus) + "\",\"ok\":" + (r.ok() ? "true" : "false") +
                    ",\"topics\":" + std::to_string(r.topics) + ",\"rings\":" + std::to_string(r.rings) +
                    ",\"records\":" + std::to_string(r.records) + ",\"cursors\":" + std::to_string(r.cursors) + ",\"findings\":[";
    for (size_t i = 0; i < r.findings.size(); ++i)
      o += std::string(i ? "," : "") + "{\"where\":\"" + json_escape(r.findings[i].where) + "\",\"problem\":\"" +
           json_escape(r.findings[i].problem) + "\"}";
    std::printf("%s]}\n", o.c_str());
  } else {
    std::printf("bus %s: checked %llu topics, %llu rings, %llu records, %llu cursors\n", r.bus.c_str(),
                static_cast<unsigned long long>(r.topics), static_cast<unsigned long long>(r.rings),
                static_cast<unsigned long long>(r.records), static_cast<unsigned long long>(r.cursors));
    if (r.ok()) {
      std::printf("ok: every invariant holds\n");
    } else {
      std::printf("%zu problem(s):\n", r.findings.size());
      for (const auto& f : r.findings) std::printf("  %s: %s\n", f.where.c_str(), f.problem.c_str());
      std::printf("readers quarantine a damaged ring and keep reading the others; stop its publisher and remove the bus "
                  "with `flowbus gc --force %s` to start afresh\n", r.bus.c_str());
    }
  }
  return r.ok() ? 0 : 1;
}

}  // namespace flowbus::cli
