// What an importing sidecar creates (see import_spec.hpp).
#include "import_spec.hpp"

#include <algorithm>
#include <cstdio>

namespace flowbus::sidecar {

namespace {

std::string bytes_text(uint64_t n) {
  if (n >= (1u << 20) && n % (1u << 20) == 0) return std::to_string(n >> 20) + " MiB";
  if (n >= 1024 && n % 1024 == 0) return std::to_string(n >> 10) + " KiB";
  return std::to_string(n) + " bytes";
}

std::string seconds_text(std::chrono::nanoseconds t) {
  if (t == kNever) return "never";
  const double s = std::chrono::duration<double>(t).count();
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g s", s);
  return buf;
}

// Where a value came from: this side's option, the origin, or neither (a
// peer that did not announce it: the library's default).
const char* whose(bool ours, bool announced) { return ours ? "--import-*" : announced ? "the origin's" : "default"; }
const char* whose(bool ours, bool announced, bool cut) { return cut && !ours ? "the origin's, cut to this side's limit" : whose(ours, announced); }

}  // namespace

// What a peer may ask for a topic created here: a peer is trusted to name
// its stream, not to size this host's memory or keep rings forever. Larger
// announcements are cut to these (and the log says so); --import-* overrides.
constexpr uint64_t kMaxAnnouncedRing = uint64_t(256) << 20;
constexpr uint64_t kMaxAnnouncedRetentionS = 30ull * 24 * 3600;
constexpr uint64_t kMaxAnnouncedTimeoutNs = 3600ull * 1000000000;

TopicSpec imported_topic_spec(const SidecarOptions& options, const wire::StreamOpenView& open) {
  TopicSpec spec;
  spec.name = std::string(open.topic);
  spec.type = std::string(open.type);
  spec.schema.assign(open.schema.begin(), open.schema.end());
  spec.policy = open.policy == wire::TopicPolicy::Latest ? Policy::Latest : Policy::Block;
  if (options.import_ring_size != 0) spec.ring_size = options.import_ring_size;
  else if (open.ring_size != 0) spec.ring_size = std::min(open.ring_size, kMaxAnnouncedRing);
  if (options.import_retention.count() != 0) spec.retention = options.import_retention;
  else if (open.retention_s != 0) spec.retention = std::chrono::seconds(int64_t(std::min(open.retention_s, kMaxAnnouncedRetentionS)));
  if (options.import_slow_consumer_timeout.count() != 0) spec.slow_consumer_timeout = options.import_slow_consumer_timeout;
  else if (open.slow_consumer_timeout_ns == UINT64_MAX) spec.slow_consumer_timeout = kNever;
  else if (open.slow_consumer_timeout_ns != 0)
    spec.slow_consumer_timeout = std::chrono::nanoseconds(int64_t(std::min(open.slow_consumer_timeout_ns, kMaxAnnouncedTimeoutNs)));
  return spec;
}

std::string describe_spec(const SidecarOptions& options, const wire::StreamOpenView& open, const TopicSpec& spec) {
  return spec.type + ", " + to_string(spec.policy) + ", ring " + bytes_text(spec.ring_size) + " (" +
         whose(options.import_ring_size != 0, open.ring_size != 0, open.ring_size > kMaxAnnouncedRing) + "), retention " +
         seconds_text(spec.retention) + " (" +
         whose(options.import_retention.count() != 0, open.retention_s != 0, open.retention_s > kMaxAnnouncedRetentionS) +
         "), slow-consumer timeout " + seconds_text(spec.slow_consumer_timeout) + " (" +
         whose(options.import_slow_consumer_timeout.count() != 0, open.slow_consumer_timeout_ns != 0,
               open.slow_consumer_timeout_ns > kMaxAnnouncedTimeoutNs && open.slow_consumer_timeout_ns != UINT64_MAX) +
         ")";
}

}  // namespace flowbus::sidecar
