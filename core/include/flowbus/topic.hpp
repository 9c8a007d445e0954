// Topic description: what a topic is, how it behaves when full, who may read it.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace flowbus {

/// What the writer does when the ring is full.
enum class Policy : uint32_t {
  Block = 0,   ///< lossless: the writer waits (or gets Full) until every live cursor moved on
  Latest = 1,  ///< telemetry: the writer overwrites the oldest bytes; readers count their losses
};

const char* to_string(Policy policy) noexcept;
Policy parse_policy(const std::string& text);  // throws Error(InvalidArgument)

/// The timeout value that means "never evict a live cursor, only a dead one".
inline constexpr std::chrono::nanoseconds kNever = std::chrono::nanoseconds::max();

struct TopicSpec {
  std::string name;                  ///< dotted name, e.g. "orders.created"
  std::string type;                  ///< root table, fully qualified, e.g. "examples.Order"
  std::vector<uint8_t> schema;       ///< binary schema (.bfbs) whose root is `type`
  Policy policy = Policy::Block;
  uint64_t ring_size = 4u << 20;     ///< bytes per publisher ring, a power of two >= 4 KiB
  std::chrono::nanoseconds slow_consumer_timeout = std::chrono::seconds(5);
  std::chrono::seconds retention = std::chrono::hours(1);  ///< how long a dead writer's ring is kept
  uint32_t mode = 0600;              ///< permission bits of every segment of the topic
  int64_t group = -1;                ///< gid given to the segments, -1 keeps the creator's
  /// Readers copy each event out of the ring and verify the copy against the
  /// schema before handing it over; an event that fails is counted, reported
  /// (ReadStatus::Rejected) and skipped. For topics whose writers you do not
  /// trust to write well-formed FlatBuffers (docs/security.md).
  bool untrusted = false;
};

/// A topic as registered in a bus directory.
struct TopicInfo {
  std::string name;
  std::string type;
  std::string schema_id;  ///< "fnv1a64:<16 hex digits>" of the binary schema
  Policy policy = Policy::Block;
  uint64_t ring_size = 0;
  std::chrono::nanoseconds slow_consumer_timeout{};
  std::chrono::seconds retention{};
  uint32_t mode = 0;
  int64_t group = -1;
  int64_t owner_uid = -1;  ///< uid of its creator; -1 if unknown (made by an older flowbus)
  int64_t owner_gid = -1;  ///< the group its segments get (`group`, or the creator's); -1 if unknown
  bool untrusted = false;  ///< readers verify a copy of each event (TopicSpec::untrusted)
  std::vector<uint8_t> schema;
};

/// Throws Error(InvalidArgument or InvalidName) naming what is wrong with
/// `spec` and the allowed values, and Error(NoSpace) naming the free space
/// if /dev/shm cannot hold one ring of it. Bus::create_topic makes the same
/// checks for a new topic; call it to refuse a spec before creating anything
/// (a bus, say).
void validate_topic_spec(const TopicSpec& spec);

/// The settings in which a registered topic differs from a request for it,
/// one line each, existing value then requested one: "ring size 4MiB, asked
/// 64KiB". Compares type, policy, ring size, slow-consumer timeout,
/// retention, mode, group and untrusted; not the schema (Bus::create_topic accepts a
/// compatible evolution of it). Empty if they match.
std::vector<std::string> topic_differences(const TopicInfo& existing, const TopicSpec& spec);

}  // namespace flowbus
