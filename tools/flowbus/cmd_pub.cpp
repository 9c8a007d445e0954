// flowbus pub: JSON in, the topic's FlatBuffer out, through its registered schema.
#include <cstdio>
#include <fstream>
#include <thread>

#include "cli_util.hpp"
#include "flowbus/bus.hpp"
#include "flowbus/detail/layout.hpp"
#include "flowbus/error.hpp"
#include "flowbus/schema.hpp"

namespace flowbus::cli {

namespace {

/// One event to publish, as JSON, and where it came from for messages.
struct Document {
  std::string json;
  std::string origin;  // "--json" or "line 5 of events.jsonl"
};

std::vector<Document> read_documents(const std::string& json, const std::string& file) {
  if (!json.empty()) return {{json, "--json"}};
  std::ifstream in(file);
  if (!in) {
    std::fprintf(stderr, "flowbus pub: cannot read '%s'\n", file.c_str());
    throw ExitCode{2};
  }
  std::vector<Document> documents;
  size_t line_number = 0;
  for (std::string line; std::getline(in, line);) {
    ++line_number;  // blank lines count too: the number is the one an editor shows
    if (line.find_first_not_of(" \t\r") != std::string::npos)
      documents.push_back({line, "line " + std::to_string(line_number) + " of " + file});
  }
  if (documents.empty()) {
    std::fprintf(stderr, "flowbus pub: '%s' holds no event; give one JSON object per line\n", file.c_str());
    throw ExitCode{2};
  }
  return documents;
}

}  // namespace

void add_pub_command(CLI::App& app) {
  struct Args {
    std::string bus, topic, json, file, name = "cli", subject, rate, timeout = "5";
    uint64_t count = 1;
    bool quiet = false;
  };
  auto args = std::make_shared<Args>();
  CLI::App* pub = app.add_subcommand("pub", "Publish events given as JSON (converted through the topic's schema)");
  pub->add_option("bus", args->bus, "bus name")->required();
  pub->add_option("topic", args->topic, "topic name")->required();
  pub->add_option("--json", args->json, "one event as JSON, e.g. '{\"id\":1,\"sku\":\"A-1\"}'");
  pub->add_option("--file", args->file, "a file of events, one JSON object per line");
  pub->add_option("--count", args->count, "publish the event(s) this many times, 1 or more (default 1)")
      ->check(whole_number(1, UINT64_MAX));
  pub->add_option("--rate", args->rate, "events per second, above 0 (e.g. 100 or 0.5; default: as fast as the readers allow)");
  pub->add_option("--name", args->name, "publisher name: appears in each event's source; a restart continues its sequence");
  pub->add_option("--subject", args->subject,
                  "CloudEvents subject of every event, at most " + std::to_string(detail::kMaxSubject) + " bytes");
  pub->add_option("--timeout", args->timeout, "how long to wait for room when the ring is full: seconds, or with a unit (200ms), or never (default 5s)");
  pub->add_flag("-q,--quiet", args->quiet, "print no summary");
  pub->callback([args] {
    if (args->json.empty() == args->file.empty()) {
      std::fprintf(stderr, "flowbus pub: give the event with --json '{...}' or a file of JSON lines with --file F\n");
      throw ExitCode{2};
    }
    if (args->subject.size() > detail::kMaxSubject)
      throw CLI::ValidationError("--subject", std::to_string(args->subject.size()) + " bytes long, over the subject limit (at most " +
                                                  std::to_string(detail::kMaxSubject) + " bytes); shorten it");
    const double rate = args->rate.empty() ? 0 : parse_rate(args->rate, "--rate");
    const auto timeout = parse_seconds(args->timeout, "--timeout");
    const std::vector<Document> documents = read_documents(args->json, args->file);
    Bus bus = Bus::open_existing(args->bus);
    const auto topic = bus.find_topic(args->topic);
    if (!topic)
      throw Error(ErrorCode::NotFound, "topic '" + args->topic + "' does not exist on bus '" + args->bus +
                                           "'; list topics with `flowbus topic ls " + args->bus + "`");
    SchemaCodec codec(topic->schema, topic->type);
    std::vector<std::vector<uint8_t>> events;
    for (const Document& d : documents) {
      try {
        events.push_back(codec.json_to_flatbuffer(d.json));
      } catch (const Error& e) {
        std::fprintf(stderr, "flowbus pub: %s: %s\n", d.origin.c_str(), e.what());
        throw ExitCode{1};
      }
    }
    Publisher publisher = bus.publisher(args->topic, PublisherOptions{args->name, {}});
    const auto start = std::chrono::steady_clock::now();
    const uint64_t first = publisher.next_sequence();
    uint64_t sent = 0;
    for (uint64_t round = 0; round < args->count; ++round) {
      for (const auto& event : events) {
        if (rate > 0) std::this_thread::sleep_until(start + std::chrono::nanoseconds(int64_t(double(sent) * 1e9 / rate)));
        const PublishStatus s = publisher.publish(event, timeout, args->subject);
        if (s != PublishStatus::Ok) {
          std::fprintf(stderr, "flowbus pub: %s after %llu events: %s\n", to_string(s), static_cast<unsigned long long>(sent),
                       s == PublishStatus::Full ? "a subscriber holds the ring full; raise --timeout or look with `flowbus inspect`"
                                                : "the event is larger than 7/16 of the ring (the largest record it takes); create the topic with a larger --ring-size");
          throw ExitCode{1};
        }
        ++sent;
      }
    }
    if (!args->quiet)
      std::fprintf(stderr, "published %llu event(s) to %s as %s (sequence %llu..%llu)\n", static_cast<unsigned long long>(sent),
                   args->topic.c_str(), publisher.source().c_str(), static_cast<unsigned long long>(first),
                   static_cast<unsigned long long>(publisher.next_sequence() - 1));
  });
}

}  // namespace flowbus::cli
