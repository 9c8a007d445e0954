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
namespace mirroring { struct Access; struct ExportOptions; struct MirrorOrigin; }

struct BusOptions {
  uint32_t mode = 0600;  ///< mode of the directory segment when this call creates it
  int64_t group = -1;    ///< its group, -1 keeps the creator's
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
  friend struct mirroring::Access;  // the sidecar's calls (not API)
  explicit Bus(std::shared_ptr<detail::BusState> state);
  Publisher attach_publisher(std::string_view topic, const std::string& name, const std::vector<uint8_t>& schema,
                             const mirroring::MirrorOrigin* origin);
  Subscriber subscribe_with(std::string_view pattern, const SubscriberOptions& options,
                            const mirroring::ExportOptions* export_options);
  std::shared_ptr<detail::BusState> state_;
};

}  // namespace flowbus
