// Micro-benchmarks of the ring's hot paths, in one process (the cross-process
// harness is `flowbus perf`). Names: BM_<Component>_<Operation>.
#include <benchmark/benchmark.h>
#include <x86intrin.h>
#include <sched.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "flowbus/bus.hpp"
#include "flowbus/detail/platform.hpp"
#include "flowbus/examples/sensor_generated.h"
#include "flowbus/perf_generated.h"
#include "flowbus/schema.hpp"

namespace {

struct Fixture {
  std::string name = "bench-" + std::to_string(getpid());
  flowbus::Bus bus = flowbus::Bus::open(name);
  explicit Fixture(flowbus::Policy policy, uint64_t ring_size = 1 << 22) {
    flowbus::TopicSpec spec;
    spec.name = "bench.t";
    spec.type = "examples.SensorReading";
    spec.schema = flowbus::compile_schema_file(std::string(FLOWBUS_SOURCE_DIR) + "/schemas/examples/sensor.fbs");
    spec.policy = policy;
    spec.ring_size = ring_size;
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
    for (auto& s : subs) (void)s.poll([&](const flowbus::Event& e) { sum += e.size(); });
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
BENCHMARK(BM_Ring_PublishLatest)->Arg(64)->Arg(1024)->Arg(4096)->Arg(65536)->Arg(1 << 20);

// A burst of 64 events in one try_publish_batch under Latest: one clock read
// and one write-position update per burst. Items are events: compare per event
// with BM_Ring_PublishLatest.
void BM_Ring_PublishBatch(benchmark::State& state) {
  Fixture f(flowbus::Policy::Latest);
  flowbus::Publisher pub = f.bus.publisher("bench.t");
  std::vector<uint8_t> payload(size_t(state.range(0)), 0x5a);
  std::vector<std::span<const uint8_t>> burst(64, std::span<const uint8_t>(payload));
  for (auto _ : state) {
    const flowbus::BatchResult r = pub.try_publish_batch(burst);
    if (r.published != burst.size()) state.SkipWithError("burst refused");
  }
  state.SetItemsProcessed(int64_t(state.iterations() * burst.size()));
}
BENCHMARK(BM_Ring_PublishBatch)->Arg(64)->Arg(1024);

using Clock = std::chrono::steady_clock;
constexpr int kBatch = 64;  // events timed together: a clock read (~20 ns) per batch, not per event

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// The publisher's cost under Block with N live readers attached: a batch of
// publishes is timed, then the readers drain it untimed (same thread). The
// writer looks at cursors only once per quarter ring, so this should be flat in N.
void BM_Ring_PublishByReaders(benchmark::State& state) {
  Fixture f(flowbus::Policy::Block);
  flowbus::Publisher pub = f.bus.publisher("bench.t");
  std::vector<flowbus::Subscriber> subs;
  for (int i = 0; i < state.range(0); ++i) subs.push_back(f.bus.subscribe("bench.t"));
  std::vector<uint8_t> payload(64, 0x5a);
  uint64_t sum = 0;
  for (auto _ : state) {
    const auto t0 = Clock::now();
    for (int i = 0; i < kBatch; ++i)
      if (pub.try_publish(payload) != flowbus::PublishStatus::Ok) state.SkipWithError("ring full");
    state.SetIterationTime(seconds_since(t0));
    for (auto& s : subs) (void)s.poll([&](const flowbus::Event& e) { sum += e.size(); });
  }
  benchmark::DoNotOptimize(sum);
  state.SetItemsProcessed(int64_t(state.iterations()) * kBatch);
}
BENCHMARK(BM_Ring_PublishByReaders)->Arg(1)->Arg(2)->Arg(4)->Arg(8)->UseManualTime();

// Zero copy: loan ring memory, build a flowbus.perf.Payload of N bytes in
// place (stamping its first and last cache line), commit. Compare with
// BM_Ring_PublishLatest (one copy) and BM_Baseline_Memcpy at the same size.
void BM_Ring_LoanCommit(benchmark::State& state) {
  const size_t bytes = size_t(state.range(0));
  Fixture f(flowbus::Policy::Latest, 1 << 24);
  flowbus::Publisher pub = f.bus.publisher("bench.t");
  flowbus::Loan loan;
  uint64_t i = 0;
  for (auto _ : state) {
    if (pub.loan(bytes + 256, loan) != flowbus::PublishStatus::Ok) state.SkipWithError("loan refused");
    auto& b = loan.builder();
    uint8_t* data = nullptr;
    const auto vec = b.CreateUninitializedVector(bytes, 1, &data);
    std::memcpy(data, &i, sizeof i);
    std::memcpy(data + bytes - 64, &i, sizeof i);
    b.Finish(flowbus::perf::CreatePayload(b, vec));
    (void)pub.commit(loan);  // Ok: nothing was published since the loan
    ++i;
  }
  state.SetItemsProcessed(int64_t(state.iterations()));
}
BENCHMARK(BM_Ring_LoanCommit)->Arg(64)->Arg(4096)->Arg(65536)->Arg(1 << 20);

// A reader's view cycle: read() hands out the view in place, release() moves
// past it. A batch of events is published untimed, then read and released timed.
void BM_Ring_ReadRelease(benchmark::State& state) {
  Fixture f(flowbus::Policy::Block);
  flowbus::Publisher pub = f.bus.publisher("bench.t");
  flowbus::Subscriber sub = f.bus.subscribe("bench.t");
  std::vector<uint8_t> payload(64, 0x5a);
  uint64_t sum = 0;
  for (auto _ : state) {
    for (int i = 0; i < kBatch; ++i) (void)pub.try_publish(payload);
    const auto t0 = Clock::now();
    flowbus::Event e;
    for (int i = 0; i < kBatch; ++i) {
      if (sub.read(e).status != flowbus::ReadStatus::Ok) state.SkipWithError("nothing to read");
      sum += e.data()[0];
      (void)sub.release(e);
    }
    state.SetIterationTime(seconds_since(t0));
  }
  benchmark::DoNotOptimize(sum);
  state.SetItemsProcessed(int64_t(state.iterations()) * kBatch);
}
BENCHMARK(BM_Ring_ReadRelease)->UseManualTime();

/// Pins the calling thread to one CPU for a scope (best effort), then restores its mask.
class ScopedPin {
 public:
  explicit ScopedPin(int cpu) {
    saved_ok_ = sched_getaffinity(0, sizeof saved_, &saved_) == 0;
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    (void)sched_setaffinity(0, sizeof one, &one);
  }
  ~ScopedPin() {
    if (saved_ok_) (void)sched_setaffinity(0, sizeof saved_, &saved_);
  }

 private:
  cpu_set_t saved_;
  bool saved_ok_ = false;
};

// The wake-up: one publish while a reader (another thread) sleeps on the
// ring's futex, against one publish with no sleeper. Before each timed
// publish the sleeper is given 50 us to be truly asleep (untimed), so every
// timed publish with arg 1 pays the futex wake syscall. The two threads are
// pinned to CPUs 0 and 1: unpinned, the woken reader may preempt the
// publisher on its own CPU and the publish would be charged for it.
// Both variants read the clock twice per publish (~40 ns here).
void BM_Ring_PublishWake(benchmark::State& state) {
  const bool sleeper = state.range(0) != 0;
  ScopedPin pin(0);
  Fixture f(flowbus::Policy::Latest);
  flowbus::Publisher pub = f.bus.publisher("bench.t");
  std::atomic<uint64_t> sleeps{0};
  std::atomic<bool> done{false};
  std::thread reader;
  if (sleeper) {
    reader = std::thread([&] {
      ScopedPin reader_pin(1);
      flowbus::SubscriberOptions options;
      options.spin = std::chrono::nanoseconds(0);  // straight to the futex
      flowbus::Subscriber sub = f.bus.subscribe("bench.t", options);
      while (!done.load()) {
        sleeps.fetch_add(1);
        sub.wait(std::chrono::milliseconds(100));
        (void)sub.poll([](const flowbus::Event&) {});
      }
    });
  }
  std::vector<uint8_t> payload(64, 0x5a);
  uint64_t seen = 0;
  for (auto _ : state) {
    if (sleeper) {
      while (sleeps.load() == seen) {
      }
      seen = sleeps.load();
      const auto settle = Clock::now() + std::chrono::microseconds(50);
      while (Clock::now() < settle) {
      }
    }
    const auto t0 = Clock::now();
    benchmark::DoNotOptimize(pub.try_publish(payload));
    state.SetIterationTime(seconds_since(t0));
  }
  done.store(true);
  if (sleeper) {
    (void)pub.try_publish(payload);  // wake it so it sees `done`
    reader.join();
  }
  state.SetItemsProcessed(int64_t(state.iterations()));
}
BENCHMARK(BM_Ring_PublishWake)->ArgName("sleeping_reader")->Arg(0)->Arg(1)->UseManualTime();

// Building a small event (the README's SensorReading: two strings, a double,
// an integer) in a reused FlatBufferBuilder, without publishing it.
void BM_FlatBuffers_BuildSmallEvent(benchmark::State& state) {
  flatbuffers::FlatBufferBuilder fbb(256);
  uint64_t seq = 0;
  for (auto _ : state) {
    fbb.Clear();
    fbb.Finish(examples::CreateSensorReadingDirect(fbb, "line1", "t1", 20.5, seq++));
    benchmark::DoNotOptimize(fbb.GetBufferPointer());
  }
  state.SetItemsProcessed(int64_t(state.iterations()));
}
BENCHMARK(BM_FlatBuffers_BuildSmallEvent);

// How an event gets its time: the TSC-based clock every publish reads
// (core/src/event_clock.hpp), against clock_gettime(CLOCK_REALTIME) through the
// vDSO and a bare rdtsc, in the same binary.
void BM_Clock_EventTime(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(flowbus::detail::unix_now_ns());
  state.SetItemsProcessed(int64_t(state.iterations()));
}
BENCHMARK(BM_Clock_EventTime);

void BM_Baseline_ClockGettime(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(flowbus::detail::realtime_ns());
  state.SetItemsProcessed(int64_t(state.iterations()));
}
BENCHMARK(BM_Baseline_ClockGettime);

void BM_Baseline_Rdtsc(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(__rdtsc());
  state.SetItemsProcessed(int64_t(state.iterations()));
}
BENCHMARK(BM_Baseline_Rdtsc);

// Baseline in the same binary: a plain memcpy of the payload.
void BM_Baseline_Memcpy(benchmark::State& state) {
  std::vector<uint8_t> src(size_t(state.range(0)), 0x5a), dst(src.size());
  for (auto _ : state) {
    std::memcpy(dst.data(), src.data(), src.size());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(int64_t(state.iterations()));
}
BENCHMARK(BM_Baseline_Memcpy)->Arg(64)->Arg(1024)->Arg(4096)->Arg(65536)->Arg(1 << 20);

}  // namespace

BENCHMARK_MAIN();
