#include "flowbus/mcap/reader.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "flowbus/mcap/compression.hpp"
#include "flowbus/mcap/crc32.hpp"

namespace flowbus::mcap {

namespace {

Schema decode_schema(std::span<const uint8_t> content) {
  Decoder d(content, "Schema");
  Schema s;
  s.id = d.u16();
  s.name = d.string();
  s.encoding = d.string();
  const auto data = d.take(d.u32());
  s.data.assign(data.begin(), data.end());
  return s;
}

Channel decode_channel(std::span<const uint8_t> content) {
  Decoder d(content, "Channel");
  Channel c;
  c.id = d.u16();
  c.schema_id = d.u16();
  c.topic = d.string();
  c.message_encoding = d.string();
  c.metadata = d.key_values();
  return c;
}

Message decode_message(std::span<const uint8_t> content) {
  Decoder d(content, "Message");
  Message m;
  m.channel_id = d.u16();
  m.sequence = d.u32();
  m.log_time = d.u64();
  m.publish_time = d.u64();
  m.data = d.rest();
  return m;
}

Metadata decode_metadata(std::span<const uint8_t> content) {
  Decoder d(content, "Metadata");
  Metadata m;
  m.name = d.string();
  m.metadata = d.key_values();
  return m;
}

/// A Map<uint16, uint64>.
std::vector<std::pair<uint16_t, uint64_t>> decode_pairs(Decoder& outer, const char* what) {
  Decoder d(outer.take(outer.u32()), what);
  std::vector<std::pair<uint16_t, uint64_t>> out;
  while (!d.done()) {
    const uint16_t id = d.u16();
    out.emplace_back(id, d.u64());
  }
  return out;
}

}  // namespace

Reader::Reader(const std::string& path) : path_(path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw McapError("cannot open '" + path + "': " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    throw McapError("cannot read '" + path + "': " + std::strerror(err));
  }
  size_ = uint64_t(st.st_size);
  if (size_ != 0) {
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      const int err = errno;
      ::close(fd);
      throw McapError("cannot map '" + path + "': " + std::strerror(err));
    }
    data_ = static_cast<const uint8_t*>(p);
  }
  ::close(fd);
  if (size_ < sizeof kMagic || std::memcmp(data_, kMagic, sizeof kMagic) != 0) {
    if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
    data_ = nullptr;
    throw McapError("'" + path + "' is not an MCAP file: it does not start with the MCAP magic (" +
                    (size_ < sizeof kMagic ? std::to_string(size_) + " bytes long)" : std::string("other bytes)")));
  }
  // The Header comes first.
  const uint64_t at = sizeof kMagic;
  if (size_ - at < kRecordPrefix || data_[at] != uint8_t(Op::Header)) {
    ::munmap(const_cast<uint8_t*>(data_), size_);
    data_ = nullptr;
    throw McapError("'" + path + "' is cut short or damaged: no Header record after the magic");
  }
  uint64_t len;
  std::memcpy(&len, data_ + at + 1, 8);
  if (len > size_ - at - kRecordPrefix) {
    ::munmap(const_cast<uint8_t*>(data_), size_);
    data_ = nullptr;
    throw McapError("'" + path + "' is cut short: its Header record runs past the end");
  }
  Decoder d({data_ + at + kRecordPrefix, size_t(len)}, "Header");
  profile_ = d.string();
  library_ = d.string();
  first_record_ = at + kRecordPrefix + len;
}

Reader::~Reader() {
  if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
}

std::string Reader::where(uint64_t offset) const { return "'" + path_ + "' at byte " + std::to_string(offset) + ": "; }

