#include "nats.hpp"

#include <fcntl.h>
#include <nats/nats.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

#include "../cli_util.hpp"
#include "flowbus/bridge.hpp"
#include "flowbus/bus.hpp"
#include "flowbus/error.hpp"
#include "flowbus/perf_generated.h"
#include "transports.hpp"

extern char** environ;

namespace flowbus::perf {

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

std::string topic_for(size_t bytes, int run) {
  return "perf.nats.r" + std::to_string(run) + ".s" + std::to_string(bytes);
}

/// A nats-server -js of our own on a free loopback port (when no --url is given).
struct OwnServer {
  pid_t pid = -1;
  std::string dir, url;
  OwnServer() {
    char tmpl[] = "/tmp/flowbus-perf-nats-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) fail("mkdtemp failed");
    dir = tmpl;
    const int port = 20000 + int(::getpid() % 20000);
    url = "nats://127.0.0.1:" + std::to_string(port);
    const std::string p = std::to_string(port), sd = dir + "/store";
    const char* argv[] = {"nats-server", "-js", "-a", "127.0.0.1", "-p", p.c_str(), "-sd", sd.c_str(), nullptr};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, (dir + "/server.log").c_str(), O_WRONLY | O_CREAT, 0600);
    const int rc = ::posix_spawnp(&pid, "nats-server", &fa, nullptr, const_cast<char**>(argv), environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0)
      fail("cannot start nats-server (apt-get install nats-server, or give --url): " + std::string(std::strerror(rc)));
    for (int i = 0; i < 500; ++i) {  // up once it accepts a client
      natsConnection* nc = nullptr;
      if (natsConnection_ConnectTo(&nc, url.c_str()) == NATS_OK) {
        natsConnection_Destroy(nc);
        return;
      }
      std::this_thread::sleep_for(20ms);
    }
    fail("nats-server did not start on " + url);
  }
  ~OwnServer() {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      int st = 0;
      ::waitpid(pid, &st, 0);
    }
    std::system(("rm -rf '" + dir + "'").c_str());
  }
};

struct Message {
  flatbuffers::FlatBufferBuilder fbb;
  uint8_t* payload = nullptr;
  size_t bytes;
  explicit Message(size_t n) : fbb(n + 256), bytes(n) {
    fbb.Finish(flowbus::perf::CreatePayload(fbb, fbb.CreateUninitializedVector(n, 1, &payload)));
    std::memset(payload, 0x5a, n);
  }
  std::span<const uint8_t> stamped(uint64_t i) {
    stamp(payload, bytes, i);
    return {fbb.GetBufferPointer(), fbb.GetSize()};
  }
};

bool payload_ok(const Event& e, size_t bytes, uint64_t i) {
  const auto* p = flatbuffers::GetRoot<flowbus::perf::Payload>(e.data());
  return p && p->bytes() && p->bytes()->size() == bytes && check_stamp(p->bytes()->data(), bytes, i);
}

/// Two buses, an exporting bridge on A and an importing one on B, in this process.
class Rig {
 public:
  explicit Rig(const std::string& url) : url_(url) {
    try {
      bus_a_.emplace(Bus::open(name_a_));
      bus_b_.emplace(Bus::open(name_b_));
      BridgeOptions a;
      a.bus = name_a_;
      a.url = url;
      a.stream = stream_;
      a.subject_prefix = "perfnats" + std::to_string(::getpid());
      a.node = "perf-a";
      a.exports = {"perf.nats.>"};
      a.log = [this](const std::string& l) { add_log("bridge A: " + l); };
      BridgeOptions b = a;
      b.bus = name_b_;
      b.node = "perf-b";
      b.exports.clear();
      b.imports = {"perf.nats.>"};
      b.log = [this](const std::string& l) { add_log("bridge B: " + l); };
      bridge_a_ = std::make_unique<Bridge>(a);
      bridge_b_ = std::make_unique<Bridge>(b);
      thread_a_ = std::thread([this] { run(*bridge_a_); });
      thread_b_ = std::thread([this] { run(*bridge_b_); });
    } catch (...) {
      stop();
      throw;
    }
  }
  ~Rig() { stop(); }

