// Unit tests for flowbus/schema.hpp: compiling schemas, schema ids, schema
// evolution checks and the JSON <-> FlatBuffers codec.
#include "flowbus/schema.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "flowbus/error.hpp"

#ifndef FLOWBUS_SOURCE_DIR
#define FLOWBUS_SOURCE_DIR "."
#endif

namespace fs = std::filesystem;
using flowbus::ErrorCode;
using flowbus::SchemaCodec;

namespace {

std::string example(const std::string& name) {
  return std::string(FLOWBUS_SOURCE_DIR) + "/schemas/examples/" + name;
}

// Runs `fn`, expects a flowbus::Error with `code`, returns its message.
std::string error_message(ErrorCode code, const std::function<void()>& fn) {
  try {
    fn();
  } catch (const flowbus::Error& e) {
    EXPECT_EQ(e.code(), code) << "message: " << e.what();
    return e.what();
  }
  ADD_FAILURE() << "expected flowbus::Error, nothing was thrown";
  return "";
}

class SchemaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           ("flowbus_schema_test_" + std::to_string(::getpid()) + "_" + info->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Writes `text` to a file in the test's temporary directory; returns its path.
  std::string write(const std::string& name, const std::string& text) {
    const fs::path path = dir_ / name;
    std::ofstream(path, std::ios::binary) << text;
    return path.string();
  }

  // Compiles an inline schema written to a temporary file.
  std::vector<uint8_t> compile_text(const std::string& name, const std::string& text) {
    return flowbus::compile_schema_file(write(name, text));
  }

  fs::path dir_;
};

const char* const kTableT = "namespace t; table T { a: uint; b: string; c: double = 1.5; } root_type T;";

}  // namespace

// ------------------------------------------------------------ compiling

TEST_F(SchemaTest, CompilesSensorSchemaWithItsRootType) {
  const auto bfbs = flowbus::compile_schema_file(example("sensor.fbs"));
  ASSERT_FALSE(bfbs.empty());
  EXPECT_EQ(flowbus::schema_root_type(bfbs), "examples.SensorReading");
  EXPECT_TRUE(flowbus::schema_has_table(bfbs, "examples.SensorReading"));
  EXPECT_FALSE(flowbus::schema_has_table(bfbs, "SensorReading"));
  EXPECT_FALSE(flowbus::schema_has_table(bfbs, "examples.Order"));
}

TEST_F(SchemaTest, ReportsNoRootTypeAsEmptyString) {
  const auto bfbs = compile_text("noroot.fbs", "namespace n; table A { x: int; }");
  EXPECT_EQ(flowbus::schema_root_type(bfbs), "");
  EXPECT_TRUE(flowbus::schema_has_table(bfbs, "n.A"));
}

TEST_F(SchemaTest, DoesNotCountStructsAsTables) {
  const auto bfbs = compile_text("s.fbs", "namespace n; struct P { x: int; } table A { p: P; } root_type A;");
  EXPECT_TRUE(flowbus::schema_has_table(bfbs, "n.A"));
  EXPECT_FALSE(flowbus::schema_has_table(bfbs, "n.P"));
}

TEST_F(SchemaTest, NamesTheFileWhenSchemaHasSyntaxError) {
  const std::string path = write("broken.fbs", "namespace b;\ntable Broken { x: int\n}\n");
  const std::string msg = error_message(ErrorCode::InvalidArgument,
                                        [&] { flowbus::compile_schema_file(path); });
  EXPECT_NE(msg.find("broken.fbs"), std::string::npos) << msg;
  EXPECT_NE(msg.find("error"), std::string::npos) << msg;  // the parser's own text
}

TEST_F(SchemaTest, NamesTheFileWhenItDoesNotExist) {
  const std::string path = (dir_ / "missing.fbs").string();
  const std::string msg = error_message(ErrorCode::InvalidArgument,
                                        [&] { flowbus::compile_schema_file(path); });
  EXPECT_NE(msg.find("missing.fbs"), std::string::npos) << msg;
}

