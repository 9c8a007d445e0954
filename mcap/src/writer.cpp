#include "flowbus/mcap/writer.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "flowbus/mcap/crc32.hpp"

namespace flowbus::mcap {

namespace {

// One encoding of each, for the data section and again for the summary.
void encode_schema(Encoder& e, const Schema& s) {
  const size_t r = e.begin_record(Op::Schema);
  e.u16(s.id);
  e.string(s.name);
  e.string(s.encoding);
  e.bytes32(s.data);
  e.end_record(r);
}

void encode_channel(Encoder& e, const Channel& c) {
  const size_t r = e.begin_record(Op::Channel);
  e.u16(c.id);
  e.u16(c.schema_id);
  e.string(c.topic);
  e.string(c.message_encoding);
  e.key_values(c.metadata);
  e.end_record(r);
}

}  // namespace

Writer::Writer(const std::string& path, WriterOptions options)
    : path_(path), options_(std::move(options)), compressor_(options_.compression) {
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, options_.mode);
  if (fd_ < 0) throw McapError("cannot create '" + path + "': " + std::strerror(errno));
  out_.clear();
  Encoder e(out_);
  e.raw(kMagic, sizeof kMagic);
  const size_t h = e.begin_record(Op::Header);
  e.string(options_.profile);
  e.string(options_.library);
  e.end_record(h);
  write_out(out_);
}

Writer::~Writer() {
  try {
    close();
  } catch (...) {
  }
}

void Writer::write_out(const std::vector<uint8_t>& bytes) {
  if (failed_) throw McapError("'" + path_ + "' is no longer written after an earlier error");
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd_, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = n < 0 ? errno : ENOSPC;
      failed_ = true;
      // A record cut half-way is dropped, so the file ends at the last whole one.
      if (::ftruncate(fd_, off_t(offset_)) != 0) { /* the reader finds the cut itself */
      }
      throw McapError("writing '" + path_ + "' failed after " + std::to_string(offset_) +
                      " bytes: " + std::strerror(err) + "; the file holds every chunk written before");
    }
    done += size_t(n);
  }
  data_crc_ = crc32(data_crc_, bytes.data(), bytes.size());
  offset_ += bytes.size();
}

void Writer::open_chunk_if_needed() {
  if (chunk_.empty()) chunk_opened_ = std::chrono::steady_clock::now();
}

uint16_t Writer::add_schema(std::string name, std::string encoding, std::vector<uint8_t> data) {
  if (schemas_.size() >= 0xffff) throw McapError("too many schemas for one MCAP file (65535)");
  Schema s{uint16_t(schemas_.size() + 1), std::move(name), std::move(encoding), std::move(data)};
  open_chunk_if_needed();
  Encoder e(chunk_);
  encode_schema(e, s);
  schemas_.push_back(std::move(s));
  return schemas_.back().id;
}

uint16_t Writer::add_channel(uint16_t schema_id, std::string topic, std::string message_encoding, KeyValues metadata) {
  if (channels_.size() >= 0xffff) throw McapError("too many channels for one MCAP file (65535)");
  Channel c{uint16_t(channels_.size() + 1), schema_id, std::move(topic), std::move(message_encoding),
            std::move(metadata)};
  open_chunk_if_needed();
  Encoder e(chunk_);
  encode_channel(e, c);
  channels_.push_back(std::move(c));
  return channels_.back().id;
}

void Writer::add_message(uint16_t channel_id, uint32_t sequence, uint64_t log_time, uint64_t publish_time,
                         std::span<const uint8_t> data) {
  open_chunk_if_needed();
  const uint64_t offset = chunk_.size();
  Encoder e(chunk_);
  e.u8(uint8_t(Op::Message));
  e.u64(2 + 4 + 8 + 8 + data.size());
  e.u16(channel_id);
  e.u32(sequence);
  e.u64(log_time);
  e.u64(publish_time);
  e.raw(data.data(), data.size());
  chunk_index_[channel_id].emplace_back(log_time, offset);
  if (!chunk_has_messages_) {
    chunk_start_time_ = chunk_end_time_ = log_time;
    chunk_has_messages_ = true;
  } else {
    chunk_start_time_ = std::min(chunk_start_time_, log_time);
    chunk_end_time_ = std::max(chunk_end_time_, log_time);
  }
  if (stats_.message_count == 0) {
    stats_.message_start_time = stats_.message_end_time = log_time;
  } else {
    stats_.message_start_time = std::min(stats_.message_start_time, log_time);
    stats_.message_end_time = std::max(stats_.message_end_time, log_time);
  }
  ++stats_.message_count;
  ++channel_counts_[channel_id];
  if (chunk_.size() >= options_.chunk_size) flush_chunk();
}

