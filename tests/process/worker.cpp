// flowbus_test_worker: one participant of a multi-process test, in its own
// process. It talks to the test on stdout (one line per fact) and waits for
// the test's "go" by reading stdin until EOF.
//
//   publish   BUS TOPIC NAME COUNT
//       prints "ready <first sequence>", waits for go, publishes COUNT events
//       (see payload.hpp) under publisher NAME, prints "published <n> full <f>"
//       (f: how often the ring was full, so the publisher had to wait).
//   subscribe BUS PATTERN SETTLE_MS NAME=COUNT... (COUNT '*': unknown)
//       subscribes from the earliest event, prints "ready <rings>", reads and
//       checks every event until each NAME has COUNT events (and, if a COUNT
//       is unknown, nothing came for SETTLE_MS), then prints one line per
//       publisher, a summary and "done" (see report()).
//   hold      BUS PATTERN
//       prints "ready", reads one event and prints "holding <seq>" without
//       releasing it, waits for go, then prints "release <status>",
//       "read <status> <missed>" and "drained <count> <first seq or -1>".
//   linger    BUS TOPIC RETENTION_S
//       creates TOPIC (retention RETENTION_S), publishes 10 events as "p",
//       subscribes, prints "ready" and waits: for the test to kill it.
//   crashpub  BUS TOPIC NAME COMMITTED
//       takes over ring NAME, prints "ready <first sequence>", publishes
//       COMMITTED events, then loans room for the next one, builds it in the
//       ring, does not commit, prints "loaned <seq>" and waits: for kill -9.
//   stream    BUS TOPIC NAME PACE_US TIMEOUT_MS
//       prints "ready <first sequence>", then publishes with publish(bytes, TIMEOUT_MS), sleeping PACE_US
//       between events, until stdin is closed; then prints "published <n>
//       max_block_us <longest publish call> timeouts <publish calls that
//       returned Full>".
//
// Exit 0 when it did its part, 2 on a usage or set-up error.
#include <poll.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <csignal>
#include <cstdarg>
#include <cstdio>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "flowbus/bus.hpp"
#include "flowbus/error.hpp"
#include "flowbus/schema.hpp"
#include "process/payload.hpp"

using namespace flowbus;
using namespace flowbus::testing;
using namespace std::chrono_literals;

