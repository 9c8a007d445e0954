#include "throughput.hpp"

#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <functional>
#include <new>
#include <thread>
#include <vector>

#include "flowbus/bus.hpp"
#include "flowbus/detail/layout.hpp"
#include "flowbus/detail/platform.hpp"
#include "flowbus/error.hpp"
#include "flowbus/perf_generated.h"
#include "harness.hpp"
#include "transports.hpp"

namespace flowbus::perf {

double ThroughputResult::total_events_per_s() const {
  if (per_process.empty()) return events_per_s();
  double total = 0;
  for (const double rate : per_process) total += rate;
  return total;
}

namespace {

constexpr int kMaxProcesses = 64;

/// Shared by the parent and every child (an anonymous shared mapping made
/// before fork). Each field on its own cache line, so that the counters
/// children write at the end do not disturb the flags they poll.
struct Control {
  std::atomic<int> ready{0};
  alignas(64) std::atomic<int> go{0};
  alignas(64) std::atomic<int> stop{0};
  // Events each receiver must get, known once every sender has finished.
  alignas(64) std::atomic<uint64_t> expected{UINT64_MAX};
  struct alignas(64) Child {
    std::atomic<uint64_t> events{0};   // sent or received and checked
    std::atomic<uint64_t> errors{0};   // receivers: events out of order, damaged or missed
    std::atomic<uint64_t> done_ns{0};  // receivers: when they had their last event
  } child[kMaxProcesses];
};

class SharedControl {
 public:
  SharedControl() {
    void* m = mmap(nullptr, sizeof(Control), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) fail("cannot map the shared control block");
    control_ = new (m) Control;
  }
  ~SharedControl() { munmap(control_, sizeof(Control)); }
  Control& operator*() { return *control_; }
  Control* operator->() { return control_; }

