// An MCAP reader: the summary through the footer (for a quick look), and a
// scan of the data section in file order that checks every CRC (chunk
// records, data section) and can recover what a writer killed half-way left.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "flowbus/mcap/records.hpp"

namespace flowbus::mcap {

/// The summary section, as the footer points to it.
struct Summary {
  std::vector<Schema> schemas;
  std::vector<Channel> channels;
  std::optional<Statistics> statistics;
  std::vector<ChunkIndex> chunk_indexes;
  std::vector<MetadataIndex> metadata_indexes;
};

/// What a scan met, in file order. Any callback may be empty.
struct ScanHandlers {
  std::function<void(const Schema&)> on_schema;
  std::function<void(const Channel&)> on_channel;
  std::function<void(const Message&)> on_message;
  std::function<void(const Metadata&)> on_metadata;
};

struct ScanResult {
  bool complete = false;  ///< the data section ended with Data End (and its CRC matched)
  uint64_t messages = 0;
  uint64_t chunks = 0;
  uint64_t valid_bytes = 0;     ///< where the last whole record ended
  std::string stopped_because;  ///< recover: why the scan stopped early (empty when complete)
};

class Reader {
 public:
  /// Maps `path` read-only. Throws McapError if it cannot be opened or does
  /// not start with the MCAP magic.
  explicit Reader(const std::string& path);
  ~Reader();
  Reader(const Reader&) = delete;
  Reader& operator=(const Reader&) = delete;

  /// The summary, or nullopt when the file has no footer (cut short: the
  /// writer did not finish). Throws McapError when the footer or the summary
  /// is damaged (summary CRC, a record out of bounds).
  std::optional<Summary> summary() const;
  /// Reads a Metadata record at `index.offset`.
  Metadata metadata(const MetadataIndex& index) const;

  /// Reads the data section from the start. Checks each chunk's CRC and the
  /// data section's CRC, decompresses chunks, and hands records over in file
  /// order. Without `recover` every problem throws McapError naming its
  /// offset; with it a file cut short (kill -9, full disk) is read up to its
  /// last whole chunk and the result says where and why it stopped (a CRC
  /// mismatch still throws: damaged data is never handed over).
  ScanResult scan(const ScanHandlers& handlers, bool recover = false) const;

  uint64_t size() const noexcept { return size_; }
  const std::string& path() const noexcept { return path_; }
  const std::string& library() const noexcept { return library_; }
  const std::string& profile() const noexcept { return profile_; }

 private:
  std::string where(uint64_t offset) const;
  std::string path_;
  const uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
  std::string profile_, library_;
  uint64_t first_record_ = 0;  // after the Header
};

}  // namespace flowbus::mcap
