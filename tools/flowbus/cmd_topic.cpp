// flowbus topic create | ls
#include <cstdio>
#include <optional>

#include "cli_util.hpp"
#include "flowbus/bus.hpp"
#include "flowbus/error.hpp"
#include "flowbus/schema.hpp"

namespace flowbus::cli {

namespace {

struct CreateArgs {
  std::string bus, name, schema, type, policy = "block", ring_size = "4MiB", mode = "0600", timeout = "5", retention = "3600";
  std::string group;
  bool untrusted = false;
  bool json = false;
};

TopicSpec spec_of(const CreateArgs& args) {
  TopicSpec spec;
  spec.name = args.name;
  spec.schema = compile_schema_file(args.schema);
  spec.type = args.type.empty() ? schema_root_type(spec.schema) : args.type;
  spec.policy = parse_policy(args.policy);
  spec.ring_size = parse_size(args.ring_size, "--ring-size");
  spec.mode = parse_mode(args.mode);
  spec.group = parse_group(args.group, "--group");
  spec.slow_consumer_timeout = parse_seconds(args.timeout, "--timeout");
  if (spec.slow_consumer_timeout.count() <= 0)
    throw Error(ErrorCode::InvalidArgument,
                "--timeout " + args.timeout +
                    ": the slow-consumer timeout must be positive: seconds (5), with a unit "
                    "(200ms), or never");
  spec.retention = parse_retention(args.retention, "--retention");
  spec.untrusted = args.untrusted;
  return spec;
}

std::optional<Bus> open_if_exists(const std::string& name) {
  try {
    return Bus::open_existing(name);
  } catch (const Error& e) {
    if (e.code() == ErrorCode::NotFound) return std::nullopt;
    throw;
  }
}

/// The members every topic line has, as `inspect --json` names them.
std::string topic_json_members(const TopicInfo& t) {
  char mode[8];
  std::snprintf(mode, sizeof mode, "%04o", t.mode);
  return "\"topic\":\"" + json_escape(t.name) + "\",\"type\":\"" + json_escape(t.type) + "\",\"schema_id\":\"" +
         t.schema_id + "\",\"policy\":\"" + to_string(t.policy) + "\",\"ring_size\":" + std::to_string(t.ring_size) +
         ",\"mode\":\"" + mode + "\",\"group\":" + std::to_string(t.group) + ",\"slow_consumer_timeout_ms\":" +
         (t.slow_consumer_timeout == kNever ? std::string("null")
                                            : std::to_string(t.slow_consumer_timeout.count() / 1000000)) +
         ",\"retention_s\":" + std::to_string(t.retention.count()) +
         ",\"untrusted\":" + (t.untrusted ? "true" : "false");
}

void print_topic(const std::string& bus, const TopicInfo& t, bool json, bool created) {
  if (json) {
    std::printf("{\"bus\":\"%s\",%s,\"created\":%s}\n", json_escape(bus).c_str(), topic_json_members(t).c_str(),
                created ? "true" : "false");
    return;
  }
  std::printf(
      "topic %s on bus %s %s: type %s, schema %s, policy %s, ring %llu bytes, mode %04o, timeout %s, retention %s%s\n",
      t.name.c_str(), bus.c_str(), created ? "created" : "already exists with these settings", t.type.c_str(),
      t.schema_id.c_str(), to_string(t.policy), static_cast<unsigned long long>(t.ring_size), t.mode,
      format_duration(t.slow_consumer_timeout).c_str(), format_duration(t.retention).c_str(),
      t.untrusted ? ", untrusted (readers verify a copy of each event)" : "");
}

/// `topic create` of a topic that exists: fine if the request is what
/// exists, refused (exit 1) naming each difference otherwise; a topic's
/// settings never change in place.
void answer_existing(const CreateArgs& args, const TopicInfo& existing, const TopicSpec& spec) {
  std::vector<std::string> differences = topic_differences(existing, spec);
  const std::string asked_schema = schema_id(spec.schema);
  if (asked_schema != existing.schema_id)
    differences.push_back("schema " + existing.schema_id + ", asked " + asked_schema + " (" + args.schema + ")");
  if (differences.empty()) {
    print_topic(args.bus, existing, args.json, false);
    return;
  }
  std::fprintf(stderr, "flowbus topic create: topic '%s' already exists on bus '%s' with other settings:\n", args.name.c_str(),
               args.bus.c_str());
  for (const std::string& d : differences) std::fprintf(stderr, "  %s\n", d.c_str());
  std::fprintf(stderr,
               "nothing was changed: a topic keeps its settings. Ask for the ones it has (`flowbus topic ls %s`), use another "
               "topic name, or remove the bus with its topics once no process uses it (`flowbus gc --force %s`)\n",
               args.bus.c_str(), args.bus.c_str());
  throw ExitCode{1};
}

}  // namespace

void add_topic_commands(CLI::App& app) {
  CLI::App* topic = app.add_subcommand("topic", "Create and list topics");
  topic->require_subcommand(1);

  auto args = std::make_shared<CreateArgs>();
  CLI::App* create = topic->add_subcommand(
      "create", "Register a topic: its event type, schema, policy, ring size and permissions. If it exists with the same "
                "settings, say so and exit 0; with other settings, name each difference and exit 1 (nothing changes). A "
                "refused command leaves nothing in /dev/shm");
  create->add_option("bus", args->bus, "bus name (created if missing)")->required();
  create->add_option("topic", args->name, "topic name, e.g. orders.created")->required();
  create->add_option("--schema", args->schema, "the event schema, .fbs (or a compiled .bfbs), a regular file of at most 16 MiB")->required();
  create->add_option("--type", args->type, "root table, e.g. examples.Order (default: the schema's root_type)");
  create->add_option("--policy", args->policy, "block (lossless, default) or latest (telemetry, overwrites)")->check(CLI::IsMember({"block", "latest"}));
  create->add_option("--ring-size", args->ring_size,
                     "bytes per publisher ring, a power of two from 4KiB to 1TiB that fits in /dev/shm; units KiB, MiB, GiB, TiB "
                     "or none for bytes (default 4MiB)");
  create->add_option("--mode", args->mode, "permission bits of the topic's segments (default 0600)");
  create->add_option("--group", args->group, "group of the topic's segments, a name or a gid (readers in this group, with --mode 0640)");
  create->add_option("--timeout", args->timeout, "slow-consumer timeout: seconds, or with a unit (200ms), or never (default 5s)");
  create->add_option("--retention", args->retention, "how long a gone publisher's ring is kept: seconds or with a unit (default 3600s)");
  create->add_flag("--untrusted", args->untrusted,
                   "readers copy each event out of the ring and verify it against the schema before the application "
                   "sees it; an event that fails is counted and skipped (for writers you do not trust)");
  create->add_flag("--json", args->json, "print the topic as JSON: the fields of `topic ls --json`, bus, and created (false if it existed)");
  create->callback([args] {
    const TopicSpec spec = spec_of(*args);
    std::optional<Bus> bus = open_if_exists(args->bus);
    if (bus) {
      if (auto existing = bus->find_topic(spec.name)) return answer_existing(*args, *existing, spec);
    }
    validate_topic_spec(spec);  // before a new bus is made: a refused command leaves nothing behind
    if (!bus) bus = Bus::open(args->bus, BusOptions{spec.mode, spec.group});
    print_topic(args->bus, bus->create_topic(spec), args->json, true);
  });

  struct LsArgs {
    std::string bus;
    bool json = false;
  };
  auto ls_args = std::make_shared<LsArgs>();
  CLI::App* ls = topic->add_subcommand("ls", "List the topics of a bus");
  ls->add_option("bus", ls_args->bus, "bus name")->required();
  ls->add_flag("--json", ls_args->json, "one JSON object per topic and line");
  ls->callback([ls_args] {
    Bus bus = Bus::open_existing(ls_args->bus);
    const auto topics = bus.topics();
    if (!ls_args->json)
      std::printf("%-32s %-28s %-7s %10s %6s %-8s %-9s %s\n", "TOPIC", "TYPE", "POLICY", "RING", "MODE", "TIMEOUT",
                  "RETENTION", "UNTRUSTED");
    for (const TopicInfo& t : topics) {
      if (ls_args->json)
        std::printf("{%s}\n", topic_json_members(t).c_str());
      else
        std::printf("%-32s %-28s %-7s %10llu %04o   %-8s %-9s %s\n", t.name.c_str(), t.type.c_str(),
                    to_string(t.policy), static_cast<unsigned long long>(t.ring_size), t.mode,
                    format_duration(t.slow_consumer_timeout).c_str(), format_duration(t.retention).c_str(),
                    t.untrusted ? "yes" : "no");
    }
  });
}

}  // namespace flowbus::cli
