// The C ABI over the C++ core: exceptions become FLOWBUS_ERROR plus a message.
#include "flowbus.h"

#include <algorithm>
#include <chrono>
#include <span>
#include <string>

#include "flowbus/bus.hpp"
#include "flowbus/error.hpp"
#include "flowbus/schema.hpp"
#include "flowbus/version.hpp"

struct flowbus_bus {
  flowbus::Bus bus;
};
struct flowbus_publisher {
  flowbus::Publisher publisher;
};
struct flowbus_subscriber {
  flowbus::Subscriber subscriber;
  flowbus::Event held;
  bool holding = false;
};

namespace {

thread_local std::string t_last_error;

template <class F>
auto guarded(F&& f, decltype(f()) on_error) noexcept -> decltype(f()) {
  try {
    t_last_error.clear();
    return f();
  } catch (const std::exception& e) {
    t_last_error = e.what();
  } catch (...) {
    t_last_error = "unknown error";
  }
  return on_error;
}

int to_c(flowbus::PublishStatus s) {
  switch (s) {
    case flowbus::PublishStatus::Ok: return FLOWBUS_OK;
    case flowbus::PublishStatus::Full: return FLOWBUS_FULL;
    case flowbus::PublishStatus::TooLarge: return FLOWBUS_TOO_LARGE;
    case flowbus::PublishStatus::Duplicate: return FLOWBUS_ERROR;  // publish_mirrored only: not in the C API
    case flowbus::PublishStatus::LoanOpen:                         // loans only: not in the C API
    case flowbus::PublishStatus::NoLoan: return FLOWBUS_ERROR;
    case flowbus::PublishStatus::WrongProcess: return FLOWBUS_WRONG_PROCESS;
  }
  return FLOWBUS_ERROR;
}

int to_c(flowbus::ReadStatus s) {
  switch (s) {
    case flowbus::ReadStatus::Ok: return FLOWBUS_OK;
    case flowbus::ReadStatus::Empty: return FLOWBUS_EMPTY;
    case flowbus::ReadStatus::Evicted: return FLOWBUS_EVICTED;
    case flowbus::ReadStatus::Lost: return FLOWBUS_LOST;
    case flowbus::ReadStatus::Corrupt: return FLOWBUS_CORRUPT;
    case flowbus::ReadStatus::WrongProcess: return FLOWBUS_WRONG_PROCESS;
    case flowbus::ReadStatus::Rejected:
      return FLOWBUS_REJECTED;
  }
  return FLOWBUS_ERROR;
}

bool check(const void* handle, const char* what) {
  if (handle != nullptr) return true;
  t_last_error = std::string(what) + " is NULL";
  return false;
}

std::chrono::nanoseconds to_timeout(uint64_t ns) { return std::chrono::nanoseconds(int64_t(std::min<uint64_t>(ns, INT64_MAX))); }

/// Hands events to `publish_burst` in bursts of up to kBurst, converted on
/// the stack (no allocation on the publish path); stops at the first burst
/// that does not go in whole.
constexpr size_t kBurst = 64;
template <class PublishBurst>
int publish_in_bursts(const flowbus_bytes* events, size_t count, size_t* published, PublishBurst&& publish_burst) {
  size_t done = 0;
  flowbus::PublishStatus status = flowbus::PublishStatus::Ok;
  while (done < count && status == flowbus::PublishStatus::Ok) {
    std::span<const uint8_t> burst[kBurst];
    const size_t n = std::min(kBurst, count - done);
    for (size_t i = 0; i < n; ++i) burst[i] = {static_cast<const uint8_t*>(events[done + i].data), events[done + i].size};
    const flowbus::BatchResult r = publish_burst(std::span<const std::span<const uint8_t>>(burst, n));
    done += r.published;
    status = r.status;
  }
  if (published != nullptr) *published = done;
  return to_c(status);
}

}  // namespace

