#include "cli_util.hpp"

#include <grp.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <utility>
#include <vector>

#include "flowbus/error.hpp"
#include "flowbus/topic.hpp"

namespace flowbus::cli {

uint64_t parse_size(const std::string& text, const std::string& option) {
  const std::string units = "sizes are bytes (4096) or take a unit: KiB, MiB, GiB or TiB (e.g. 64KiB, 4MiB)";
  size_t used = 0;
  double value = 0;
  try {
    value = std::stod(text, &used);
  } catch (...) {
    throw CLI::ValidationError(option, "'" + text + "' is not a size; " + units);
  }
  const std::string unit = text.substr(used);
  double scale = 1;
  if (unit == "" || unit == "B") scale = 1;
  else if (unit == "KiB" || unit == "K" || unit == "k") scale = 1024.0;
  else if (unit == "MiB" || unit == "M") scale = 1024.0 * 1024;
  else if (unit == "GiB" || unit == "G") scale = 1024.0 * 1024 * 1024;
  else if (unit == "TiB" || unit == "T") scale = 1024.0 * 1024 * 1024 * 1024;
  else throw CLI::ValidationError(option, "unknown unit '" + unit + "' in '" + text + "'; " + units);
  if (!std::isfinite(value) || value < 0) throw CLI::ValidationError(option, "'" + text + "' is not a size; " + units);
  if (value * scale > 0x1p62) throw CLI::ValidationError(option, "'" + text + "' is far too large; " + units);
  return uint64_t(std::llround(value * scale));
}

uint32_t parse_mode(const std::string& text) {
  try {
    size_t used = 0;
    const unsigned long mode = std::stoul(text, &used, 8);
    if (used == text.size() && mode <= 0777) return uint32_t(mode);
  } catch (...) {
  }
  throw CLI::ValidationError("mode", "'" + text + "' is not an octal mode like 0600 or 0640");
}

std::chrono::nanoseconds parse_seconds(const std::string& text, const std::string& option) {
  if (text == "inf" || text == "never") return kNever;
  const auto refuse = [&](const std::string& why) {
    throw CLI::ValidationError(option, "'" + text + "' " + why +
                                           "; give seconds (0.5, 30), a number with a unit (5s, 200ms, 50us) or never");
  };
  size_t used = 0;
  double value = 0;
  try {
    value = std::stod(text, &used);
  } catch (...) {
    refuse("is not a duration");
  }
  const std::string unit = text.substr(used);
  double ns_per_unit = 1e9;
  if (unit == "ms") ns_per_unit = 1e6;
  else if (unit == "us") ns_per_unit = 1e3;
  else if (unit != "" && unit != "s") refuse("has an unknown unit '" + unit + "' (s, ms and us exist)");
  if (!std::isfinite(value) || value < 0) refuse("is not a duration of 0 or more");
  const double ns = value * ns_per_unit;
  if (ns >= 9e18) refuse("is too long (at most 9000000000s)");
  return std::chrono::nanoseconds(std::llround(ns));
}

std::string format_duration(std::chrono::nanoseconds d) {
  if (d == kNever || d >= std::chrono::seconds(9223372036)) return "never";  // also a retention of never, in seconds
  static constexpr std::pair<int64_t, const char*> kUnits[] = {
      {1'000'000'000, "s"}, {1'000'000, "ms"}, {1'000, "us"}, {1, "ns"}};
  for (const auto& [unit, name] : kUnits)
    if (d.count() % unit == 0) return std::to_string(d.count() / unit) + name;
  return std::to_string(double(d.count()) / 1e9) + "s";
}

CLI::Validator whole_number(uint64_t min, uint64_t max) {
  const std::string range = "a whole number from " + std::to_string(min) + " to " + std::to_string(max);
  return CLI::Validator(
      [min, max, range](std::string& text) -> std::string {
        const bool digits = !text.empty() && text.size() <= 20 && text.find_first_not_of("0123456789") == std::string::npos;
        errno = 0;
        const unsigned long long value = digits ? std::strtoull(text.c_str(), nullptr, 10) : 0;
        if (!digits || errno == ERANGE || value < min || value > max) return "'" + text + "' is not " + range;
        return {};
      },
      range);
}

int64_t parse_group(const std::string& text, const std::string& option) {
  if (text.empty()) return -1;
  if (text.find_first_not_of("0123456789") == std::string::npos) {
    errno = 0;
    const unsigned long long gid = text.size() <= 10 ? std::strtoull(text.c_str(), nullptr, 10) : ~0ull;
    if (errno == ERANGE || gid >= 0xffffffffull)
      throw CLI::ValidationError(option, "'" + text + "' is not a gid; give a group name or a gid from 0 to 4294967294");
    return int64_t(gid);
  }
  std::vector<char> buffer(16384);
  struct group entry {};
  struct group* found = nullptr;
  if (getgrnam_r(text.c_str(), &entry, buffer.data(), buffer.size(), &found) != 0 || found == nullptr)
    throw CLI::ValidationError(option, "no group named '" + text + "' on this host; create it (groupadd " + text +
                                           ") or give a numeric gid");
  return int64_t(found->gr_gid);
}

double parse_bounded_seconds(const std::string& text, const std::string& option, double min, double max) {
  char range[96];
  std::snprintf(range, sizeof range, "from %g to %g seconds", min, max);
  const auto refuse = [&] {
    throw CLI::ValidationError(option, "'" + text + "' is out of range: give " + range + " (e.g. 0.5 or 200ms)");
  };
  std::chrono::nanoseconds d{};
  try {
    d = parse_seconds(text, option);
  } catch (const CLI::ValidationError&) {
    refuse();  // not a duration at all (nan, -1): the same message, with the range
  }
  const double s = std::chrono::duration<double>(d).count();
  if (d == std::chrono::nanoseconds::max() || !(s >= min && s <= max)) refuse();
  return s;
}

std::chrono::seconds parse_retention(const std::string& text, const std::string& option) {
  const auto d = parse_seconds(text, option);
  if (d == std::chrono::nanoseconds::max()) return std::chrono::duration_cast<std::chrono::seconds>(d);
  if (d < std::chrono::seconds(1) || d % std::chrono::seconds(1) != std::chrono::nanoseconds(0))
    throw CLI::ValidationError(option, "'" + text + "' is not whole seconds: retention is kept in seconds, 1 or more "
                                                    "(e.g. 90, 10min as 600s, 1h as 3600), or never");
  return std::chrono::duration_cast<std::chrono::seconds>(d);
}

std::vector<size_t> parse_payload_sizes(const std::string& text, const std::string& option, uint64_t max) {
  std::vector<size_t> sizes;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t comma = std::min(text.find(',', start), text.size());
    const std::string item = text.substr(start, comma - start);
    start = comma + 1;
    if (item.empty()) continue;
    const uint64_t bytes = parse_size(item, option);
    if (bytes < 64 || bytes > max)
      throw CLI::ValidationError(option, "'" + item + "' is out of range: a payload is from 64 bytes (one cache line) to " +
                                             format_bytes(max));
    sizes.push_back(size_t(bytes));
  }
  if (sizes.empty()) throw CLI::ValidationError(option, "give at least one size, e.g. 64,4096");
  return sizes;
}

