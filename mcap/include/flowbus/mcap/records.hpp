// MCAP records (https://mcap.dev/spec): opcodes, the record structs this
// library writes and reads, and little-endian encoding with bounds-checked
// decoding.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "flowbus/mcap/error.hpp"

namespace flowbus::mcap {

/// The eight bytes an MCAP file starts and ends with (major version '0').
inline constexpr uint8_t kMagic[8] = {0x89, 'M', 'C', 'A', 'P', '0', '\r', '\n'};

enum class Op : uint8_t {
  Header = 0x01,
  Footer = 0x02,
  Schema = 0x03,
  Channel = 0x04,
  Message = 0x05,
  Chunk = 0x06,
  MessageIndex = 0x07,
  ChunkIndex = 0x08,
  Attachment = 0x09,
  AttachmentIndex = 0x0A,
  Statistics = 0x0B,
  Metadata = 0x0C,
  MetadataIndex = 0x0D,
  SummaryOffset = 0x0E,
  DataEnd = 0x0F,
};

/// A record's opcode byte and its uint64 length come before its content.
inline constexpr size_t kRecordPrefix = 9;
/// Footer content: summary_start, summary_offset_start, summary_crc.
inline constexpr size_t kFooterContent = 20;

using KeyValues = std::vector<std::pair<std::string, std::string>>;

/// The value of `key` in `kv`, or `fallback`.
inline std::string find_value(const KeyValues& kv, std::string_view key, std::string fallback = {}) {
  for (const auto& [k, v] : kv)
    if (k == key) return v;
  return fallback;
}

struct Schema {
  uint16_t id = 0;
  std::string name;
  std::string encoding;
  std::vector<uint8_t> data;
};

struct Channel {
  uint16_t id = 0;
  uint16_t schema_id = 0;
  std::string topic;
  std::string message_encoding;
  KeyValues metadata;
};

struct Message {
  uint16_t channel_id = 0;
  uint32_t sequence = 0;
  uint64_t log_time = 0;
  uint64_t publish_time = 0;
  std::span<const uint8_t> data;  ///< borrowed: valid during the callback that gives it
};

struct Metadata {
  std::string name;
  KeyValues metadata;
};

struct ChunkIndex {
  uint64_t message_start_time = 0;
  uint64_t message_end_time = 0;
  uint64_t chunk_start_offset = 0;
  uint64_t chunk_length = 0;
  std::vector<std::pair<uint16_t, uint64_t>> message_index_offsets;
  uint64_t message_index_length = 0;
  std::string compression;
  uint64_t compressed_size = 0;
  uint64_t uncompressed_size = 0;
};

struct Statistics {
  uint64_t message_count = 0;
  uint16_t schema_count = 0;
  uint32_t channel_count = 0;
  uint32_t attachment_count = 0;
  uint32_t metadata_count = 0;
  uint32_t chunk_count = 0;
  uint64_t message_start_time = 0;
  uint64_t message_end_time = 0;
  std::vector<std::pair<uint16_t, uint64_t>> channel_message_counts;
};

struct MetadataIndex {
  uint64_t offset = 0;
  uint64_t length = 0;
  std::string name;
};

/// Appends little-endian fields to a byte vector.
class Encoder {
 public:
  explicit Encoder(std::vector<uint8_t>& out) : out_(out) {}
  void u8(uint8_t v) { out_.push_back(v); }
  void u16(uint16_t v) { raw(&v, 2); }
  void u32(uint32_t v) { raw(&v, 4); }
  void u64(uint64_t v) { raw(&v, 8); }
  void string(std::string_view s) {
    u32(uint32_t(s.size()));
    raw(s.data(), s.size());
  }
  void bytes32(std::span<const uint8_t> b) {
    u32(uint32_t(b.size()));
    raw(b.data(), b.size());
  }
  void raw(const void* p, size_t n) {
    const size_t at = out_.size();
    out_.resize(at + n);
    if (n) std::memcpy(out_.data() + at, p, n);
  }
  void key_values(const KeyValues& kv) {
    const size_t at = begin_length32();
    for (const auto& [k, v] : kv) {
      string(k);
      string(v);
    }
    end_length32(at);
  }
  /// Opens a record: opcode and a length patched by end_record(). Returns its start.
  size_t begin_record(Op op) {
    const size_t at = out_.size();
    u8(uint8_t(op));
    u64(0);
    return at;
  }
  void end_record(size_t at) {
    const uint64_t len = out_.size() - at - kRecordPrefix;
    std::memcpy(out_.data() + at + 1, &len, 8);
  }
  size_t begin_length32() {
    const size_t at = out_.size();
    u32(0);
    return at;
  }
  void end_length32(size_t at) {
    const uint32_t len = uint32_t(out_.size() - at - 4);
    std::memcpy(out_.data() + at, &len, 4);
  }

 private:
  std::vector<uint8_t>& out_;
};

/// Reads fields from a record's content; any read past its end throws
/// McapError naming `what` (the record being read).
class Decoder {
 public:
  Decoder(std::span<const uint8_t> in, const char* what) : in_(in), what_(what) {}
  uint8_t u8() { return fixed<uint8_t>(); }
  uint16_t u16() { return fixed<uint16_t>(); }
  uint32_t u32() { return fixed<uint32_t>(); }
  uint64_t u64() { return fixed<uint64_t>(); }
  std::span<const uint8_t> take(uint64_t n) {
    need(n);
    auto s = in_.subspan(at_, size_t(n));
    at_ += size_t(n);
    return s;
  }
  std::string string() {
    const auto s = take(u32());
    return std::string(reinterpret_cast<const char*>(s.data()), s.size());
  }
  KeyValues key_values() {
    Decoder d(take(u32()), what_);
    KeyValues kv;
    while (!d.done()) {
      std::string k = d.string();
      kv.emplace_back(std::move(k), d.string());
    }
    return kv;
  }
  std::span<const uint8_t> rest() { return take(in_.size() - at_); }
  bool done() const noexcept { return at_ == in_.size(); }
  size_t position() const noexcept { return at_; }

 private:
  void need(uint64_t n) const {
    if (n > in_.size() - at_)
      throw McapError(std::string(what_) + " record is cut short: a field needs " + std::to_string(n) + " bytes, " +
                      std::to_string(in_.size() - at_) + " remain");
  }
  template <class T>
  T fixed() {
    need(sizeof(T));
    T v;
    std::memcpy(&v, in_.data() + at_, sizeof(T));
    at_ += sizeof(T);
    return v;
  }
  std::span<const uint8_t> in_;
  const char* what_;
  size_t at_ = 0;
};

}  // namespace flowbus::mcap
