// The MCAP writer and reader (mcap/): CRCs, compression, chunks and their
// indexes, the summary, and the errors of files cut short or damaged.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "flowbus/mcap/compression.hpp"
#include "flowbus/mcap/crc32.hpp"
#include "flowbus/mcap/reader.hpp"
#include "flowbus/mcap/writer.hpp"
#include "record/conventions.hpp"  // tools/flowbus: how flowbus sequences fit MCAP's 32 bits

using namespace flowbus::mcap;

namespace {

struct TempFile {
  std::string path = "/tmp/mcap_test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++) + ".mcap";
  ~TempFile() { std::remove(path.c_str()); }
  static inline int counter = 0;
};

std::vector<uint8_t> read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_all(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
}

std::vector<uint8_t> payload(uint32_t i) {
  std::vector<uint8_t> p(16 + i % 200);
  for (size_t k = 0; k < p.size(); ++k) p[k] = uint8_t(i * 31 + k);
  return p;
}

struct Written {
  uint64_t messages = 0;
  std::vector<std::pair<uint16_t, uint32_t>> order;  // (channel, sequence) in write order
};

/// Two schemas, three channels, `n` messages spread over small chunks.
Written write_sample(const std::string& path, Compression c, uint32_t n, bool close = true, size_t chunk = 4096) {
  WriterOptions o;
  o.compression = c;
  o.chunk_size = chunk;
  o.library = "mcap_test";
  Writer w(path, o);
  const uint16_t s1 = w.add_schema("examples.Order", "flatbuffer", {1, 2, 3});
  const uint16_t s2 = w.add_schema("examples.SensorReading", "flatbuffer", {4, 5});
  const uint16_t c1 = w.add_channel(s1, "orders.created", "flatbuffer", {{"source", "flowbus://h/b/p1"}});
  const uint16_t c2 = w.add_channel(s1, "orders.created", "flatbuffer", {{"source", "flowbus://h/b/p2"}});
  const uint16_t c3 = w.add_channel(s2, "sensor.temp", "flatbuffer", {});
  Written out;
  const uint16_t channels[3] = {c1, c2, c3};
  for (uint32_t i = 0; i < n; ++i) {
    const uint16_t ch = channels[i % 3];
    const auto p = payload(i);
    w.add_message(ch, i, 1'000'000'000ull + i * 1000ull, 1'000'000'000ull + i * 1000ull, p);
    out.order.emplace_back(ch, i);
    if (i == n / 2) w.add_metadata("flowbus.losses", {{"lost", "3"}});
  }
  out.messages = n;
  if (close) {
    w.close();
  } else {
    w.flush_chunk();
    w.abandon();
  }
  return out;
}

}  // namespace

TEST(Crc32, MatchesTheStandardCheckValueAndContinues) {
  const char* check = "123456789";
  EXPECT_EQ(crc32(0, check, 9), 0xCBF43926u);
  EXPECT_EQ(crc32(crc32(0, check, 4), check + 4, 5), 0xCBF43926u);
  EXPECT_EQ(crc32(0, nullptr, 0), 0u);
  std::vector<uint8_t> big(100003);
  std::mt19937 rng(7);
  for (auto& b : big) b = uint8_t(rng());
  // Slicing by eight against the bytewise loop on every split.
  const uint32_t whole = crc32(0, big.data(), big.size());
  for (size_t cut : {size_t(1), size_t(7), size_t(8), size_t(4095), size_t(99999)})
    EXPECT_EQ(crc32(crc32(0, big.data(), cut), big.data() + cut, big.size() - cut), whole) << cut;
}

TEST(Compression, EachKindRoundTripsAndDamageIsAnError) {
  std::vector<uint8_t> in(300000);
  for (size_t i = 0; i < in.size(); ++i) in[i] = uint8_t((i / 7) % 251);
  for (Compression c : {Compression::None, Compression::Zstd, Compression::Lz4}) {
    Compressor z(c);
    std::vector<uint8_t> packed, back;
    z.compress(in, packed);
    if (c != Compression::None) {
      EXPECT_LT(packed.size(), in.size() / 4) << compression_name(c);
    }
    decompress(compression_name(c), packed, in.size(), back);
    EXPECT_EQ(back, in) << compression_name(c);
    if (c == Compression::None) continue;
    EXPECT_THROW(decompress(compression_name(c), packed, in.size() + 1, back), McapError) << compression_name(c);
    packed.resize(packed.size() / 2);
    EXPECT_THROW(decompress(compression_name(c), packed, in.size(), back), McapError) << compression_name(c);
  }
  std::vector<uint8_t> out;
  EXPECT_THROW(decompress("bz2", in, in.size(), out), McapError);
  EXPECT_THROW(parse_compression("gzip"), McapError);
  EXPECT_EQ(parse_compression("none"), Compression::None);
}

