// CloudEvents <-> NATS headers (binary mode). See ce_headers.hpp.
#include "ce_headers.hpp"

#include <ctime>
#include <stdexcept>

namespace flowbus::bridge {

std::vector<std::pair<std::string, std::string>> to_headers(const CeAttributes& ce) {
  std::vector<std::pair<std::string, std::string>> h;
  h.reserve(12);
  const auto put = [&](const char* key, const std::string& value) {
    if (!value.empty()) h.emplace_back(key, value);
  };
  put("ce-specversion", ce.specversion);
  put("ce-id", ce.id);
  put("ce-source", ce.source);
  put("ce-type", ce.type);
  put("ce-time", ce.time);
  put("ce-subject", ce.subject);
  put("ce-dataschema", ce.dataschema);
  put("ce-flowbustopic", ce.flowbustopic);
  put("ce-flowbusseq", ce.flowbusseq);
  put("ce-flowbusorigin", ce.flowbusorigin);
  put("content-type", ce.datacontenttype);
  return h;
}

CeAttributes from_headers(const std::function<std::optional<std::string>(std::string_view)>& get) {
  CeAttributes ce;
  const auto required = [&](std::string_view key) {
    std::optional<std::string> v = get(key);
    if (!v || v->empty())
      throw std::invalid_argument("header '" + std::string(key) +
                                  "' is missing: not a CloudEvent in the NATS binding's binary mode "
                                  "(ce-specversion, ce-id, ce-source and ce-type are required)");
    return *v;
  };
  const auto optional = [&](std::string_view key) { return get(key).value_or(std::string()); };
  ce.specversion = required("ce-specversion");
  if (ce.specversion != "1.0")
    throw std::invalid_argument("ce-specversion '" + ce.specversion + "' is not supported (only 1.0)");
  ce.id = required("ce-id");
  ce.source = required("ce-source");
  ce.type = required("ce-type");
  ce.time = optional("ce-time");
  ce.subject = optional("ce-subject");
  ce.dataschema = optional("ce-dataschema");
  ce.flowbustopic = optional("ce-flowbustopic");
  ce.flowbusseq = optional("ce-flowbusseq");
  ce.flowbusorigin = optional("ce-flowbusorigin");
  std::optional<std::string> ct = get("content-type");
  if (!ct) ct = get("Content-Type");
  ce.datacontenttype = ct.value_or(std::string());
  return ce;
}

std::optional<std::pair<uint64_t, uint64_t>> parse_flowbus_id(std::string_view id) {
  if (id.size() < 18 || id[16] != '-') return std::nullopt;
  uint64_t pid = 0, seq = 0;
  for (size_t i = 0; i < 16; ++i) {
    const char c = id[i];
    const int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (d < 0) return std::nullopt;
    pid = pid << 4 | uint64_t(d);
  }
  if (id.size() - 17 > 20) return std::nullopt;
  for (size_t i = 17; i < id.size(); ++i) {
    if (id[i] < '0' || id[i] > '9') return std::nullopt;
    const uint64_t next = seq * 10 + uint64_t(id[i] - '0');
    if (next / 10 != seq) return std::nullopt;  // overflow
    seq = next;
  }
  return std::make_pair(pid, seq);
}

namespace {

bool digits(std::string_view s, size_t at, size_t n, int& out) {
  if (at + n > s.size()) return false;
  out = 0;
  for (size_t i = at; i < at + n; ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    out = out * 10 + (s[i] - '0');
  }
  return true;
}

}  // namespace

std::optional<uint64_t> parse_rfc3339_ns(std::string_view s) {
  int year, mon, day, hour, min, sec;
  if (!digits(s, 0, 4, year) || s.size() < 20 || s[4] != '-' || !digits(s, 5, 2, mon) || s[7] != '-' ||
      !digits(s, 8, 2, day) || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') || !digits(s, 11, 2, hour) ||
      s[13] != ':' || !digits(s, 14, 2, min) || s[16] != ':' || !digits(s, 17, 2, sec))
    return std::nullopt;
  if (mon < 1 || mon > 12 || day < 1 || day > 31 || hour > 23 || min > 59 || sec > 60 || year < 1970)
    return std::nullopt;
  size_t at = 19;
  uint64_t frac = 0;
  if (at < s.size() && s[at] == '.') {
    ++at;
    size_t n = 0;
    while (at < s.size() && s[at] >= '0' && s[at] <= '9') {
      if (n < 9) frac = frac * 10 + uint64_t(s[at] - '0');
      ++n, ++at;
    }
    if (n == 0) return std::nullopt;
    for (; n < 9; ++n) frac *= 10;
  }
  int64_t offset_s = 0;
  if (at < s.size() && (s[at] == 'Z' || s[at] == 'z')) {
    ++at;
  } else if (at < s.size() && (s[at] == '+' || s[at] == '-')) {
    int oh, om;
    if (!digits(s, at + 1, 2, oh) || at + 3 >= s.size() || s[at + 3] != ':' || !digits(s, at + 4, 2, om))
      return std::nullopt;
    offset_s = (s[at] == '+' ? 1 : -1) * int64_t(oh * 3600 + om * 60);
    at += 6;
  } else {
    return std::nullopt;
  }
  if (at != s.size()) return std::nullopt;
  std::tm tm{};
  tm.tm_year = year - 1900;
  tm.tm_mon = mon - 1;
  tm.tm_mday = day;
  tm.tm_hour = hour;
  tm.tm_min = min;
  tm.tm_sec = sec;
  const int64_t secs = int64_t(timegm(&tm)) - offset_s;
  if (secs < 0) return std::nullopt;
  return uint64_t(secs) * 1000000000ull + frac;
}

std::optional<std::string> flowbus_schema_id(std::string_view dataschema) {
  constexpr std::string_view kPrefix = "flowbus:schema/";
  if (dataschema.substr(0, kPrefix.size()) != kPrefix) return std::nullopt;
  std::string id(dataschema.substr(kPrefix.size()));
  if (id.rfind("fnv1a64:", 0) != 0 || id.size() != 8 + 16) return std::nullopt;
  if (id.find_first_not_of("0123456789abcdef", 8) != std::string::npos) return std::nullopt;
  return id;
}

std::string subject_of(std::string_view prefix, std::string_view topic) {
  return std::string(prefix) + "." + std::string(topic);
}

std::optional<std::string> topic_of(std::string_view prefix, std::string_view subject) {
  if (subject.size() <= prefix.size() + 1 || subject.substr(0, prefix.size()) != prefix ||
      subject[prefix.size()] != '.')
    return std::nullopt;
  std::string_view topic = subject.substr(prefix.size() + 1);
  if (topic.substr(0, kSchemaSubjectToken.size()) == kSchemaSubjectToken) return std::nullopt;
  return std::string(topic);
}

std::string schema_subject(std::string_view prefix, std::string_view schema_id) {
  const size_t colon = schema_id.find(':');
  return std::string(prefix) + "." + std::string(kSchemaSubjectToken) + "." +
         std::string(colon == std::string_view::npos ? schema_id : schema_id.substr(colon + 1));
}

uint64_t foreign_publisher_id(std::string_view source) {
  uint64_t h = 14695981039346656037ull;
  for (char c : source) {
    h ^= uint8_t(c);
    h *= 1099511628211ull;
  }
  return h;
}

}  // namespace flowbus::bridge
