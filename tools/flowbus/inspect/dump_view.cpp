// `flowbus inspect BUS TOPIC --dump N`: events decoded through the topic's
// registered binary schema (no compile-time knowledge of the type), read
// through RingTaps, so no cursor is claimed and no writer waits for us.
#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <memory>
#include <thread>

#include "../cli_util.hpp"
#include "flowbus/detail/layout.hpp"
#include "flowbus/error.hpp"
#include "views.hpp"

namespace flowbus::cli {

namespace {

volatile std::sig_atomic_t g_stop = 0;
void on_stop(int) { g_stop = 1; }

struct Source {
  std::string ring;  // topic@publisher
  RingTap tap;
  std::unique_ptr<SchemaCodec> codec;
  bool broken = false;
};

std::string flag_names(uint32_t flags) {
  std::string out;
  if (flags & detail::kFlagPadding) out += "padding ";
  if (flags & detail::kFlagHasSubject) out += "subject ";
  if (flags & detail::kFlagGap) out += "gap ";
  if (flags & ~detail::kKnownFlags) out += "unknown ";
  if (out.empty()) return "-";
  out.pop_back();
  return out;
}

/// Header fields, then the record's bytes, 16 a line with their ASCII.
std::string raw_text(const TapRecord& r, uint64_t capacity) {
  char line[200];
  std::snprintf(line, sizeof line,
                "record @%llu (offset %llu)  commit 0x%llx  length %zu  size %u  data_offset %u  flags %s  seq %llu  time %s\n",
                static_cast<unsigned long long>(r.position), static_cast<unsigned long long>(r.position & (capacity - 1)),
                static_cast<unsigned long long>(r.commit), r.bytes.size(), r.size, r.data_offset, flag_names(r.flags).c_str(),
                static_cast<unsigned long long>(r.sequence), r.padding ? "-" : format_rfc3339(r.time_ns).c_str());
  std::string out = line;
  const size_t shown = r.padding ? std::min<size_t>(r.bytes.size(), 32) : r.bytes.size();  // padding: its header only
  for (size_t off = 0; off < shown; off += 16) {
    int n = std::snprintf(line, sizeof line, "  %06zx ", off);
    for (size_t i = off; i < off + 16; ++i)
      n += i < shown ? std::snprintf(line + n, sizeof line - size_t(n), " %02x", r.bytes[i])
                     : std::snprintf(line + n, sizeof line - size_t(n), "   ");
    n += std::snprintf(line + n, sizeof line - size_t(n), "  ");
    for (size_t i = off; i < off + 16 && i < shown; ++i)
      line[n++] = r.bytes[i] >= 0x20 && r.bytes[i] < 0x7f ? char(r.bytes[i]) : '.';
    line[n] = '\0';
    out += line;
    out += "\n";
  }
  if (shown < r.bytes.size()) out += "  (" + std::to_string(r.bytes.size() - shown) + " bytes of padding not shown)\n";
  return out;
}

std::string hex_string(const std::vector<uint8_t>& bytes) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (uint8_t b : bytes) {
    out += digits[b >> 4];
    out += digits[b & 15];
  }
  return out;
}

void print_record(const Source& src, const TapRecord& r, const DumpOptions& o) {
  if (o.raw && !o.json) {
    std::fputs(raw_text(r, src.tap.capacity()).c_str(), stdout);
    return;
  }
  if (r.padding) {
    if (o.json)
      std::printf("{\"flowbusring\":\"%s\",\"padding\":{\"position\":%llu,\"length\":%zu}}\n", json_escape(src.ring).c_str(),
                  static_cast<unsigned long long>(r.position), r.bytes.size());
    return;
  }
  const Event e = r.event();
  std::string line = event_line(e, src.codec.get(), o.json, o.raw_data);
  if (o.json && o.raw) {
    line.pop_back();  // the closing brace: add the record itself
    line += ",\"flowbusrecord\":{\"position\":" + std::to_string(r.position) + ",\"commit\":" + std::to_string(r.commit) +
            ",\"data_offset\":" + std::to_string(r.data_offset) + ",\"flags\":\"" + flag_names(r.flags) +
            "\",\"hex\":\"" + hex_string(r.bytes) + "\"}}";
  }
  std::printf("%s\n", line.c_str());
}

void report(Source& src, RingTap::Status status, const DumpOptions& o) {
  if (status == RingTap::Status::Lost)
    std::fprintf(stderr, "flowbus inspect: %llu events of %s were overwritten before the dump could read them\n",
                 static_cast<unsigned long long>(src.tap.take_missed()), src.ring.c_str());
  if (status == RingTap::Status::Corrupt && !src.broken) {
    src.broken = true;
    std::fprintf(stderr, "flowbus inspect: ring %s is damaged here; `flowbus inspect %s --check` tells where\n", src.ring.c_str(),
                 o.bus.c_str());
  }
}

/// Opens a tap on every ring of the topic we do not read yet. `appeared`:
/// rings that came while following, read from their first event (what was
/// overwritten before we saw them is reported, not skipped).
void open_new_rings(const DumpOptions& o, std::vector<Source>& sources, bool appeared) {
  const BusSnapshot snap = inspect_bus(o.bus);
  bool topic_known = false;
  for (const auto& t : snap.topics) topic_known |= t.info.name == o.topic;
  if (!topic_known)
    throw Error(ErrorCode::NotFound, "bus '" + o.bus + "' has no topic '" + o.topic + "'; `flowbus inspect " + o.bus + "` lists them");
  for (const auto& ring : snap.rings) {
    if (ring.topic != o.topic) continue;
    const std::string name = ring.topic + "@" + ring.publisher;
    if (std::any_of(sources.begin(), sources.end(), [&](const Source& s) { return s.ring == name; })) continue;
    Source src{name, RingTap(o.bus, ring.topic, ring.publisher), nullptr};
    try {
      src.codec = std::make_unique<SchemaCodec>(src.tap.topic().schema, src.tap.topic().type);
    } catch (const Error& e) {
      std::fprintf(stderr, "flowbus inspect: cannot decode %s: %s\n", name.c_str(), e.what());
    }
    if (appeared) src.tap.start_from_first();
    sources.push_back(std::move(src));
  }
}

}  // namespace

