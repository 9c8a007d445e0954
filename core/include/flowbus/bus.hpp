// A bus: a named set of topics on this host, living in /dev/shm.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "flowbus/publisher.hpp"
#include "flowbus/subscriber.hpp"
#include "flowbus/topic.hpp"

namespace flowbus {

namespace detail { struct BusState; }

struct BusOptions {
  uint32_t mode = 0600;  ///< mode of the directory segment when this call creates it
  int64_t group = -1;    ///< its group, -1 keeps the creator's
};

/// Where a mirrored ring's events were first published (see Bus::mirror_publisher).
struct MirrorOrigin {
  uint64_t publisher_id = 0;  ///< the origin ring's id: mirrored events keep their CloudEvents id
  std::string source;         ///< the origin ring's CloudEvents source ("flowbus://host/bus/publisher")
  std::string node;           ///< the node (sidecar) where they were first published
  /// The sequence of the first event the new mirror ring will hold (a reader
  /// that attaches late counts what was overwritten before it came);
  /// UINT64_MAX if not known.
  uint64_t first_sequence = UINT64_MAX;
};

/// A handle on a bus; it registers this process as a participant.
/// Thread: the handle may be shared; create publishers and subscribers from
/// any thread, each then used by one thread at a time.
class Bus {
 public:
  /// Opens bus `name`, creating it if needed, and frees what dead
  /// participants left behind. Throws Error.
  static Bus open(std::string_view name, const BusOptions& options = {});
  /// Opens an existing bus; throws Error(NotFound) if there is none.
  static Bus open_existing(std::string_view name);

  /// Registers a topic, or checks that an existing one has the same settings
  /// (else Error AlreadyExists naming each difference, see
  /// topic_differences) and that `spec.schema` is a compatible evolution of
  /// its schema. A new topic whose ring does not fit in the free space of
  /// /dev/shm is refused (NoSpace). Throws as validate_topic_spec does.
  TopicInfo create_topic(const TopicSpec& spec);
  std::optional<TopicInfo> find_topic(std::string_view name) const;
  std::vector<TopicInfo> topics() const;

  /// A publisher on `topic` under `options.name`. Reattaches to the ring of a
  /// dead publisher of the same name (its sequence continues); refuses a
  /// name held by a live process (Error NameInUse, naming its pid).
  Publisher publisher(std::string_view topic, const PublisherOptions& options = {});

  /// The writer of a mirror ring: the events of one origin ring on another
  /// host, republished here with their own sequence, time and identity (see
  /// Publisher::publish_mirrored). One ring per origin ring, named
  /// "m-<origin publisher id in hex>"; reopening it continues where the last
  /// writer stopped, so next_sequence() says what is already held. Used by
  /// the sidecar. Throws Error as publisher() does, and NameInUse if a local
  /// publisher took that name.
  Publisher mirror_publisher(std::string_view topic, const MirrorOrigin& origin);

  /// A subscriber on every ring of every topic matching `pattern`.
  Subscriber subscribe(std::string_view pattern, const SubscriberOptions& options = {});

  const std::string& name() const noexcept;
  /// Removes every segment of bus `name` (directory, rings). Processes that
  /// have them mapped keep their mappings. Returns the number removed.
  static size_t destroy(std::string_view name);

  Bus(Bus&&) noexcept;
  Bus& operator=(Bus&&) noexcept;
  ~Bus();

 private:
  explicit Bus(std::shared_ptr<detail::BusState> state);
  Publisher attach_publisher(std::string_view topic, const std::string& name, const std::vector<uint8_t>& schema,
                             const MirrorOrigin* origin);
  std::shared_ptr<detail::BusState> state_;
};

}  // namespace flowbus
