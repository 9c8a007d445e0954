// An MCAP writer: Header, chunks (compressed, with a CRC of their records)
// each followed by its Message Index records, Metadata records between
// chunks, then Data End (CRC of the data section), a summary (Schemas,
// Channels, Statistics, Chunk Indexes, Metadata Indexes), Summary Offsets and
// the Footer (CRC of the summary). Single-threaded.
//
// Durability: whole chunks reach the file with write(2) as they close, and
// nothing else is buffered, so a writer killed at any point leaves a file
// whose complete chunks a reader can recover (no summary, no footer).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "flowbus/mcap/compression.hpp"
#include "flowbus/mcap/records.hpp"

namespace flowbus::mcap {

struct WriterOptions {
  Compression compression = Compression::Zstd;
  /// A chunk closes once its records reach this many (uncompressed) bytes.
  size_t chunk_size = 1u << 20;
  std::string profile;
  std::string library = "flowbus";
  /// Permission bits of a new file (before the umask): owner-only by
  /// default, as topics are; recordings hold the events themselves.
  unsigned mode = 0600;
};

class Writer {
 public:
  /// Creates (or truncates) `path` and writes the magic and Header.
  /// Throws McapError naming the path and the system's reason.
  Writer(const std::string& path, WriterOptions options);
  /// Closes the file as close() does (errors swallowed: call close() to see them).
  ~Writer();
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  /// Registers a schema; its record goes into the chunk (and the summary). Ids from 1.
  uint16_t add_schema(std::string name, std::string encoding, std::vector<uint8_t> data);
  /// Registers a channel; its record goes into the chunk (and the summary). Ids from 1.
  uint16_t add_channel(uint16_t schema_id, std::string topic, std::string message_encoding, KeyValues metadata);
  /// Appends a Message record to the open chunk, closing it first when it is full.
  void add_message(uint16_t channel_id, uint32_t sequence, uint64_t log_time, uint64_t publish_time,
                   std::span<const uint8_t> data);
  /// Closes the open chunk (if any) and writes a Metadata record after it.
  void add_metadata(std::string name, KeyValues metadata);
  /// Compresses and writes the open chunk and its message indexes. Throws McapError on a write error.
  void flush_chunk();
  /// Finishes the file: last chunk, Data End, summary, footer, magic; then
  /// closes it. Throws McapError if a write fails (the file then holds
  /// every chunk written before). Idempotent.
  void close();
  /// Closes the file as it is, unfinished: what a writer killed between two
  /// chunks leaves (tests, and a recorder that must not write more).
  void abandon() noexcept;

  /// Bytes in the file so far (the open chunk excluded).
  uint64_t bytes_written() const noexcept { return offset_; }
  /// Uncompressed bytes in the open chunk.
  size_t pending_bytes() const noexcept { return chunk_.size(); }
  /// When the open chunk got its first record (steady clock); meaningless if pending_bytes() == 0.
  std::chrono::steady_clock::time_point chunk_opened() const noexcept { return chunk_opened_; }
  uint64_t message_count() const noexcept { return stats_.message_count; }
  const std::string& path() const noexcept { return path_; }
  const std::vector<Channel>& channels() const noexcept { return channels_; }

 private:
  void write_out(const std::vector<uint8_t>& bytes);
  void open_chunk_if_needed();
  std::string path_;
  WriterOptions options_;
  int fd_ = -1;
  bool failed_ = false;
  uint64_t offset_ = 0;
  uint32_t data_crc_ = 0;
  Compressor compressor_;
  std::vector<Schema> schemas_;
  std::vector<Channel> channels_;
  std::vector<ChunkIndex> chunk_indexes_;
  std::vector<MetadataIndex> metadata_indexes_;
  std::map<uint16_t, uint64_t> channel_counts_;
  Statistics stats_;
  // The open chunk.
  std::vector<uint8_t> chunk_;
  std::map<uint16_t, std::vector<std::pair<uint64_t, uint64_t>>> chunk_index_;  // channel -> (log_time, offset)
  uint64_t chunk_start_time_ = 0, chunk_end_time_ = 0;
  bool chunk_has_messages_ = false;
  std::chrono::steady_clock::time_point chunk_opened_{};
  // Scratch buffers reused from chunk to chunk.
  std::vector<uint8_t> compressed_, out_;
};

}  // namespace flowbus::mcap