namespace {

void say(const char* format, ...) __attribute__((format(printf, 1, 2)));
void say(const char* format, ...) {
  va_list args;
  va_start(args, format);
  std::vfprintf(stdout, format, args);
  va_end(args);
  std::fputc('\n', stdout);
  std::fflush(stdout);
}

/// Blocks until the test closes our stdin.
void wait_for_go() {
  char c;
  while (::read(0, &c, 1) > 0) {
  }
}

int publish(const std::string& bus_name, const std::string& topic, const std::string& name, uint64_t count) {
  Bus bus = Bus::open_existing(bus_name);
  Publisher pub = bus.publisher(topic, {name});
  const uint64_t first = pub.next_sequence();
  say("ready %" PRIu64, first);
  wait_for_go();
  flatbuffers::FlatBufferBuilder fbb(256);
  uint64_t full = 0;  // times the ring was full: proof of backpressure
  for (uint64_t i = first; i < first + count; ++i) {
    build_payload(fbb, name.c_str(), i);
    const std::span<const uint8_t> bytes(fbb.GetBufferPointer(), fbb.GetSize());
    PublishStatus s = pub.try_publish(bytes);
    if (s == PublishStatus::Full) {
      ++full;
      s = pub.publish(bytes, 20s);
    }
    if (s != PublishStatus::Ok) {
      say("error publish %s at %" PRIu64, to_string(s), i);
      return 1;
    }
  }
  say("published %" PRIu64 " full %" PRIu64, count, full);
  return 0;
}

struct PublisherStats {
  std::string name;
  uint64_t expected = UINT64_MAX;  // UINT64_MAX: unknown
  uint64_t count = 0;
  uint64_t first_sequence = 0, first_counter = 0;
  uint64_t last_sequence = 0, last_counter = 0;
  uint64_t order_errors = 0, integrity_errors = 0;
  uint64_t digest = kFnvBasis;
  std::string first_problem;
};

int subscribe(const std::string& bus_name, const std::string& pattern, int64_t settle_ms,
              const std::vector<std::string>& expectations) {
  std::map<std::string, PublisherStats> by_name;
  bool any_unknown = false;
  for (const std::string& e : expectations) {
    const size_t eq = e.find('=');
    if (eq == std::string::npos) return 2;
    PublisherStats& s = by_name[e.substr(0, eq)];
    s.name = e.substr(0, eq);
    if (e.substr(eq + 1) == "*") any_unknown = true;
    else s.expected = std::stoull(e.substr(eq + 1));
  }
  Bus bus = Bus::open_existing(bus_name);
  Subscriber sub = bus.subscribe(pattern, {StartAt::Earliest});
  say("ready %zu", sub.ring_count());

  std::unordered_map<const RingContext*, PublisherStats*> by_ring;  // no string compare per event
  uint64_t delivered = 0, evicted = 0, lost = 0, corrupt = 0, missed = 0, release_errors = 0, unexpected = 0;
  auto complete = [&] {
    for (const auto& [name, s] : by_name)
      if (s.expected != UINT64_MAX && s.count < s.expected) return false;
    return true;
  };
  auto last_event = std::chrono::steady_clock::now();
  const auto give_up = 20s;  // nothing at all for this long: report what we have
  Event e;
  for (;;) {
    const ReadResult r = sub.read(e);
    if (r.status == ReadStatus::Ok) {
      ++delivered;
      last_event = std::chrono::steady_clock::now();
      PublisherStats*& s = by_ring[&e.context()];
      if (s == nullptr) {
        auto it = by_name.find(e.context().publisher_name);
        if (it == by_name.end()) {
          ++unexpected;
          (void)sub.release(e);
          continue;
        }
        s = &it->second;
      }
      uint64_t counter = 0, value = 0;
      if (const char* problem = check_payload(e.data(), e.size(), s->name, counter, value)) {
        if (s->integrity_errors++ == 0) s->first_problem = problem;
      } else {
        if (s->count == 0) {
          s->first_sequence = e.sequence();
          s->first_counter = counter;
        } else if (e.sequence() != s->last_sequence + 1 || counter != s->last_counter + 1) {
          if (s->order_errors++ == 0)
            s->first_problem = "after sequence " + std::to_string(s->last_sequence) + " (counter " +
                               std::to_string(s->last_counter) + ") came " + std::to_string(e.sequence()) + " (counter " +
                               std::to_string(counter) + ")";
        }
        s->last_sequence = e.sequence();
        s->last_counter = counter;
        s->digest = digest_step(s->digest, value);
        ++s->count;
      }
      if (sub.release(e) != ReadStatus::Ok) ++release_errors;
      continue;
    }
    if (r.status == ReadStatus::Empty) {
      const auto idle = std::chrono::steady_clock::now() - last_event;
      if (complete() && (!any_unknown || idle >= std::chrono::milliseconds(settle_ms))) break;
      if (idle >= give_up) break;
      (void)sub.wait(50ms);
      continue;
    }
    missed += r.missed;
    evicted += r.status == ReadStatus::Evicted;
    lost += r.status == ReadStatus::Lost;
    corrupt += r.status == ReadStatus::Corrupt;
  }
  for (const auto& [name, s] : by_name)
    say("pub %s count %" PRIu64 " first_sequence %" PRIu64 " first_counter %" PRIu64 " order_errors %" PRIu64
        " integrity_errors %" PRIu64 " digest %016" PRIx64 " problem [%s]",
        name.c_str(), s.count, s.first_sequence, s.first_counter, s.order_errors, s.integrity_errors, s.digest,
        s.first_problem.c_str());
  say("summary delivered %" PRIu64 " evicted %" PRIu64 " lost %" PRIu64 " corrupt %" PRIu64 " missed %" PRIu64
      " release_errors %" PRIu64 " unexpected %" PRIu64,
      delivered, evicted, lost, corrupt, missed, release_errors, unexpected);
  say("done");
  return 0;
}

int hold(const std::string& bus_name, const std::string& pattern) {
  Bus bus = Bus::open_existing(bus_name);
  Subscriber sub = bus.subscribe(pattern, {StartAt::Earliest});
  say("ready");
  Event held;
  ReadResult r;
  for (int i = 0; i < 100; ++i) {
    r = sub.read(held);
    if (r.status == ReadStatus::Ok) break;
    (void)sub.wait(100ms);
  }
  if (r.status != ReadStatus::Ok) {
    say("error read %s", to_string(r.status));
    return 1;
  }
  say("holding %" PRIu64, held.sequence());
  wait_for_go();
  say("release %s", to_string(sub.release(held)));
  Event e;
  r = sub.read(e);
  say("read %s %" PRIu64, to_string(r.status), r.missed);
  uint64_t drained = 0;
  int64_t first = -1;
  if (r.status == ReadStatus::Ok) {
    first = int64_t(e.sequence());
    ++drained;
    (void)sub.release(e);
  }
  for (;;) {
    r = sub.read(e);
    if (r.status == ReadStatus::Ok) {
      if (first < 0) first = int64_t(e.sequence());
      ++drained;
      (void)sub.release(e);
      continue;
    }
    if (r.status != ReadStatus::Empty) {
      say("error drain %s", to_string(r.status));
      return 1;
    }
    if (!sub.wait(300ms)) break;
  }
  say("drained %" PRIu64 " %" PRId64, drained, first);
  return 0;
}

int linger(const std::string& bus_name, const std::string& topic, int64_t retention_s) {
  Bus bus = Bus::open(bus_name);
  TopicSpec spec;
  spec.name = topic;
  spec.type = "examples.SensorReading";
  spec.schema = compile_schema_file(std::string(FLOWBUS_SOURCE_DIR) + "/schemas/examples/sensor.fbs");
  spec.ring_size = 64 * 1024;
  spec.retention = std::chrono::seconds(retention_s);
  bus.create_topic(spec);
  Publisher pub = bus.publisher(topic, {"p"});
  Subscriber sub = bus.subscribe(topic, {StartAt::Earliest});
  flatbuffers::FlatBufferBuilder fbb;
  for (uint64_t i = 0; i < 10; ++i) {
    build_payload(fbb, "p", i);
    if (pub.publish(fbb, 1s) != PublishStatus::Ok) return 1;
  }
  say("ready");
  wait_for_go();
  return 0;
}

int crashpub(const std::string& bus_name, const std::string& topic, const std::string& name, uint64_t committed) {
  Bus bus = Bus::open_existing(bus_name);
  Publisher pub = bus.publisher(topic, {name});
  const uint64_t first = pub.next_sequence();
  say("ready %" PRIu64, first);
  flatbuffers::FlatBufferBuilder fbb(256);
  for (uint64_t i = first; i < first + committed; ++i) {
    build_payload(fbb, name.c_str(), i);
    const PublishStatus s = pub.publish({fbb.GetBufferPointer(), fbb.GetSize()}, 20s);
    if (s != PublishStatus::Ok) {
      say("error publish %s at %" PRIu64, to_string(s), i);
      return 1;
    }
  }
  // The reservation: loan() never waits, so retry while a reader drains (Block).
  Loan loan;
  PublishStatus s = PublishStatus::Full;
  for (int tries = 0; tries < 20000 && (s = pub.loan(256, loan)) == PublishStatus::Full; ++tries)
    ::usleep(1000);
  if (s != PublishStatus::Ok) {
    say("error loan %s", to_string(s));
    return 1;
  }
  // A whole event written into the ring's bytes, just never committed.
  const uint64_t seq = pub.next_sequence();
  char hex[17];
  to_hex16(payload_value(name, seq), hex);
  loan.builder().Finish(examples::CreateSensorReadingDirect(loan.builder(), name.c_str(), hex, double(seq), seq));
  say("loaned %" PRIu64, seq);
  wait_for_go();  // the test kills us here
  return 3;       // never commit, even when not killed
}

/// True once stdin is at EOF (the test closed it), without blocking.
bool stdin_closed() {
  pollfd p{0, POLLIN, 0};
  if (::poll(&p, 1, 0) <= 0) return false;
  char c;
  return ::read(0, &c, 1) <= 0;
}

int stream(const std::string& bus_name, const std::string& topic, const std::string& name, int64_t pace_us,
           int64_t timeout_ms) {
  Bus bus = Bus::open_existing(bus_name);
  Publisher pub = bus.publisher(topic, {name});
  const uint64_t first = pub.next_sequence();
  say("ready %" PRIu64, first);
  flatbuffers::FlatBufferBuilder fbb(256);
  uint64_t n = 0, timeouts = 0, calls = 0;
  int64_t max_block_ns = 0;
  for (uint64_t i = first;; ++i) {
    if ((pace_us > 0 || calls++ % 16 == 0) && stdin_closed()) break;
    build_payload(fbb, name.c_str(), i);
    const auto t0 = std::chrono::steady_clock::now();
    const PublishStatus s = pub.publish({fbb.GetBufferPointer(), fbb.GetSize()}, std::chrono::milliseconds(timeout_ms));
    const int64_t took = std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count();
    max_block_ns = std::max(max_block_ns, took);
    if (s == PublishStatus::Full) {
      ++timeouts;
      --i;  // the same event again
      continue;
    }
    if (s != PublishStatus::Ok) {
      say("error publish %s at %" PRIu64, to_string(s), i);
      return 1;
    }
    ++n;
    if (pace_us > 0) ::usleep(useconds_t(pace_us));
  }
  say("published %" PRIu64 " max_block_us %" PRId64 " timeouts %" PRIu64 " evictions %" PRIu64, n, max_block_ns / 1000,
      timeouts, pub.evictions());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // Die with the test: a crashed or timed-out test leaves no worker behind.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() == 1) return 2;
  const std::vector<std::string> a(argv + 1, argv + argc);
  try {
    if (a.size() == 5 && a[0] == "publish") return publish(a[1], a[2], a[3], std::stoull(a[4]));
    if (a.size() >= 5 && a[0] == "subscribe")
      return subscribe(a[1], a[2], std::stoll(a[3]), std::vector<std::string>(a.begin() + 4, a.end()));
    if (a.size() == 3 && a[0] == "hold") return hold(a[1], a[2]);
    if (a.size() == 4 && a[0] == "linger") return linger(a[1], a[2], std::stoll(a[3]));
    if (a.size() == 5 && a[0] == "crashpub") return crashpub(a[1], a[2], a[3], std::stoull(a[4]));
    if (a.size() == 6 && a[0] == "stream") return stream(a[1], a[2], a[3], std::stoll(a[4]), std::stoll(a[5]));
  } catch (const Error& e) {
    say("error %s", e.what());
    return 2;
  }
  std::fprintf(stderr, "usage: flowbus_test_worker publish|subscribe|hold|linger|crashpub|stream ... (see worker.cpp)\n");
  return 2;
}
