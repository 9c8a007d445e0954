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
//   bursts    BUS TOPIC NAME BURST
//       prints "ready <first sequence>", then publishes BURST events at a
//       time with publish_batch (10 s timeout) until killed: for kill -9
//       while a burst is half committed (records above the stored W).
//   stream    BUS TOPIC NAME PACE_US TIMEOUT_MS
//       prints "ready <first sequence>", then publishes with publish(bytes, TIMEOUT_MS), sleeping PACE_US
//       between events, until stdin is closed; then prints "published <n>
//       max_block_us <longest publish call> timeouts <publish calls that
//       returned Full>".
//   rogue     BUS TOPIC PUBLISHER SEED
//       maps ring PUBLISHER of TOPIC read-write (data and control segments,
//       as any process with write permission can) and writes random or
//       plausible-looking bytes into its header, positions, cursor slots,
//       records and commit words, until stdin is closed; prints "ready",
//       then "scribbled <writes>".
//   watch     BUS PATTERN HEALTHY VICTIM SETTLE_MS [PROBE_TOPIC]
//       subscribes from the earliest event, prints "ready <rings>", copies
//       every event out of the ring before checking it (its bytes may be
//       scribbled on while we look), and reads until stdin is closed and
//       nothing came for SETTLE_MS. Prints "healthy ..." (publisher HEALTHY:
//       count, order, integrity, digest), "victim ok <n> bad <n>" (events of
//       VICTIM that did / did not pass the payload check), "summary ..."
//       (statuses, corrupt rings, the longest read() and wait() calls) and "done".
//       With PROBE_TOPIC, a second subscriber on that topic is made anew
//       each time it reports Corrupt (or cannot be made), so joining and
//       reading a scribbled ring is tried over and over, not just once.
//   newpub    BUS TOPIC NAME COUNT [POLICY RING_BYTES]
//       prints "ready", waits for go, then (with POLICY: creates TOPIC, the
//       sensor schema, policy block|latest, RING_BYTES ring) creates ring NAME
//       (no ring of that name may exist) and publishes COUNT events from
//       sequence 0 at once, so the ring is brand new when its first event is
//       written; prints "published <n> full <f> max_block_us <longest wait
//       for room> evictions <readers this writer evicted>".
//   earlysub  BUS PATTERN COUNT DELAY_US IDLE_MS NAME...
//       subscribes (from the earliest event) before the rings of NAME exist,
//       prints "ready <rings>", waits for go, sleeps DELAY_US, then reads
//       until each NAME's ring delivered its sequence COUNT-1, or nothing
//       came for IDLE_MS. Reported Lost/Evicted counts are credited to the
//       ring of the next event delivered (read() returns that ring's event
//       next). Prints per NAME "ring NAME received <n> first <seq> last <seq>
//       reported_missed <m> silent_gap <g> over_reported <o> order_errors <e>
//       integrity_errors <i> torn <t> problem [...]" (silent_gap: sequences
//       neither delivered nor reported missed; first -1: nothing; torn: events
//       whose payload failed the check and still_valid() said overwritten
//       while read), then "summary ok
//       <n> lost <n> evicted <n> corrupt <n> missed <n> unexpected <n>
//       unattributed <n>" and "done".
//
// Exit 0 when it did its part, 2 on a usage or set-up error.
#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <csignal>
#include <cstdarg>
#include <cstdio>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <unordered_map>
#include <span>
#include <vector>

#include "flowbus/bus.hpp"
#include "flowbus/detail/layout.hpp"
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

int bursts(const std::string& bus_name, const std::string& topic, const std::string& name, size_t burst) {
  Bus bus = Bus::open_existing(bus_name);
  Publisher pub = bus.publisher(topic, {name});
  say("ready %" PRIu64, pub.next_sequence());
  flatbuffers::FlatBufferBuilder fbb(256);
  std::vector<std::vector<uint8_t>> buffers(burst);
  std::vector<std::span<const uint8_t>> events(burst);
  for (;;) {
    const uint64_t first = pub.next_sequence();
    for (size_t k = 0; k < burst; ++k) {
      build_payload(fbb, name.c_str(), first + k);
      buffers[k].assign(fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize());
      events[k] = buffers[k];
    }
    const BatchResult r = pub.publish_batch(events, std::chrono::seconds(10));
    if (r.status != PublishStatus::Ok && r.status != PublishStatus::Full) {
      say("error publish_batch %s at %" PRIu64, to_string(r.status), first + r.published);
      return 1;
    }
  }
}

