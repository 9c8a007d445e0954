// flowbus demo: a bus, three producers and three consumers on the example
// schemas (a collector on sensor.> and a distributor of orders.created),
// a live view of what flows, then a clean exit that leaves /dev/shm empty.
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <optional>
#include <thread>

#include "cli_util.hpp"
#include "flowbus/bus.hpp"
#include "flowbus/error.hpp"
#include "flowbus/schema.hpp"
#include "flowbus/examples/order_generated.h"
#include "flowbus/examples/sensor_generated.h"

extern char** environ;

namespace flowbus::cli {

namespace {

volatile sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }

// The demo needs no schema files at run time: they are embedded here.
const char* kSensorSchema =
    "namespace examples;\n"
    "table SensorReading { line: string; sensor: string; celsius: double; seq: ulong; }\n"
    "root_type SensorReading;\n";
const char* kOrderSchema =
    "namespace examples;\n"
    "table Order { id: ulong; customer: string; sku: string; quantity: uint; price_cents: ulong; }\n"
    "root_type Order;\n";

void run_producer(const std::string& bus_name, const std::string& topic, const std::string& line, double seconds) {
  Bus bus = Bus::open_existing(bus_name);
  Publisher pub = bus.publisher(topic, PublisherOptions{line, {}});
  flatbuffers::FlatBufferBuilder fbb(256);
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  for (uint64_t i = 0; !g_stop && std::chrono::steady_clock::now() < end; ++i) {
    if (topic.rfind("orders", 0) == 0) {
      fbb.Finish(examples::CreateOrderDirect(fbb, i, "acme", i % 2 ? "A-100" : "B-200", uint32_t(1 + i % 5), 1999));
    } else {
      fbb.Finish(examples::CreateSensorReadingDirect(fbb, line.c_str(), "t1", 20.0 + double(i % 100) / 10.0, i));
    }
    if (pub.publish(fbb, std::chrono::seconds(1)) != PublishStatus::Ok) break;
    if (i % 64 == 63) std::this_thread::sleep_for(std::chrono::microseconds(200));  // a plant, not a benchmark
  }
}

void run_consumer(const std::string& bus_name, const std::string& pattern, const std::string& role) {
  Bus bus = Bus::open_existing(bus_name);
  Subscriber sub = bus.subscribe(pattern, SubscriberOptions{StartAt::Earliest});
  uint64_t events = 0, bytes = 0, missed = 0;
  // What the last event said, by its type: the order services never see a
  // sensor reading, so a "last reading" of theirs could only be a made-up 0.
  std::optional<double> last_celsius;
  std::optional<uint64_t> last_order;
  while (!g_stop) {
    const PollResult r = sub.poll([&](const Event& e) {
      ++events;
      bytes += e.size();
      if (e.type() == "examples.SensorReading") last_celsius = examples::GetSensorReading(e.data())->celsius();
      else if (e.type() == "examples.Order") last_order = examples::GetOrder(e.data())->id();
    });
    missed += r.missed;
    if (r.delivered == 0) sub.wait(std::chrono::milliseconds(100));
  }
  char last[64] = "nothing received";
  if (last_celsius) std::snprintf(last, sizeof last, "last reading %.1f C", *last_celsius);
  else if (last_order) std::snprintf(last, sizeof last, "last order #%llu", static_cast<unsigned long long>(*last_order));
  std::printf("  %-12s %-16s %9llu events %9.1f KiB  %llu missed  (rings: %zu, %s)\n", role.c_str(), pattern.c_str(),
              static_cast<unsigned long long>(events), double(bytes) / 1024.0, static_cast<unsigned long long>(missed),
              sub.ring_count(), last);
}

pid_t spawn(const char* self, std::vector<std::string> argv) {
  std::vector<char*> raw;
  raw.push_back(const_cast<char*>(self));
  for (auto& a : argv) raw.push_back(a.data());
  raw.push_back(nullptr);
  pid_t pid = 0;
  if (posix_spawn(&pid, "/proc/self/exe", nullptr, nullptr, raw.data(), environ) != 0)
    throw Error(ErrorCode::System, "cannot start a demo process");
  return pid;
}

std::vector<uint8_t> compile_embedded(const char* text) {
  char path[] = "/tmp/flowbus-demo-XXXXXX.fbs";
  const int fd = mkstemps(path, 4);
  if (fd < 0) throw Error(ErrorCode::System, "cannot write a temporary schema in /tmp");
  (void)!write(fd, text, strlen(text));
  close(fd);
  auto bfbs = compile_schema_file(path);
  unlink(path);
  return bfbs;
}

}  // namespace

