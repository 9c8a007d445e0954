// Bridge: checks the options, connects, sets up the stream, then runs the
// exporter and the importer on a thread each and writes the status that
// `flowbus inspect` shows beside the sidecars.
#include "flowbus/bridge.hpp"

#include <unistd.h>

#include <cstdio>
#include <ctime>
#include <thread>

#include "context.hpp"
#include "exporter.hpp"
#include "flowbus/error.hpp"
#include "flowbus/names.hpp"
#include "importer.hpp"
#include "nats_link.hpp"

namespace flowbus {

using namespace bridge;

namespace bridge {

std::string json_text(std::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\')
      out += '\\', out += c;
    else if (static_cast<unsigned char>(c) < 0x20)
      out += ' ';
    else
      out += c;
  }
  return out + "\"";
}

std::string hex_id(uint64_t id) {
  char buf[20];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(id));
  return buf;
}

}  // namespace bridge

namespace {

void log_to_stderr(const std::string& line) {
  char stamp[32];
  const std::time_t now = std::time(nullptr);
  std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", std::gmtime(&now));
  std::fprintf(stderr, "%sZ flowbus bridge: %s\n", stamp, line.c_str());
}

bool valid_token(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_')) return false;
  return true;
}

void validate(BridgeOptions& o) {
  validate_bus_name(o.bus);
  if (o.node.empty()) {
    char buf[256] = {};
    o.node = ::gethostname(buf, sizeof buf - 1) == 0 ? buf : "flowbus";
  }
  for (char& c : o.node)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_')) c = '-';
  if (o.durable.empty()) o.durable = "flowbus-" + o.node;
  if (!valid_token(o.durable))
    throw Error(ErrorCode::InvalidArgument, "--durable '" + o.durable + "': use letters, digits, '-' and '_'");
  if (!valid_token(o.stream))
    throw Error(ErrorCode::InvalidArgument,
                "--stream '" + o.stream + "': a JetStream stream name of letters, digits, '-' and '_'");
  validate_topic_name(o.subject_prefix);  // dotted tokens, no wildcards
  for (auto* list : {&o.exports, &o.imports, &o.reexports})
    for (const std::string& p : *list) validate_pattern(p);
  if (o.exports.empty() && o.imports.empty())
    throw Error(ErrorCode::InvalidArgument,
                "nothing to bridge: give --export PATTERN (topics that go to NATS) and/or "
                "--import PATTERN (topics taken from NATS)");
  if (o.max_pending == 0 || o.max_pending > 1'000'000)
    throw Error(ErrorCode::InvalidArgument, "--max-pending must be 1 to 1000000");
  if (o.fetch_batch == 0 || o.fetch_batch > 10'000)
    throw Error(ErrorCode::InvalidArgument, "--fetch-batch must be 1 to 10000");
  if (o.reorder_wait.count() < 1 || o.reorder_wait.count() > 3600)
    throw Error(ErrorCode::InvalidArgument, "--reorder-wait-s must be 1 to 3600");
  if (!o.log) o.log = log_to_stderr;
}

}  // namespace

struct Bridge::Engine {
  BridgeOptions options;
  Connection nc;
  BridgeContext ctx;

  explicit Engine(BridgeOptions o)
      : options(std::move(o)), nc(connect(options)), ctx{options, nc.get(), {}, {}, "[]", "[]", 0} {
    JetStream js = jetstream(nc.get(), options);
    const bool created = ensure_stream(js.get(), options);
    options.log("node " + options.node + " on bus " + options.bus + ", NATS " + options.url + ", stream " +
                options.stream +
                (created ? " (created: subjects " + options.subject_prefix + ".>, file storage, duplicate window " +
                               std::to_string(options.duplicate_window.count()) + " s)"
                         : " (exists, checked)"));
  }

  std::string status_path() const { return "/dev/shm/flowbus." + options.bus + ".~sidecar-nats-" + options.node; }

  /// In the sidecars' status format, so `flowbus inspect` shows the bridge
  /// beside them: one "peer", the stream, whose exports carry what JetStream
  /// acknowledged (acked_sequence) and pending acks.
  void write_status() {
    const auto unix_ns =
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
            .count();
    std::string exports, imports;
    uint64_t pending = 0;
    {
      std::lock_guard<std::mutex> lock(ctx.status_mutex);
      exports = ctx.exports_json;
      imports = ctx.imports_json;
      pending = ctx.pending_acks;
    }
    const bool connected = natsConnection_Status(nc.get()) == NATS_CONN_STATUS_CONNECTED;
    std::string out = "{\"node\":" + json_text("nats:" + options.node) +
                      ",\"kind\":\"bridge\",\"pid\":" + std::to_string(::getpid()) +
                      ",\"listen_port\":0,\"updated_ns\":" + std::to_string(unix_ns) +
                      ",\"events_sent\":" + std::to_string(ctx.stats.events_sent.load()) +
                      ",\"events_received\":" + std::to_string(ctx.stats.events_received.load()) +
                      ",\"duplicates_dropped\":" + std::to_string(ctx.stats.duplicates_dropped.load()) +
                      ",\"refused\":" + std::to_string(ctx.stats.refused.load()) +
                      ",\"gaps\":" + std::to_string(ctx.stats.gaps.load()) +
                      ",\"peers\":[{\"node\":" + json_text("jetstream:" + options.stream) +
                      ",\"address\":" + json_text(options.url) +
                      ",\"outbound\":true,\"connected\":" + (connected ? "true" : "false") +
                      ",\"queued_bytes\":0,\"pending_acks\":" + std::to_string(pending) + ",\"exports\":" + exports +
                      ",\"imports\":" + imports + "}]}\n";
    const std::string path = status_path(), tmp = path + ".tmp";
    if (FILE* f = std::fopen(tmp.c_str(), "w")) {
      const bool ok = std::fwrite(out.data(), 1, out.size(), f) == out.size();
      if (std::fclose(f) == 0 && ok)
        std::rename(tmp.c_str(), path.c_str());
      else
        std::remove(tmp.c_str());
    }
  }
};

Bridge::Bridge(BridgeOptions options) {
  validate(options);
  engine_ = std::make_unique<Engine>(std::move(options));
}

Bridge::~Bridge() = default;

void Bridge::run(const std::atomic<bool>& stop) {
  Engine& e = *engine_;
  std::atomic<bool> inner_stop{false};
  std::string failure;
  std::mutex failure_mutex;
  const auto guarded = [&](void (*body)(BridgeContext&, const std::atomic<bool>&)) {
    return std::thread([&, body] {
      try {
        body(e.ctx, inner_stop);
      } catch (const std::exception& ex) {
        std::lock_guard<std::mutex> lock(failure_mutex);
        if (failure.empty()) failure = ex.what();
        inner_stop.store(true);
      }
    });
  };
  std::thread exporter = guarded(run_exporter);
  std::thread importer = guarded(run_importer);
  while (!stop.load(std::memory_order_relaxed) && !inner_stop.load()) {
    e.write_status();
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  inner_stop.store(true);
  exporter.join();
  importer.join();
  std::remove(e.status_path().c_str());
  if (!failure.empty()) throw Error(ErrorCode::System, failure);
}

BridgeStats Bridge::stats() const noexcept {
  const SharedStats& s = engine_->ctx.stats;
  return {s.events_sent.load(), s.events_received.load(), s.duplicates_dropped.load(), s.refused.load(), s.gaps.load()};
}

}  // namespace flowbus
