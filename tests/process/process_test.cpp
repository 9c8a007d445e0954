// flowbus across real processes: every participant is a separate executable
// (flowbus_test_worker, or the flowbus CLI) started with posix_spawn, and the
// crash tests use kill -9 and SIGSTOP on them. See worker.cpp for what each
// worker does and prints.
#include <dirent.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <cinttypes>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <thread>

#include "child_process.hpp"
#include "flowbus/bus.hpp"
#include "flowbus/error.hpp"
#include "process/payload.hpp"
#include "process/worker_reports.hpp"
#include "test_bus.hpp"

using namespace flowbus;
using namespace flowbus::testing;
using namespace std::chrono_literals;

namespace {

const std::string kCli = FLOWBUS_BINARY_DIR "/bin/flowbus";

// Under ThreadSanitizer (5-15x slower) the same tests run with fewer events.
#if defined(__SANITIZE_THREAD__)
constexpr uint64_t kEvents = 100'000;
#else
constexpr uint64_t kEvents = 1'000'000;
#endif
constexpr uint64_t kSmallRing = 64 * 1024;



/// A publish worker, set up and waiting for go.
std::unique_ptr<ChildProcess> start_publisher(const std::string& bus, const std::string& topic, const std::string& name,
                                              uint64_t count) {
  auto p = std::make_unique<ChildProcess>(std::vector<std::string>{kWorker, "publish", bus, topic, name, std::to_string(count)});
  expect_line(*p, "ready 0");
  return p;
}

/// A subscribe worker, attached and reading.
std::unique_ptr<ChildProcess> start_subscriber(const std::string& bus, const std::string& pattern, int64_t settle_ms,
                                               const std::vector<std::string>& expectations, size_t rings) {
  std::vector<std::string> argv{kWorker, "subscribe", bus, pattern, std::to_string(settle_ms)};
  argv.insert(argv.end(), expectations.begin(), expectations.end());
  auto s = std::make_unique<ChildProcess>(argv);
  expect_line(*s, "ready " + std::to_string(rings));
  return s;
}

/// Waits for a publish worker's last line and its exit 0; returns how often it found the ring full.
uint64_t expect_published(ChildProcess& p, uint64_t count, std::chrono::milliseconds timeout = 60s) {
  const std::string line = expect_line(p, "published " + std::to_string(count) + " full ", timeout);
  const auto status = p.wait(10s);
  EXPECT_TRUE(status && WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << "publisher pid " << p.pid();
  return line.empty() ? 0 : std::stoull(line.substr(line.rfind(' ') + 1));
}



/// Segments of bus `bus` in /dev/shm.
std::vector<std::string> segments_of(const std::string& bus) {
  std::vector<std::string> out;
  const std::string dir = "flowbus." + bus, prefix = dir + ".";
  if (DIR* d = ::opendir("/dev/shm")) {
    while (const dirent* e = ::readdir(d)) {
      const std::string n = e->d_name;
      if (n == dir || n.rfind(prefix, 0) == 0) out.push_back(n);
    }
    ::closedir(d);
  }
  std::sort(out.begin(), out.end());
  return out;
}

ChildProcess::Outcome run_cli(const std::vector<std::string>& args) {
  std::vector<std::string> argv{kCli};
  argv.insert(argv.end(), args.begin(), args.end());
  ChildProcess c(argv, {.pipe_stdin = false, .capture_stderr = true});
  return c.communicate(30s);
}

/// A worker that made a bus, a topic with the given retention, a ring with
/// events and a cursor, and is then killed with -9: nothing of it lives.
void leave_a_dead_bus(const std::string& bus, int64_t retention_s) {
  ChildProcess w({kWorker, "linger", bus, "orders.created", std::to_string(retention_s)});
  expect_line(w, "ready");
  w.kill_and_reap();
}

class ProcessTest : public ::testing::Test {
 protected:
  void SetUp() override { ::signal(SIGPIPE, SIG_IGN); }
};

TEST_F(ProcessTest, FourPublisherProcessesDeliverEveryEventInOrderToOneCollector) {
  ScopedBusName name("collect");
  Bus bus = Bus::open(name.name);
  bus.create_topic(sensor_topic("plant.line1.temp", Policy::Block, kSmallRing));
  bus.create_topic(sensor_topic("plant.line2.temp", Policy::Block, kSmallRing));
  const std::vector<std::string> names{"press", "oven", "mixer", "filler"};
  std::vector<std::unique_ptr<ChildProcess>> publishers;
  std::vector<std::string> expectations;
  for (size_t i = 0; i < names.size(); ++i) {
    publishers.push_back(start_publisher(name.name, i < 2 ? "plant.line1.temp" : "plant.line2.temp", names[i], kEvents));
    expectations.push_back(names[i] + "=" + std::to_string(kEvents));
  }
  // The collector joins every ring before the first event, so it must see them all.
  auto collector = start_subscriber(name.name, "plant.*.temp", 0, expectations, 4);
  const auto t0 = std::chrono::steady_clock::now();
  for (auto& p : publishers) p->close_stdin();  // go
  const SubscriberReport report = read_report(*collector, 120s);
  uint64_t full = 0;
  for (auto& p : publishers) full += expect_published(*p, kEvents);
  std::printf("collector: %" PRIu64 " events from 4 processes in %" PRId64 " ms; the rings were full %" PRIu64 " times\n",
              report.delivered, ms_since(t0), full);
  expect_nothing_lost(report);
  EXPECT_EQ(report.delivered, 4 * kEvents);
  for (const std::string& n : names) expect_complete(report, n, kEvents);
  EXPECT_GT(full, 0u) << "the 64 KiB rings never filled: the test did not exercise backpressure";
  const auto status = collector->wait(10s);
  EXPECT_TRUE(status && WIFEXITED(*status) && WEXITSTATUS(*status) == 0);
}

TEST_F(ProcessTest, OnePublisherProcessDeliversEveryEventInOrderToFourSubscriberProcesses) {
  ScopedBusName name("distrib");
  Bus bus = Bus::open(name.name);
  bus.create_topic(sensor_topic("orders.created", Policy::Block, kSmallRing));
  auto publisher = start_publisher(name.name, "orders.created", "webshop", kEvents);
  std::vector<std::unique_ptr<ChildProcess>> subscribers;
  for (int i = 0; i < 4; ++i)
    subscribers.push_back(start_subscriber(name.name, "orders.>", 0, {"webshop=" + std::to_string(kEvents)}, 1));
  const auto t0 = std::chrono::steady_clock::now();
  publisher->close_stdin();  // go
  std::vector<SubscriberReport> reports;
  for (auto& s : subscribers) reports.push_back(read_report(*s, 120s));
  const uint64_t full = expect_published(*publisher, kEvents);
  std::printf("distributor: %" PRIu64 " events to 4 processes in %" PRId64 " ms; the ring was full %" PRIu64 " times\n",
              kEvents, ms_since(t0), full);
  for (const SubscriberReport& r : reports) {
    expect_nothing_lost(r);
    EXPECT_EQ(r.delivered, kEvents);
    expect_complete(r, "webshop", kEvents);
  }
  EXPECT_GT(full, 0u) << "the 64 KiB ring never filled: the test did not exercise backpressure";
}

TEST_F(ProcessTest, PublisherKilledMidStreamLeavesAnIntactPrefixAndTheOthersFlowToCompletion) {
  ScopedBusName name("killpub");
  Bus bus = Bus::open(name.name);
  bus.create_topic(sensor_topic("plant.line1.temp", Policy::Block, kSmallRing));
  const uint64_t others = kEvents / 4;
  auto a = start_publisher(name.name, "plant.line1.temp", "press", others);
  auto victim = start_publisher(name.name, "plant.line1.temp", "victim", 1'000'000'000);  // never finishes
  auto c = start_publisher(name.name, "plant.line1.temp", "filler", others);
  auto collector = start_subscriber(name.name, "plant.>", 500,
                                    {"press=" + std::to_string(others), "filler=" + std::to_string(others), "victim=*"}, 3);
  for (auto* p : {a.get(), victim.get(), c.get()}) p->close_stdin();  // go
  std::this_thread::sleep_for(300ms);
  victim->kill_and_reap();
  const auto status = victim->wait(1s);
  ASSERT_TRUE(status && WIFSIGNALED(*status) && WTERMSIG(*status) == SIGKILL) << "the victim ended before the kill";

  const SubscriberReport report = read_report(*collector, 120s);
  expect_published(*a, others);
  expect_published(*c, others);
  expect_nothing_lost(report);
  expect_complete(report, "press", others);
  expect_complete(report, "filler", others);
  ASSERT_TRUE(report.publishers.count("victim")) << report.text;
  const PublisherReport& v = report.publishers.at("victim");
  EXPECT_GT(v.count, 0u) << "the victim published nothing before it was killed";
  // A contiguous prefix 0..k-1, each event intact, nothing torn or half-written.
  EXPECT_EQ(v.first_sequence, 0u);
  EXPECT_EQ(v.first_counter, 0u);
  EXPECT_EQ(v.order_errors, 0u) << v.problem;
  EXPECT_EQ(v.integrity_errors, 0u) << v.problem;
  EXPECT_EQ(v.digest, expected_digest("victim", 0, v.count));
  // ...and exactly what it committed: a restart under its name resumes right after it.
  Publisher again = bus.publisher("plant.line1.temp", {"victim"});
  EXPECT_EQ(again.next_sequence(), v.count) << "the subscriber drained " << v.count << " events of the killed publisher";
  std::printf("killed publisher: %" PRIu64 " events committed and delivered before kill -9\n", v.count);
}

/// Fills the ring through `pub` with try_publish until it answers Full.
/// Returns how many were published; `next` is the payload counter.
uint64_t fill_until_full(Publisher& pub, flatbuffers::FlatBufferBuilder& fbb, uint64_t& next) {
  uint64_t n = 0;
  for (; n < 100000; ++n, ++next) {
    build_payload(fbb, "main", next);
    const PublishStatus s = pub.try_publish({fbb.GetBufferPointer(), fbb.GetSize()});
    if (s == PublishStatus::Full) return n;
    EXPECT_EQ(s, PublishStatus::Ok);
  }
  ADD_FAILURE() << "the ring never became full";
  return n;
}

TEST_F(ProcessTest, SubscriberKilledWhileHoldingAnEventNoLongerBlocksThePublisher) {
  ScopedBusName name("killsub");
  Bus bus = Bus::open(name.name);
  TopicSpec spec = sensor_topic("orders.created", Policy::Block, 16 * 1024);
  spec.slow_consumer_timeout = kNever;  // only death can free the ring
  bus.create_topic(spec);
  Publisher pub = bus.publisher("orders.created", {"main"});
  flatbuffers::FlatBufferBuilder fbb;
  uint64_t next = 0;
  build_payload(fbb, "main", next++);
  ASSERT_EQ(pub.try_publish({fbb.GetBufferPointer(), fbb.GetSize()}), PublishStatus::Ok);
  ChildProcess holder({kWorker, "hold", name.name, "orders.created"});
  expect_line(holder, "ready");
  expect_line(holder, "holding 0");  // it read event 0 and sleeps without releasing it

  EXPECT_GT(fill_until_full(pub, fbb, next), 10u);
  build_payload(fbb, "main", next);
  EXPECT_EQ(pub.publish({fbb.GetBufferPointer(), fbb.GetSize()}, 300ms), PublishStatus::Full)
      << "a live holder was evicted although the timeout is never";

  holder.signal(SIGKILL);  // not reaped yet: a zombie is dead too
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(pub.publish({fbb.GetBufferPointer(), fbb.GetSize()}, 5s), PublishStatus::Ok);
  const int64_t freed_ms = ms_since(t0);
  EXPECT_LT(freed_ms, 5000);
  EXPECT_GE(pub.evictions(), 1u);
  // The ring is the publisher's again: a full ring's worth goes through without waiting.
  for (uint64_t i = 0; i < 400; ++i) {
    build_payload(fbb, "main", ++next);
    ASSERT_EQ(pub.publish({fbb.GetBufferPointer(), fbb.GetSize()}, 1s), PublishStatus::Ok) << i;
  }
  holder.kill_and_reap();
  std::printf("the publisher was free %" PRId64 " ms after kill -9 of the holder\n", freed_ms);
}

TEST_F(ProcessTest, StoppedSubscriberIsEvictedAfterTheTimeoutAndLearnsWhatItMissed) {
  ScopedBusName name("stopsub");
  Bus bus = Bus::open(name.name);
  TopicSpec spec = sensor_topic("orders.created", Policy::Block, 16 * 1024);
  spec.slow_consumer_timeout = 200ms;
  bus.create_topic(spec);
  Publisher pub = bus.publisher("orders.created", {"main"});
  flatbuffers::FlatBufferBuilder fbb;
  uint64_t next = 0;
  build_payload(fbb, "main", next++);
  ASSERT_EQ(pub.try_publish({fbb.GetBufferPointer(), fbb.GetSize()}), PublishStatus::Ok);
  ChildProcess holder({kWorker, "hold", name.name, "orders.created"});
  expect_line(holder, "ready");
  expect_line(holder, "holding 0");
  holder.signal(SIGSTOP);  // alive, but stuck

  fill_until_full(pub, fbb, next);
  const auto first_full = std::chrono::steady_clock::now();
  build_payload(fbb, "main", next);
  ASSERT_EQ(pub.publish({fbb.GetBufferPointer(), fbb.GetSize()}, 5s), PublishStatus::Ok);
  const int64_t freed_ms = ms_since(first_full);
  ++next;
  EXPECT_GE(freed_ms, 150) << "evicted before the 200 ms slow-consumer timeout";
  EXPECT_LT(freed_ms, 2000) << "freed long after the 200 ms slow-consumer timeout";
  EXPECT_EQ(pub.evictions(), 1u);
  // Lap the ring a few times, so the stopped reader's event and more are gone.
  for (int i = 0; i < 600; ++i, ++next) {
    build_payload(fbb, "main", next);
    ASSERT_EQ(pub.publish({fbb.GetBufferPointer(), fbb.GetSize()}, 1s), PublishStatus::Ok) << i;
  }
  const uint64_t published = next;  // sequences 0..published-1

  holder.signal(SIGCONT);
  holder.close_stdin();  // go: release, read again, drain
  EXPECT_EQ(expect_line(holder, "release "), std::string("release ") + to_string(ReadStatus::Evicted));
  const std::string read = expect_line(holder, "read ");
  const std::string evicted = std::string("read ") + to_string(ReadStatus::Evicted) + " ";
  ASSERT_EQ(read.rfind(evicted, 0), 0u) << read;
  const uint64_t missed = std::stoull(read.substr(evicted.size()));
  EXPECT_GT(missed, 0u);
  const std::string drained = expect_line(holder, "drained ");
  uint64_t count = 0;
  int64_t first = -1;
  std::istringstream(drained.substr(8)) >> count >> first;
  // Nothing skipped silently: it held 0, missed `missed`, then resumed right after them.
  EXPECT_EQ(first, int64_t(1 + missed)) << drained;
  EXPECT_EQ(1 + missed + count, published) << read << " / " << drained;
  const auto status = holder.wait(10s);
  EXPECT_TRUE(status && WIFEXITED(*status) && WEXITSTATUS(*status) == 0);
  std::printf("evicted %" PRId64 " ms after the ring filled; the reader missed %" PRIu64 " and drained %" PRIu64 "\n",
              freed_ms, missed, count);
}

TEST_F(ProcessTest, GcRemovesWhatADeadBusLeftKeepsItsTopicsUntilForcedAndLeavesALiveBusAlone) {
  ScopedBusName dead("gcdead"), live("gclive");
  const std::string unrelated = "/dev/shm/not-flowbus-" + std::to_string(::getpid());
  std::ofstream(unrelated) << "not ours\n";
  struct Unlink {
    std::string path;
    ~Unlink() { ::unlink(path.c_str()); }
  } unlink_at_end{unrelated};

  // The live bus: held open by this process, its rings as stale-looking as
  // they can be (retention 0), a publisher and a reader.
  Bus live_bus = Bus::open(live.name);
  TopicSpec spec = sensor_topic("orders.created");
  spec.retention = 0s;
  live_bus.create_topic(spec);
  Publisher pub = live_bus.publisher("orders.created", {"main"});
  Subscriber sub = live_bus.subscribe("orders.created", {StartAt::Earliest});
  flatbuffers::FlatBufferBuilder fbb;
  build_payload(fbb, "main", 0);
  ASSERT_EQ(pub.try_publish({fbb.GetBufferPointer(), fbb.GetSize()}), PublishStatus::Ok);
  const auto live_segments = segments_of(live.name);
  ASSERT_EQ(live_segments.size(), 4u);  // directory, ring, control, bell

  leave_a_dead_bus(dead.name, 0);
  ASSERT_EQ(segments_of(dead.name).size(), 4u) << "directory, ring, control, bell";

  // Its ring's retention has ended: gc removes the ring. Its topic is
  // configuration, kept until --force (issue 15 item 7).
  const auto gc = run_cli({"gc", dead.name});
  EXPECT_EQ(gc.exit_code, 0) << gc.out << gc.err;
  EXPECT_NE(gc.out.find("kept bus " + dead.name), std::string::npos) << gc.out;
  EXPECT_NE(gc.out.find("1 topic(s)"), std::string::npos) << gc.out;
  EXPECT_EQ(segments_of(dead.name).size(), 1u) << "the directory alone: " << gc.out;
  const auto forced_dead = run_cli({"gc", "--force", dead.name});
  EXPECT_NE(forced_dead.out.find("removed bus " + dead.name), std::string::npos) << forced_dead.out;
  EXPECT_TRUE(segments_of(dead.name).empty()) << forced_dead.out;

  const auto gc_live = run_cli({"gc", live.name});
  EXPECT_EQ(gc_live.exit_code, 0) << gc_live.out << gc_live.err;
  EXPECT_NE(gc_live.out.find("kept bus " + live.name), std::string::npos) << gc_live.out;
  EXPECT_EQ(segments_of(live.name), live_segments) << gc.out << gc_live.out;
  std::ifstream in(unrelated);
  std::string content;
  std::getline(in, content);
  EXPECT_EQ(content, "not ours");
  // The live bus still works.
  build_payload(fbb, "main", 1);
  ASSERT_EQ(pub.try_publish({fbb.GetBufferPointer(), fbb.GetSize()}), PublishStatus::Ok);
  EXPECT_EQ(sub.poll([](const Event&) {}).delivered, 2u);
}

TEST_F(ProcessTest, GcKeepsADeadBusWhoseRingIsWithinRetentionUnlessForced) {
  ScopedBusName dead("gcretain");
  leave_a_dead_bus(dead.name, 3600);
  const auto segments = segments_of(dead.name);
  ASSERT_EQ(segments.size(), 4u);

  const auto gc = run_cli({"gc", dead.name});
  EXPECT_EQ(gc.exit_code, 0) << gc.out << gc.err;
  EXPECT_NE(gc.out.find("kept bus " + dead.name), std::string::npos) << gc.out;
  EXPECT_EQ(segments_of(dead.name), segments) << "plain gc removed a ring still within its retention";

  const auto forced = run_cli({"gc", "--force", dead.name});
  EXPECT_EQ(forced.exit_code, 0) << forced.out << forced.err;
  EXPECT_NE(forced.out.find("removed bus " + dead.name), std::string::npos) << forced.out;
  EXPECT_TRUE(segments_of(dead.name).empty()) << forced.out;
}

}  // namespace