double parse_rate(const std::string& text, const std::string& option) {
  size_t used = 0;
  double rate = 0;
  try {
    rate = std::stod(text, &used);
  } catch (...) {
  }
  if (used != text.size() || !std::isfinite(rate) || rate < 1e-6 || rate > 1e9)
    throw CLI::ValidationError(option, "'" + text + "' is not a rate; give events per second from 0.000001 to 1000000000 "
                                       "(e.g. 100 or 0.5), or leave " + option + " out for no limit");
  return rate;
}

std::string json_escape(std::string_view text) {
  std::string out;
  out.reserve(text.size() + 2);
  for (char c : text) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += c;
        }
    }
  }
  return out;
}

std::string json_string_array(const std::vector<std::string>& items) {
  std::string out = "[";
  for (size_t i = 0; i < items.size(); ++i) out += (i ? ",\"" : "\"") + json_escape(items[i]) + "\"";
  return out + "]";
}

std::string cloudevent_members(const Event& e, std::string_view datacontenttype) {
  std::string out = "\"specversion\":\"1.0\",\"id\":\"" + e.id() + "\",\"source\":\"" + json_escape(e.source()) +
                    "\",\"type\":\"" + json_escape(e.type()) + "\",\"time\":\"" + e.time() +
                    "\",\"datacontenttype\":\"" +
                    (datacontenttype.empty() ? e.datacontenttype() : std::string(datacontenttype)) +
                    "\",\"dataschema\":\"" + json_escape(e.dataschema()) + "\"";
  if (!e.subject().empty()) out += ",\"subject\":\"" + json_escape(e.subject()) + "\"";
  out += ",\"flowbustopic\":\"" + json_escape(e.topic()) + "\",\"flowbusseq\":" + std::to_string(e.sequence());
  // Mirrored (sidecar) and replayed events: the node they came through ("replay" for `flowbus replay`).
  if (e.context().mirrored()) out += ",\"flowbusorigin\":\"" + json_escape(e.context().origin_node) + "\"";
  return out;
}

