// flowbus: one command line for the bus.
#include <cstdio>

#include "cli_util.hpp"
#include "flowbus/error.hpp"
#include "flowbus/version.hpp"

int main(int argc, char** argv) {
  CLI::App app{"flowbus: a shared-memory event bus. Events are FlatBuffers with CloudEvents context,\n"
               "read in place by every process on the host.",
               "flowbus"};
  app.set_version_flag("--version", "flowbus " FLOWBUS_VERSION_STRING);
  app.require_subcommand(1);
  app.fallthrough();
  flowbus::cli::add_topic_commands(app);
  flowbus::cli::add_pub_command(app);
  flowbus::cli::add_sub_command(app);
  flowbus::cli::add_gc_command(app);
  flowbus::cli::add_demo_command(app, argv[0]);
  flowbus::cli::add_perf_command(app);
  flowbus::cli::add_inspect_command(app);
  flowbus::cli::add_sidecar_command(app);
  flowbus::cli::add_record_command(app);
  flowbus::cli::add_replay_command(app);
  flowbus::cli::add_exporter_command(app);
  flowbus::cli::add_bridge_command(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const flowbus::cli::ExitCode& e) {
    return e.code;
  } catch (const std::exception& e) {  // flowbus::Error and the rest: the message says what to do
    std::fprintf(stderr, "flowbus: %s\n", e.what());
    return 1;
  }
  return 0;
}