 private:
  Control* control_;
};

/// A sender: announces it is ready, waits for the start, then runs.
void await_start(Control& c) {
  c.ready.fetch_add(1);
  while (!c.go.load(std::memory_order_acquire)) std::this_thread::sleep_for(std::chrono::microseconds(50));
}

/// The rates of the side with several processes: each sender's events over
/// the run's seconds (P->1, so they add up to the total), each receiver's
/// events (all of them) over the time it took to get them (1->K).
void note_each_process(const Control& c, int senders, int receivers, uint64_t start_ns, ThroughputResult& result) {
  if (senders > 1)
    for (int s = 0; s < senders; ++s) result.per_process.push_back(double(c.child[s].events.load()) / result.seconds);
  if (receivers > 1)
    for (int r = 0; r < receivers; ++r) {
      const uint64_t done = c.child[senders + r].done_ns.load();
      const uint64_t took = done > start_ns ? done - start_ns : 1;
      result.per_process.push_back(double(result.events) / (double(took) / 1e9));
    }
}

/// Forks `receivers` then `senders` processes, starts them together once all are ready, stops the senders after
/// `seconds`, tells the receivers how many events to expect, and times until
/// the last receiver has them all. Child i reports in control.child[i]
/// (senders first). The side with one process gets CPU 0 to itself and the
/// other side shares the rest: with fewer CPUs than processes, the single
/// publisher (1->K) or the single subscriber (P->1), which does K or P times
/// the work of each peer, is never descheduled for one of them.
void run_processes(Control& c, int senders, int receivers, double seconds, ThroughputResult& result,
                   const std::function<void(int sender)>& send, const std::function<void(int receiver)>& receive,
                   const std::function<void()>& after_fork = {}) {
  if (senders + receivers > kMaxProcesses) fail("at most " + std::to_string(kMaxProcesses) + " processes");
  std::vector<pid_t> pids;
  auto kill_all = [&] {
    for (pid_t pid : pids) ::kill(pid, SIGKILL);
    for (pid_t pid : pids) ::waitpid(pid, nullptr, 0);
  };
  const int shared_cpus = std::max(1, usable_cpus() - 1);
  auto cpu = [&](bool single_side, int i) { return single_side ? 0 : 1 + i % shared_cpus; };
  const bool senders_alone = senders == 1;
  for (int r = 0; r < receivers; ++r)
    pids.push_back(fork_pinned(cpu(!senders_alone, r), "receiver", [&] { receive(senders + r); }));
  for (int s = 0; s < senders; ++s) pids.push_back(fork_pinned(cpu(senders_alone, s), "sender", [&] { send(s); }));
  if (after_fork) after_fork();
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (c.ready.load() < senders + receivers) {
    for (size_t i = 0; i < pids.size(); ++i)
      if (::waitpid(pids[i], nullptr, WNOHANG) == pids[i]) {  // a child failed while setting up (its message is above)
        pids.erase(pids.begin() + long(i));
        kill_all();
        fail(result.transport + " " + result.mode + ": a process failed before the start");
      }
    if (std::chrono::steady_clock::now() > give_up) {
      kill_all();
      fail(result.transport + " " + result.mode + ": the processes did not start within 30 s");
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  const uint64_t start_ns = monotonic_ns();
  c.go.store(1, std::memory_order_release);
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  c.stop.store(1, std::memory_order_release);
  uint64_t sent = 0;
  for (int s = 0; s < senders; ++s) {
    wait_child(pids[size_t(receivers + s)], result.transport + " sender");
    sent += c.child[s].events.load();
  }
  c.expected.store(sent, std::memory_order_release);
  uint64_t done_ns = start_ns;
  for (int r = 0; r < receivers; ++r) {
    wait_child(pids[size_t(r)], result.transport + " receiver");
    const auto& child = c.child[senders + r];
    if (child.errors.load() != 0)
      fail(result.transport + " " + result.mode + ": receiver " + std::to_string(r) + " saw " +
           std::to_string(child.errors.load()) + " events out of order, damaged or missed");
    if (child.events.load() != sent)
      fail(result.transport + " " + result.mode + ": receiver " + std::to_string(r) + " got " +
           std::to_string(child.events.load()) + " of " + std::to_string(sent) + " events");
    done_ns = std::max(done_ns, child.done_ns.load());
  }
  result.events = sent;
  result.seconds = double(std::max<uint64_t>(done_ns - start_ns, 1)) / 1e9;
  result.time_shared = senders + receivers > usable_cpus();
  note_each_process(c, senders, receivers, start_ns, result);
}

const char* mode_name(int publishers, int subscribers) {
  if (publishers == 1) return subscribers == 1 ? "1->1" : "1->K";
  return "P->1";
}

/// Tracks the next sequence expected from each publisher (a handful: a scan is cheapest).
class OrderCheck {
 public:
  bool in_order(uint64_t publisher_id, uint64_t sequence) {
    for (auto& [id, next] : next_)
      if (id == publisher_id) {
        const bool ok = next == sequence;
        next = sequence + 1;  // resynchronise: one error per break in the order, not one per event after it
        return ok;
      }
    next_.push_back({publisher_id, sequence + 1});
    return sequence == 0;  // a fresh ring starts at 0
  }

 private:
  std::vector<std::pair<uint64_t, uint64_t>> next_;
};

}  // namespace

ThroughputResult flowbus_throughput(size_t bytes, int publishers, int subscribers, double seconds, uint64_t coalesce_ns,
                                    size_t batch, bool untrusted, bool backoff) {
  if (publishers != 1 && subscribers != 1) fail("throughput runs 1->K or P->1");
  if (batch == 0) fail("a batch holds at least one event");
  ThroughputResult result{mode_name(publishers, subscribers), "flowbus", bytes, publishers, subscribers};
  result.coalesce_ns = coalesce_ns;
  result.batch = batch;
  result.untrusted = untrusted;
  result.backoff = backoff;
  const std::string bus_name = "perf-" + std::to_string(getpid()) + "-tput";
  const char* topic = "perf.throughput";
  uint64_t ring = 4u << 20;  // the default topic ring; larger payloads get 64 events' worth
  while (ring < 64 * (bytes + 256)) ring <<= 1;
  {
    Bus bus = Bus::open(bus_name);
    TopicSpec spec{topic, "flowbus.perf.Payload", perf_schema(), Policy::Block, ring};
    spec.untrusted = untrusted;
    bus.create_topic(spec);
  }
  struct RemoveBus {
    std::string name;
    ~RemoveBus() { Bus::destroy(name); }
  } remove_bus{bus_name};
  SharedControl c;

  // Publishers: the normal API, each event a FlatBuffer copied once into the
  // ring with its sequence and time; first and last cache line stamped. With
  // batch > 1, `batch` such FlatBuffers go out per publish_batch call.
  auto publish = [&](int index) {
    Bus bus = Bus::open_existing(bus_name);
    std::string name = "p";
    name += std::to_string(index);  // (not "p" + ...: GCC 12 warns falsely, -Wrestrict)
    Publisher pub = bus.publisher(topic, PublisherOptions{name, {}});
    flatbuffers::FlatBufferBuilder fbb(bytes + 256);
    uint8_t* payload = nullptr;
    fbb.Finish(flowbus::perf::CreatePayload(fbb, fbb.CreateUninitializedVector(bytes, 1, &payload)));
    std::fill(payload, payload + bytes, uint8_t(0x5a));
    const size_t payload_at = size_t(payload - fbb.GetBufferPointer());
    std::vector<std::vector<uint8_t>> buffers(batch, std::vector<uint8_t>(fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize()));
    std::vector<std::span<const uint8_t>> events(buffers.begin(), buffers.end());
    await_start(*c);
    uint64_t sent = 0;
    while (!c->stop.load(std::memory_order_relaxed)) {
      const uint64_t first = pub.next_sequence();
      for (size_t k = 0; k < batch; ++k) stamp(buffers[k].data() + payload_at, bytes, first + k);
      PublishStatus s;
      if (batch == 1) {
        s = pub.publish(events[0], std::chrono::milliseconds(20));
        sent += s == PublishStatus::Ok ? 1 : 0;
      } else {
        const BatchResult r = pub.publish_batch(events, std::chrono::milliseconds(20));
        sent += r.published;
        s = r.status;
      }
      if (s != PublishStatus::Ok && s != PublishStatus::Full) fail(std::string("publish: ") + to_string(s));
    }
    c->child[index].events.store(sent);
  };
  // Subscribers: read every event in place, check its publisher's order and
  // its stamps, count it.
  auto subscribe = [&](int index) {
    Bus bus = Bus::open_existing(bus_name);
    SubscriberOptions options;
    options.from = StartAt::Earliest;
    options.coalesce = std::chrono::nanoseconds(coalesce_ns);
    if (backoff) options.wait_strategy = WaitStrategy::Backoff;
    Subscriber sub = bus.subscribe(topic, options);
    while (sub.ring_count() < size_t(publishers)) {  // every publisher's ring, before the start
      std::this_thread::sleep_for(std::chrono::microseconds(100));
      sub.refresh();
    }
    c->ready.fetch_add(1);
    OrderCheck order;
    uint64_t events = 0, errors = 0, done_ns = monotonic_ns();
    bool got_some = false;
    for (;;) {
      const PollResult r = sub.poll(
          [&](const Event& e) {
            const auto* p = flatbuffers::GetRoot<flowbus::perf::Payload>(e.data());
            const bool ok = order.in_order(e.context().publisher_id, e.sequence()) && p->bytes()->size() == bytes &&
                            check_stamp(p->bytes()->data(), bytes, e.sequence());
            errors += ok ? 0 : 1;
            ++events;
          },
          4096);
      errors += r.missed + r.evictions + r.corrupt_rings + r.torn_views + r.rejected;
      if (r.delivered > 0) {
        got_some = true;
        continue;
      }
      if (got_some) done_ns = monotonic_ns();  // drained everything so far: a clock read per empty poll only
      got_some = false;
      if (events >= c->expected.load(std::memory_order_acquire)) break;
      sub.wait(std::chrono::milliseconds(10));
    }
    c->child[index].events.store(events);
    c->child[index].errors.store(errors);
    c->child[index].done_ns.store(done_ns);
  };
  run_processes(*c, publishers, subscribers, seconds, result, publish, subscribe);
  return result;
}

/// The bytes a flowbus ring spends on one event of `bytes` payload: the
/// record header plus the perf FlatBuffer, on the ring's record grid.
size_t flowbus_record_bytes(size_t bytes) {
  flatbuffers::FlatBufferBuilder fbb(bytes + 256);
  uint8_t* payload = nullptr;
  fbb.Finish(flowbus::perf::CreatePayload(fbb, fbb.CreateUninitializedVector(bytes, 1, &payload)));
  return size_t(detail::record_length(sizeof(detail::RecordHeader), fbb.GetSize()));
}

ThroughputResult floor_throughput(size_t bytes, double seconds) {
  if (bytes < 64) fail("a payload is at least 64 bytes (one cache line)");
  ThroughputResult result{"1->1", "floor", bytes, 1, 1};
  // Slots as large as flowbus's records for this payload, so both move the
  // same cache lines per event; a ring of at least 4 MiB, as flowbus's.
  const size_t slot = flowbus_record_bytes(bytes);
  uint64_t slots = 64;
  while (slots * slot < (4u << 20)) slots <<= 1;
  const size_t size = 128 + slots * slot;
  void* m = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) fail("cannot map the floor's ring");
  auto* base = static_cast<uint8_t*>(m);
  // The reader's position, on its own line, published once per eighth of
  // the ring as flowbus's cursor is; each slot starts with its commit word.
  auto* cursor = new (base) std::atomic<uint64_t>(0);
  uint8_t* ring = base + 128;
  auto commit_of = [&](uint64_t seq) {
    return reinterpret_cast<std::atomic<uint64_t>*>(ring + (seq & (slots - 1)) * slot);
  };
  for (uint64_t i = 0; i < slots; ++i) new (commit_of(i)) std::atomic<uint64_t>(0);
  SharedControl c;
  auto write_events = [&](int index) {
    await_start(*c);
    uint64_t seq = 0, limit = slots;
    while (!c->stop.load(std::memory_order_relaxed)) {
      if (seq >= limit) {
        // Acquire: pairs with the reader's release; it is done with the slots below.
        limit = cursor->load(std::memory_order_acquire) + slots;
        if (seq >= limit) {
          detail::cpu_relax();
          continue;
        }
      }
      std::atomic<uint64_t>* commit = commit_of(seq);
      stamp(reinterpret_cast<uint8_t*>(commit) + sizeof(detail::RecordHeader), bytes, seq);
      commit->store(seq + 1, std::memory_order_release);  // publishes the stamp written above
      ++seq;
    }
    c->child[index].events.store(seq);
  };
  auto read_events = [&](int index) {
    c->ready.fetch_add(1);
    uint64_t seq = 0, errors = 0, done_ns = monotonic_ns();
    bool got_some = false;
    for (;;) {
      std::atomic<uint64_t>* commit = commit_of(seq);
      if (commit->load(std::memory_order_acquire) == seq + 1) {  // pairs with the writer's release
        errors += check_stamp(reinterpret_cast<const uint8_t*>(commit) + sizeof(detail::RecordHeader), bytes, seq) ? 0 : 1;
        if ((++seq & (slots / 8 - 1)) == 0) cursor->store(seq, std::memory_order_release);
        got_some = true;
        continue;
      }
      if (got_some) done_ns = monotonic_ns();
      got_some = false;
      if (seq >= c->expected.load(std::memory_order_acquire)) break;
      detail::cpu_relax();  // as the latency floor's spin loops do
    }
    c->child[index].events.store(seq);
    c->child[index].errors.store(errors);
    c->child[index].done_ns.store(done_ns);
  };
  run_processes(*c, 1, 1, seconds, result, write_events, read_events);
  munmap(m, size);
  return result;
}

ThroughputResult fd_throughput(bool unix_socket, size_t bytes, double seconds) {
  if (bytes < 64) fail("a payload is at least 64 bytes (one cache line)");
  ThroughputResult result{"1->1", unix_socket ? "uds" : "pipe", bytes, 1, 1};
  int fds[2];  // [0] read end, [1] write end
  if (unix_socket ? socketpair(AF_UNIX, SOCK_STREAM, 0, fds) != 0 : pipe(fds) != 0) fail("cannot make the channel");
  SharedControl c;
  auto write_events = [&](int index) {
    ::close(fds[0]);
    std::vector<uint8_t> buffer(bytes, 0x5a);
    await_start(*c);
    uint64_t sent = 0;
    for (; !c->stop.load(std::memory_order_relaxed); ++sent) {
      stamp(buffer.data(), bytes, sent);
      for (size_t done = 0; done < bytes;) {
        const ssize_t n = ::write(fds[1], buffer.data() + done, bytes - done);
        if (n <= 0) fail("write failed");
        done += size_t(n);
      }
    }
    ::close(fds[1]);  // the reader sees the end
    c->child[index].events.store(sent);
  };
  auto read_events = [&](int index) {
    ::close(fds[1]);
    std::vector<uint8_t> buffer(bytes);
    c->ready.fetch_add(1);
    uint64_t events = 0, errors = 0;
    for (;; ++events) {
      size_t done = 0;
      while (done < bytes) {
        const ssize_t n = ::read(fds[0], buffer.data() + done, bytes - done);
        if (n < 0) fail("read failed");
        if (n == 0) break;
        done += size_t(n);
      }
      if (done < bytes) {
        errors += done > 0 ? 1 : 0;  // a torn last message
        break;
      }
      errors += check_stamp(buffer.data(), bytes, events) ? 0 : 1;
    }
    c->child[index].events.store(events);
    c->child[index].errors.store(errors);
    c->child[index].done_ns.store(monotonic_ns());
  };
  // The parent holds no end, or the reader would never see the end of the stream.
  auto close_both = [&] { ::close(fds[0]), ::close(fds[1]); };
  run_processes(*c, 1, 1, seconds, result, write_events, read_events, close_both);
  return result;
}

}  // namespace flowbus::perf