std::string payload_json(const SchemaCodec* codec, const Event& event) {
  if (codec == nullptr) return "null";
  try {
    return codec->flatbuffer_to_json(event.data(), event.size());
  } catch (const Error& e) {
    return "{\"error\":\"" + json_escape(e.what()) + "\"}";
  }
}

std::string base64(const uint8_t* data, size_t size) {
  static const char* abc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((size + 2) / 3 * 4);
  for (size_t i = 0; i < size; i += 3) {
    const uint32_t n =
        uint32_t(data[i]) << 16 | (i + 1 < size ? uint32_t(data[i + 1]) << 8 : 0) | (i + 2 < size ? data[i + 2] : 0);
    out += abc[n >> 18 & 63];
    out += abc[n >> 12 & 63];
    out += i + 1 < size ? abc[n >> 6 & 63] : '=';
    out += i + 2 < size ? abc[n & 63] : '=';
  }
  return out;
}

std::string event_line(const Event& event, const std::string& data_json, bool json) {
  if (json) return "{" + cloudevent_members(event) + ",\"data\":" + data_json + "}";
  return event.time() + " " + event.topic() + " " + event.id() + " " + data_json;
}

std::string event_line(const Event& event, const SchemaCodec* codec, bool json, bool raw_data) {
  if (!json) return event_line(event, payload_json(codec, event), false);
  // The CloudEvents JSON format: decoded data is JSON (application/json);
  // the FlatBuffer itself goes base64 under data_base64, with its own type.
  std::string decode_error;
  if (!raw_data && codec != nullptr) {
    try {
      return "{" + cloudevent_members(event, "application/json") +
             ",\"data\":" + codec->flatbuffer_to_json(event.data(), event.size()) + "}";
    } catch (const Error& e) {
      decode_error = e.what();
    }
  }
  return "{" + cloudevent_members(event) +
         (decode_error.empty() ? "" : ",\"flowbusdecodeerror\":\"" + json_escape(decode_error) + "\"") +
         ",\"data_base64\":\"" + base64(event.data(), event.size()) + "\"}";
}

std::string format_bytes(uint64_t b) {
  char buf[32];
  if (b >= (1ull << 30)) std::snprintf(buf, sizeof buf, "%.1fGiB", double(b) / double(1ull << 30));
  else if (b >= (1u << 20)) std::snprintf(buf, sizeof buf, "%.1fMiB", double(b) / double(1u << 20));
  else if (b >= 1024) std::snprintf(buf, sizeof buf, "%.1fKiB", double(b) / 1024.0);
  else std::snprintf(buf, sizeof buf, "%lluB", static_cast<unsigned long long>(b));
  return buf;
}

}  // namespace flowbus::cli