  /// Publishes on A for `seconds`; every event checked in order on B. Events/s.
  double throughput(size_t bytes, double seconds) {
    const std::string topic = fresh_topic(bytes);
    SubscriberOptions from_start;
    from_start.from = StartAt::Earliest;
    Subscriber on_b = bus_b_->subscribe(topic, from_start);
    Publisher pub = bus_a_->publisher(topic, PublisherOptions{"perf-nats", {}});
    Message msg(bytes);
    publish(pub, msg, 0);
    Event e;
    expect(on_b, e, 0, bytes);  // B's mirror ring exists and we hold a cursor in it: not timed
    std::atomic<uint64_t> published{1};
    std::atomic<bool> done{false};
    const auto t0 = Clock::now();
    std::thread writer([&] {
      const auto end = t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
      uint64_t i = 1;
      while (Clock::now() < end) {
        publish(pub, msg, i);
        published.store(++i, std::memory_order_release);
      }
      done.store(true, std::memory_order_release);
    });
    uint64_t next = 1;
    try {
      while (!done.load(std::memory_order_acquire) || next < published.load(std::memory_order_acquire))
        expect(on_b, e, next++, bytes);
    } catch (...) {
      writer.join();
      throw;
    }
    writer.join();
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    return double(next - 1) / s;
  }

  /// One-way A -> NATS -> B latencies in ns, one event at a time.
  std::vector<double> latencies(size_t bytes, uint64_t iters) {
    const std::string topic = fresh_topic(bytes);
    SubscriberOptions from_start;
    from_start.from = StartAt::Earliest;
    Subscriber on_b = bus_b_->subscribe(topic, from_start);
    Publisher pub = bus_a_->publisher(topic, PublisherOptions{"perf-nats", {}});
    Message msg(bytes);
    Event e;
    std::vector<double> out;
    for (uint64_t i = 0; i <= iters; ++i) {
      const auto t0 = Clock::now();
      publish(pub, msg, i);
      expect(on_b, e, i, bytes);
      if (i != 0)
        out.push_back(double(std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count()));
    }
    return out;
  }

  std::string logs() const {
    std::lock_guard lock(log_mutex_);
    return log_;
  }

 private:
  /// A topic of its own per run on both buses (B's made by us: our ring size, our timeout).
  std::string fresh_topic(size_t bytes) {
    const std::string topic = topic_for(bytes, runs_++);
    uint64_t ring = 4u << 20;
    while (ring < 256 * (bytes + 256)) ring <<= 1;
    TopicSpec spec{topic, "flowbus.perf.Payload", perf_schema(), Policy::Block, ring};
    spec.slow_consumer_timeout = 60s;
    bus_a_->create_topic(spec);
    bus_b_->create_topic(spec);
    return topic;
  }
  void add_log(const std::string& line) {
    std::lock_guard lock(log_mutex_);
    log_ += line + "\n";
  }
  void run(Bridge& b) {
    try {
      b.run(stop_);
    } catch (const std::exception& ex) {
      add_log(std::string("stopped by an error: ") + ex.what());
    }
  }
  void publish(Publisher& pub, Message& m, uint64_t i) {
    const auto deadline = Clock::now() + 30s;
    for (;;) {
      const PublishStatus s = pub.publish(m.stamped(i), 100ms);
      if (s == PublishStatus::Ok) return;
      if (s != PublishStatus::Full || Clock::now() > deadline)
        fail(std::string("publish on bus A: ") + to_string(s) + "\n" + logs());
    }
  }
  void expect(Subscriber& sub, Event& e, uint64_t i, size_t bytes) {
    const auto deadline = Clock::now() + 30s;
    for (;;) {
      const ReadResult r = sub.read(e);
      if (r.status == ReadStatus::Ok) break;
      if (r.status != ReadStatus::Empty) fail(std::string("bus B: read ") + to_string(r.status) + "\n" + logs());
      if (Clock::now() > deadline) fail("event " + std::to_string(i) + " did not reach bus B within 30 s\n" + logs());
      sub.wait(10ms);
    }
    if (e.sequence() != i || !payload_ok(e, bytes, i))
      fail("bus B: event " + std::to_string(i) + " is not the one sent");
    (void)sub.release(e);
  }
  void stop() noexcept {
    stop_ = true;
    if (thread_a_.joinable()) thread_a_.join();
    if (thread_b_.joinable()) thread_b_.join();
    bridge_a_.reset();
    bridge_b_.reset();
    bus_a_.reset();
    bus_b_.reset();
    for (const std::string& n : {name_a_, name_b_}) try {
        Bus::destroy(n);
      } catch (...) {
      }
  }

