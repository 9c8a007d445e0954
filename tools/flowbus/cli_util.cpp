#include "cli_util.hpp"

#include <cmath>
#include <cstdio>

#include "flowbus/error.hpp"

namespace flowbus::cli {

uint64_t parse_size(const std::string& text) {
  size_t used = 0;
  double value = 0;
  try {
    value = std::stod(text, &used);
  } catch (...) {
    throw CLI::ValidationError("size", "'" + text + "' is not a size; write e.g. 4MiB, 64KiB or 4096");
  }
  const std::string unit = text.substr(used);
  double scale = 1;
  if (unit == "" || unit == "B") scale = 1;
  else if (unit == "KiB" || unit == "K" || unit == "k") scale = 1024.0;
  else if (unit == "MiB" || unit == "M") scale = 1024.0 * 1024;
  else if (unit == "GiB" || unit == "G") scale = 1024.0 * 1024 * 1024;
  else throw CLI::ValidationError("size", "unknown unit '" + unit + "' in '" + text + "'; use B, KiB, MiB or GiB");
  if (value < 0) throw CLI::ValidationError("size", "'" + text + "' is negative");
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

std::chrono::nanoseconds parse_seconds(const std::string& text) {
  if (text == "inf" || text == "never") return std::chrono::nanoseconds::max();
  try {
    size_t used = 0;
    const double s = std::stod(text, &used);
    if (used == text.size() && s >= 0) return std::chrono::nanoseconds(int64_t(s * 1e9));
  } catch (...) {
  }
  throw CLI::ValidationError("seconds", "'" + text + "' is not a number of seconds (e.g. 0.5, 30, inf)");
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

std::string cloudevent_members(const Event& e) {
  std::string out = "\"specversion\":\"1.0\",\"id\":\"" + e.id() + "\",\"source\":\"" + json_escape(e.source()) +
                    "\",\"type\":\"" + json_escape(e.type()) + "\",\"time\":\"" + e.time() +
                    "\",\"datacontenttype\":\"" + e.datacontenttype() + "\",\"dataschema\":\"" +
                    json_escape(e.dataschema()) + "\"";
  if (!e.subject().empty()) out += ",\"subject\":\"" + json_escape(e.subject()) + "\"";
  out += ",\"flowbustopic\":\"" + json_escape(e.topic()) + "\",\"flowbusseq\":" + std::to_string(e.sequence());
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

std::string event_line(const Event& event, const std::string& data_json, bool json) {
  if (json) return "{" + cloudevent_members(event) + ",\"data\":" + data_json + "}";
  return event.time() + " " + event.topic() + " " + event.id() + " " + data_json;
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
