// Fuzz target: arbitrary bytes as a binary schema (.bfbs), through every
// check a topic's schema goes through (Bus::create_topic: schema_has_table,
// schema_id, check_compatible_evolution against the registered schema) and
// the SchemaCodec that `flowbus pub` / `sub --json` build from it, including
// verifying a payload with it. Each must succeed or throw flowbus::Error.
#include <cstdint>
#include <string>
#include <vector>

#include "flowbus/error.hpp"
#include "flowbus/schema.hpp"

using namespace flowbus;

namespace {

const std::vector<uint8_t>& order_schema() {
  static const std::vector<uint8_t> bfbs = compile_schema_file(FLOWBUS_SOURCE_DIR "/schemas/examples/order.fbs");
  return bfbs;
}

// A valid examples.Order payload, to verify against the fuzzed schema.
const std::vector<uint8_t>& order_payload() {
  static const std::vector<uint8_t> buf =
      SchemaCodec(order_schema(), "").json_to_flatbuffer(R"({id: 1, customer: "acme", sku: "A-1", quantity: 2})");
  return buf;
}

template <class F>
void may_throw(F&& f) {
  try {
    f();
  } catch (const Error&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::vector<uint8_t> bfbs(data, data + size);
  (void)schema_id(bfbs);
  std::string root;
  may_throw([&] { root = schema_root_type(bfbs); });
  may_throw([&] { (void)schema_has_table(bfbs, "examples.Order"); });
  if (!root.empty()) may_throw([&] { (void)schema_has_table(bfbs, root); });
  may_throw([&] { check_compatible_evolution(order_schema(), bfbs); });
  may_throw([&] { check_compatible_evolution(bfbs, order_schema()); });
  may_throw([&] { check_compatible_evolution(bfbs, bfbs); });
  for (const char* type : {"", "examples.Order"}) {
    may_throw([&] {
      SchemaCodec codec(bfbs, type);
      const std::vector<uint8_t>& payload = order_payload();
      if (codec.verify(payload.data(), payload.size())) (void)codec.flatbuffer_to_json(payload.data(), payload.size());
    });
  }
  return 0;
}