/// Maps /dev/shm/NAME read-write in full; nullptr (and a message) if it cannot.
uint8_t* map_read_write(const std::string& name, size_t& size) {
  const int fd = ::open(("/dev/shm/" + name).c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return nullptr;
  struct stat st{};
  if (::fstat(fd, &st) != 0 || st.st_size <= 0) {
    ::close(fd);
    return nullptr;
  }
  size = size_t(st.st_size);
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ::close(fd);
  return p == MAP_FAILED ? nullptr : static_cast<uint8_t*>(p);
}

int rogue(const std::string& bus, const std::string& topic, const std::string& publisher, uint64_t seed) {
  using namespace flowbus::detail;
  const std::string data_name = "flowbus." + bus + "." + topic + "@" + publisher;
  size_t data_size = 0, ctl_size = 0, bell_size = 0;
  uint8_t* data = map_read_write(data_name, data_size);
  uint8_t* ctl = map_read_write(data_name + ".ctl", ctl_size);
  uint8_t* bell_bytes = map_read_write(data_name + ".bell", bell_size);
  if (data == nullptr || ctl == nullptr || bell_bytes == nullptr || data_size <= kRecordsOffset ||
      ctl_size < sizeof(ControlHeader) || bell_size < sizeof(BellHeader)) {
    say("error cannot map %s read-write", data_name.c_str());
    return 2;
  }
  auto* h = reinterpret_cast<RingHeader*>(data);
  auto* c = reinterpret_cast<ControlHeader*>(ctl);
  auto* bell = reinterpret_cast<BellHeader*>(bell_bytes);
  const uint64_t capacity = data_size - kRecordsOffset;  // from the segment, not from the header we scribble on
  uint8_t* records = data + kRecordsOffset;
  std::mt19937_64 rng(seed);
  // A value near the live write position (aligned or not), or plain noise.
  auto position_like = [&](uint64_t w) -> uint64_t {
    switch (rng() % 6) {
      case 0: return rng();
      case 1: return 0;
      case 2: return w + (rng() % 64) * kRecordAlign;
      case 3: return w - (rng() % 64) * kRecordAlign;
      case 4: return w + 1 + rng() % 31;  // off the record grid
      default: return w + (rng() % 4) * capacity;  // laps ahead
    }
  };
  // The identity (magic, version, policy, capacity, publisher id) is put
  // back after most bursts, so new readers keep attaching to the damaged
  // ring instead of being refused at open.
  uint8_t identity[48];
  std::memcpy(identity, data, sizeof identity);
  say("ready");
  uint64_t writes = 0;
  for (;;) {
    for (int burst = 0; burst < 64; ++burst, ++writes) {
      const uint64_t w = h->write_position.load(std::memory_order_relaxed);
      const uint64_t junk = rng();
      switch (rng() % 16) {
        case 0: h->write_position.store(position_like(w), std::memory_order_relaxed); break;
        case 1: h->tail_position.store(position_like(w), std::memory_order_relaxed); break;
        case 2: h->limit.store(position_like(w), std::memory_order_relaxed); break;
        case 3: h->next_sequence.store(rng() % 2 ? junk : h->next_sequence.load(std::memory_order_relaxed) - rng() % 8,
                                       std::memory_order_relaxed); break;
        case 4: {  // identity: capacity, magic, version, policy, publisher id
          const size_t off = (rng() % 6) * 8;
          std::memcpy(data + off, &junk, 8);
          if (rng() % 2) h->capacity = uint64_t(1) << (rng() % 48);  // a "valid" power of two
          break;
        }
        case 5: {  // an attachment: noise, or a state word near a real one (readers then see themselves evicted)
          Attachment& at = c->attachments[rng() % kAttachments];
          const uint64_t word = rng() % 2 ? junk : AttachmentState::pack(rng() % 8, rng() % 4);
          at.state.store(word, std::memory_order_relaxed);
          if (rng() % 2) at.line.store(uint32_t(junk >> 32), std::memory_order_relaxed);
          break;
        }
        case 6: {  // the bell: wake requests forged or erased, announcements of nobody, the doorbell rung
          if (rng() % 2)
            bell->wake_request.store(uint32_t(junk >> 32), std::memory_order_relaxed);  // forged, or erased
          else c->wake_word.fetch_add(1, std::memory_order_relaxed);
          BellSlot& slot = bell->slot[rng() % kBellSlots];
          slot.pid.store(uint32_t(junk), std::memory_order_relaxed);
          slot.line.store(uint32_t(rng() % 70), std::memory_order_relaxed);
          slot.seq.store(rng() % 4, std::memory_order_relaxed);
          bell->rings.fetch_add(1, std::memory_order_relaxed);
          break;
        }
        case 7: case 8: {  // a commit word that looks right for the current lap (or the next)
          const uint64_t p = (w & ~uint64_t(kRecordAlign - 1)) + (rng() % 128) * kRecordAlign;
          auto* rec = reinterpret_cast<RecordHeader*>(records + (p & (capacity - 1)));
          rec->commit.store(rng() % 4 ? p + 1 : junk, std::memory_order_relaxed);
          break;
        }
        case 9: case 10: {  // record header fields (size, offset and flags, sequence)
          const uint64_t off = (rng() % (capacity / kRecordAlign)) * kRecordAlign + 8 + (rng() % 3) * 8;
          std::memcpy(records + off, &junk, 8);
          break;
        }
        default: {  // any record byte
          const uint64_t off = rng() % (capacity - 8);
          std::memcpy(records + off, &junk, 1 + rng() % 8);
          break;
        }
      }
    }
    if (stdin_closed()) break;
    if (rng() % 4 != 0) std::memcpy(data + 8, identity + 8, sizeof identity - 8);
    if (rng() % 4 != 0) h->magic.store(kRingMagic, std::memory_order_relaxed);
    ::usleep(50);  // leave the two cores some room: ~1M writes a second otherwise
  }
  say("scribbled %" PRIu64, writes);
  return 0;
}

int watch(const std::string& bus_name, const std::string& pattern, const std::string& healthy, const std::string& victim,
          int64_t settle_ms, const std::string& probe_topic) {
  Bus bus = Bus::open_existing(bus_name);
  Subscriber sub = bus.subscribe(pattern, {StartAt::Earliest});
  say("ready %zu", sub.ring_count());
  std::optional<Subscriber> probe;
  uint64_t probes = 0, probes_refused = 0, probe_events = 0, probe_corrupt = 0;
  int64_t max_probe_ns = 0;
  std::vector<uint8_t> probe_copy;
  std::string first_refusal;
  auto run_probe = [&] {
    if (probe_topic.empty()) return;
    const auto t0 = std::chrono::steady_clock::now();
    if (!probe) {
      try {
        probe.emplace(bus.subscribe(probe_topic, {StartAt::Earliest}));
        ++probes;
      } catch (const Error& e) {
        if (probes_refused++ == 0) first_refusal = e.what();  // e.g. its magic or capacity was scribbled
      }
    }
    Event pe;
    for (int i = 0; probe && i < 64; ++i) {
      const ReadResult r = probe->read(pe);
      if (r.status == ReadStatus::Ok) {
        ++probe_events;
        probe_copy.assign(pe.data(), pe.data() + pe.size());
        uint64_t counter = 0, value = 0;
        (void)check_payload(probe_copy.data(), probe_copy.size(), victim, counter, value);
        (void)probe->release(pe);
      } else if (r.status == ReadStatus::Corrupt) {
        ++probe_corrupt;
        probe.reset();
      } else if (r.status == ReadStatus::Empty) {
        break;
      }
    }
    max_probe_ns = std::max<int64_t>(max_probe_ns, (std::chrono::steady_clock::now() - t0).count());
  };
  PublisherStats h;
  h.name = healthy;
  uint64_t victim_ok = 0, victim_bad = 0, other = 0, delivered = 0, evicted = 0, lost = 0, corrupt = 0, missed = 0;
  int64_t max_read_ns = 0, max_wait_ns = 0;
  std::set<std::string> corrupt_rings;
  std::vector<uint8_t> copy;
  bool closed = false;
  auto last_event = std::chrono::steady_clock::now();
  Event e;
  bool idle = false;
  for (uint64_t round = 0;; ++round) {
    if (idle || round % 16 == 0) run_probe();
    const auto t0 = std::chrono::steady_clock::now();
    const ReadResult r = sub.read(e);
    max_read_ns = std::max<int64_t>(max_read_ns, (std::chrono::steady_clock::now() - t0).count());
    if (r.status == ReadStatus::Ok) {
      ++delivered;
      last_event = std::chrono::steady_clock::now();
      // Copy first: a rogue may change the bytes while we verify them, and
      // verifying bytes that can still change proves nothing.
      copy.assign(e.data(), e.data() + e.size());
      const std::string& from = e.context().publisher_name;
      uint64_t counter = 0, value = 0;
      if (from == healthy) {
        if (const char* problem = check_payload(copy.data(), copy.size(), healthy, counter, value)) {
          if (h.integrity_errors++ == 0) h.first_problem = problem;
        } else {
          if (h.count == 0) {
            h.first_sequence = e.sequence();
            h.first_counter = counter;
          } else if (e.sequence() != h.last_sequence + 1 || counter != h.last_counter + 1) {
            if (h.order_errors++ == 0)
              h.first_problem = "after sequence " + std::to_string(h.last_sequence) + " came " + std::to_string(e.sequence());
          }
          h.last_sequence = e.sequence();
          h.last_counter = counter;
          h.digest = digest_step(h.digest, value);
          ++h.count;
        }
      } else if (from == victim) {
        (check_payload(copy.data(), copy.size(), victim, counter, value) == nullptr ? victim_ok : victim_bad)++;
      } else {
        ++other;
      }
      (void)sub.release(e);
      continue;
    }
    idle = r.status == ReadStatus::Empty;
    if (r.status == ReadStatus::Empty) {
      closed = closed || stdin_closed();
      if (closed && std::chrono::steady_clock::now() - last_event >= std::chrono::milliseconds(settle_ms)) break;
      const auto w0 = std::chrono::steady_clock::now();
      (void)sub.wait(50ms);
      max_wait_ns = std::max<int64_t>(max_wait_ns, (std::chrono::steady_clock::now() - w0).count());
      continue;
    }
    missed += r.missed;
    evicted += r.status == ReadStatus::Evicted;
    lost += r.status == ReadStatus::Lost;
    if (r.status == ReadStatus::Corrupt) {
      ++corrupt;
      corrupt_rings.insert(std::string(r.ring));
    }
  }
  say("healthy count %" PRIu64 " first_sequence %" PRIu64 " first_counter %" PRIu64 " order_errors %" PRIu64
      " integrity_errors %" PRIu64 " digest %016" PRIx64 " problem [%s]",
      h.count, h.first_sequence, h.first_counter, h.order_errors, h.integrity_errors, h.digest, h.first_problem.c_str());
  say("victim ok %" PRIu64 " bad %" PRIu64, victim_ok, victim_bad);
  std::string rings;
  for (const std::string& ring : corrupt_rings) rings += (rings.empty() ? "" : ",") + ring;
  say("summary delivered %" PRIu64 " evicted %" PRIu64 " lost %" PRIu64 " corrupt %" PRIu64 " missed %" PRIu64
      " other %" PRIu64 " max_read_us %" PRId64 " max_wait_us %" PRId64 " corrupt_rings %s",
      delivered, evicted, lost, corrupt, missed, other, max_read_ns / 1000, max_wait_ns / 1000,
      rings.empty() ? "-" : rings.c_str());
  if (!probe_topic.empty())
    say("probe subscribers %" PRIu64 " refused %" PRIu64 " events %" PRIu64 " corrupt %" PRIu64 " max_probe_us %" PRId64
        " first_refusal [%s]",
        probes, probes_refused, probe_events, probe_corrupt, max_probe_ns / 1000, first_refusal.c_str());
  say("done");
  return 0;
}

int newpub(const std::string& bus_name, const std::string& topic, const std::string& name, uint64_t count,
           const std::string& policy, uint64_t ring_bytes) {
  Bus bus = Bus::open_existing(bus_name);
  TopicSpec spec;
  if (!policy.empty()) {
    spec.name = topic;
    spec.type = "examples.SensorReading";
    spec.schema = compile_schema_file(std::string(FLOWBUS_SOURCE_DIR) + "/schemas/examples/sensor.fbs");
    spec.policy = parse_policy(policy);
    spec.ring_size = ring_bytes;
  }
  (void)detail::unix_now_ns();  // learn the TSC rate now (2 ms), not between go and the first event
  flatbuffers::FlatBufferBuilder fbb(256);
  say("ready");
  wait_for_go();
  if (!policy.empty()) bus.create_topic(spec);
  Publisher pub = bus.publisher(topic, {name});
  if (pub.next_sequence() != 0) {
    say("error ring %s existed already (next sequence %" PRIu64 ")", name.c_str(), pub.next_sequence());
    return 1;
  }
  uint64_t full = 0;
  int64_t max_block_ns = 0;
  for (uint64_t i = 0; i < count; ++i) {
    build_payload(fbb, name.c_str(), i);
    const std::span<const uint8_t> bytes(fbb.GetBufferPointer(), fbb.GetSize());
    PublishStatus s = pub.try_publish(bytes);
    if (s == PublishStatus::Full) {
      ++full;
      const auto t0 = std::chrono::steady_clock::now();
      s = pub.publish(bytes, 20s);
      max_block_ns = std::max<int64_t>(max_block_ns, (std::chrono::steady_clock::now() - t0).count());
    }
    if (s != PublishStatus::Ok) {
      say("error publish %s at %" PRIu64, to_string(s), i);
      return 1;
    }
  }
  say("published %" PRIu64 " full %" PRIu64 " max_block_us %" PRId64 " evictions %" PRIu64, count, full,
      max_block_ns / 1000, pub.evictions());
  return 0;
}

int earlysub(const std::string& bus_name, const std::string& pattern, uint64_t count, int64_t delay_us,
             int64_t idle_ms, const std::vector<std::string>& names) {
  struct Ring {
    uint64_t received = 0, next = 0, first = UINT64_MAX, last = UINT64_MAX;
    uint64_t reported = 0, silent = 0, over = 0, order_errors = 0, integrity_errors = 0, torn = 0;
    std::string problem;
  };
  std::map<std::string, Ring> rings;
  for (const std::string& n : names) rings[n];
  Bus bus = Bus::open_existing(bus_name);
  Subscriber sub = bus.subscribe(pattern, {StartAt::Earliest});
  say("ready %zu", sub.ring_count());
  wait_for_go();
  if (delay_us > 0) ::usleep(useconds_t(delay_us));
  std::unordered_map<const RingContext*, Ring*> by_ring;
  uint64_t ok = 0, lost = 0, evicted = 0, corrupt = 0, missed = 0, unexpected = 0, pending = 0;
  size_t complete = 0;
  auto last_event = std::chrono::steady_clock::now();
  Event e;
  while (complete < rings.size()) {
    const ReadResult r = sub.read(e);
    if (r.status == ReadStatus::Empty) {
      if (std::chrono::steady_clock::now() - last_event >= std::chrono::milliseconds(idle_ms)) break;
      (void)sub.wait(20ms);
      continue;
    }
    if (r.status != ReadStatus::Ok) {
      missed += r.missed;
      pending += r.missed;
      lost += r.status == ReadStatus::Lost;
      evicted += r.status == ReadStatus::Evicted;
      corrupt += r.status == ReadStatus::Corrupt;
      continue;
    }
    ++ok;
    last_event = std::chrono::steady_clock::now();
    Ring*& g = by_ring[&e.context()];
    if (g == nullptr) {
      auto it = rings.find(e.context().publisher_name);
      if (it == rings.end()) {
        ++unexpected;
        (void)sub.release(e);
        continue;
      }
      g = &it->second;
    }
    const uint64_t seq = e.sequence();
    uint64_t counter = 0, value = 0;
    std::string problem;
    // On a latest ring the writer may overwrite the record while we look: check a copy, then ask still_valid.
    const std::vector<uint8_t> copy(e.data(), e.data() + e.size());
    if (const char* p = check_payload(copy.data(), copy.size(), e.context().publisher_name, counter, value)) problem = p;
    else if (counter != seq) problem = "sequence " + std::to_string(seq) + " carries counter " + std::to_string(counter);
    if (!problem.empty()) {
      if (!sub.still_valid(e)) ++g->torn;  // overwritten while we looked (latest: allowed, the header was valid)
      else if (g->integrity_errors++ == 0) g->problem = problem;
    }
    if (seq < g->next) {
      if (g->order_errors++ == 0)
        g->problem = "sequence " + std::to_string(seq) + " after " + std::to_string(g->next - 1);
    } else {
      const uint64_t gap = seq - g->next;  // sequences neither delivered nor, perhaps, reported
      g->reported += pending;
      if (gap > pending) g->silent += gap - pending;
      if (pending > gap) g->over += pending - gap;
      g->next = seq + 1;
    }
    pending = 0;
    if (g->first == UINT64_MAX) g->first = seq;
    g->last = seq;
    ++g->received;
    if (seq + 1 == count) ++complete;
    (void)sub.release(e);
  }
  for (const auto& [name, g] : rings)
    say("ring %s received %" PRIu64 " first %" PRId64 " last %" PRId64 " reported_missed %" PRIu64 " silent_gap %" PRIu64
        " over_reported %" PRIu64 " order_errors %" PRIu64 " integrity_errors %" PRIu64 " torn %" PRIu64 " problem [%s]",
        name.c_str(), g.received, g.first == UINT64_MAX ? int64_t(-1) : int64_t(g.first),
        g.last == UINT64_MAX ? int64_t(-1) : int64_t(g.last), g.reported, g.silent, g.over, g.order_errors,
        g.integrity_errors, g.torn, g.problem.c_str());
  say("summary ok %" PRIu64 " lost %" PRIu64 " evicted %" PRIu64 " corrupt %" PRIu64 " missed %" PRIu64
      " unexpected %" PRIu64 " unattributed %" PRIu64,
      ok, lost, evicted, corrupt, missed, unexpected, pending);
  say("done");
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
    if (a.size() == 5 && a[0] == "rogue") return rogue(a[1], a[2], a[3], std::stoull(a[4]));
    if ((a.size() == 6 || a.size() == 7) && a[0] == "watch")
      return watch(a[1], a[2], a[3], a[4], std::stoll(a[5]), a.size() == 7 ? a[6] : "");
    if (a.size() == 5 && a[0] == "bursts") return bursts(a[1], a[2], a[3], std::stoull(a[4]));
    if ((a.size() == 5 || a.size() == 7) && a[0] == "newpub")
      return newpub(a[1], a[2], a[3], std::stoull(a[4]), a.size() == 7 ? a[5] : "", a.size() == 7 ? std::stoull(a[6]) : 0);
    if (a.size() >= 7 && a[0] == "earlysub")
      return earlysub(a[1], a[2], std::stoull(a[3]), std::stoll(a[4]), std::stoll(a[5]),
                      std::vector<std::string>(a.begin() + 6, a.end()));
    if (a.size() == 6 && a[0] == "stream") return stream(a[1], a[2], a[3], std::stoll(a[4]), std::stoll(a[5]));
  } catch (const Error& e) {
    say("error %s", e.what());
    return 2;
  }
  std::fprintf(stderr, "usage: flowbus_test_worker publish|subscribe|hold|linger|crashpub|bursts|stream|rogue|watch|newpub|earlysub ... (see worker.cpp)\n");
  return 2;
}