int run_dump(const DumpOptions& o) {
  std::signal(SIGINT, on_stop);
  std::signal(SIGTERM, on_stop);
  std::vector<Source> sources;
  open_new_rings(o, sources, /*appeared=*/false);
  // The first N: up to N from each ring, merged by time, then the oldest N
  // (--from earliest) or the newest N (--from latest).
  struct Found {
    size_t source;
    TapRecord record;
  };
  std::vector<Found> found;
  for (size_t i = 0; i < sources.size(); ++i) {
    Source& src = sources[i];
    if (o.from_earliest) src.tap.start_earliest();
    else src.tap.start_latest(o.count);
    uint64_t taken = 0;
    while (taken < o.count) {
      TapRecord r;
      const RingTap::Status st = src.tap.next(r, o.raw);
      if (st == RingTap::Status::Ok) {
        taken += !r.padding;
        found.push_back({i, std::move(r)});
      } else if (st == RingTap::Status::Lost) {
        report(src, st, o);
      } else {
        report(src, st, o);
        break;
      }
    }
  }
  std::stable_sort(found.begin(), found.end(), [](const Found& a, const Found& b) {
    return a.record.padding || b.record.padding ? false : a.record.time_ns < b.record.time_ns;
  });
  uint64_t events = 0;
  for (const auto& f : found) events += !f.record.padding;
  uint64_t skip = o.from_earliest || events <= o.count ? 0 : events - o.count, printed = 0;
  for (const auto& f : found) {
    if (!f.record.padding && skip > 0) {
      --skip;
      continue;
    }
    if (!f.record.padding && printed == o.count && !o.follow) continue;  // following: each ring goes on from here
    printed += !f.record.padding;
    print_record(sources[f.source], f.record, o);
  }
  std::fflush(stdout);
  if (o.follow) {
    // Each tap goes on from the record after the last it read: nothing is missed.
    auto last_look = std::chrono::steady_clock::now();
    while (!g_stop) {
      bool any = false;
      for (auto& src : sources) {
        if (src.broken) continue;
        TapRecord r;
        const RingTap::Status st = src.tap.next(r, o.raw);
        if (st == RingTap::Status::Ok) {
          print_record(src, r, o);
          any = true;
        } else if (st != RingTap::Status::Empty) {
          report(src, st, o);
        }
      }
      if (any) {
        std::fflush(stdout);
        continue;
      }
      if (std::chrono::steady_clock::now() - last_look > std::chrono::seconds(1)) {
        open_new_rings(o, sources, /*appeared=*/true);  // a publisher that started since
        last_look = std::chrono::steady_clock::now();
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  for (const auto& src : sources)
    if (src.broken) return 1;
  return 0;
}

}  // namespace flowbus::cli
