#include "flowbus/names.hpp"

#include <string>

#include "flowbus/error.hpp"

namespace flowbus {

namespace {

bool token_char(char c, bool upper_ok) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' || (upper_ok && c >= 'A' && c <= 'Z');
}

[[noreturn]] void bad(const char* what, std::string_view name, const char* rule) {
  throw Error(ErrorCode::InvalidName, std::string("invalid ") + what + " '" + std::string(name) + "': " + rule);
}

void validate_dotted(const char* what, std::string_view name, bool wildcards) {
  const char* rule = wildcards
      ? "use tokens of letters, digits, '_' or '-' joined by '.', where a token may be '*' and the last may be '>' (e.g. sensor.*.line1, orders.>)"
      : "use tokens of letters, digits, '_' or '-' joined by '.', at most 96 characters (e.g. orders.created)";
  if (name.empty() || name.size() > 96) bad(what, name, rule);
  size_t start = 0;
  while (start <= name.size()) {
    size_t end = name.find('.', start);
    if (end == std::string_view::npos) end = name.size();
    const std::string_view token = name.substr(start, end - start);
    if (token.empty()) bad(what, name, rule);
    const bool last = end == name.size();
    if (wildcards && (token == "*" || (token == ">" && last))) {
      // fine
    } else {
      for (char c : token)
        if (!token_char(c, true)) bad(what, name, rule);
    }
    start = end + 1;
  }
}

}  // namespace

void validate_bus_name(std::string_view name) {
  if (name.empty() || name.size() > 32) bad("bus name", name, "use 1 to 32 of a-z, 0-9, '_' and '-' (e.g. plant)");
  for (char c : name)
    if (!token_char(c, false)) bad("bus name", name, "use 1 to 32 of a-z, 0-9, '_' and '-' (e.g. plant)");
}

void validate_publisher_name(std::string_view name) {
  if (name.empty() || name.size() > 32) bad("publisher name", name, "use 1 to 32 of letters, digits, '_' and '-' (e.g. line1-reader)");
  for (char c : name)
    if (!token_char(c, true)) bad("publisher name", name, "use 1 to 32 of letters, digits, '_' and '-' (e.g. line1-reader)");
}

void validate_topic_name(std::string_view name) { validate_dotted("topic name", name, false); }
void validate_pattern(std::string_view pattern) { validate_dotted("pattern", pattern, true); }

bool pattern_matches(std::string_view pattern, std::string_view topic) noexcept {
  size_t p = 0, t = 0;
  for (;;) {
    const size_t pe = std::min(pattern.find('.', p), pattern.size());
    const std::string_view ptok = pattern.substr(p, pe - p);
    if (ptok == ">") return t < topic.size();  // the rest, at least one token
    if (t > topic.size()) return false;
    const size_t te = std::min(topic.find('.', t), topic.size());
    if (t == topic.size() && !topic.empty() && te == t) return false;
    const std::string_view ttok = topic.substr(t, te - t);
    if (ttok.empty()) return false;
    if (ptok != "*" && ptok != ttok) return false;
    const bool pend = pe == pattern.size(), tend = te == topic.size();
    if (pend || tend) return pend && tend;
    p = pe + 1;
    t = te + 1;
  }
}

}  // namespace flowbus
