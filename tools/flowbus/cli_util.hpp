// Small helpers shared by the flowbus subcommands.
#pragma once

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "flowbus/event.hpp"
#include "flowbus/schema.hpp"

namespace flowbus::cli {

/// Thrown by a subcommand to end with `code` (its message already printed).
struct ExitCode {
  int code;
};

/// "4MiB", "64KiB", "1GiB", "1TiB", "4096" -> bytes. Throws CLI::ValidationError
/// naming `option` and the units there are.
uint64_t parse_size(const std::string& text, const std::string& option = "size");
/// "0640" -> 0640 (octal).
uint32_t parse_mode(const std::string& text);
/// A duration: seconds ("0.5", "30"), or with a unit ("5s", "200ms", "50us"),
/// or "never"/"inf" -> nanoseconds (kNever). Throws CLI::ValidationError naming `option`.
std::chrono::nanoseconds parse_seconds(const std::string& text, const std::string& option = "seconds");
/// A duration as parse_seconds reads it back: "5s", "200ms", "never".
std::string format_duration(std::chrono::nanoseconds duration);
/// A CLI11 check: a whole number from `min` to `max` (no sign, no fraction, no overflow).
CLI::Validator whole_number(uint64_t min, uint64_t max);
/// Events per second: a number above 0, at most 1e9. Throws CLI::ValidationError naming `option`.
double parse_rate(const std::string& text, const std::string& option);
/// A group by name (looked up on this host) or numeric gid; empty: -1, the creator's.
int64_t parse_group(const std::string& text, const std::string& option);
/// A seconds value (as parse_seconds) that must lie in [min, max]: not never, not nan.
double parse_bounded_seconds(const std::string& text, const std::string& option, double min, double max);
/// A topic's retention: whole seconds, at least one (the ring stores
/// seconds), or never (kept until `gc --force`).
std::chrono::seconds parse_retention(const std::string& text, const std::string& option);
/// Payload sizes, comma separated: each from 64 bytes (one cache line) to `max`.
std::vector<size_t> parse_payload_sizes(const std::string& text, const std::string& option, uint64_t max);
std::string json_escape(std::string_view text);
/// ["a","b"] with each string escaped.
std::string json_string_array(const std::vector<std::string>& items);
/// The CloudEvents context of `event` as JSON members ("id":..., "source":...), no braces.
std::string cloudevent_members(const Event& event, std::string_view datacontenttype = {});
/// The payload of `event` as JSON through `codec` ("null" without one, {"error":...} if it does not decode).
std::string payload_json(const SchemaCodec* codec, const Event& event);
/// One event as `flowbus sub` prints it: a JSON line (CloudEvents attributes, payload under
/// "data") or a human line (time, topic, id, payload). No newline.
std::string event_line(const Event& event, const std::string& data_json, bool json);
/// One event as a CloudEvents JSON line (json), its payload decoded under
/// "data" with datacontenttype application/json, or with `raw_data` (or when
/// it does not decode) the FlatBuffer under "data_base64" with
/// application/x-flatbuffers; the human line otherwise.
std::string event_line(const Event& event, const SchemaCodec* codec, bool json, bool raw_data);
/// RFC 4648 base64.
std::string base64(const uint8_t* data, size_t size);
/// "4.0KiB", "1.5MiB", "17B".
std::string format_bytes(uint64_t bytes);

void add_topic_commands(CLI::App& app);
void add_pub_command(CLI::App& app);
void add_sub_command(CLI::App& app);
void add_gc_command(CLI::App& app);
void add_demo_command(CLI::App& app, const char* argv0);
void add_perf_command(CLI::App& app);
void add_inspect_command(CLI::App& app);
void add_sidecar_command(CLI::App& app);
void add_record_command(CLI::App& app);  // record/cmd_record.cpp (and `record info`)
void add_replay_command(CLI::App& app);  // record/cmd_replay.cpp
void add_exporter_command(CLI::App& app);
void add_bridge_command(CLI::App& app);

}  // namespace flowbus::cli
