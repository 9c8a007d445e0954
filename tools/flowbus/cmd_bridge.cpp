// flowbus bridge nats: carry topics between a bus and a NATS JetStream stream.
#include <csignal>
#include <cstdio>

#include "cli_util.hpp"
#include "config_file.hpp"
#include "flowbus/bridge.hpp"
#include "flowbus/error.hpp"

namespace flowbus::cli {

namespace {

std::atomic<bool> g_stop{false};
void on_signal(int) { g_stop.store(true); }  // lock-free atomic: async-signal-safe

}  // namespace

void add_bridge_command(CLI::App& app) {
  struct Args {
    BridgeOptions options;
    std::string token_file, config, import_ring_size;
    uint64_t duplicate_window_s = 120;
    uint64_t reorder_wait_s = 20;
    bool json = false;
  };
  auto args = std::make_shared<Args>();
  CLI::App* bridge =
      app.add_subcommand("bridge", "Bridge a bus to an existing broker (one subcommand per broker: nats).");
  bridge->require_subcommand(1);
  CLI::App* cmd = bridge->add_subcommand(
      "nats",
      "Export chosen topics of a bus to a NATS JetStream stream and import from it: topic a.b.c is subject\n"
      "PREFIX.a.b.c, each message a CloudEvent in the NATS binding's binary mode (ce-* headers, the FlatBuffer\n"
      "as payload), readable by any NATS client. The stream is created if missing (subjects PREFIX.>, file\n"
      "storage). Nothing is lost or doubled across a crash of either side: exports move the ring's cursor only\n"
      "when JetStream acknowledged; imports acknowledge only what the bus holds, and drop what it held already.\n"
      "Example:  flowbus bridge nats --bus plant --url nats://broker:4222 --export 'sensor.>' --import 'orders.>'\n"
      "Each bridge on one stream needs its own --node (the default is the host name).");
  cmd->add_option("--config", args->config,
                  "read options from a TOML file: bus = \"plant\", export = [\"sensor.>\"] "
                  "(keys are the long option names; the command line wins)");
  auto& o = args->options;
  cmd->add_option("--bus", o.bus, "the local bus (required)");
  cmd->add_option("--url", o.url, "the NATS server (nats:// or tls://)")->capture_default_str();
  cmd->add_option("--stream", o.stream, "the JetStream stream; created if missing")->capture_default_str();
  cmd->add_option("--subject-prefix", o.subject_prefix, "topic a.b.c goes to subject PREFIX.a.b.c")
      ->capture_default_str();
  cmd->add_option("--export", o.exports, "topic pattern that goes to NATS (repeatable), e.g. 'sensor.>'");
  cmd->add_option("--import", o.imports, "topic pattern taken from NATS onto the bus (repeatable)");
  cmd->add_option("--reexport", o.reexports, "pattern of mirrored topics (from a sidecar or NATS) exported too");
  cmd->add_option("--node", o.node, "this bridge's node name (origin header, consumer name; default: the host name)");
  cmd->add_option("--durable", o.durable, "the pull consumer's durable name (default: flowbus-NODE)");
  cmd->add_option("--creds", o.creds_file, "NATS credentials file (.creds: JWT and nkey seed)");
  cmd->add_option("--token-file", args->token_file, "file holding the NATS server's token");
  cmd->add_option("--tls-ca", o.tls_ca, "PEM CA certificate that signed the server's certificate (TLS)");
  cmd->add_option("--tls-cert", o.tls_cert, "PEM client certificate, if the server asks for one");
  cmd->add_option("--tls-key", o.tls_key, "PEM private key of --tls-cert");
  cmd->add_option("--max-pending", o.max_pending,
                  "asynchronous publishes not yet acknowledged by JetStream, 1 to 1000000")
      ->capture_default_str();
  cmd->add_option("--fetch-batch", o.fetch_batch, "messages per pull request, 1 to 10000")->capture_default_str();
  cmd->add_option("--reorder-wait-s", args->reorder_wait_s,
                  "how long an import waits for events the stream holds out of order, 1 to 3600 s")
      ->capture_default_str()
      ->check(CLI::Range(uint64_t(1), uint64_t(3600)));
  cmd->add_option("--duplicate-window-s", args->duplicate_window_s,
                  "duplicate window of a stream the bridge creates, 1 to 86400 s")
      ->capture_default_str()
      ->check(CLI::Range(uint64_t(1), uint64_t(86400)));
  cmd->add_option("--import-ring-size", args->import_ring_size,
                  "ring size of topics created on import, e.g. 64MiB (default 4MiB)");
  cmd->add_flag("--json", args->json, "print the final counts as one JSON line on stdout");
  cmd->callback([args, cmd] {
    if (!args->config.empty()) apply_config_file(*cmd, args->config, "flowbus bridge nats --help");
    BridgeOptions& opt = args->options;
    if (opt.bus.empty()) throw CLI::ValidationError("--bus", "the local bus is required");
    if (!args->import_ring_size.empty()) {
      const uint64_t ring = parse_size(args->import_ring_size, "--import-ring-size");
      if (ring < 4096 || ring > (uint64_t(1) << 40) || (ring & (ring - 1)) != 0)
        throw CLI::ValidationError("--import-ring-size",
                                   "'" + args->import_ring_size + "' is not a power of two from 4KiB to 1TiB");
      opt.import_ring_size = ring;
    }
    if (!args->token_file.empty()) opt.token = read_token(args->token_file);
    opt.duplicate_window = std::chrono::seconds(args->duplicate_window_s);
    opt.reorder_wait = std::chrono::seconds(args->reorder_wait_s);
    std::signal(SIGINT, on_signal);
    std::signal(SIGTERM, on_signal);
    std::signal(SIGPIPE, SIG_IGN);
    Bridge b(opt);
    std::fflush(stderr);
    b.run(g_stop);
    const BridgeStats s = b.stats();
    std::fprintf(stderr,
                 "flowbus bridge: stopped: %llu events sent, %llu received, %llu duplicates dropped, %llu refused, "
                 "%llu lost at the source\n",
                 (unsigned long long)s.events_sent, (unsigned long long)s.events_received,
                 (unsigned long long)s.duplicates_dropped, (unsigned long long)s.refused, (unsigned long long)s.gaps);
    if (args->json)
      std::printf(
          "{\"events_sent\":%llu,\"events_received\":%llu,\"duplicates_dropped\":%llu,\"refused\":%llu,\"gaps\":%llu}"
          "\n",
          (unsigned long long)s.events_sent, (unsigned long long)s.events_received,
          (unsigned long long)s.duplicates_dropped, (unsigned long long)s.refused, (unsigned long long)s.gaps);
  });
}

}  // namespace flowbus::cli
