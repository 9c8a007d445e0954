// Sidecar: the shared-memory thread's loop. Network events in, sessions
// stepped (exports read, imports retried, heartbeats), parked peers expired.
#include "flowbus/sidecar.hpp"

#include <unistd.h>

#include <cstdio>
#include <ctime>
#include <map>
#include <thread>

#include "flowbus/error.hpp"
#include "flowbus/names.hpp"
#include "flowbus/wire/codec.hpp"
#include "pump.hpp"
#include "session.hpp"

namespace flowbus {

using namespace sidecar;

namespace {

void log_to_stderr(const std::string& line) {
  char stamp[32];
  const std::time_t now = std::time(nullptr);
  std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", std::gmtime(&now));
  std::fprintf(stderr, "%sZ flowbus sidecar: %s\n", stamp, line.c_str());
}

std::string escape_control(const std::string& line) {
  std::string out;
  out.reserve(line.size());
  for (const char c : line) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte >= 0x20 && byte != 0x7f) {
      out += c;
      continue;
    }
    char hex[5];
    std::snprintf(hex, sizeof hex, "\\x%02x", byte);
    out += hex;
  }
  return out;
}

std::string default_node() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "flowbus";
  std::string node;
  for (const char* p = buf; *p && node.size() < wire::kMaxNodeName; ++p) node += wire::is_valid_node_name(std::string(1, *p)) ? *p : '-';
  return node.empty() ? "flowbus" : node;
}

void validate(SidecarOptions& o) {
  validate_bus_name(o.bus);
  if (o.node.empty()) o.node = default_node();
  if (!wire::is_valid_node_name(o.node))
    throw Error(ErrorCode::InvalidArgument, "node name '" + o.node + "': use 1 to 63 of letters, digits, '.', '_' and '-'");
  for (auto* list : {&o.exports, &o.imports, &o.reexports})
    for (const std::string& p : *list) validate_pattern(p);
  if (o.listen.empty() && o.peers.empty())
    throw Error(ErrorCode::InvalidArgument, "nothing to do: give --listen HOST:PORT, --peer HOST:PORT, or both");
  if (o.exports.empty() && o.imports.empty())
    throw Error(ErrorCode::InvalidArgument, "nothing to mirror: give --export PATTERN (topics that may leave) and/or "
                                            "--import PATTERN (topics peers may write here)");
  if (o.import_ring_size != 0 && (o.import_ring_size < 4096 || (o.import_ring_size & (o.import_ring_size - 1)) != 0))
    throw Error(ErrorCode::InvalidArgument, "--import-ring-size must be a power of two of at least 4 KiB (e.g. 64MiB)");
  if (o.max_pending == 0) throw Error(ErrorCode::InvalidArgument, "--max-pending must be at least 1");
  if (o.max_peers == 0 || o.max_peers > 48)
    throw Error(ErrorCode::InvalidArgument,
                "--max-peers must be 1 to 48 (each peer takes one of the 64 readers a ring's writer holds bytes for; "
                "16 stay local)");
  if (o.handshake_timeout.count() <= 0) throw Error(ErrorCode::InvalidArgument, "--handshake-timeout-ms must be positive");
  if (o.batch_bytes < 4096) throw Error(ErrorCode::InvalidArgument, "--batch-bytes must be at least 4096");
  // Log lines carry what peers sent (reasons, topics, sources): a control
  // character (a newline, an escape sequence) is written as \xNN so that no
  // peer can forge a line or drive the operator's terminal.
  o.log = [write = o.log ? std::move(o.log) : log_to_stderr](const std::string& line) { write(escape_control(line)); };
}

}  // namespace

struct Sidecar::Engine {
  SidecarOptions options;
  Bus bus;
  Pump pump;
  SidecarStats stats;
  EngineContext ctx;
  std::map<uint32_t, std::unique_ptr<Session>> sessions;  // by link id

  explicit Engine(SidecarOptions o)
      : options(std::move(o)), bus(Bus::open(options.bus)), pump(options), ctx{options, bus, pump, stats, {}, {}, {}} {}

  bool handle_network() {
    bool did = false;
    NetEvent ev;
    for (int i = 0; i < 256 && pump.poll(ev); ++i) {
      did = true;
      const uint32_t id = ev.link->id;
      switch (ev.kind) {
        case NetEvent::Kind::Connected: {
          auto s = std::make_unique<Session>(ctx, ev.link);
          s->on_connected();
          sessions[id] = std::move(s);
          break;
        }
        case NetEvent::Kind::Bytes: {
          auto it = sessions.find(id);
          if (it == sessions.end()) {
            pump.consumed(ev.link, ev.chunk);
            pump.recycle(ev.chunk);
          } else {
            it->second->on_bytes(ev.chunk);
          }
          break;
        }
        case NetEvent::Kind::Closed: {
          auto it = sessions.find(id);
          if (it != sessions.end()) {
            it->second->on_closed(ev.reason);
            sessions.erase(it);
          } else {
            // Never got as far as a session (TLS refused it).
            options.log((ev.link->outbound ? "peer " : "connection from ") + ev.link->address + ": " + ev.reason);
          }
          break;
        }
      }
    }
    return did;
  }