  std::string url_;
  std::string name_a_ = "perfnats-" + std::to_string(::getpid()) + "-a",
              name_b_ = "perfnats-" + std::to_string(::getpid()) + "-b";
  std::string stream_ = "PERFNATS" + std::to_string(::getpid());
  std::optional<Bus> bus_a_, bus_b_;
  std::unique_ptr<Bridge> bridge_a_, bridge_b_;
  std::atomic<bool> stop_{false};
  std::thread thread_a_, thread_b_;
  mutable std::mutex log_mutex_;
  std::string log_;
  int runs_ = 0;
};

/// The baseline: cnats alone on the same server. A stream of its own; an
/// async JetStream publish loop with the bridge's bound on pending acks.
class Plain {
 public:
  explicit Plain(const std::string& url) {
    if (natsConnection_ConnectTo(&nc_, url.c_str()) != NATS_OK) fail("cannot connect to " + url);
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.PublishAsync.MaxPending = 4096;
    if (natsConnection_JetStream(&js_, nc_, &jo) != NATS_OK) fail("no JetStream at " + url);
    jsStreamConfig cfg;
    jsStreamConfig_Init(&cfg);
    cfg.Name = stream_.c_str();
    const char* subjects[] = {subject_prefix_.c_str()};
    cfg.Subjects = subjects;
    cfg.SubjectsLen = 1;
    cfg.Storage = js_FileStorage;
    cfg.Duplicates = 120'000'000'000;
    if (js_AddStream(nullptr, js_, &cfg, nullptr, nullptr) != NATS_OK) fail("cannot create stream " + stream_);
  }
  ~Plain() {
    js_DeleteStream(js_, stream_.c_str(), nullptr, nullptr);
    jsCtx_Destroy(js_);
    natsConnection_Destroy(nc_);
  }
  /// Async publishes with a Nats-Msg-Id for `seconds`, then all acks: msgs/s.
  double throughput(size_t bytes, double seconds) {
    std::vector<char> data(bytes + 64, 'x');
    const std::string subject = "perfraw" + std::to_string(::getpid()) + ".s" + std::to_string(bytes);
    const auto t0 = Clock::now();
    const auto end = t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
    uint64_t n = 0;
    while (Clock::now() < end) {
      natsMsg* m = nullptr;
      natsMsg_Create(&m, subject.c_str(), nullptr, data.data(), int(data.size()));
      natsMsgHeader_Set(m, "Nats-Msg-Id", (std::to_string(::getpid()) + "-" + std::to_string(ids_++)).c_str());
      if (js_PublishMsgAsync(js_, &m, nullptr) != NATS_OK) {
        natsMsg_Destroy(m);
        fail("plain cnats publish failed");
      }
      ++n;
    }
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = 30000;
    if (js_PublishAsyncComplete(js_, &po) != NATS_OK) fail("plain cnats: acks did not come back");
    return double(n) / std::chrono::duration<double>(Clock::now() - t0).count();
  }
  /// One-way latency of a synchronous JetStream publish seen by a core subscriber.
  std::vector<double> latencies(size_t bytes, uint64_t iters) {
    const std::string subject = "perfraw" + std::to_string(::getpid()) + ".lat";
    natsSubscription* sub = nullptr;
    natsConnection_SubscribeSync(&sub, nc_, subject.c_str());
    natsConnection_Flush(nc_);
    std::vector<char> data(bytes + 64, 'x');
    std::vector<double> out;
    for (uint64_t i = 0; i <= iters; ++i) {
      const auto t0 = Clock::now();
      if (js_Publish(nullptr, js_, subject.c_str(), data.data(), int(data.size()), nullptr, nullptr) != NATS_OK)
        fail("plain publish");
      natsMsg* m = nullptr;
      if (natsSubscription_NextMsg(&m, sub, 10000) != NATS_OK) fail("plain subscriber got nothing");
      natsMsg_Destroy(m);
      if (i != 0)
        out.push_back(double(std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count()));
    }
    natsSubscription_Destroy(sub);
    return out;
  }

 private:
  natsConnection* nc_ = nullptr;
  jsCtx* js_ = nullptr;
  std::string stream_ = "PERFRAW" + std::to_string(::getpid());
  std::string subject_prefix_ = "perfraw" + std::to_string(::getpid()) + ".>";
  uint64_t ids_ = 0;
};

}  // namespace

