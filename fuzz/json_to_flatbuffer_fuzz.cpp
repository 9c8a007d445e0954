// Fuzz target: arbitrary text to SchemaCodec::json_to_flatbuffer for the
// example schemas (sensor, order). What it accepts must verify and render
// back to JSON (flatbuffer_to_json), and that JSON must parse again to the
// same JSON: `flowbus pub` input and `flowbus sub --json` output agree.
// The codecs live across inputs, as in `flowbus pub --file`.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "flowbus/error.hpp"
#include "flowbus/schema.hpp"

using namespace flowbus;

namespace {

[[noreturn]] void fail(const std::string& what, std::string_view input) {
  std::fprintf(stderr, "json_to_flatbuffer_fuzz: %s\ninput: %.*s\n", what.c_str(), int(input.size()), input.data());
  std::abort();
}

void round_trip(const SchemaCodec& codec, std::string_view json) {
  std::vector<uint8_t> fb;
  try {
    fb = codec.json_to_flatbuffer(json);
  } catch (const Error&) {
    return;  // refused: fine
  }
  if (!codec.verify(fb.data(), fb.size())) fail(codec.root_type() + ": accepted JSON gives a buffer that does not verify", json);
  std::string text;
  try {
    text = codec.flatbuffer_to_json(fb.data(), fb.size());
  } catch (const Error& e) {
    fail(codec.root_type() + ": accepted JSON does not render back: " + e.what(), json);
  }
  std::string again;
  try {
    const std::vector<uint8_t> fb2 = codec.json_to_flatbuffer(text);
    again = codec.flatbuffer_to_json(fb2.data(), fb2.size());
  } catch (const Error& e) {
    fail(codec.root_type() + ": rendered JSON does not parse again: " + e.what() + "\nrendered: " + text, json);
  }
  if (again != text) fail(codec.root_type() + ": round trip changed\n  " + text + "\nto\n  " + again, json);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const SchemaCodec sensor(compile_schema_file(FLOWBUS_SOURCE_DIR "/schemas/examples/sensor.fbs"), "");
  static const SchemaCodec order(compile_schema_file(FLOWBUS_SOURCE_DIR "/schemas/examples/order.fbs"), "");
  const std::string_view json(reinterpret_cast<const char*>(data), size);
  round_trip(sensor, json);
  round_trip(order, json);
  return 0;
}
