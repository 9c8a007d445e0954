// `flowbus inspect BUS --check`: the invariant report, exit 1 on any finding.
// Rings the caller may not read, and rings being removed, are listed apart:
// neither is damage, and neither gets the advice to remove the bus.
#include <cstdio>

#include "../cli_util.hpp"
#include "views.hpp"

namespace flowbus::cli {

namespace {

std::string findings_json(const std::vector<CheckFinding>& findings) {
  std::string o = "[";
  for (size_t i = 0; i < findings.size(); ++i)
    o += std::string(i ? "," : "") + "{\"where\":\"" + json_escape(findings[i].where) + "\",\"problem\":\"" +
         json_escape(findings[i].problem) + "\"}";
  return o + "]";
}

void print_findings(const std::vector<CheckFinding>& findings) {
  for (const auto& f : findings) std::printf("  %s: %s\n", f.where.c_str(), f.problem.c_str());
}

}  // namespace

int run_check(const std::string& bus, bool json) {
  const CheckReport r = check_bus(bus);
  if (json) {
    std::printf("{\"bus\":\"%s\",\"ok\":%s,\"topics\":%llu,\"rings\":%llu,\"records\":%llu,\"cursors\":%llu,"
                "\"findings\":%s,\"unreadable\":%s,\"removing\":%s}\n",
                json_escape(r.bus).c_str(), r.ok() ? "true" : "false", static_cast<unsigned long long>(r.topics),
                static_cast<unsigned long long>(r.rings), static_cast<unsigned long long>(r.records),
                static_cast<unsigned long long>(r.cursors), findings_json(r.findings).c_str(), findings_json(r.unreadable).c_str(),
                findings_json(r.removing).c_str());
    return r.ok() ? 0 : 1;
  }
  std::printf("bus %s: checked %llu topics, %llu rings, %llu records, %llu cursors\n", r.bus.c_str(),
              static_cast<unsigned long long>(r.topics), static_cast<unsigned long long>(r.rings),
              static_cast<unsigned long long>(r.records), static_cast<unsigned long long>(r.cursors));
  if (!r.unreadable.empty()) {
    std::printf("not checked: %zu ring(s) you may not read (not damage; run the check as their owner or as root):\n",
                r.unreadable.size());
    print_findings(r.unreadable);
  }
  if (!r.removing.empty()) {
    std::printf("not checked: %zu ring(s) being removed (not damage):\n", r.removing.size());
    print_findings(r.removing);
  }
  if (r.ok()) {
    std::printf(r.unreadable.empty() ? "ok: every invariant holds\n" : "ok: every invariant holds in what you may read\n");
    return 0;
  }
  std::printf("%zu problem(s):\n", r.findings.size());
  print_findings(r.findings);
  // Only here, where something is damaged: removing a bus is the one cure
  // the check may advise, and never for permission or a passing state.
  std::printf("readers quarantine a damaged ring and keep reading the others; stop its publisher and remove the bus "
              "with `flowbus gc --force %s` to start afresh\n", r.bus.c_str());
  return 1;
}

}  // namespace flowbus::cli
