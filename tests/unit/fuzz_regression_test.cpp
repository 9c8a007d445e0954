// Regression tests for what the fuzzers in fuzz/ found. Each names the input
// kept in fuzz/corpus/<target>/ that first showed it.
#include <gtest/gtest.h>

#include <flatbuffers/reflection_generated.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

#include "flowbus/detail/ring.hpp"
#include "flowbus/error.hpp"
#include "flowbus/schema.hpp"
#include "inspect_ring.hpp"

using namespace flowbus;
using namespace flowbus::detail;

namespace {

std::vector<uint8_t> read_bytes(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

const std::filesystem::path kSchemaCorpus = std::filesystem::path(FLOWBUS_SOURCE_DIR) / "fuzz/corpus/schema";

template <class F>
ErrorCode error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.code();
  }
  return ErrorCode::System;  // "did not throw"
}

/// A ring in ordinary memory, written by a real RingWriter: the fuzzer's view of a ring.
struct MemoryRing {
  static constexpr uint64_t kCapacity = 4096;
  std::vector<uint64_t> data = std::vector<uint64_t>((kRecordsOffset + kCapacity) / 8);
  std::vector<uint64_t> control = std::vector<uint64_t>(sizeof(ControlHeader) / 8);
  std::vector<uint64_t> bell = std::vector<uint64_t>(sizeof(BellHeader) / 8);
  RingContext context;

  RingHeader* header() { return reinterpret_cast<RingHeader*>(data.data()); }
  uint8_t* bytes() { return reinterpret_cast<uint8_t*>(data.data()); }
  uint8_t* records() { return bytes() + kRecordsOffset; }
  ControlHeader* control_header() { return reinterpret_cast<ControlHeader*>(control.data()); }
  BellHeader* bell_header() { return reinterpret_cast<BellHeader*>(bell.data()); }

  MemoryRing(Policy policy, uint64_t events) {
    header()->magic.store(kRingMagic);
    header()->layout_version = kLayoutVersion;
    header()->capacity = kCapacity;
    header()->policy = uint32_t(policy);
    control_header()->magic.store(kControlMagic);
    control_header()->layout_version = kLayoutVersion;
    RingWriter w;
    w.header = header();
    w.records = records();
    w.control = control_header();
    w.bell = bell_header();
    w.capacity = kCapacity;
    w.mask = kCapacity - 1;
    w.policy = policy;
    w.slow_timeout_ns = UINT64_MAX;
    w.recover();
    for (uint64_t i = 0; i < events; ++i) {
      RingWriter::Reservation r;
      EXPECT_EQ(w.reserve(sizeof(RecordHeader), sizeof i, r), PublishStatus::Ok);
      std::memcpy(r.record + sizeof(RecordHeader), &i, sizeof i);
      w.commit(r, sizeof(RecordHeader), sizeof i, 0);
    }
  }

  RingReader reader(Policy policy) {
    RingReader r;
    r.header = header();
    r.records = records();
    r.control = control_header();
    r.bell = bell_header();
    r.capacity = kCapacity;
    r.mask = kCapacity - 1;
    r.policy = policy;
    r.context = &context;
    return r;
  }
};

}  // namespace

// fuzz/corpus/ring_records/crash-join-off-grid: a write position that is not a
// multiple of 32 made a reader joining at latest read record headers at
// misaligned addresses, up to 31 bytes past the end of the ring.
TEST(FuzzRegression, ReaderJoiningAtAWritePositionOffTheRecordGridReportsCorrupt) {
  for (Policy policy : {Policy::Block, Policy::Latest}) {
    MemoryRing ring(policy, 3);
    ring.header()->write_position.store(MemoryRing::kCapacity - 8);
    RingReader r = ring.reader(policy);
    ASSERT_TRUE(r.join_latest());
    Event e;
    EXPECT_EQ(r.peek(e), ReadStatus::Corrupt);
    EXPECT_EQ(r.attachment, -1);  // holds nothing: it never holds the writer back
    EXPECT_EQ(r.line, nullptr);
  }
}

TEST(FuzzRegression, ReaderJoiningAtATailOffTheRecordGridReportsCorrupt) {
  MemoryRing ring(Policy::Block, 3);
  ring.header()->tail_position.store(40);
  RingReader r = ring.reader(Policy::Block);
  ASSERT_TRUE(r.join_earliest());  // was: false, which subscribers report as "all reader slots taken"
  Event e;
  EXPECT_EQ(r.peek(e), ReadStatus::Corrupt);
}

