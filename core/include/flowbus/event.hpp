// An event read in place: a view into the ring plus its CloudEvents context.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace flowbus {

namespace detail { struct RingReader; }
struct TapRecord;

/// The CloudEvents attributes that are constant for a ring, built once when
/// the ring is attached; events point at them, so nothing is built per event.
struct RingContext {
  std::string topic;
  std::string source;           ///< "flowbus://<host>/<bus>/<publisher>"
  std::string type;             ///< the topic's root table, e.g. "examples.Order"
  std::string dataschema;       ///< "flowbus:schema/<schema id>"
  std::string datacontenttype;  ///< "application/x-flatbuffers"
  std::string publisher_name;
  uint64_t publisher_id = 0;    ///< random, fixed when the ring is created
  /// Mirrored rings (written by a sidecar): the node where these events were
  /// first published; source and publisher_id are that origin's. Empty for
  /// rings published on this host.
  std::string origin_node;
  bool mirrored() const noexcept { return !origin_node.empty(); }
};

/// Borrowed view of one event. Valid until released (see Subscriber).
/// Under Policy::Latest the bytes may be overwritten while you read them:
/// call Subscriber::still_valid(event) after reading and discard what you read
/// if it says false.
class Event {
 public:
  const uint8_t* data() const noexcept { return data_; }
  size_t size() const noexcept { return size_; }
  uint64_t sequence() const noexcept { return sequence_; }
  uint64_t time_ns() const noexcept { return time_ns_; }   ///< ns since the Unix epoch
  uint64_t position() const noexcept { return position_; } ///< byte position in its ring
  uint64_t next_position() const noexcept { return next_position_; }  ///< where the next record starts
  uint32_t ring() const noexcept { return ring_index_; }  ///< which of its subscriber's rings (see Subscriber::ring_context)
  std::string_view subject() const noexcept { return subject_; }
  const RingContext& context() const noexcept { return *context_; }

  // CloudEvents attributes (these build strings: not for the hot path).
  std::string id() const;    ///< "<publisher id hex>-<sequence>": unique per bus
  std::string time() const;  ///< RFC 3339 with nanoseconds, UTC
  const std::string& source() const noexcept { return context_->source; }
  const std::string& type() const noexcept { return context_->type; }
  const std::string& dataschema() const noexcept { return context_->dataschema; }
  const std::string& datacontenttype() const noexcept { return context_->datacontenttype; }
  const std::string& topic() const noexcept { return context_->topic; }

 private:
  friend struct detail::RingReader;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  uint64_t sequence_ = 0;
  uint64_t time_ns_ = 0;
  uint64_t position_ = 0;
  uint64_t next_position_ = 0;
  std::string_view subject_;
  const RingContext* context_ = nullptr;
  uint32_t ring_index_ = 0;  // which of the subscriber's rings it came from
  friend class Subscriber;
  friend struct TapRecord;
};

std::string format_rfc3339(uint64_t unix_ns);

}  // namespace flowbus