std::optional<Summary> Reader::summary() const {
  const uint64_t tail = kRecordPrefix + kFooterContent + sizeof kMagic;
  if (size_ < first_record_ + tail) return std::nullopt;
  const uint8_t* foot = data_ + size_ - tail;
  if (std::memcmp(data_ + size_ - sizeof kMagic, kMagic, sizeof kMagic) != 0 || foot[0] != uint8_t(Op::Footer))
    return std::nullopt;  // no footer: the writer never finished
  uint64_t len;
  std::memcpy(&len, foot + 1, 8);
  if (len != kFooterContent)
    throw McapError(where(size_ - tail) + "the Footer record has length " + std::to_string(len) + ", not 20");
  Decoder f({foot + kRecordPrefix, kFooterContent}, "Footer");
  const uint64_t summary_start = f.u64();
  const uint64_t summary_offset_start = f.u64();
  const uint32_t summary_crc = f.u32();
  const uint64_t footer_at = size_ - tail;
  Summary s;
  if (summary_start == 0) return s;
  if (summary_start < first_record_ || summary_start > footer_at || summary_offset_start > footer_at ||
      (summary_offset_start != 0 && summary_offset_start < summary_start))
    throw McapError(where(footer_at) + "the Footer points outside the file (summary at " +
                    std::to_string(summary_start) + ")");
  if (summary_crc != 0) {
    const uint32_t crc = crc32(0, data_ + summary_start, footer_at + kRecordPrefix + 16 - summary_start);
    if (crc != summary_crc)
      throw McapError(where(summary_start) + "the summary section is damaged: CRC " + std::to_string(crc) +
                      ", the footer says " + std::to_string(summary_crc));
  }
  const uint64_t end = summary_offset_start != 0 ? summary_offset_start : footer_at;
  for (uint64_t at = summary_start; at < end;) {
    if (end - at < kRecordPrefix) throw McapError(where(at) + "a summary record is cut short");
    const uint8_t op = data_[at];
    uint64_t rlen;
    std::memcpy(&rlen, data_ + at + 1, 8);
    if (rlen > end - at - kRecordPrefix) throw McapError(where(at) + "a summary record runs past the summary section");
    const std::span<const uint8_t> content(data_ + at + kRecordPrefix, size_t(rlen));
    switch (Op(op)) {
      case Op::Schema:
        s.schemas.push_back(decode_schema(content));
        break;
      case Op::Channel:
        s.channels.push_back(decode_channel(content));
        break;
      case Op::Statistics: {
        Decoder d(content, "Statistics");
        Statistics st;
        st.message_count = d.u64();
        st.schema_count = d.u16();
        st.channel_count = d.u32();
        st.attachment_count = d.u32();
        st.metadata_count = d.u32();
        st.chunk_count = d.u32();
        st.message_start_time = d.u64();
        st.message_end_time = d.u64();
        st.channel_message_counts = decode_pairs(d, "Statistics");
        s.statistics = std::move(st);
        break;
      }
      case Op::ChunkIndex: {
        Decoder d(content, "Chunk Index");
        ChunkIndex c;
        c.message_start_time = d.u64();
        c.message_end_time = d.u64();
        c.chunk_start_offset = d.u64();
        c.chunk_length = d.u64();
        c.message_index_offsets = decode_pairs(d, "Chunk Index");
        c.message_index_length = d.u64();
        c.compression = d.string();
        c.compressed_size = d.u64();
        c.uncompressed_size = d.u64();
        s.chunk_indexes.push_back(std::move(c));
        break;
      }
      case Op::MetadataIndex: {
        Decoder d(content, "Metadata Index");
        MetadataIndex m;
        m.offset = d.u64();
        m.length = d.u64();
        m.name = d.string();
        s.metadata_indexes.push_back(std::move(m));
        break;
      }
      default:
        break;  // attachment indexes and records this reader does not use
    }
    at += kRecordPrefix + rlen;
  }
  return s;
}

Metadata Reader::metadata(const MetadataIndex& index) const {
  if (index.offset > size_ || index.length < kRecordPrefix || index.length > size_ - index.offset ||
      data_[index.offset] != uint8_t(Op::Metadata))
    throw McapError(where(index.offset) + "no Metadata record where the index says one is");
  return decode_metadata({data_ + index.offset + kRecordPrefix, size_t(index.length - kRecordPrefix)});
}

