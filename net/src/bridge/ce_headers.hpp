// The CloudEvents NATS protocol binding, binary mode: a flowbus event's
// attributes as NATS headers ("ce-id", "ce-source", ...), and back. Pure
// functions, no NATS calls: unit-tested on their own (tests/unit/ce_headers_test.cpp).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace flowbus::bridge {

inline constexpr std::string_view kFlatBuffersContentType = "application/x-flatbuffers";
/// Where an exporting bridge stores a topic's binary schema in the stream:
/// "<prefix>._flowbus.schema.<16 hex digits of the schema id>".
inline constexpr std::string_view kSchemaSubjectToken = "_flowbus.schema";

/// The CloudEvents context of one event, as it travels in NATS headers.
struct CeAttributes {
  std::string specversion = "1.0";
  std::string id;  ///< flowbus: "<publisher id, 16 hex>-<sequence>"
  std::string source;
  std::string type;
  std::string time;        ///< RFC 3339
  std::string subject;     ///< optional
  std::string dataschema;  ///< flowbus: "flowbus:schema/fnv1a64:<hex>"
  std::string datacontenttype = std::string(kFlatBuffersContentType);
  // flowbus's extensions (CloudEvents extension names: lower-case letters and digits).
  std::string flowbustopic;
  std::string flowbusseq;
  std::string flowbusorigin;  ///< the node where the event was first published (loop guard)
};

/// Headers for binary mode, in order: ce-specversion, ce-id, ..., then
/// "content-type" (the binding maps datacontenttype to it). Empty optional
/// attributes are left out.
std::vector<std::pair<std::string, std::string>> to_headers(const CeAttributes& ce);

/// Reads the attributes back with `get` (a header's value, or nullopt).
/// Throws std::invalid_argument naming the missing or wrong header when the
/// message is not a CloudEvent in binary mode (specversion 1.0, id, source
/// and type are required).
CeAttributes from_headers(const std::function<std::optional<std::string>(std::string_view)>& get);

/// "<16 hex>-<decimal>" -> (publisher id, sequence); nullopt for any other
/// id (an event from a publisher that is not flowbus).
std::optional<std::pair<uint64_t, uint64_t>> parse_flowbus_id(std::string_view id);

/// RFC 3339 ("2026-12-06T15:36:46.123456789Z", offsets too) -> ns since the
/// Unix epoch; nullopt if it is not one.
std::optional<uint64_t> parse_rfc3339_ns(std::string_view text);

/// "fnv1a64:<hex>" out of "flowbus:schema/fnv1a64:<hex>"; nullopt otherwise.
std::optional<std::string> flowbus_schema_id(std::string_view dataschema);

/// Topic <-> subject: "a.b.c" <-> "P.a.b.c".
std::string subject_of(std::string_view prefix, std::string_view topic);
/// The topic of `subject`, or nullopt when it is not under the prefix or is
/// the bridge's own (schema) subject.
std::optional<std::string> topic_of(std::string_view prefix, std::string_view subject);
/// "P._flowbus.schema.<hex>" for schema id "fnv1a64:<hex>".
std::string schema_subject(std::string_view prefix, std::string_view schema_id);

/// A stable 64-bit id for the events of a source that is not flowbus (FNV-1a).
uint64_t foreign_publisher_id(std::string_view source);

}  // namespace flowbus::bridge
