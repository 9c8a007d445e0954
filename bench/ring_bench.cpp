// Micro-benchmarks of the ring's hot paths, in one process (the cross-process
// harness is `flowbus perf`). Names: BM_<Component>_<Operation>.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "flowbus/bus.hpp"
#include "flowbus/schema.hpp"

namespace {

struct Fixture {
  std::string name = "bench-" + std::to_string(getpid());
  flowbus::Bus bus = flowbus::Bus::open(name);
  explicit Fixture(flowbus::Policy policy) {
    flowbus::TopicSpec spec;
    spec.name = "bench.t";
    spec.type = "examples.SensorReading";
    spec.schema = flowbus::compile_schema_file(std::string(FLOWBUS_SOURCE_DIR) + "/schemas/examples/sensor.fbs");
    spec.policy = policy;
    spec.ring_size = 1 << 22;
    bus.create_topic(spec);
  }
  ~Fixture() { flowbus::Bus::destroy(name); }
};

// One publish and one read-release per iteration: the single-thread cost of
// moving an event through the ring, header and payload included.
void BM_Ring_PublishThenPoll(benchmark::State& state) {
  Fixture f(flowbus::Policy::Block);
  flowbus::Publisher pub = f.bus.publisher("bench.t");
  const int readers = int(state.range(1));
  std::vector<flowbus::Subscriber> subs;
  for (int i = 0; i < readers; ++i) subs.push_back(f.bus.subscribe("bench.t"));
  std::vector<uint8_t> payload(size_t(state.range(0)), 0x5a);
  uint64_t sum = 0;
  for (auto _ : state) {
    if (pub.try_publish(payload) != flowbus::PublishStatus::Ok) state.SkipWithError("ring full");
    for (auto& s : subs) s.poll([&](const flowbus::Event& e) { sum += e.size(); });
  }
  benchmark::DoNotOptimize(sum);
  state.SetItemsProcessed(int64_t(state.iterations()));
  state.SetBytesProcessed(int64_t(state.iterations()) * state.range(0));
}
BENCHMARK(BM_Ring_PublishThenPoll)->ArgsProduct({{64, 1024, 65536}, {1, 4}});

// Publish alone under Latest (never blocks): the writer's cost per event.
void BM_Ring_PublishLatest(benchmark::State& state) {
  Fixture f(flowbus::Policy::Latest);
  flowbus::Publisher pub = f.bus.publisher("bench.t");
  std::vector<uint8_t> payload(size_t(state.range(0)), 0x5a);
  for (auto _ : state) benchmark::DoNotOptimize(pub.try_publish(payload));
  state.SetItemsProcessed(int64_t(state.iterations()));
}
BENCHMARK(BM_Ring_PublishLatest)->Arg(64)->Arg(1024);

// Baseline in the same binary: a plain memcpy of the payload.
void BM_Baseline_Memcpy(benchmark::State& state) {
  std::vector<uint8_t> src(size_t(state.range(0)), 0x5a), dst(src.size());
  for (auto _ : state) {
    std::memcpy(dst.data(), src.data(), src.size());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(int64_t(state.iterations()));
}
BENCHMARK(BM_Baseline_Memcpy)->Arg(64)->Arg(1024);

}  // namespace

BENCHMARK_MAIN();
