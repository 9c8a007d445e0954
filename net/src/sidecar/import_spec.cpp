// What an importing sidecar creates (see import_spec.hpp).
#include "import_spec.hpp"

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

}  // namespace

TopicSpec imported_topic_spec(const SidecarOptions& options, const wire::StreamOpenView& open) {
  TopicSpec spec;
  spec.name = std::string(open.topic);
  spec.type = std::string(open.type);
  spec.schema.assign(open.schema.begin(), open.schema.end());
  spec.policy = open.policy == wire::TopicPolicy::Latest ? Policy::Latest : Policy::Block;
  if (options.import_ring_size != 0) spec.ring_size = options.import_ring_size;
  else if (open.ring_size != 0) spec.ring_size = open.ring_size;
  if (options.import_retention.count() != 0) spec.retention = options.import_retention;
  else if (open.retention_s != 0) spec.retention = std::chrono::seconds(open.retention_s);
  if (options.import_slow_consumer_timeout.count() != 0) spec.slow_consumer_timeout = options.import_slow_consumer_timeout;
  else if (open.slow_consumer_timeout_ns == UINT64_MAX) spec.slow_consumer_timeout = kNever;
  else if (open.slow_consumer_timeout_ns != 0) spec.slow_consumer_timeout = std::chrono::nanoseconds(open.slow_consumer_timeout_ns);
  return spec;
}

std::string describe_spec(const SidecarOptions& options, const wire::StreamOpenView& open, const TopicSpec& spec) {
  return spec.type + ", " + to_string(spec.policy) + ", ring " + bytes_text(spec.ring_size) + " (" +
         whose(options.import_ring_size != 0, open.ring_size != 0) + "), retention " +
         seconds_text(spec.retention) + " (" + whose(options.import_retention.count() != 0, open.retention_s != 0) +
         "), slow-consumer timeout " + seconds_text(spec.slow_consumer_timeout) + " (" +
         whose(options.import_slow_consumer_timeout.count() != 0, open.slow_consumer_timeout_ns != 0) + ")";
}

}  // namespace flowbus::sidecar
