// flowbus gc: remove what is stale, nothing else.
#include <cstdio>

#include "cli_util.hpp"
#include "flowbus/gc.hpp"

namespace flowbus::cli {

void add_gc_command(CLI::App& app) {
  struct Args {
    std::string bus;
    bool force = false, json = false;
  };
  auto args = std::make_shared<Args>();
  CLI::App* gc = app.add_subcommand("gc", "Free what dead processes left; remove expired rings and abandoned buses");
  gc->add_option("bus", args->bus, "only this bus (default: every bus on the host)");
  gc->add_flag("--force", args->force,
               "also remove buses with no live process that still have topics or retained rings, and damaged buses");
  gc->add_flag("--json", args->json, "print the report as one JSON object");
  gc->callback([args] {
    const GcReport r = collect_garbage(args->bus.empty() ? std::nullopt : std::optional<std::string>(args->bus), args->force);
    if (args->json) {
      auto list = [](const std::vector<std::string>& v) { return json_string_array(v); };
      std::printf("{\"removed_buses\":%s,\"removed_segments\":%s,\"kept_buses\":%s,\"participants_cleaned\":%zu,\"errors\":%s}\n",
                  list(r.removed_buses).c_str(), list(r.removed_segments).c_str(), list(r.kept_buses).c_str(),
                  r.participants_cleaned, list(r.errors).c_str());
    } else {
      for (const auto& b : r.removed_buses) std::printf("removed bus %s\n", b.c_str());
      for (const auto& s : r.removed_segments) std::printf("removed /dev/shm/%s\n", s.c_str());
      for (const auto& b : r.kept_buses) std::printf("kept bus %s\n", b.c_str());
      if (r.participants_cleaned) std::printf("cleaned up after %zu dead process(es)\n", r.participants_cleaned);
      if (r.removed_segments.empty() && r.participants_cleaned == 0 && r.errors.empty()) std::printf("nothing stale\n");
      for (const auto& e : r.errors) std::fprintf(stderr, "flowbus gc: %s\n", e.c_str());
    }
    if (!r.errors.empty()) throw ExitCode{1};
  });
}

}  // namespace flowbus::cli