extern "C" {

const char* flowbus_version(void) { return FLOWBUS_VERSION_STRING; }

const char* flowbus_last_error(void) { return t_last_error.c_str(); }

flowbus_bus* flowbus_bus_open(const char* name) {
  if (!check(name, "name")) return nullptr;
  return guarded([&] { return new flowbus_bus{flowbus::Bus::open(name)}; }, static_cast<flowbus_bus*>(nullptr));
}

void flowbus_bus_close(flowbus_bus* bus) { delete bus; }

int flowbus_topic_create(flowbus_bus* bus, const char* topic, const char* schema_file, const char* type, int policy,
                         uint64_t ring_size) {
  return flowbus_topic_create_with_flags(bus, topic, schema_file, type, policy, ring_size, 0);
}

int flowbus_topic_create_with_flags(flowbus_bus* bus, const char* topic, const char* schema_file, const char* type,
                                    int policy, uint64_t ring_size, uint32_t flags) {
  if ((flags & ~uint32_t(FLOWBUS_TOPIC_UNTRUSTED)) != 0) {
    t_last_error = "unknown topic flags " + std::to_string(flags) + ": the only one is FLOWBUS_TOPIC_UNTRUSTED (1)";
    return FLOWBUS_ERROR;
  }
  if (!check(bus, "bus") || !check(topic, "topic") || !check(schema_file, "schema_file")) return FLOWBUS_ERROR;
  return guarded(
      [&] {
        flowbus::TopicSpec spec;
        spec.name = topic;
        spec.schema = flowbus::compile_schema_file(schema_file);
        spec.type = type != nullptr ? type : flowbus::schema_root_type(spec.schema);
        spec.policy = policy == FLOWBUS_POLICY_LATEST ? flowbus::Policy::Latest : flowbus::Policy::Block;
        if (ring_size != 0) spec.ring_size = ring_size;
        spec.untrusted = (flags & FLOWBUS_TOPIC_UNTRUSTED) != 0;
        bus->bus.create_topic(spec);
        return int(FLOWBUS_OK);
      },
      int(FLOWBUS_ERROR));
}

flowbus_publisher* flowbus_publisher_open(flowbus_bus* bus, const char* topic, const char* name) {
  if (!check(bus, "bus") || !check(topic, "topic")) return nullptr;
  return guarded(
      [&] {
        flowbus::PublisherOptions options;
        if (name != nullptr) options.name = name;
        return new flowbus_publisher{bus->bus.publisher(topic, options)};
      },
      static_cast<flowbus_publisher*>(nullptr));
}

void flowbus_publisher_close(flowbus_publisher* publisher) { delete publisher; }

int flowbus_publisher_try_publish(flowbus_publisher* p, const void* data, size_t size) {
  if (!check(p, "publisher") || (size != 0 && !check(data, "data"))) return FLOWBUS_ERROR;
  return to_c(p->publisher.try_publish({static_cast<const uint8_t*>(data), size}));
}

int flowbus_publisher_publish(flowbus_publisher* p, const void* data, size_t size, uint64_t timeout_ns) {
  if (!check(p, "publisher") || (size != 0 && !check(data, "data"))) return FLOWBUS_ERROR;
  return to_c(p->publisher.publish({static_cast<const uint8_t*>(data), size}, to_timeout(timeout_ns)));
}

int flowbus_publisher_try_publish_batch(flowbus_publisher* p, const flowbus_bytes* events, size_t count,
                                        size_t* published) {
  if (!check(p, "publisher") || (count != 0 && !check(events, "events"))) return FLOWBUS_ERROR;
  return publish_in_bursts(events, count, published, [&](auto burst) { return p->publisher.try_publish_batch(burst); });
}

int flowbus_publisher_publish_batch(flowbus_publisher* p, const flowbus_bytes* events, size_t count,
                                    uint64_t timeout_ns, size_t* published) {
  if (!check(p, "publisher") || (count != 0 && !check(events, "events"))) return FLOWBUS_ERROR;
  // One deadline for the whole call, however many bursts it takes (a
  // timeout past the clock's range waits as long as the clock can count).
  using Clock = std::chrono::steady_clock;
  const Clock::time_point now = Clock::now();
  const std::chrono::nanoseconds timeout = to_timeout(timeout_ns);
  const Clock::time_point deadline = timeout >= Clock::time_point::max() - now ? Clock::time_point::max() : now + timeout;
  return publish_in_bursts(events, count, published, [&](auto burst) {
    const auto left = std::max(Clock::duration::zero(), deadline - Clock::now());
    return p->publisher.publish_batch(burst, std::chrono::duration_cast<std::chrono::nanoseconds>(left));
  });
}

flowbus_subscriber* flowbus_subscriber_open(flowbus_bus* bus, const char* pattern, int from_earliest) {
  if (!check(bus, "bus") || !check(pattern, "pattern")) return nullptr;
  return guarded(
      [&] {
        flowbus::SubscriberOptions options;
        options.from = from_earliest ? flowbus::StartAt::Earliest : flowbus::StartAt::Latest;
        return new flowbus_subscriber{bus->bus.subscribe(pattern, options), {}, false};
      },
      static_cast<flowbus_subscriber*>(nullptr));
}

flowbus_backoff flowbus_backoff_defaults(void) {
  const flowbus::BackoffOptions d;
  return {d.spins, d.yields, uint64_t(d.min_park.count()), uint64_t(d.max_park.count())};
}

flowbus_subscriber* flowbus_subscriber_open_backoff(flowbus_bus* bus, const char* pattern, int from_earliest,
                                                    const flowbus_backoff* backoff) {
  if (!check(bus, "bus") || !check(pattern, "pattern")) return nullptr;
  const flowbus_backoff b = backoff ? *backoff : flowbus_backoff_defaults();
  return guarded(
      [&] {
        flowbus::SubscriberOptions options;
        options.from = from_earliest ? flowbus::StartAt::Earliest : flowbus::StartAt::Latest;
        options.wait_strategy = flowbus::WaitStrategy::Backoff;
        // Above INT64_MAX ns: kept out of range, so subscribe() refuses it by name.
        auto ns = [](uint64_t v) { return std::chrono::nanoseconds(int64_t(std::min<uint64_t>(v, INT64_MAX))); };
        options.backoff = {b.spins, b.yields, ns(b.min_park_ns), ns(b.max_park_ns)};
        return new flowbus_subscriber{bus->bus.subscribe(pattern, options), {}, false};
      },
      static_cast<flowbus_subscriber*>(nullptr));
}

void flowbus_subscriber_close(flowbus_subscriber* subscriber) { delete subscriber; }

int flowbus_subscriber_read(flowbus_subscriber* s, flowbus_event* out) {
  if (!check(s, "subscriber") || !check(out, "out")) return FLOWBUS_ERROR;
  if (s->holding) {
    t_last_error = "release the event you hold (flowbus_subscriber_release) before reading the next";
    return FLOWBUS_ERROR;
  }
  const flowbus::ReadResult r = s->subscriber.read(s->held);
  *out = flowbus_event{};
  out->missed = r.missed;
  if (r.status == flowbus::ReadStatus::Ok) {
    const flowbus::Event& e = s->held;
    s->holding = true;
    out->data = e.data();
    out->size = e.size();
    out->sequence = e.sequence();
    out->time_ns = e.time_ns();
    out->publisher_id = e.context().publisher_id;
    out->topic = e.topic().c_str();
    out->source = e.source().c_str();
    out->type = e.type().c_str();
    out->dataschema = e.dataschema().c_str();
    out->datacontenttype = e.datacontenttype().c_str();
    out->subject = e.subject().data();
    out->subject_len = e.subject().size();
  }
  return to_c(r.status);
}

int flowbus_subscriber_release(flowbus_subscriber* s) {
  if (!check(s, "subscriber")) return FLOWBUS_ERROR;
  if (!s->holding) return FLOWBUS_OK;
  s->holding = false;
  return to_c(s->subscriber.release(s->held));
}

int flowbus_subscriber_wait(flowbus_subscriber* s, uint64_t timeout_ns) {
  if (!check(s, "subscriber")) return FLOWBUS_ERROR;
  return guarded(
      [&] {
        return s->subscriber.wait(to_timeout(timeout_ns))
                   ? int(FLOWBUS_OK)
                   : int(FLOWBUS_TIMEOUT);
      },
      int(FLOWBUS_ERROR));
}

}  // extern "C"