void Writer::flush_chunk() {
  if (chunk_.empty()) return;
  compressor_.compress(chunk_, compressed_);
  const uint32_t crc = crc32(0, chunk_.data(), chunk_.size());
  ChunkIndex index;
  index.message_start_time = chunk_has_messages_ ? chunk_start_time_ : 0;
  index.message_end_time = chunk_has_messages_ ? chunk_end_time_ : 0;
  index.chunk_start_offset = offset_;
  index.compression = compression_name(options_.compression);
  index.compressed_size = compressed_.size();
  index.uncompressed_size = chunk_.size();
  out_.clear();
  Encoder e(out_);
  const size_t r = e.begin_record(Op::Chunk);
  e.u64(index.message_start_time);
  e.u64(index.message_end_time);
  e.u64(chunk_.size());
  e.u32(crc);
  e.string(index.compression);
  e.u64(compressed_.size());
  e.raw(compressed_.data(), compressed_.size());
  e.end_record(r);
  index.chunk_length = out_.size();
  // One Message Index per channel of the chunk, entries in log-time order.
  for (auto& [channel, entries] : chunk_index_) {
    std::stable_sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    index.message_index_offsets.emplace_back(channel, offset_ + out_.size());
    const size_t m = e.begin_record(Op::MessageIndex);
    e.u16(channel);
    e.u32(uint32_t(entries.size() * 16));
    for (const auto& [time, at] : entries) {
      e.u64(time);
      e.u64(at);
    }
    e.end_record(m);
  }
  index.message_index_length = out_.size() - index.chunk_length;
  write_out(out_);
  chunk_indexes_.push_back(std::move(index));
  ++stats_.chunk_count;
  chunk_.clear();
  chunk_index_.clear();
  chunk_has_messages_ = false;
}

void Writer::add_metadata(std::string name, KeyValues metadata) {
  flush_chunk();
  out_.clear();
  Encoder e(out_);
  const size_t r = e.begin_record(Op::Metadata);
  e.string(name);
  e.key_values(metadata);
  e.end_record(r);
  metadata_indexes_.push_back({offset_, out_.size(), std::move(name)});
  write_out(out_);
  ++stats_.metadata_count;
}

void Writer::abandon() noexcept {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

void Writer::close() {
  if (fd_ < 0) return;
  if (failed_) {
    ::close(fd_);
    fd_ = -1;
    return;
  }
  try {
    flush_chunk();
    out_.clear();
    Encoder e(out_);
    const size_t d = e.begin_record(Op::DataEnd);
    e.u32(data_crc_);  // every byte before this record
    e.end_record(d);
    write_out(out_);

    const uint64_t summary_start = offset_;
    out_.clear();
    std::vector<std::tuple<Op, uint64_t, uint64_t>> groups;  // opcode, start, length
    auto group = [&](Op op, auto&& write_records) {
      const size_t start = out_.size();
      write_records();
      if (out_.size() != start) groups.emplace_back(op, summary_start + start, out_.size() - start);
    };
    group(Op::Schema, [&] {
      for (const Schema& s : schemas_) encode_schema(e, s);
    });
    group(Op::Channel, [&] {
      for (const Channel& c : channels_) encode_channel(e, c);
    });
    group(Op::Statistics, [&] {
      stats_.schema_count = uint16_t(schemas_.size());
      stats_.channel_count = uint32_t(channels_.size());
      const size_t r = e.begin_record(Op::Statistics);
      e.u64(stats_.message_count);
      e.u16(stats_.schema_count);
      e.u32(stats_.channel_count);
      e.u32(stats_.attachment_count);
      e.u32(stats_.metadata_count);
      e.u32(stats_.chunk_count);
      e.u64(stats_.message_start_time);
      e.u64(stats_.message_end_time);
      e.u32(uint32_t(channel_counts_.size() * 10));
      for (const auto& [channel, count] : channel_counts_) {
        e.u16(channel);
        e.u64(count);
      }
      e.end_record(r);
    });
    group(Op::ChunkIndex, [&] {
      for (const ChunkIndex& c : chunk_indexes_) {
        const size_t r = e.begin_record(Op::ChunkIndex);
        e.u64(c.message_start_time);
        e.u64(c.message_end_time);
        e.u64(c.chunk_start_offset);
        e.u64(c.chunk_length);
        e.u32(uint32_t(c.message_index_offsets.size() * 10));
        for (const auto& [channel, at] : c.message_index_offsets) {
          e.u16(channel);
          e.u64(at);
        }
        e.u64(c.message_index_length);
        e.string(c.compression);
        e.u64(c.compressed_size);
        e.u64(c.uncompressed_size);
        e.end_record(r);
      }
    });
    group(Op::MetadataIndex, [&] {
      for (const MetadataIndex& m : metadata_indexes_) {
        const size_t r = e.begin_record(Op::MetadataIndex);
        e.u64(m.offset);
        e.u64(m.length);
        e.string(m.name);
        e.end_record(r);
      }
    });
    const uint64_t summary_offset_start = summary_start + out_.size();
    for (const auto& [op, start, length] : groups) {
      const size_t r = e.begin_record(Op::SummaryOffset);
      e.u8(uint8_t(op));
      e.u64(start);
      e.u64(length);
      e.end_record(r);
    }
    e.u8(uint8_t(Op::Footer));
    e.u64(kFooterContent);  // the length is part of what the summary CRC covers: written now, not patched later
    e.u64(summary_start);
    e.u64(summary_offset_start);
    e.u32(crc32(0, out_.data(), out_.size()));  // from the summary up to summary_offset_start, inclusive
    e.raw(kMagic, sizeof kMagic);
    write_out(out_);
  } catch (...) {
    ::close(fd_);
    fd_ = -1;
    throw;
  }
  const int rc = ::close(fd_);
  fd_ = -1;
  if (rc != 0) throw McapError("closing '" + path_ + "': " + std::strerror(errno));
}

}  // namespace flowbus::mcap