  /// Where `flowbus inspect` finds this sidecar's state: a small JSON file
  /// next to the bus's segments (so `gc` and Bus::destroy remove it with
  /// them), replaced atomically twice a second, removed on exit.
  std::string status_path() const { return "/dev/shm/flowbus." + options.bus + ".~sidecar-" + options.node; }

  void write_status(uint16_t port) const {
    const auto unix_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                             std::chrono::system_clock::now().time_since_epoch()).count();
    std::string out = "{\"node\":" + json_text(options.node) + ",\"pid\":" + std::to_string(::getpid()) +
                      ",\"listen_port\":" + std::to_string(port) + ",\"updated_ns\":" + std::to_string(unix_ns) +
                      ",\"events_sent\":" + std::to_string(stats.events_sent) +
                      ",\"events_received\":" + std::to_string(stats.events_received) +
                      ",\"duplicates_dropped\":" + std::to_string(stats.duplicates_dropped) +
                      ",\"gaps\":" + std::to_string(stats.gaps_reported) + ",\"peers\":[";
    bool first = true;
    for (const auto& [id, s] : sessions) {
      if (s->peer_node().empty()) continue;  // still in its handshake
      if (!first) out += ",";
      s->describe(out);
      first = false;
    }
    for (const auto& [node, parked] : ctx.parked) {
      out += std::string(first ? "" : ",") + "{\"node\":" + json_text(node) + ",\"connected\":false,\"exports\":[";
      describe_exports(parked->rings, out);
      out += "],\"imports\":[]}";
      first = false;
    }
    out += "]}\n";
    const std::string path = status_path(), tmp = path + ".tmp";
    if (FILE* f = std::fopen(tmp.c_str(), "w")) {
      const bool ok = std::fwrite(out.data(), 1, out.size(), f) == out.size();
      if (std::fclose(f) == 0 && ok) std::rename(tmp.c_str(), path.c_str());
      else std::remove(tmp.c_str());  // a full /dev/shm: the next round tries again
    }
  }

  void expire_parked(Clock::time_point now) {
    for (auto it = ctx.parked.begin(); it != ctx.parked.end();) {
      if (now - it->second->disconnected_at > options.resume_window) {
        options.log("peer " + it->first + " stayed away for " + std::to_string(options.resume_window.count() / 1000) +
                    " s: its read positions are released");
        it = ctx.parked.erase(it);
      } else {
        ++it;
      }
    }
  }
};

Sidecar::Sidecar(SidecarOptions options) {
  validate(options);
  engine_ = std::make_unique<Engine>(std::move(options));
}

Sidecar::~Sidecar() = default;

void Sidecar::start() {
  engine_->pump.start();
  Engine& e = *engine_;
  std::string what = "node " + e.options.node + " on bus " + e.options.bus;
  if (!e.options.listen.empty()) what += ", listening on port " + std::to_string(e.pump.listen_port());
  for (const auto& p : e.options.peers) what += ", peer " + p;
  e.options.log(what);
}

void Sidecar::run(const std::atomic<bool>& stop) {
  Engine& e = *engine_;
  uint32_t idle = 0;
  Clock::time_point last_expiry = Clock::now();
  while (!stop.load(std::memory_order_relaxed)) {
    bool did = e.handle_network();
    const Clock::time_point now = Clock::now();
    for (auto& [id, s] : e.sessions) {
      did |= s->step(now);
      s->flush_out();  // this round's frames (and the handshake's, acks) in one write
    }
    if (now - last_expiry > std::chrono::milliseconds(500)) {
      e.expire_parked(now);
      e.write_status(e.pump.listen_port());
      last_expiry = now;
    }
    // Spin a little while busy, then nap: an idle sidecar costs little CPU,
    // a busy one reacts within microseconds.
    idle = did ? 0 : idle + 1;
    if (idle > 2000) std::this_thread::sleep_for(std::chrono::microseconds(200));
    else if (idle > 200) std::this_thread::yield();
  }
  for (auto& [id, s] : e.sessions) s->shut("the sidecar is stopping");
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // let the Byes go out
  e.pump.stop();
  std::remove(e.status_path().c_str());
}

uint16_t Sidecar::listen_port() const noexcept { return engine_->pump.listen_port(); }
SidecarStats Sidecar::stats() const noexcept { return engine_->stats; }

}  // namespace flowbus
