#include "conventions.hpp"

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>

#include "flowbus/mcap/error.hpp"

namespace flowbus::record {

std::string hex16(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%016" PRIx64, v);
  return buf;
}

mcap::KeyValues channel_metadata(const RingContext& ring, const TopicInfo& topic, const std::string& bus,
                                 uint64_t first_sequence) {
  mcap::KeyValues kv{
      {"specversion", "1.0"},
      {"source", ring.source},
      {"type", ring.type},
      {"dataschema", ring.dataschema},
      {"datacontenttype", ring.datacontenttype},
      {"flowbus.bus", bus},
      {"flowbus.publisher", ring.publisher_name},
      {"flowbus.publisher_id", hex16(ring.publisher_id)},
      {"flowbus.first_sequence", std::to_string(first_sequence)},
      {"flowbus.policy", to_string(topic.policy)},
      {"flowbus.ring_size", std::to_string(topic.ring_size)},
      {"flowbus.slow_consumer_timeout_ns",
       topic.slow_consumer_timeout == kNever ? "never" : std::to_string(topic.slow_consumer_timeout.count())},
      {"flowbus.retention_s",
       topic.retention >= std::chrono::seconds(9223372036) ? "never" : std::to_string(topic.retention.count())},
  };
  if (ring.mirrored()) kv.emplace_back("flowbus.origin_node", ring.origin_node);
  return kv;
}

namespace {

uint64_t number(const mcap::Channel& c, const char* key, int base = 10) {
  const std::string text = mcap::find_value(c.metadata, key);
  char* end = nullptr;
  errno = 0;
  const unsigned long long v = std::strtoull(text.c_str(), &end, base);
  if (text.empty() || *end != 0 || errno == ERANGE)
    throw mcap::McapError("channel " + std::to_string(c.id) + " (" + c.topic + "): metadata " + key + " '" + text +
                          "' is not a number");
  return v;
}

}  // namespace

std::optional<RecordedRing> recorded_ring(const mcap::Channel& c) {
  if (c.message_encoding != kEncoding || mcap::find_value(c.metadata, "flowbus.publisher_id").empty())
    return std::nullopt;
  RecordedRing r;
  r.topic = c.topic;
  r.source = mcap::find_value(c.metadata, "source");
  r.publisher = mcap::find_value(c.metadata, "flowbus.publisher");
  r.type = mcap::find_value(c.metadata, "type");
  r.publisher_id = number(c, "flowbus.publisher_id", 16);
  r.first_sequence = number(c, "flowbus.first_sequence");
  try {
    r.policy = parse_policy(mcap::find_value(c.metadata, "flowbus.policy", "block"));
  } catch (const std::exception&) {
    throw mcap::McapError("channel " + std::to_string(c.id) + " (" + c.topic + "): unknown policy");
  }
  r.ring_size = number(c, "flowbus.ring_size");
  if (mcap::find_value(c.metadata, "flowbus.slow_consumer_timeout_ns") != "never")
    r.slow_consumer_timeout_ns = int64_t(number(c, "flowbus.slow_consumer_timeout_ns"));
  if (mcap::find_value(c.metadata, "flowbus.retention_s") != "never")
    r.retention_s = int64_t(number(c, "flowbus.retention_s"));
  return r;
}

std::optional<uint16_t> subject_channel_of(const mcap::Channel& c) {
  const std::string of = mcap::find_value(c.metadata, "flowbus.subject_of");
  if (of.empty()) return std::nullopt;
  return uint16_t(std::strtoul(of.c_str(), nullptr, 10));
}

}  // namespace flowbus::record