TEST_F(SchemaTest, ResolvesIncludesFromTheSchemaDirectoryAndIncludeDirs) {
  write("common.fbs", "namespace c; table Meta { origin: string; }");
  const auto bfbs = compile_text("main.fbs",
                                 "include \"common.fbs\";\nnamespace m; table Msg { meta: c.Meta; } root_type Msg;");
  EXPECT_TRUE(flowbus::schema_has_table(bfbs, "c.Meta"));

  fs::create_directories(dir_ / "inc");
  write("inc/extra.fbs", "namespace x; table Extra { v: int; }");
  fs::create_directories(dir_ / "src");
  const std::string main2 = write("src/main2.fbs", "include \"extra.fbs\";\nnamespace m; table M2 { e: x.Extra; } root_type M2;");
  EXPECT_THROW(flowbus::compile_schema_file(main2), flowbus::Error);
  const auto bfbs2 = flowbus::compile_schema_file(main2, {(dir_ / "inc").string()});
  EXPECT_TRUE(flowbus::schema_has_table(bfbs2, "x.Extra"));
}

TEST_F(SchemaTest, LoadsPrecompiledBfbsFileUnchanged) {
  const auto bfbs = flowbus::compile_schema_file(example("order.fbs"));
  const std::string path = write("order.bfbs", std::string(bfbs.begin(), bfbs.end()));
  EXPECT_EQ(flowbus::compile_schema_file(path), bfbs);
}

TEST_F(SchemaTest, RefusesCorruptBfbsFile) {
  const std::string path = write("junk.bfbs", "this is not a binary schema at all");
  const std::string msg = error_message(ErrorCode::InvalidArgument,
                                        [&] { flowbus::compile_schema_file(path); });
  EXPECT_NE(msg.find("junk.bfbs"), std::string::npos) << msg;
}