TEST(McapFile, WritesEveryRecordAndReadsThemBackInOrder) {
  for (Compression c : {Compression::None, Compression::Zstd, Compression::Lz4}) {
    TempFile f;
    const Written w = write_sample(f.path, c, 3000);
    Reader r(f.path);
    EXPECT_EQ(r.library(), "mcap_test");
    const auto s = r.summary();
    ASSERT_TRUE(s.has_value());
    ASSERT_TRUE(s->statistics.has_value());
    EXPECT_EQ(s->statistics->message_count, 3000u);
    EXPECT_EQ(s->statistics->schema_count, 2u);
    EXPECT_EQ(s->statistics->channel_count, 3u);
    EXPECT_EQ(s->statistics->metadata_count, 1u);
    EXPECT_EQ(s->statistics->message_start_time, 1'000'000'000u);
    EXPECT_EQ(s->statistics->message_end_time, 1'000'000'000u + 2999u * 1000u);
    EXPECT_GT(s->chunk_indexes.size(), 10u);
    EXPECT_EQ(s->statistics->chunk_count, s->chunk_indexes.size());
    ASSERT_EQ(s->channels.size(), 3u);
    EXPECT_EQ(find_value(s->channels[1].metadata, "source"), "flowbus://h/b/p2");
    ASSERT_EQ(s->metadata_indexes.size(), 1u);
    EXPECT_EQ(find_value(r.metadata(s->metadata_indexes[0]).metadata, "lost"), "3");
    uint64_t counted = 0;
    for (const auto& [ch, n] : s->statistics->channel_message_counts) counted += n;
    EXPECT_EQ(counted, 3000u);
    for (const ChunkIndex& ci : s->chunk_indexes) EXPECT_EQ(ci.compression, compression_name(c));

    std::vector<std::pair<uint16_t, uint32_t>> seen;
    std::vector<std::string> metadata_seen;
    ScanHandlers h;
    h.on_message = [&](const Message& m) {
      seen.emplace_back(m.channel_id, m.sequence);
      EXPECT_EQ(std::vector<uint8_t>(m.data.begin(), m.data.end()), payload(m.sequence));
      EXPECT_EQ(m.log_time, 1'000'000'000ull + m.sequence * 1000ull);
    };
    h.on_metadata = [&](const Metadata& m) { metadata_seen.push_back(m.name); };
    const ScanResult res = r.scan(h);
    EXPECT_TRUE(res.complete);
    EXPECT_EQ(seen, w.order);
    EXPECT_EQ(res.chunks, s->chunk_indexes.size());
    EXPECT_EQ(metadata_seen, std::vector<std::string>{"flowbus.losses"});
  }
}

TEST(McapFile, TheIndexPointsAtEveryChunkAndMessage) {
  TempFile f;
  write_sample(f.path, Compression::Zstd, 2000);
  const auto bytes = read_all(f.path);
  Reader r(f.path);
  const auto s = r.summary();
  ASSERT_TRUE(s);
  uint64_t indexed = 0;
  for (const ChunkIndex& ci : s->chunk_indexes) {
    ASSERT_LT(ci.chunk_start_offset + ci.chunk_length, bytes.size());
    EXPECT_EQ(bytes[ci.chunk_start_offset], uint8_t(Op::Chunk));
    EXPECT_EQ(bytes[ci.chunk_start_offset + ci.chunk_length], uint8_t(Op::MessageIndex));
    for (const auto& [channel, at] : ci.message_index_offsets) {
      EXPECT_EQ(bytes[at], uint8_t(Op::MessageIndex));
      uint64_t len;
      std::memcpy(&len, bytes.data() + at + 1, 8);
      uint16_t ch;
      std::memcpy(&ch, bytes.data() + at + 9, 2);
      EXPECT_EQ(ch, channel);
      uint32_t array_bytes;
      std::memcpy(&array_bytes, bytes.data() + at + 11, 4);
      indexed += array_bytes / 16;
    }
  }
  EXPECT_EQ(indexed, 2000u);
}

TEST(McapFile, AnEmptyRecordingIsAValidFile) {
  TempFile f;
  { Writer w(f.path, {}); }
  Reader r(f.path);
  const auto s = r.summary();
  ASSERT_TRUE(s);
  EXPECT_EQ(s->statistics->message_count, 0u);
  EXPECT_TRUE(r.scan({}).complete);
}

TEST(McapFile, ACutFileIsRecoveredUpToItsLastWholeChunk) {
  TempFile f;
  write_sample(f.path, Compression::Lz4, 3000, /*close=*/false);  // as a recorder killed -9 leaves it
  Reader whole(f.path);
  EXPECT_FALSE(whole.summary().has_value());
  try {
    (void)whole.scan({});
    FAIL() << "a file without Data End scanned as complete";
  } catch (const McapError& e) {
    EXPECT_NE(std::string(e.what()).find("did not finish"), std::string::npos) << e.what();
  }
  const ScanResult all = whole.scan({}, true);
  EXPECT_EQ(all.messages, 3000u);
  EXPECT_FALSE(all.complete);
  // Cut in the middle of the last chunk: what came before it is recovered.
  auto bytes = read_all(f.path);
  bytes.resize(bytes.size() * 3 / 4);
  write_all(f.path, bytes);
  Reader cut(f.path);
  const ScanResult part = cut.scan({}, true);
  EXPECT_LT(part.messages, 3000u);
  EXPECT_GT(part.messages, 2000u);
  EXPECT_NE(part.stopped_because.find("cut short"), std::string::npos) << part.stopped_because;
  EXPECT_THROW((void)cut.scan({}), McapError);
}

TEST(McapFile, DamageIsFoundByTheCrcs) {
  TempFile f;
  write_sample(f.path, Compression::None, 1000);
  auto bytes = read_all(f.path);
  Reader r0(f.path);
  const auto s = r0.summary();
  ASSERT_TRUE(s);
  // One payload byte inside the third chunk (uncompressed: the CRC must catch it).
  const ChunkIndex& ci = s->chunk_indexes[2];
  const uint64_t inside = ci.chunk_start_offset + ci.chunk_length - 20;
  bytes[inside] ^= 0x40;
  write_all(f.path, bytes);
  Reader r(f.path);
  try {
    (void)r.scan({}, true);
    FAIL() << "a damaged chunk scanned";
  } catch (const McapError& e) {
    EXPECT_NE(std::string(e.what()).find("chunk 2 is damaged: the CRC"), std::string::npos) << e.what();
  }
  // The summary CRC covers the summary.
  bytes[inside] ^= 0x40;
  bytes[bytes.size() - 8 - 29 - 5] ^= 1;  // a byte of the last Summary Offset
  write_all(f.path, bytes);
  Reader r2(f.path);
  EXPECT_THROW((void)r2.summary(), McapError);
}

TEST(McapFile, NotAnMcapFileSaysSo) {
  TempFile f;
  write_all(f.path, {'h', 'e', 'l', 'l', 'o', '\n'});
  try {
    Reader r(f.path);
    FAIL();
  } catch (const McapError& e) {
    EXPECT_NE(std::string(e.what()).find("is not an MCAP file"), std::string::npos) << e.what();
  }
  EXPECT_THROW(Reader("/nonexistent/x.mcap"), McapError);
}

TEST(McapFile, AFullDiskIsAnErrorNamingTheFile) {
  try {
    Writer w("/dev/full", {});
    FAIL() << "writing to /dev/full succeeded";
  } catch (const McapError& e) {
    EXPECT_NE(std::string(e.what()).find("No space left on device"), std::string::npos) << e.what();
  }
}

TEST(Conventions, SixtyFourBitSequencesComeBackFromTheirLow32Bits) {
  using flowbus::record::widen_sequence;
  EXPECT_EQ(widen_sequence(0, 0), 0u);
  EXPECT_EQ(widen_sequence(5, 9), 9u);
  // Across the 32-bit boundary, and from a first sequence far above it.
  EXPECT_EQ(widen_sequence(0xfffffffeull, 3), 0x100000003ull);
  EXPECT_EQ(widen_sequence(0x500000000ull + 7, 7), 0x500000007ull);
  const uint64_t start = 0x7ffffff00ull;
  uint64_t previous = start;
  for (uint64_t s = start; s < start + 1000; s += 3) {
    EXPECT_EQ(widen_sequence(previous, uint32_t(s)), s);
    previous = s + 1;
  }
}