ScanResult Reader::scan(const ScanHandlers& h, bool recover) const {
  ScanResult result;
  std::vector<uint8_t> records;
  uint64_t at = first_record_;
  result.valid_bytes = at;
  auto stop = [&](const std::string& why) {
    if (!recover) throw McapError(where(at) + why);
    result.stopped_because = "at byte " + std::to_string(at) + ": " + why;
  };
  auto dispatch = [&](uint8_t op, std::span<const uint8_t> content) {
    switch (Op(op)) {
      case Op::Schema:
        if (h.on_schema) h.on_schema(decode_schema(content));
        break;
      case Op::Channel:
        if (h.on_channel) h.on_channel(decode_channel(content));
        break;
      case Op::Message:
        ++result.messages;
        if (h.on_message) h.on_message(decode_message(content));
        break;
      default:
        break;
    }
  };
  for (;;) {
    if (at == size_) {
      stop("the file ends without a Data End record: the writer did not finish (killed, or the disk filled up)");
      return result;
    }
    if (size_ - at < kRecordPrefix) {
      stop("the file ends inside a record header: the writer did not finish");
      return result;
    }
    const uint8_t op = data_[at];
    uint64_t len;
    std::memcpy(&len, data_ + at + 1, 8);
    if (op == 0) {
      stop("opcode 0 is not a record: the file is damaged");
      return result;
    }
    if (len > size_ - at - kRecordPrefix) {
      stop("a record (opcode " + std::to_string(op) + ") of " + std::to_string(len) +
           " bytes runs past the end of the file (" + std::to_string(size_ - at - kRecordPrefix) +
           " left): the file is cut short");
      return result;
    }
    const std::span<const uint8_t> content(data_ + at + kRecordPrefix, size_t(len));
    if (Op(op) == Op::DataEnd) {
      Decoder d(content, "Data End");
      const uint32_t stored = d.u32();
      if (stored != 0) {
        const uint32_t crc = crc32(0, data_, at);
        if (crc != stored)
          throw McapError(where(at) + "the data section is damaged: its CRC is " + std::to_string(crc) +
                          ", Data End says " + std::to_string(stored));
      }
      result.complete = true;
      result.valid_bytes = at + kRecordPrefix + len;
      return result;
    }
    if (Op(op) == Op::Footer) {
      stop("a Footer before any Data End record");
      return result;
    }
    if (Op(op) == Op::Chunk) {
      Decoder d(content, "Chunk");
      d.u64();
      d.u64();
      const uint64_t uncompressed_size = d.u64();
      const uint32_t crc = d.u32();
      const std::string compression = d.string();
      const auto compressed = d.take(d.u64());
      try {
        decompress(compression, compressed, uncompressed_size, records);
      } catch (const McapError& e) {
        throw McapError(where(at) + "chunk " + std::to_string(result.chunks) + " is damaged: " + e.what());
      }
      if (crc != 0) {
        const uint32_t actual = crc32(0, records.data(), records.size());
        if (actual != crc)
          throw McapError(where(at) + "chunk " + std::to_string(result.chunks) +
                          " is damaged: the CRC of its records is " + std::to_string(actual) + ", its header says " +
                          std::to_string(crc));
      }
      for (uint64_t r = 0; r < records.size();) {
        if (records.size() - r < kRecordPrefix) throw McapError(where(at) + "a record inside the chunk is cut short");
        uint64_t rlen;
        std::memcpy(&rlen, records.data() + r + 1, 8);
        if (rlen > records.size() - r - kRecordPrefix)
          throw McapError(where(at) + "a record runs past the end of its chunk");
        dispatch(records[r], {records.data() + r + kRecordPrefix, size_t(rlen)});
        r += kRecordPrefix + rlen;
      }
      ++result.chunks;
    } else if (Op(op) == Op::Metadata) {
      if (h.on_metadata) h.on_metadata(decode_metadata(content));
    } else {
      dispatch(op, content);
    }
    at += kRecordPrefix + len;
    result.valid_bytes = at;
  }
}

}  // namespace flowbus::mcap