TEST_F(SchemaTest, RefusesInvalidBfbsBytesEverywhere) {
  const std::vector<uint8_t> junk{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
  EXPECT_THROW(flowbus::schema_root_type(junk), flowbus::Error);
  EXPECT_THROW(flowbus::schema_has_table({}, "x"), flowbus::Error);
  EXPECT_THROW(SchemaCodec(junk, ""), flowbus::Error);
  const auto good = flowbus::compile_schema_file(example("order.fbs"));
  error_message(ErrorCode::InvalidArgument, [&] { flowbus::check_compatible_evolution(good, junk); });
}

// ------------------------------------------------------------ schema ids

TEST_F(SchemaTest, SchemaIdIsStableLowercaseFnv1a64) {
  const auto bfbs = flowbus::compile_schema_file(example("sensor.fbs"));
  const std::string id = flowbus::schema_id(bfbs);
  ASSERT_EQ(id.size(), 8u + 16u);
  EXPECT_EQ(id.rfind("fnv1a64:", 0), 0u);
  EXPECT_EQ(id.find_first_not_of("0123456789abcdef", 8), std::string::npos) << id;
  EXPECT_EQ(flowbus::schema_id(flowbus::compile_schema_file(example("sensor.fbs"))), id);
  // Known FNV-1a 64 values.
  EXPECT_EQ(flowbus::schema_id({}), "fnv1a64:cbf29ce484222325");
  EXPECT_EQ(flowbus::schema_id({'a'}), "fnv1a64:af63dc4c8601ec8c");
}

TEST_F(SchemaTest, SchemaIdDiffersBetweenSchemas) {
  const auto sensor = flowbus::schema_id(flowbus::compile_schema_file(example("sensor.fbs")));
  const auto order = flowbus::schema_id(flowbus::compile_schema_file(example("order.fbs")));
  const auto order2 = flowbus::schema_id(flowbus::compile_schema_file(example("order_v2.fbs")));
  EXPECT_NE(sensor, order);
  EXPECT_NE(order, order2);
}

TEST_F(SchemaTest, SchemaIdDoesNotDependOnWhereTheFileLives) {
  fs::copy_file(example("sensor.fbs"), dir_ / "copy_of_sensor.fbs");
  EXPECT_EQ(flowbus::compile_schema_file((dir_ / "copy_of_sensor.fbs").string()),
            flowbus::compile_schema_file(example("sensor.fbs")));
}

// ------------------------------------------------------------ evolution

TEST_F(SchemaTest, AcceptsIdenticalSchema) {
  const auto order = flowbus::compile_schema_file(example("order.fbs"));
  EXPECT_NO_THROW(flowbus::check_compatible_evolution(order, order));
}

TEST_F(SchemaTest, AcceptsFieldAppendedAtTheEnd) {
  const auto order = flowbus::compile_schema_file(example("order.fbs"));
  const auto order2 = flowbus::compile_schema_file(example("order_v2.fbs"));
  EXPECT_NO_THROW(flowbus::check_compatible_evolution(order, order2));
}

TEST_F(SchemaTest, RefusesFieldTypeChange) {
  const auto order = flowbus::compile_schema_file(example("order.fbs"));
  const auto bad = flowbus::compile_schema_file(example("order_bad.fbs"));
  const std::string msg = error_message(ErrorCode::IncompatibleSchema,
                                        [&] { flowbus::check_compatible_evolution(order, bad); });
  EXPECT_NE(msg.find("quantity"), std::string::npos) << msg;
  EXPECT_NE(msg.find(flowbus::schema_id(order)), std::string::npos) << msg;
}

TEST_F(SchemaTest, RefusesGoingBackFromNewerVersion) {
  const auto order = flowbus::compile_schema_file(example("order.fbs"));
  const auto order2 = flowbus::compile_schema_file(example("order_v2.fbs"));
  const std::string msg = error_message(ErrorCode::IncompatibleSchema,
                                        [&] { flowbus::check_compatible_evolution(order2, order); });
  EXPECT_NE(msg.find("note"), std::string::npos) << msg;
}

TEST_F(SchemaTest, RefusesFieldReorder) {
  const auto reg = compile_text("a.fbs", kTableT);
  const auto cand = compile_text("b.fbs", "namespace t; table T { b: string; a: uint; c: double = 1.5; } root_type T;");
  error_message(ErrorCode::IncompatibleSchema, [&] { flowbus::check_compatible_evolution(reg, cand); });
}

TEST_F(SchemaTest, RefusesRemovingAMiddleField) {
  const auto reg = compile_text("a.fbs", kTableT);
  const auto cand = compile_text("b.fbs", "namespace t; table T { a: uint; c: double = 1.5; } root_type T;");
  error_message(ErrorCode::IncompatibleSchema, [&] { flowbus::check_compatible_evolution(reg, cand); });
}

TEST_F(SchemaTest, RefusesRemovingTheLastField) {  // ConformTo alone accepts this
  const auto reg = compile_text("a.fbs", kTableT);
  const auto cand = compile_text("b.fbs", "namespace t; table T { a: uint; b: string; } root_type T;");
  const std::string msg = error_message(ErrorCode::IncompatibleSchema,
                                        [&] { flowbus::check_compatible_evolution(reg, cand); });
  EXPECT_NE(msg.find("t.T.c"), std::string::npos) << msg;
  EXPECT_NE(msg.find("deprecated"), std::string::npos) << msg;
}

TEST_F(SchemaTest, AcceptsDeprecatingAField) {
  const auto reg = compile_text("a.fbs", kTableT);
  const auto cand = compile_text("b.fbs", "namespace t; table T { a: uint; b: string (deprecated); c: double = 1.5; } root_type T;");
  EXPECT_NO_THROW(flowbus::check_compatible_evolution(reg, cand));
}

TEST_F(SchemaTest, RefusesDefaultValueChange) {
  const auto reg = compile_text("a.fbs", kTableT);
  const auto cand = compile_text("b.fbs", "namespace t; table T { a: uint; b: string; c: double = 2.5; } root_type T;");
  error_message(ErrorCode::IncompatibleSchema, [&] { flowbus::check_compatible_evolution(reg, cand); });
}

TEST_F(SchemaTest, RefusesIntegerWidening) {
  const auto reg = compile_text("a.fbs", kTableT);
  const auto cand = compile_text("b.fbs", "namespace t; table T { a: ulong; b: string; c: double = 1.5; } root_type T;");
  error_message(ErrorCode::IncompatibleSchema, [&] { flowbus::check_compatible_evolution(reg, cand); });
}

TEST_F(SchemaTest, RefusesStructLayoutChange) {  // ConformTo alone accepts this
  const auto reg = compile_text("a.fbs", "namespace t; struct P { x: int; } table T { p: P; } root_type T;");
  const auto cand = compile_text("b.fbs", "namespace t; struct P { x: int; y: int; } table T { p: P; } root_type T;");
  const std::string msg = error_message(ErrorCode::IncompatibleSchema,
                                        [&] { flowbus::check_compatible_evolution(reg, cand); });
  EXPECT_NE(msg.find("t.P"), std::string::npos) << msg;
}

TEST_F(SchemaTest, RefusesRootTypeChange) {  // ConformTo alone accepts this
  const auto reg = compile_text("a.fbs", kTableT);
  const auto cand = compile_text("b.fbs", "namespace t; table U { a: string; } root_type U;");
  const std::string msg = error_message(ErrorCode::IncompatibleSchema,
                                        [&] { flowbus::check_compatible_evolution(reg, cand); });
  EXPECT_NE(msg.find("root_type"), std::string::npos) << msg;
}

TEST_F(SchemaTest, RefusesEnumValueChange) {
  const auto reg = compile_text("a.fbs", "namespace t; enum C: byte { A, B } table T { c: C; } root_type T;");
  const auto cand = compile_text("b.fbs", "namespace t; enum C: byte { A, X, B } table T { c: C; } root_type T;");
  error_message(ErrorCode::IncompatibleSchema, [&] { flowbus::check_compatible_evolution(reg, cand); });
}

// ------------------------------------------------------------ codec

TEST_F(SchemaTest, RoundTripsSensorReadingThroughJson) {
  const SchemaCodec codec(flowbus::compile_schema_file(example("sensor.fbs")), "examples.SensorReading");
  const auto fb = codec.json_to_flatbuffer(
      R"({"line": "L7", "sensor": "oven-3", "celsius": 212.5, "seq": 18446744073709551615})");
  ASSERT_TRUE(codec.verify(fb.data(), fb.size()));
  const std::string json = codec.flatbuffer_to_json(fb.data(), fb.size());
  EXPECT_NE(json.find(R"("line": "L7")"), std::string::npos) << json;
  EXPECT_NE(json.find(R"("sensor": "oven-3")"), std::string::npos) << json;
  EXPECT_NE(json.find(R"("celsius": 212.5)"), std::string::npos) << json;
  EXPECT_NE(json.find(R"("seq": 18446744073709551615)"), std::string::npos) << json;
  // The output parses back to the same bytes.
  EXPECT_EQ(codec.json_to_flatbuffer(json), fb);
}

TEST_F(SchemaTest, WritesSingleLineStrictJsonWithDefaults) {
  const SchemaCodec codec(flowbus::compile_schema_file(example("order.fbs")), "examples.Order");
  const auto fb = codec.json_to_flatbuffer("{ id: 7, sku: \"caf\xC3\xA9\" }");  // unquoted names accepted
  const std::string json = codec.flatbuffer_to_json(fb.data(), fb.size());
  EXPECT_EQ(json.find('\n'), std::string::npos) << json;
  EXPECT_EQ(json.front(), '{');
  EXPECT_EQ(json.back(), '}');
  EXPECT_NE(json.find(R"("id": 7)"), std::string::npos) << json;
  EXPECT_NE(json.find("\"sku\": \"caf\xC3\xA9\""), std::string::npos) << json;
  EXPECT_NE(json.find(R"("quantity": 0)"), std::string::npos) << json;  // defaults are written
  EXPECT_EQ(json.find("customer"), std::string::npos) << json;          // absent strings are not
}

TEST_F(SchemaTest, UsesTheSchemaRootTypeWhenNoTypeIsGiven) {
  const SchemaCodec codec(flowbus::compile_schema_file(example("order.fbs")), "");
  EXPECT_EQ(codec.root_type(), "examples.Order");
}

TEST_F(SchemaTest, CodecRefusesTypeThatIsNotATable) {
  const auto sensor = flowbus::compile_schema_file(example("sensor.fbs"));
  const std::string msg = error_message(ErrorCode::InvalidArgument,
                                        [&] { SchemaCodec(sensor, "examples.Nope"); });
  EXPECT_NE(msg.find("examples.Nope"), std::string::npos) << msg;
  EXPECT_NE(msg.find("examples.SensorReading"), std::string::npos) << msg;  // lists what exists

  const auto with_struct = compile_text("s.fbs", "namespace n; struct P { x: int; } table A { p: P; } root_type A;");
  error_message(ErrorCode::InvalidArgument, [&] { SchemaCodec(with_struct, "n.P"); });
  const auto no_root = compile_text("noroot.fbs", "namespace n; table A { x: int; }");
  error_message(ErrorCode::InvalidArgument, [&] { SchemaCodec(no_root, ""); });
}

TEST_F(SchemaTest, RejectsUnknownFieldNamingIt) {
  const SchemaCodec codec(flowbus::compile_schema_file(example("sensor.fbs")), "examples.SensorReading");
  const std::string msg = error_message(ErrorCode::BadPayload, [&] {
    codec.json_to_flatbuffer(R"({"line": "L7", "colour": "red"})");
  });
  EXPECT_NE(msg.find("colour"), std::string::npos) << msg;
  EXPECT_NE(msg.find("examples.SensorReading"), std::string::npos) << msg;
}

TEST_F(SchemaTest, RejectsWrongValueType) {
  const SchemaCodec codec(flowbus::compile_schema_file(example("sensor.fbs")), "examples.SensorReading");
  error_message(ErrorCode::BadPayload, [&] { codec.json_to_flatbuffer(R"({"celsius": "hot"})"); });
  error_message(ErrorCode::BadPayload, [&] { codec.json_to_flatbuffer(R"({"line": 42})"); });
  error_message(ErrorCode::BadPayload, [&] { codec.json_to_flatbuffer(R"({"seq": -1})"); });
}

TEST_F(SchemaTest, RejectsMalformedJson) {
  const SchemaCodec codec(flowbus::compile_schema_file(example("sensor.fbs")), "examples.SensorReading");
  for (const char* bad : {"", "[]", "{", R"({"line": "a"} {"line": "b"})", "not json"}) {
    error_message(ErrorCode::BadPayload, [&] { codec.json_to_flatbuffer(bad); });
  }
  const std::string with_nul("{\"line\": \"a\"}\0junk", 18);
  error_message(ErrorCode::BadPayload, [&] { codec.json_to_flatbuffer(with_nul); });
}

TEST_F(SchemaTest, KeepsWorkingAfterRejectingPayloads) {
  const SchemaCodec codec(flowbus::compile_schema_file(example("sensor.fbs")), "examples.SensorReading");
  for (int i = 0; i < 3; ++i) {
    EXPECT_THROW(codec.json_to_flatbuffer(R"({"line": {"nested": [1, 2}})"), flowbus::Error);
    const auto fb = codec.json_to_flatbuffer(R"({"seq": 5})");
    EXPECT_NE(codec.flatbuffer_to_json(fb.data(), fb.size()).find(R"("seq": 5)"), std::string::npos);
  }
}

TEST_F(SchemaTest, RefusesGarbageBytes) {
  const SchemaCodec codec(flowbus::compile_schema_file(example("sensor.fbs")), "examples.SensorReading");
  const std::vector<uint8_t> garbage{0xff, 0xff, 0xff, 0x7f, 0xde, 0xad, 0xbe, 0xef,
                                     0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08};
  EXPECT_FALSE(codec.verify(garbage.data(), garbage.size()));
  EXPECT_FALSE(codec.verify(nullptr, 0));
  EXPECT_FALSE(codec.verify(garbage.data(), 3));
  const std::string msg = error_message(ErrorCode::BadPayload, [&] {
    codec.flatbuffer_to_json(garbage.data(), garbage.size());
  });
  EXPECT_NE(msg.find("examples.SensorReading"), std::string::npos) << msg;
  error_message(ErrorCode::BadPayload, [&] { codec.flatbuffer_to_json(nullptr, 0); });
}

TEST_F(SchemaTest, RefusesTruncatedAndRandomBuffers) {
  const SchemaCodec codec(flowbus::compile_schema_file(example("sensor.fbs")), "examples.SensorReading");
  const auto fb = codec.json_to_flatbuffer(R"({"line": "L7", "sensor": "oven-3", "celsius": 1.0, "seq": 9})");
  for (size_t n = 0; n < fb.size(); ++n) {
    std::vector<uint8_t> cut(fb.begin(), fb.begin() + static_cast<std::ptrdiff_t>(n));
    // Cutting only trailing zero padding leaves a valid buffer; cutting data must not.
    const bool cuts_data = std::any_of(fb.begin() + static_cast<std::ptrdiff_t>(n), fb.end(),
                                       [](uint8_t b) { return b != 0; });
    if (cuts_data) {
      EXPECT_FALSE(codec.verify(cut.data(), cut.size())) << "truncated to " << n;
    }
  }
  std::mt19937 rng(42);
  for (int round = 0; round < 2000; ++round) {
    std::vector<uint8_t> bytes(fb);
    bytes[rng() % bytes.size()] = static_cast<uint8_t>(rng());
    if (codec.verify(bytes.data(), bytes.size())) {
      try {  // must not crash; a mutated string may be invalid UTF-8
        (void)codec.flatbuffer_to_json(bytes.data(), bytes.size());
      } catch (const flowbus::Error& e) {
        EXPECT_EQ(e.code(), ErrorCode::BadPayload);
      }
    } else {
      EXPECT_THROW(codec.flatbuffer_to_json(bytes.data(), bytes.size()), flowbus::Error);
    }
  }
}

TEST_F(SchemaTest, CodecCanBeMoved) {
  SchemaCodec a(flowbus::compile_schema_file(example("order.fbs")), "examples.Order");
  SchemaCodec b(std::move(a));
  const auto fb = b.json_to_flatbuffer(R"({"id": 1})");
  EXPECT_TRUE(b.verify(fb.data(), fb.size()));
}