void add_demo_command(CLI::App& app, const char* argv0) {
  struct Args {
    std::string seconds_text = "3";
    double seconds = 3;
    std::string bus;
  };
  auto args = std::make_shared<Args>();
  CLI::App* demo = app.add_subcommand("demo", "Run a small plant: producers, a collector and a distributor on one bus, for a few seconds");
  demo->add_option("--seconds", args->seconds_text, "how long the producers run, 0.1 to 3600 seconds (default 3)");
  demo->add_option("--bus", args->bus, "bus name (default demo-<pid>; removed at the end)");
  std::string self = argv0;
  demo->callback([args, self] {
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    args->seconds = parse_bounded_seconds(args->seconds_text, "--seconds", 0.1, 3600);
    const std::string bus_name = args->bus.empty() ? "demo-" + std::to_string(getpid()) : args->bus;
    std::printf("flowbus demo: bus '%s' in /dev/shm\n", bus_name.c_str());
    std::vector<pid_t> consumers, producers;
    {
      Bus bus = Bus::open(bus_name);
      const auto sensor = compile_embedded(kSensorSchema), order = compile_embedded(kOrderSchema);
      for (const char* t : {"sensor.temp.line1", "sensor.temp.line2"})
        bus.create_topic(TopicSpec{t, "examples.SensorReading", sensor, Policy::Latest, 1u << 20});
      bus.create_topic(TopicSpec{"orders.created", "examples.Order", order, Policy::Block, 1u << 20});
      for (const auto& t : bus.topics())
        std::printf("  topic %-18s %-24s policy %-6s ring %llu KiB\n", t.name.c_str(), t.type.c_str(), to_string(t.policy),
                    static_cast<unsigned long long>(t.ring_size >> 10));
      std::printf("consumers: a collector on sensor.> (both lines), and two order services sharing orders.created\n");
      consumers.push_back(spawn(self.c_str(), {"demo-consumer", bus_name, "sensor.>", "collector"}));
      consumers.push_back(spawn(self.c_str(), {"demo-consumer", bus_name, "orders.created", "billing"}));
      consumers.push_back(spawn(self.c_str(), {"demo-consumer", bus_name, "orders.created", "shipping"}));
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      const std::string secs = std::to_string(args->seconds);
      producers.push_back(spawn(self.c_str(), {"demo-producer", bus_name, "sensor.temp.line1", "line1", secs}));
      producers.push_back(spawn(self.c_str(), {"demo-producer", bus_name, "sensor.temp.line2", "line2", secs}));
      producers.push_back(spawn(self.c_str(), {"demo-producer", bus_name, "orders.created", "webshop", secs}));
      std::printf("producers: line1 and line2 sensors, a webshop; running %.1f s\n", args->seconds);
      Subscriber watch = bus.subscribe(">", SubscriberOptions{StartAt::Earliest});
      uint64_t total = 0;
      for (int tick = 1; !g_stop; ++tick) {
        const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(1);
        uint64_t n = 0;
        while (std::chrono::steady_clock::now() < until) {
          n += watch.poll([](const Event&) {}).delivered;
          watch.wait(std::chrono::milliseconds(50));
        }
        total += n;
        std::printf("  t=%ds  %8llu events/s  (%zu rings)\n", tick, static_cast<unsigned long long>(n), watch.ring_count());
        std::fflush(stdout);
        bool running = false;
        for (pid_t& p : producers)
          if (p > 0 && waitpid(p, nullptr, WNOHANG) == 0) running = true;
          else p = 0;
        if (!running) break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(200));  // let consumers drain
      std::printf("results (%llu events seen by the live view):\n", static_cast<unsigned long long>(total));
      std::fflush(stdout);
      for (pid_t p : consumers) kill(p, SIGTERM);
      for (pid_t p : consumers) waitpid(p, nullptr, 0);
      for (pid_t p : producers)
        if (p > 0) kill(p, SIGTERM), waitpid(p, nullptr, 0);
    }
    const size_t removed = Bus::destroy(bus_name);
    std::printf("removed %zu segments; /dev/shm holds nothing of bus '%s'\n", removed, bus_name.c_str());
  });

  auto worker = std::make_shared<std::vector<std::string>>();
  CLI::App* producer = app.add_subcommand("demo-producer", "(internal) a demo producer");
  producer->group("");  // hidden
  producer->add_option("args", *worker)->expected(4);
  producer->callback([worker] {
    signal(SIGTERM, on_signal);
    run_producer((*worker)[0], (*worker)[1], (*worker)[2], std::stod((*worker)[3]));
  });
  auto cworker = std::make_shared<std::vector<std::string>>();
  CLI::App* consumer = app.add_subcommand("demo-consumer", "(internal) a demo consumer");
  consumer->group("");
  consumer->add_option("args", *cworker)->expected(3);
  consumer->callback([cworker] {
    signal(SIGTERM, on_signal);
    signal(SIGINT, SIG_IGN);
    run_consumer((*cworker)[0], (*cworker)[1], (*cworker)[2]);
  });
}

}  // namespace flowbus::cli
