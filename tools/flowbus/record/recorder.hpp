// The recorder: a subscriber on one or more patterns writing what it reads
// into MCAP files (record/conventions.hpp), counting every loss.
#pragma once

#include <chrono>
#include <csignal>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "flowbus/bus.hpp"
#include "flowbus/mcap/writer.hpp"

namespace flowbus::record {

struct RecorderOptions {
  std::string bus;
  std::vector<std::string> patterns;
  std::string output;  ///< first file; --split adds "-1", "-2"... before the extension
  std::chrono::nanoseconds duration = kNever;
  uint64_t max_size = 0;  ///< bytes per file; 0: no limit
  bool split = false;     ///< at max_size start the next file (else stop)
  uint64_t count = 0;     ///< stop after this many events; 0: no limit
  mcap::Compression compression = mcap::Compression::Zstd;
  StartAt from = StartAt::Latest;
  size_t chunk_size = 1u << 20;
  std::chrono::nanoseconds chunk_age = std::chrono::seconds(1);  ///< a chunk is written at least this often
};

struct RecorderTotals {
  uint64_t events = 0;
  uint64_t payload_bytes = 0;
  uint64_t lost = 0;  ///< events the subscriber reported lost (latest) or skipped (evicted, block)
  uint64_t evictions = 0;
  uint64_t corrupt_rings = 0;
  uint64_t rings = 0;
  uint64_t file_bytes = 0;  ///< all files, as written so far
  std::vector<std::string> files;
};

class Recorder {
 public:
  /// Opens the bus and subscribes (throws flowbus::Error, mcap::McapError).
  explicit Recorder(RecorderOptions options);
  ~Recorder();
  /// Records until `stop` becomes nonzero, the duration, count or size runs
  /// out. Calls `progress` about once a second. Finishes the file(s).
  /// Throws mcap::McapError when a file cannot be written (it then holds
  /// every chunk written before).
  void run(const volatile std::sig_atomic_t& stop, const std::function<void(const RecorderTotals&)>& progress);
  const RecorderTotals& totals() const noexcept { return totals_; }
  std::string stop_reason() const { return stop_reason_; }
  /// Patterns that matched no topic when recording began.
  std::vector<std::string> unmatched_patterns() const;

 private:
  struct RingState;
  RingState& ring_for(size_t sub, const Event& event);
  void open_file();
  void finish_file();
  void write_losses_if_any();
  uint16_t channel_for(RingState& ring, const Event& event);
  uint16_t subject_channel_for(RingState& ring);
  std::string next_path() const;

  RecorderOptions options_;
  Bus bus_;
  std::vector<Subscriber> subs_;
  std::map<std::pair<std::string, uint64_t>, std::unique_ptr<RingState>> rings_;  // (topic, publisher id)
  std::vector<std::vector<RingState*>> by_sub_ring_;  // [sub][ring index]; nullptr: not looked at yet
  std::unique_ptr<mcap::Writer> writer_;
  std::map<std::string, uint16_t> schema_ids_;  // flowbus schema id -> MCAP schema id, this file
  uint64_t file_index_ = 0;
  uint64_t lost_written_ = 0;  // losses already in a flowbus.losses record
  uint64_t bytes_before_ = 0;  // finished files
  RecorderTotals totals_;
  std::string stop_reason_ = "stopped";
  uint64_t started_ns_ = 0;
  std::vector<uint8_t> scratch_;
};

}  // namespace flowbus::record
