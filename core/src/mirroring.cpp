// The sidecar's calls (flowbus/internal/mirroring.hpp): mirror rings and
// export subscribers, reached through the Access friend of Bus, Publisher and
// Subscriber so that the public API does not show them.
#include "flowbus/internal/mirroring.hpp"

#include <cctype>
#include <cstdio>
#include <memory>

#include "directory_layout.hpp"
#include "flowbus/error.hpp"

namespace flowbus::mirroring {
using namespace detail;

struct Access {
  static Publisher mirror_publisher(Bus& bus, std::string_view topic, const std::string& ring_name,
                                    const MirrorOrigin& origin) {
    return bus.attach_publisher(topic, ring_name, {}, &origin);
  }
  static PublishStatus publish_mirrored(Publisher& p, std::span<const uint8_t> bytes, uint64_t sequence,
                                        uint64_t time_ns, std::string_view subject,
                                        std::chrono::nanoseconds timeout) noexcept {
    return p.publish_mirrored(bytes, sequence, time_ns, subject, timeout);
  }
  static Subscriber subscribe(Bus& bus, std::string_view pattern, const SubscriberOptions& options,
                              const ExportOptions& export_options) {
    return bus.subscribe_with(pattern, options, &export_options);
  }
  static void acknowledge(Subscriber& s, uint32_t ring, uint64_t next_position) noexcept {
    s.acknowledge(ring, next_position);
  }
  static void rewind(Subscriber& s, uint32_t ring) noexcept { s.rewind(ring); }
};

namespace {

std::string mirror_ring_name(uint64_t origin_publisher_id) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "m-%016llx", static_cast<unsigned long long>(origin_publisher_id));
  return buf;
}

void validate_mirror_origin(const MirrorOrigin& origin) {
  const auto bad = [](const std::string& what) { throw Error(ErrorCode::InvalidArgument, "mirror origin: " + what); };
  if (origin.node.empty() || origin.node.size() >= kNodeNameBytes)
    bad("node name '" + origin.node + "' must have 1 to " + std::to_string(kNodeNameBytes - 1) + " characters");
  for (char c : origin.node)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-')
      bad("node name '" + origin.node + "' may hold only letters, digits, '.', '_' and '-'");
  if (origin.source.empty() || origin.source.size() >= kSourceBytes || origin.source.find('\0') != std::string::npos)
    bad("source must have 1 to " + std::to_string(kSourceBytes - 1) + " characters and no NUL");
}

}  // namespace

Publisher mirror_publisher(Bus& bus, std::string_view topic, const MirrorOrigin& origin) {
  validate_mirror_origin(origin);
  return Access::mirror_publisher(bus, topic, mirror_ring_name(origin.publisher_id), origin);
}

PublishStatus publish_mirrored(Publisher& mirror, std::span<const uint8_t> bytes, uint64_t sequence, uint64_t time_ns,
                               std::string_view subject, std::chrono::nanoseconds timeout) noexcept {
  return Access::publish_mirrored(mirror, bytes, sequence, time_ns, subject, timeout);
}

Subscriber export_subscriber(Bus& bus, std::string_view pattern, const SubscriberOptions& options,
                             const ExportOptions& export_options) {
  return Access::subscribe(bus, pattern, options, export_options);
}

void acknowledge(Subscriber& sub, uint32_t ring, uint64_t next_position) noexcept {
  Access::acknowledge(sub, ring, next_position);
}

void rewind(Subscriber& sub, uint32_t ring) noexcept { Access::rewind(sub, ring); }

}  // namespace flowbus::mirroring
