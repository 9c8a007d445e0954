// FlatBuffers schemas for flowbus topics: compile, identify, check evolution,
// and convert payloads between JSON and FlatBuffers. All set-up calls throw
// flowbus::Error (see error.hpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace flatbuffers { class Parser; }

namespace flowbus {

/// Compiles a `.fbs` file to a binary schema (`.bfbs` bytes). The file's own
/// directory is searched for `include`s first, then `include_dirs`. A path
/// ending in `.bfbs` is read and verified instead of compiled.
/// Throws InvalidArgument if the file cannot be read, parsed or verified.
std::vector<uint8_t> compile_schema_file(const std::string& fbs_path,
                                         const std::vector<std::string>& include_dirs = {});

/// "fnv1a64:" + 16 lowercase hex digits of FNV-1a 64 over the bfbs bytes.
std::string schema_id(const std::vector<uint8_t>& bfbs);

/// Fully qualified root table name (e.g. "examples.SensorReading"), or "" if
/// the schema declares no root_type. Throws InvalidArgument on a bad bfbs.
std::string schema_root_type(const std::vector<uint8_t>& bfbs);

/// True if `type` (fully qualified) is a table (not a struct) in the schema.
/// Throws InvalidArgument on a bad bfbs.
bool schema_has_table(const std::vector<uint8_t>& bfbs, const std::string& type);

/// Throws IncompatibleSchema unless `candidate` is a compatible evolution of
/// `registered`: FlatBuffers' Parser::ConformTo (same ids, types and defaults
/// for fields matched by name) plus three checks ConformTo does not make:
/// no registered table field may disappear (deprecate it instead), structs
/// keep their exact layout, and the root table keeps its name.
/// Identical schemas are compatible. Throws InvalidArgument on a bad bfbs.
void check_compatible_evolution(const std::vector<uint8_t>& registered,
                                const std::vector<uint8_t>& candidate);

/// Converts payloads of one table type between JSON and FlatBuffers.
/// Not thread-safe: the FlatBuffers parser inside is mutated by every
/// conversion. Use one codec per thread (verify() alone is safe to share).
class SchemaCodec {
 public:
  /// `root_type` is a fully qualified table name; "" means the schema's
  /// root_type. Throws InvalidArgument if the bfbs is invalid or the type is
  /// not a table in it.
  SchemaCodec(std::vector<uint8_t> bfbs, const std::string& root_type);
  ~SchemaCodec();
  SchemaCodec(SchemaCodec&&) noexcept;
  SchemaCodec& operator=(SchemaCodec&&) noexcept;
  SchemaCodec(const SchemaCodec&) = delete;
  SchemaCodec& operator=(const SchemaCodec&) = delete;

  /// Parses one JSON object (field names may be quoted or not) into a
  /// finished FlatBuffer. Throws BadPayload with the parser's error (unknown
  /// field, wrong type, missing required field, ...).
  std::vector<uint8_t> json_to_flatbuffer(std::string_view json) const;

  /// Verifies the buffer, then renders it as single-line strict JSON with
  /// every field (defaults included). Throws BadPayload if it does not verify.
  std::string flatbuffer_to_json(const uint8_t* data, size_t size) const;

  /// True if `data` is a well-formed FlatBuffer of the codec's type (bounds,
  /// alignment, max depth 64, max 100000 tables). Never throws.
  bool verify(const uint8_t* data, size_t size) const noexcept;

  const std::string& root_type() const noexcept { return root_type_; }
  const std::vector<uint8_t>& bfbs() const noexcept { return bfbs_; }

 private:
  void reset_parser() const;  // rebuilds parser_ from bfbs_ (after errors)

  std::vector<uint8_t> bfbs_;
  std::string root_type_;
  mutable std::unique_ptr<flatbuffers::Parser> parser_;
};

}  // namespace flowbus
