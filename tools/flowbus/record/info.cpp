// flowbus record info: topics, schemas, rings, counts, time range and losses
// of a recording, from its summary (or, for a file cut short, from a scan of
// what is whole); --verify also checks every CRC.
#include "info.hpp"

#include <cstdio>
#include <map>

#include "../cli_util.hpp"
#include "conventions.hpp"
#include "flowbus/mcap/reader.hpp"

namespace flowbus::cli {

namespace {

struct RingRow {
  mcap::Channel channel;
  uint64_t events = 0;
};

std::string schema_id_of(const mcap::Channel& c) {
  const std::string ds = mcap::find_value(c.metadata, "dataschema");
  const std::string prefix = "flowbus:schema/";
  return ds.rfind(prefix, 0) == 0 ? ds.substr(prefix.size()) : ds;
}

}  // namespace

void add_record_info_command(CLI::App& record) {
  struct Args {
    std::string file;
    bool json = false, verify = false;
  };
  auto args = std::make_shared<Args>();
  CLI::App* info =
      record.add_subcommand("info", "Describe a recording: topics, schemas, rings, counts, time range, losses");
  info->add_option("file", args->file, "the MCAP file")->required();
  info->add_flag("--json", args->json, "print one JSON object");
  info->add_flag("--verify", args->verify, "also read every chunk and check its CRC and the data section's");
  info->callback([args] {
    std::unique_ptr<mcap::Reader> reader;
    std::optional<mcap::Summary> summary;
    try {
      reader = std::make_unique<mcap::Reader>(args->file);
      summary = reader->summary();
    } catch (const mcap::McapError& e) {
      std::fprintf(stderr, "flowbus record info: %s\n", e.what());
      throw ExitCode{1};
    }
    std::vector<mcap::Schema> schemas;
    std::map<uint16_t, RingRow> channels;
    std::map<std::string, std::string> totals;  // from flowbus.recording, else the last flowbus.losses
    uint64_t events = 0, chunks = 0, start = 0, end = 0;
    std::string compression, incomplete;
    auto take_metadata = [&](const mcap::Metadata& m) {
      if (m.name == record::kRecordingRecord || m.name == record::kLossesRecord)
        for (const auto& [k, v] : m.metadata) totals[k] = v;
    };
    bool scanned = false;
    auto scan = [&](bool recover) {
      channels.clear();
      schemas.clear();
      events = 0;
      start = end = 0;
      mcap::ScanHandlers h;
      h.on_schema = [&](const mcap::Schema& s) { schemas.push_back(s); };
      h.on_channel = [&](const mcap::Channel& c) { channels[c.id].channel = c; };
      h.on_message = [&](const mcap::Message& m) {
        ++channels[m.channel_id].events;
        if (events == 0 || m.log_time < start) start = m.log_time;
        if (events == 0 || m.log_time > end) end = m.log_time;
        ++events;
      };
      h.on_metadata = take_metadata;
      const mcap::ScanResult r = reader->scan(h, recover);
      chunks = r.chunks;
      scanned = true;
      if (!r.complete) incomplete = r.stopped_because;
    };
    try {
      if (summary && !args->verify) {
        schemas = summary->schemas;
        for (const auto& c : summary->channels) channels[c.id].channel = c;
        if (summary->statistics) {
          events = summary->statistics->message_count;
          start = summary->statistics->message_start_time;
          end = summary->statistics->message_end_time;
          chunks = summary->statistics->chunk_count;
          for (const auto& [id, n] : summary->statistics->channel_message_counts) channels[id].events = n;
        }
        for (const auto& mi : summary->metadata_indexes) take_metadata(reader->metadata(mi));
      } else {
        scan(/*recover=*/!summary.has_value());
      }
      if (summary && !summary->chunk_indexes.empty()) compression = summary->chunk_indexes.front().compression;
    } catch (const mcap::McapError& e) {
      std::fprintf(stderr, "flowbus record info: %s\n", e.what());
      throw ExitCode{1};
    }
    if (compression.empty()) compression = totals.count("compression") ? totals["compression"] : "";
    // Topics: event channels grouped by topic.
    struct TopicRow {
      std::string type, schema_id;
      uint64_t events = 0, rings = 0;
    };
    std::map<std::string, TopicRow> topics;
    for (const auto& [id, row] : channels) {
      if (!record::recorded_ring(row.channel)) continue;
      TopicRow& t = topics[row.channel.topic];
      t.type = mcap::find_value(row.channel.metadata, "type");
      t.schema_id = schema_id_of(row.channel);
      t.events += row.events;
      ++t.rings;
    }
    uint64_t recorded_events = 0;
    for (const auto& [name, t] : topics) recorded_events += t.events;
    auto total = [&](const char* key) { return totals.count(key) ? totals[key] : std::string("0"); };
    const std::string lost = total("lost");
    const bool complete = incomplete.empty();
    if (args->json) {
      std::string out = "{\"file\":\"" + json_escape(args->file) + "\",\"bytes\":" + std::to_string(reader->size()) +
                        ",\"complete\":" + (complete ? "true" : "false");
      if (!complete) out += ",\"incomplete\":\"" + json_escape(incomplete) + "\"";
      out += ",\"verified\":" + std::string(scanned && complete ? "true" : "false");
      out += ",\"library\":\"" + json_escape(reader->library()) + "\",\"compression\":\"" + json_escape(compression) +
             "\"";
      out += ",\"events\":" + std::to_string(recorded_events) + ",\"messages\":" + std::to_string(events) +
             ",\"chunks\":" + std::to_string(chunks);
      out += ",\"start_ns\":" + std::to_string(start) + ",\"end_ns\":" + std::to_string(end);
      out += ",\"start\":\"" + (events ? format_rfc3339(start) : "") + "\",\"end\":\"" +
             (events ? format_rfc3339(end) : "") + "\"";
      out +=
          ",\"lost\":" + lost + ",\"evictions\":" + total("evictions") + ",\"corrupt_rings\":" + total("corrupt_rings");
      out += ",\"stop_reason\":\"" + json_escape(totals.count("stop_reason") ? totals["stop_reason"] : "") + "\"";
      out += ",\"schemas\":[";
      for (size_t i = 0; i < schemas.size(); ++i)
        out += std::string(i ? "," : "") + "{\"id\":" + std::to_string(schemas[i].id) + ",\"name\":\"" +
               json_escape(schemas[i].name) + "\",\"encoding\":\"" + json_escape(schemas[i].encoding) +
               "\",\"bytes\":" + std::to_string(schemas[i].data.size()) + "}";
      out += "],\"topics\":[";
      bool first = true;
      for (const auto& [name, t] : topics) {
        out += std::string(first ? "" : ",") + "{\"topic\":\"" + json_escape(name) + "\",\"type\":\"" +
               json_escape(t.type) + "\",\"schema_id\":\"" + json_escape(t.schema_id) +
               "\",\"rings\":" + std::to_string(t.rings) + ",\"events\":" + std::to_string(t.events) + "}";
        first = false;
      }
      out += "],\"channels\":[";
      first = true;
      for (const auto& [id, row] : channels) {
        const auto& md = row.channel.metadata;
        out += std::string(first ? "" : ",") + "{\"id\":" + std::to_string(id) + ",\"topic\":\"" +
               json_escape(row.channel.topic) + "\",\"message_encoding\":\"" +
               json_escape(row.channel.message_encoding) + "\",\"schema_id\":" + std::to_string(row.channel.schema_id) +
               ",\"events\":" + std::to_string(row.events) + ",\"publisher\":\"" +
               json_escape(mcap::find_value(md, "flowbus.publisher")) + "\",\"source\":\"" +
               json_escape(mcap::find_value(md, "source")) + "\",\"gaps\":" +
               (totals.count("gaps." + row.channel.topic + "@" + mcap::find_value(md, "flowbus.publisher"))
                    ? totals["gaps." + row.channel.topic + "@" + mcap::find_value(md, "flowbus.publisher")]
                    : std::string("0")) +
               "}";
        first = false;
      }
      out += "]}";
      std::printf("%s\n", out.c_str());
    } else {
      std::printf("%s: %s, %s%s, written by %s\n", args->file.c_str(), format_bytes(reader->size()).c_str(),
                  complete ? "complete" : "INCOMPLETE", scanned && complete ? " (every CRC checked)" : "",
                  reader->library().c_str());
      if (!complete)
        std::printf(
            "  the recorder did not finish (%s);\n  %llu events in %llu whole chunk(s) are recoverable: "
            "`flowbus replay --recover` replays them\n",
            incomplete.c_str(), static_cast<unsigned long long>(recorded_events),
            static_cast<unsigned long long>(chunks));
      // Subjects are messages of their own channels (recorder.cpp): say so only when there are some.
      const uint64_t subject_messages = events > recorded_events ? events - recorded_events : 0;
      const std::string subjects = subject_messages == 0
                                       ? ""
                                       : " (and " + std::to_string(subject_messages) +
                                             (subject_messages == 1 ? " subject message)" : " subject messages)");
      std::printf("events: %llu%s in %llu chunk(s), compression %s\n", static_cast<unsigned long long>(recorded_events),
                  subjects.c_str(), static_cast<unsigned long long>(chunks),
                  compression.empty() ? "none" : compression.c_str());
      if (events)
        std::printf("time: %s .. %s (%.3fs)\n", format_rfc3339(start).c_str(), format_rfc3339(end).c_str(),
                    double(end - start) / 1e9);
      std::printf("lost: %s (evictions %s, corrupt rings %s)%s\n", lost.c_str(), total("evictions").c_str(),
                  total("corrupt_rings").c_str(),
                  totals.count("stop_reason") ? (", stopped: " + totals["stop_reason"]).c_str() : "");
      std::printf("topics:\n");
      for (const auto& [name, t] : topics)
        std::printf("  %-28s %-26s %s  %llu ring(s)  %llu events\n", name.c_str(), t.type.c_str(), t.schema_id.c_str(),
                    static_cast<unsigned long long>(t.rings), static_cast<unsigned long long>(t.events));
      std::printf("schemas:\n");
      for (const auto& s : schemas)
        std::printf("  %u %-26s encoding %s, %zu bytes\n", unsigned(s.id), s.name.c_str(), s.encoding.c_str(),
                    s.data.size());
      std::printf("channels:\n");
      for (const auto& [id, row] : channels) {
        const std::string publisher = mcap::find_value(row.channel.metadata, "flowbus.publisher");
        const std::string gaps_key = "gaps." + row.channel.topic + "@" + publisher;
        std::printf("  %u %-28s %llu events  %s%s\n", unsigned(id), row.channel.topic.c_str(),
                    static_cast<unsigned long long>(row.events),
                    publisher.empty() ? row.channel.message_encoding.c_str()
                                      : mcap::find_value(row.channel.metadata, "source").c_str(),
                    totals.count(gaps_key) ? ("  gaps " + totals[gaps_key]).c_str() : "");
      }
    }
  });
}

}  // namespace flowbus::cli
