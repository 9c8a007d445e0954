// flowbus sub: events as JSON lines, CloudEvents context at top level, payload under "data".
#include <algorithm>
#include <csignal>
#include <cstdio>
#include <map>

#include "cli_util.hpp"
#include "flowbus/bus.hpp"
#include "flowbus/error.hpp"
#include "flowbus/names.hpp"
#include "flowbus/schema.hpp"

namespace flowbus::cli {

namespace {
volatile std::sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }

bool any_topic_matches(const Bus& bus, const std::string& pattern) {
  for (const TopicInfo& t : bus.topics())
    if (pattern_matches(pattern, t.name)) return true;
  return false;
}

std::string no_match_message(const std::string& bus, const std::string& pattern) {
  return "flowbus sub: no topic on bus '" + bus + "' matches '" + pattern + "'; see its topics with `flowbus topic ls " + bus +
         "` ('*' matches one token, '>' the rest)";
}
}  // namespace

void add_sub_command(CLI::App& app) {
  struct Args {
    std::string bus, pattern, from = "latest", timeout;
    uint64_t count = 0;
    bool json = false, raw_data = false;
  };
  auto args = std::make_shared<Args>();
  CLI::App* sub = app.add_subcommand(
      "sub", "Print the events of every topic matching a pattern; exit 1 if any were lost, a ring was corrupt, or no topic "
             "matched and nothing came");
  sub->add_option("bus", args->bus, "bus name")->required();
  sub->add_option("pattern", args->pattern, "topic or pattern: '*' matches one token, '>' the rest (orders.>)")->required();
  sub->add_option("--from", args->from, "latest (default) or earliest retained event")->check(CLI::IsMember({"latest", "earliest"}));
  sub->add_option("--count", args->count, "stop after this many events, 1 or more (default: no limit)")
      ->check(whole_number(1, UINT64_MAX));
  sub->add_option("--timeout", args->timeout, "stop after this long without a new event: seconds, or with a unit (200ms); exit 1 if --count was not reached");
  sub->add_flag("--json", args->json,
                "one CloudEvent per line in the CloudEvents JSON format: the payload decoded under \"data\" "
                "(datacontenttype application/json; the schema in dataschema)");
  sub->add_flag("--raw-data", args->raw_data,
                "with --json: the FlatBuffer itself, base64 under \"data_base64\" "
                "(datacontenttype application/x-flatbuffers)");
  sub->callback([args] {
    std::signal(SIGINT, on_signal);
    std::signal(SIGTERM, on_signal);
    const auto idle_limit = args->timeout.empty() ? kNever : parse_seconds(args->timeout, "--timeout");
    Bus bus = Bus::open_existing(args->bus);
    SubscriberOptions options;
    options.from = args->from == "earliest" ? StartAt::Earliest : StartAt::Latest;
    Subscriber subscriber = bus.subscribe(args->pattern, options);
    // A topic created later still joins the subscription: say so, and wait.
    if (!any_topic_matches(bus, args->pattern))
      std::fprintf(stderr, "%s; waiting for one to be created\n", no_match_message(args->bus, args->pattern).c_str());
    std::map<std::string, std::unique_ptr<SchemaCodec>> codecs;  // by topic
    auto codec_for = [&](const std::string& topic) -> SchemaCodec* {
      auto& slot = codecs[topic];
      if (!slot) {
        if (auto info = bus.find_topic(topic)) slot = std::make_unique<SchemaCodec>(info->schema, info->type);
      }
      return slot.get();
    };
    // Matching rings it cannot read (not readable by this process): said
    // whenever that list changes, never silently.
    std::vector<std::string> told_unread;
    auto tell_unread = [&] {
      std::vector<std::string> now;
      for (const UnreadRing& u : subscriber.unread_rings()) now.push_back("ring " + u.ring + ": " + u.reason);
      if (now == told_unread) return;
      for (const std::string& line : now)
        if (std::find(told_unread.begin(), told_unread.end(), line) == told_unread.end())
          std::fprintf(stderr, "flowbus sub: not reading %s\n", line.c_str());
      for (const std::string& line : told_unread) {
        if (std::find(now.begin(), now.end(), line) != now.end()) continue;
        const std::string ring = line.substr(5, line.find(':') - 5);
        bool attached = false;
        for (uint32_t i = 0; i < subscriber.ring_count(); ++i) {
          const RingContext& c = subscriber.ring_context(i);
          attached |= c.topic + "@" + c.publisher_name == ring;
        }
        std::fprintf(stderr, "flowbus sub: ring %s %s\n", ring.c_str(), attached ? "is read now" : "is gone");
      }
      told_unread = std::move(now);
    };
    tell_unread();
    uint64_t received = 0;
    uint64_t skipped = 0;  // events reported missed (Evicted, Lost)
    uint64_t corrupt = 0;  // rings reported corrupt
    auto last_event = std::chrono::steady_clock::now();
    while (!g_stop && (args->count == 0 || received < args->count)) {
      Event event;
      const ReadResult r = subscriber.read(event);
      if (r.status == ReadStatus::Ok) {
        std::printf("%s\n", event_line(event, codec_for(event.topic()), args->json, args->raw_data).c_str());
        std::fflush(stdout);
        if (subscriber.release(event) == ReadStatus::Evicted)
          std::fprintf(stderr, "flowbus sub: evicted while reading the event above; it may be damaged\n");
        ++received;
        last_event = std::chrono::steady_clock::now();
        continue;
      }
      if (r.status == ReadStatus::Evicted || r.status == ReadStatus::Lost) skipped += r.missed;
      if (r.status == ReadStatus::Corrupt) ++corrupt;
      if (r.status == ReadStatus::Evicted)
        std::fprintf(stderr, "flowbus sub: evicted as a slow consumer: %llu events missed\n", static_cast<unsigned long long>(r.missed));
      else if (r.status == ReadStatus::Lost)
        std::fprintf(stderr, "flowbus sub: lapped by the writer: %llu events lost\n", static_cast<unsigned long long>(r.missed));
      else if (r.status == ReadStatus::Corrupt)
        std::fprintf(stderr, "flowbus sub: ring %s is corrupt and no longer read; check it with `flowbus inspect %s --check`\n",
                     std::string(r.ring).c_str(), args->bus.c_str());
      else if (r.status == ReadStatus::Rejected)
        std::fprintf(
            stderr,
            "flowbus sub: ring %s: %llu event(s) failed verification against the topic's schema and were skipped\n",
            std::string(r.ring).c_str(), static_cast<unsigned long long>(r.missed));
      if (r.status != ReadStatus::Empty) continue;
      tell_unread();
      const auto idle = std::chrono::steady_clock::now() - last_event;
      if (idle_limit != kNever && idle >= idle_limit) break;
      const auto slice = std::chrono::milliseconds(200);
      subscriber.wait(idle_limit == kNever ? std::chrono::nanoseconds(slice)
                                           : std::min<std::chrono::nanoseconds>(slice, idle_limit - idle));
    }
    if (received == 0 && !any_topic_matches(bus, args->pattern)) {
      std::fprintf(stderr, "%s; nothing received, exiting with 1\n", no_match_message(args->bus, args->pattern).c_str());
      throw ExitCode{1};
    }
    if (args->count != 0 && received < args->count && !g_stop) {
      std::fprintf(stderr, "flowbus sub: got %llu of %llu events before %s passed without one\n",
                   static_cast<unsigned long long>(received), static_cast<unsigned long long>(args->count),
                   format_duration(idle_limit).c_str());
      throw ExitCode{1};
    }
    if (skipped != 0 || corrupt != 0) {
      std::fprintf(stderr, "flowbus sub: %llu event(s) missed and %llu ring(s) corrupt (see above); exiting with 1\n",
                   static_cast<unsigned long long>(skipped), static_cast<unsigned long long>(corrupt));
      throw ExitCode{1};
    }
  });
}

}  // namespace flowbus::cli