void add_nats_command(CLI::App& perf) {
  struct Args {
    std::string url, sizes = "64,65536";
    double seconds = 2;
    uint64_t iters = 2000, rounds = 5;
    bool json = false;
  };
  auto args = std::make_shared<Args>();
  CLI::App* cmd = perf.add_subcommand("nats",
                                      "Events through two NATS JetStream bridges (bus A -> bridge A -> JetStream -> "
                                      "bridge B -> bus B): events/s per size and\n"
                                      "one-way latency, next to a plain cnats JetStream publish loop on the same "
                                      "server; medians of interleaved rounds");
  cmd->add_option("--url", args->url,
                  "a NATS server with JetStream (default: start nats-server -js on loopback for the run)");
  cmd->add_option("--size", args->sizes, "payload sizes, bytes, comma separated (default 64,65536)");
  cmd->add_option("--seconds", args->seconds, "how long each throughput run publishes (default 2)")
      ->check(CLI::Range(0.01, 3600.0));
  cmd->add_option("--iters", args->iters, "one-way latencies measured per round (default 2000)")
      ->check(CLI::Range(uint64_t(1), uint64_t(10000000)));
  cmd->add_option("--rounds", args->rounds, "interleaved rounds; medians are reported (default 5)")
      ->check(CLI::Range(uint64_t(1), uint64_t(1000)));
  cmd->add_flag("--json", args->json,
                "one JSON object per line: mode nats_throughput (per size and transport), nats_latency");
  cmd->callback([args] {
    const std::vector<size_t> sizes = cli::parse_payload_sizes(args->sizes, "--size", 4u << 20);
    std::optional<OwnServer> own;
    std::string url = args->url;
    if (url.empty()) {
      own.emplace();
      url = own->url;
    }
    const bool json = args->json;
    if (!json)
      std::fprintf(stderr, "  two bridges and a plain cnats publisher on %s, %llu rounds...\n", url.c_str(),
                   static_cast<unsigned long long>(args->rounds));
    Rig rig(url);
    Plain plain(url);
    std::map<size_t, std::vector<double>> bridge_tp, plain_tp;
    std::vector<double> bridge_lat, plain_lat;
    for (uint64_t round = 0; round < args->rounds; ++round) {
      for (size_t bytes : sizes) {
        // Alternate which goes first, so neither always meets a warmer server.
        if (round % 2 == 0) {
          bridge_tp[bytes].push_back(rig.throughput(bytes, args->seconds));
          plain_tp[bytes].push_back(plain.throughput(bytes, args->seconds));
        } else {
          plain_tp[bytes].push_back(plain.throughput(bytes, args->seconds));
          bridge_tp[bytes].push_back(rig.throughput(bytes, args->seconds));
        }
      }
      bridge_lat.push_back(median(rig.latencies(sizes.front(), args->iters)));
      plain_lat.push_back(median(plain.latencies(sizes.front(), args->iters)));
      if (!json) std::fprintf(stderr, "  round %llu done\n", static_cast<unsigned long long>(round + 1));
    }
    if (!json)
      std::printf(
          "\nthrough NATS JetStream (file storage, one server on loopback), medians of %llu interleaved rounds;\n"
          "bridge: bus A -> bridge A -> JetStream -> bridge B -> bus B, every event checked in order on B;\n"
          "cnats: a plain async JetStream publish loop (Nats-Msg-Id, 4096 acks pending), acks awaited\n"
          "%-8s %9s %14s %14s %8s\n",
          static_cast<unsigned long long>(args->rounds), "mode", "bytes", "bridge ev/s", "cnats msg/s", "ratio");
    for (size_t bytes : sizes) {
      const double b = median(bridge_tp[bytes]), p = median(plain_tp[bytes]);
      if (json)
        std::printf(
            "{\"mode\":\"nats_throughput\",\"bytes\":%zu,\"bridge_events_per_s\":%.0f,\"cnats_msgs_per_s\":%.0f,"
            "\"rounds\":%llu}\n",
            bytes, b, p, static_cast<unsigned long long>(args->rounds));
      else
        std::printf("%-8s %9zu %14.0f %14.0f %7.2fx\n", "tput", bytes, b, p, p > 0 ? b / p : 0);
    }
    const double bl = median(bridge_lat), pl = median(plain_lat);
    if (json)
      std::printf(
          "{\"mode\":\"nats_latency\",\"bytes\":%zu,\"bridge_p50_ns\":%.0f,\"cnats_p50_ns\":%.0f,\"iters\":%llu}\n",
          sizes.front(), bl, pl, static_cast<unsigned long long>(args->iters));
    else
      std::printf(
          "one-way latency p50, %zu bytes: bridge A -> NATS -> B %.1f us; cnats sync JetStream publish -> core "
          "subscriber %.1f us\n",
          sizes.front(), bl / 1000, pl / 1000);
  });
}

}  // namespace flowbus::perf