// A Latest reader moved to a scribbled tail (not a multiple of 32) and read
// record headers there.
TEST(FuzzRegression, LatestReaderMovedToATailOffTheRecordGridReportsCorrupt) {
  MemoryRing ring(Policy::Latest, 3);
  RingReader r = ring.reader(Policy::Latest);
  ASSERT_TRUE(r.join_earliest());
  Event e;
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(r.peek(e), ReadStatus::Ok);
    ASSERT_EQ(r.release(e), ReadStatus::Ok);
  }
  ASSERT_EQ(r.peek(e), ReadStatus::Empty);
  ring.header()->tail_position.store(ring.header()->write_position.load() + 40);
  EXPECT_EQ(r.peek(e), ReadStatus::Corrupt);
}

// fuzz/corpus/ring_records/crash-inspect-tail-off-grid: the inspector looked
// for a record at a tail that is not a multiple of 32, and could count
// retained events from a fake header found there.
TEST(FuzzRegression, InspectorIgnoresATailOffTheRecordGrid) {
  MemoryRing ring(Policy::Block, 3);
  const uint64_t tail = 8;
  const uint64_t commit = tail + 1;
  std::memcpy(ring.records() + tail, &commit, sizeof commit);
  const RecordFields fake{0, uint32_t(sizeof(RecordHeader)), 0, 0};  // sequence 0: "3 retained"
  std::memcpy(ring.records() + tail + 8, &fake, sizeof fake);
  ring.header()->tail_position.store(tail);
  RingSnapshot snap;
  ASSERT_TRUE(snapshot_ring_data("fuzz", ring.bytes(), ring.data.size() * 8, snap)) << snap.error;
  EXPECT_EQ(snap.retained_events, 0u);
}

// fuzz/corpus/schema/crash-*: binary schemas that pass the FlatBuffers
// Verifier but are inconsistent (unknown base types, type indexes out of
// range, struct sizes that do not match their fields, a table with a struct
// size, a field both required and optional, an fbs_files entry without its
// include list, two key fields, an enum named like a table). FlatBuffers
// 2.0.8 asserts, dereferences null, or frees twice on them, in
// Parser::Deserialize and in the reflection Verify. They are refused first.
TEST(FuzzRegression, InconsistentBinarySchemasAreRefusedBeforeFlatBuffersSeesThem) {
  const std::vector<uint8_t> order = read_bytes(kSchemaCorpus / "order.bfbs");
  int seen = 0;
  for (const auto& entry : std::filesystem::directory_iterator(kSchemaCorpus)) {
    if (entry.path().filename().string().rfind("crash-", 0) != 0) continue;
    ++seen;
    SCOPED_TRACE(entry.path().filename().string());
    const std::vector<uint8_t> bad = read_bytes(entry.path());
    EXPECT_EQ(error_of([&] { SchemaCodec(bad, ""); }), ErrorCode::InvalidArgument);
    EXPECT_EQ(error_of([&] { SchemaCodec(bad, "examples.Order"); }), ErrorCode::InvalidArgument);
    EXPECT_EQ(error_of([&] { check_compatible_evolution(order, bad); }), ErrorCode::InvalidArgument);
    EXPECT_EQ(error_of([&] { check_compatible_evolution(bad, order); }), ErrorCode::InvalidArgument);
    EXPECT_EQ(error_of([&] { (void)schema_has_table(bad, "examples.Order"); }), ErrorCode::InvalidArgument);
  }
  EXPECT_GE(seen, 9);
}

// Two types with one name: Parser::Deserialize dereferenced null.
TEST(FuzzRegression, SchemaWithTwoTablesOfOneNameIsRefused) {
  flatbuffers::FlatBufferBuilder b;
  auto table = [&] {
    std::vector<flatbuffers::Offset<reflection::Field>> fields;
    return reflection::CreateObject(b, b.CreateString("a.A"), b.CreateVector(fields), false, 0, 1);
  };
  std::vector<flatbuffers::Offset<reflection::Object>> objects{table(), table()};
  std::vector<flatbuffers::Offset<reflection::Enum>> enums;
  const auto objects_vector = b.CreateVector(objects);
  const auto enums_vector = b.CreateVector(enums);
  b.Finish(reflection::CreateSchema(b, objects_vector, enums_vector), reflection::SchemaIdentifier());
  const std::vector<uint8_t> bfbs(b.GetBufferPointer(), b.GetBufferPointer() + b.GetSize());
  const std::vector<uint8_t> order = read_bytes(kSchemaCorpus / "order.bfbs");
  EXPECT_EQ(error_of([&] { SchemaCodec(bfbs, "a.A"); }), ErrorCode::InvalidArgument);
  EXPECT_EQ(error_of([&] { check_compatible_evolution(order, bfbs); }), ErrorCode::InvalidArgument);
}

