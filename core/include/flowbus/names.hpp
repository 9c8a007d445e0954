// Naming rules for buses, topics, publishers and patterns, and pattern matching.
#pragma once

#include <string_view>

namespace flowbus {

/// Bus: 1-32 of [a-z0-9_-]. Publisher: 1-32 of [A-Za-z0-9_-].
/// Topic: tokens of [A-Za-z0-9_-] joined by '.', at most 96 characters.
/// Pattern: a topic whose tokens may be '*' (one token) or a final '>' (the rest).
/// Each validate_* throws Error(InvalidName) with the rule in its message.
void validate_bus_name(std::string_view name);
void validate_topic_name(std::string_view name);
void validate_publisher_name(std::string_view name);
void validate_pattern(std::string_view pattern);

/// NATS subject semantics: "sensor.*.line1" and "orders.>" match as NATS does.
bool pattern_matches(std::string_view pattern, std::string_view topic) noexcept;

}  // namespace flowbus
