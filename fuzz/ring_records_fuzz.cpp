// Fuzz target: arbitrary bytes as a ring's data segment (RingHeader + records)
// and, after it, its control segment, all in ordinary memory. A RingReader
// joins and reads it under both policies, and the inspector snapshots it.
// Nothing may crash, read outside the buffers or loop without bound, and
// every Ok event must lie inside the ring.
//
// Input layout: bytes [0, 512 + capacity) are the data segment, where
// capacity is the header's own field (bytes 16..23), zero-padded; the rest
// (if any) is copied over a zeroed ControlHeader. A capacity that the real
// open (open_ring_segments) refuses, or one above 64 KiB, only goes to the
// inspector, with a data segment of 512 + capacity bytes if the input is that
// long, else of the whole input.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "directory_layout.hpp"
#include "flowbus/detail/ring.hpp"
#include "inspect_ring.hpp"

using namespace flowbus;
using namespace flowbus::detail;

namespace {

constexpr uint64_t kMaxCapacity = 64 * 1024;
constexpr int kMaxPeeks = 2048;       // per reader run
constexpr int kMaxEmptyInARow = 130;  // two damage checks (every 64th empty peek)

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "ring_records_fuzz: %s\n", what);
  std::abort();
}

// Exact-size heap copies, so that ASan sees a read one byte past the end.
std::unique_ptr<uint8_t[]> copy_padded(const uint8_t* data, size_t n, size_t size) {
  std::unique_ptr<uint8_t[]> out(new uint8_t[size]);
  std::memset(out.get(), 0, size);
  if (n != 0) std::memcpy(out.get(), data, std::min(n, size));
  return out;
}

void inspect(const uint8_t* data, uint64_t size, const ControlHeader* control) {
  RingSnapshot snap;
  if (snapshot_ring_data("fuzz", data, size, snap)) snapshot_ring_cursors(data, control, {}, snap);
}

volatile uint8_t sink;

void read_ring(const uint8_t* data, uint64_t capacity, const uint8_t* control_bytes, size_t control_n, Policy policy,
               bool earliest) {
  auto control_mem = copy_padded(control_bytes, control_n, sizeof(ControlHeader));
  auto* control = reinterpret_cast<ControlHeader*>(control_mem.get());
  static const RingContext context{"fuzz.topic", "flowbus://fuzz/fuzz/p", "examples.Order", "", "", "p", 1};
  RingReader r;
  r.header = reinterpret_cast<const RingHeader*>(data);
  r.records = data + kRecordsOffset;
  r.control = control;
  static BellHeader bell{};  // a reader writes its announcements and wake requests there
  r.bell = &bell;
  r.capacity = capacity;
  r.mask = capacity - 1;
  r.policy = policy;
  r.context = &context;
  if (!(earliest ? r.join_earliest() : r.join_latest())) return;
  const uint8_t* begin = r.records;
  const uint8_t* end = r.records + capacity;
  int empty = 0;
  uint64_t last_position = 0;
  bool first = true;
  for (int i = 0; i < kMaxPeeks && empty < kMaxEmptyInARow; ++i) {
    Event e;
    const ReadStatus s = r.peek(e);
    if (s == ReadStatus::Corrupt) break;
    if (s != ReadStatus::Ok) {
      ++empty;
      continue;
    }
    empty = 0;
    if (e.data() < begin || e.data() > end || e.size() > uint64_t(end - e.data())) fail("Ok event outside the ring");
    if (!e.subject().empty()) {
      const auto* sub = reinterpret_cast<const uint8_t*>(e.subject().data());
      if (sub < begin || sub > end || e.subject().size() > uint64_t(end - sub)) fail("subject outside the ring");
      if (sub + e.subject().size() > e.data()) fail("subject overlaps the payload");
    }
    if (!first && e.position() <= last_position && policy == Policy::Block) fail("Block reader went backwards");
    first = false;
    last_position = e.position();
    uint8_t x = 0;
    for (size_t k = 0; k < e.size(); ++k) x ^= e.data()[k];
    for (char c : e.subject()) x ^= uint8_t(c);
    sink = x;
    if (r.release(e) == ReadStatus::Corrupt) break;
  }
  r.leave();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  uint64_t capacity = 0;
  if (size >= 24) std::memcpy(&capacity, data + 16, sizeof capacity);
  const bool readable = capacity >= kMinCapacity && capacity <= kMaxCapacity && (capacity & (capacity - 1)) == 0;
  if (!readable) {
    // What the inspector does with a header the reader would never accept.
    // A segment is as long as its header says when the input allows it, so
    // that a read past 512 + capacity is a read past the buffer.
    const bool pow2 = capacity != 0 && (capacity & (capacity - 1)) == 0;
    const size_t n = pow2 && capacity <= size && kRecordsOffset + capacity <= size ? kRecordsOffset + capacity : size;
    auto raw = copy_padded(data, n, std::max<size_t>(n, 1));
    auto control = copy_padded(nullptr, 0, sizeof(ControlHeader));
    inspect(raw.get(), n, reinterpret_cast<const ControlHeader*>(control.get()));
    return 0;
  }
  const size_t data_size = kRecordsOffset + capacity;
  auto segment = copy_padded(data, size, data_size);
  const uint8_t* control_bytes = size > data_size ? data + data_size : nullptr;
  const size_t control_n = size > data_size ? size - data_size : 0;
  {
    auto control = copy_padded(control_bytes, control_n, sizeof(ControlHeader));
    inspect(segment.get(), data_size, reinterpret_cast<const ControlHeader*>(control.get()));
  }
  read_ring(segment.get(), capacity, control_bytes, control_n, Policy::Block, true);
  read_ring(segment.get(), capacity, control_bytes, control_n, Policy::Latest, true);
  read_ring(segment.get(), capacity, control_bytes, control_n, Policy::Block, false);
  return 0;
}