// The consistency checks refuse nothing flatc or compile_schema_file makes:
// structs in structs, arrays, enums, unions, vectors of structs and unions.
TEST(FuzzRegression, ConsistencyChecksAcceptEveryKindOfType) {
  const std::string fbs = std::string(FLOWBUS_SOURCE_DIR) + "/fuzz/schemas/all_kinds.fbs";
  for (const std::vector<uint8_t>& bfbs : {read_bytes(kSchemaCorpus / "all_kinds.bfbs"), compile_schema_file(fbs)}) {
    EXPECT_EQ(schema_root_type(bfbs), "kinds.T");
    EXPECT_TRUE(schema_has_table(bfbs, "kinds.T"));
    check_compatible_evolution(bfbs, bfbs);
  }
  const SchemaCodec codec(compile_schema_file(fbs), "kinds.T2");
  {
    const std::vector<uint8_t> fb = codec.json_to_flatbuffer(
        R"({w: {a: 1, v: {x: 1.5, y: 2, z: 3.5}, arr: [1, 2, 3]}, u_type: "A", u: {n: 7}, e: "Q",)"
        R"( vs: [], names: ["a"], flags: [true], es: ["P"]})");
    EXPECT_TRUE(codec.verify(fb.data(), fb.size()));
    EXPECT_NE(codec.flatbuffer_to_json(fb.data(), fb.size()).find("\"n\": 7"), std::string::npos);
  }
  for (const auto& entry : std::filesystem::directory_iterator(kSchemaCorpus)) {
    if (entry.path().filename().string().rfind("crash-", 0) == 0) continue;
    SCOPED_TRACE(entry.path().filename().string());
    EXPECT_NO_THROW(schema_root_type(read_bytes(entry.path())));
  }
}

// Not from a fuzz target but from probing what the schema fuzzer showed:
// FlatBuffers 2.0.8's reflection Verify dereferences null on a payload whose
// vector of unions has no type vector, so SchemaCodec::verify (`flowbus sub
// --json`) crashed on such bytes from any publisher. A codec for a type that
// can reach a vector of unions is refused; T2 (no such vector) still works.
TEST(FuzzRegression, CodecRefusesATypeThatCanHoldAVectorOfUnions) {
  const std::vector<uint8_t> bfbs = compile_schema_file(std::string(FLOWBUS_SOURCE_DIR) + "/fuzz/schemas/all_kinds.fbs");
  try {
    SchemaCodec codec(bfbs, "kinds.T");
    ADD_FAILURE() << "a codec for kinds.T";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::InvalidArgument);
    EXPECT_NE(std::string(e.what()).find("us of a table inside kinds.T is a vector of unions"), std::string::npos) << e.what();
  }
  EXPECT_NO_THROW(SchemaCodec(bfbs, "kinds.T2"));
}

// fuzz/corpus/json_to_flatbuffer/crash-control-character-in-string: a string
// with a control character ("\u000e") was rendered with the raw byte, which is
// not JSON (`flowbus sub --json` printed it; our own parser refused it back).
TEST(FuzzRegression, ControlCharactersInStringsAreEscapedInJson) {
  const SchemaCodec codec(compile_schema_file(std::string(FLOWBUS_SOURCE_DIR) + "/schemas/examples/sensor.fbs"), "");
  const std::vector<uint8_t> fb = codec.json_to_flatbuffer(R"({line: "a\u000eb\u001f\n", sensor: "\u0001"})");
  const std::string json = codec.flatbuffer_to_json(fb.data(), fb.size());
  for (char c : json) EXPECT_GE(static_cast<unsigned char>(c), 0x20) << json;
  EXPECT_NE(json.find(R"("line": "a\u000eb\u001f\n")"), std::string::npos) << json;
  const std::vector<uint8_t> again = codec.json_to_flatbuffer(json);
  EXPECT_EQ(codec.flatbuffer_to_json(again.data(), again.size()), json);
}

// fuzz/corpus/ring_records/crash-inspect-capacity-below-header: the inspector
// accepted any power-of-two capacity, so a ring header claiming 16 bytes made
// it read a 32-byte record header past the end of the segment.
TEST(FuzzRegression, InspectorRefusesACapacityBelowTheSmallestRing) {
  for (uint64_t capacity : {uint64_t(1), uint64_t(16), kMinCapacity / 2}) {
    std::vector<uint64_t> data((kRecordsOffset + capacity + 7) / 8);
    auto* h = reinterpret_cast<RingHeader*>(data.data());
    h->magic.store(kRingMagic);
    h->layout_version = kLayoutVersion;
    h->capacity = capacity;
    h->write_position.store(64);
    RingSnapshot snap;
    EXPECT_FALSE(snapshot_ring_data("fuzz", reinterpret_cast<const uint8_t*>(data.data()), kRecordsOffset + capacity, snap));
    EXPECT_NE(snap.error.find("capacity"), std::string::npos) << snap.error;
  }
}
