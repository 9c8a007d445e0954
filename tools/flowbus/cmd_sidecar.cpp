// flowbus sidecar: mirror topics to and from peers on other hosts.
#include <csignal>
#include <cstdio>

#include "cli_util.hpp"
#include "config_file.hpp"
#include "flowbus/error.hpp"
#include "flowbus/sidecar.hpp"

namespace flowbus::cli {

namespace {

std::atomic<bool> g_stop{false};
void on_signal(int) { g_stop.store(true); }  // lock-free atomic: async-signal-safe

}  // namespace

void add_sidecar_command(CLI::App& app) {
  struct Args {
    SidecarOptions options;
    std::string token_file, config, import_ring_size, import_retention, import_timeout;
    uint64_t heartbeat_ms = 1000, timeout_ms = 5000, resume_s = 60, handshake_ms = 5000;
  };
  auto args = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand(
      "sidecar",
      "Mirror chosen topics of a bus to peers on other hosts, and take in what they send.\n"
      "Nothing leaves unless --export allows it; nothing arrives unless --import allows it.\n"
      "Example:  flowbus sidecar --bus plant --node plant --listen 0.0.0.0:7400 --export 'sensor.>'\n"
      "          flowbus sidecar --bus control --node control --peer plant-host:7400 --import 'sensor.>'\n"
      "Each sidecar needs its own --node name (the default is the host name: two sidecars on one host need --node).");
  cmd->add_option("--config", args->config, "read options from a TOML file: bus = \"plant\", export = [\"sensor.>\"] "
                                             "(keys are the long option names; the command line wins)");
  auto& o = args->options;
  cmd->add_option("--bus", o.bus, "the local bus (required)");
  cmd->add_option("--listen", o.listen, "accept peers on HOST:PORT (port 0: any free port, printed at start)");
  cmd->add_option("--peer", o.peers, "connect to a peer's HOST:PORT (repeatable; reconnects forever)");
  cmd->add_option("--export", o.exports, "topic pattern that may leave this host (repeatable), e.g. 'sensor.>'");
  cmd->add_option("--import", o.imports, "topic pattern peers may write here (repeatable)");
  cmd->add_option("--reexport", o.reexports, "pattern of mirrored topics passed on to further peers (chains A -> B -> C)");
  cmd->add_option("--node", o.node, "this sidecar's node name (default: the host name); unique among peers, so set it when two sidecars share a host");
  cmd->add_option("--import-ring-size", args->import_ring_size,
                  "ring size of topics created on import, e.g. 64MiB (default: the origin topic's)");
  cmd->add_option("--import-retention", args->import_retention,
                  "retention in seconds of topics created on import (default: the origin topic's)");
  cmd->add_option("--import-timeout", args->import_timeout,
                  "slow-consumer timeout in seconds, or inf, of topics created on import (default: the origin topic's)");
  cmd->add_option("--tls-cert", o.tls_cert, "PEM certificate of this node (TLS with mutual authentication)");
  cmd->add_option("--tls-key", o.tls_key, "PEM private key of --tls-cert");
  cmd->add_option("--tls-ca", o.tls_ca, "PEM CA certificate that signed the peers' certificates");
  cmd->add_option("--token-file", args->token_file, "file holding a shared secret both sides must know");
  cmd->add_option("--batch-bytes", o.batch_bytes, "payload bytes per batch of small events")->capture_default_str();
  cmd->add_option("--window", o.window, "bytes in flight per connection before reading stops (backpressure)")->capture_default_str();
  cmd->add_option("--heartbeat-ms", args->heartbeat_ms, "heartbeat interval when idle, 10 to 600000")
      ->capture_default_str()
      ->check(CLI::Range(uint64_t(10), uint64_t(600000)));
  cmd->add_option("--peer-timeout-ms", args->timeout_ms,
                  "drop a peer that sends no frame (nor 64 KiB of one) this long, 100 to 3600000, more than --heartbeat-ms")
      ->capture_default_str()
      ->check(CLI::Range(uint64_t(100), uint64_t(3600000)));
  cmd->add_option("--handshake-timeout-ms", args->handshake_ms,
                  "close an incoming or outgoing connection not authenticated (TLS, Hello, Auth) within this long, 100 to 600000")
      ->capture_default_str()
      ->check(CLI::Range(uint64_t(100), uint64_t(600000)));
  cmd->add_option("--max-pending", o.max_pending,
                  "incoming connections that may be in their handshake at once, 1 to 100000; more are closed at once")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  cmd->add_option("--max-peers", o.max_peers,
                  "peers exported to at once, connected or within their resume window, 1 to 48 (each holds a reader "
                  "slot of every ring it mirrors); a further peer replaces the longest-parked one, or is refused")
      ->capture_default_str()
      ->check(CLI::Range(1, 48));
  cmd->add_option("--resume-window-s", args->resume_s,
                  "keep a disconnected peer's read positions (and hold its unacknowledged events) this long, 0 to 86400")
      ->capture_default_str()
      ->check(CLI::Range(uint64_t(0), uint64_t(86400)));
  cmd->callback([args, cmd] {
    if (!args->config.empty()) apply_config_file(*cmd, args->config, "flowbus sidecar --help");
    if (!args->import_ring_size.empty()) {
      const uint64_t ring = parse_size(args->import_ring_size, "--import-ring-size");
      if (ring < 4096 || ring > (uint64_t(1) << 40) || (ring & (ring - 1)) != 0)
        throw CLI::ValidationError("--import-ring-size", "'" + args->import_ring_size +
                                                             "' is not a power of two from 4KiB to 1TiB (e.g. 64MiB)");
      args->options.import_ring_size = ring;
    }
    if (!args->import_retention.empty())
      args->options.import_retention = parse_retention(args->import_retention, "--import-retention");
    if (!args->import_timeout.empty()) {
      args->options.import_slow_consumer_timeout = parse_seconds(args->import_timeout, "--import-timeout");
      if (args->options.import_slow_consumer_timeout.count() == 0)
        throw CLI::ValidationError("--import-timeout", "0 would evict every reader at once: give more than 0 (e.g. 5s) or never");
    }
    if (args->timeout_ms <= args->heartbeat_ms)
      throw CLI::ValidationError("--peer-timeout-ms", std::to_string(args->timeout_ms) +
                                                          " must be longer than --heartbeat-ms (" +
                                                          std::to_string(args->heartbeat_ms) + "), or idle peers are dropped");
    if (!args->token_file.empty()) args->options.token = read_token(args->token_file);
    args->options.heartbeat = std::chrono::milliseconds(args->heartbeat_ms);
    args->options.peer_timeout = std::chrono::milliseconds(args->timeout_ms);
    args->options.handshake_timeout = std::chrono::milliseconds(args->handshake_ms);
    args->options.resume_window = std::chrono::milliseconds(args->resume_s * 1000);
    std::signal(SIGINT, on_signal);
    std::signal(SIGTERM, on_signal);
    std::signal(SIGPIPE, SIG_IGN);
    Sidecar sidecar(args->options);
    sidecar.start();
    std::fflush(stderr);
    sidecar.run(g_stop);
    const SidecarStats s = sidecar.stats();
    std::fprintf(stderr, "flowbus sidecar: stopped: %llu events sent, %llu received, %llu duplicates dropped, %llu lost at the source\n",
                 (unsigned long long)s.events_sent, (unsigned long long)s.events_received,
                 (unsigned long long)s.duplicates_dropped, (unsigned long long)s.gaps_reported);
  });
}

}  // namespace flowbus::cli
