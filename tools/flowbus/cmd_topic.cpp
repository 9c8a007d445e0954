// flowbus topic create | ls
#include <cstdio>

#include "cli_util.hpp"
#include "flowbus/bus.hpp"
#include "flowbus/schema.hpp"

namespace flowbus::cli {

namespace {

std::string describe_timeout(std::chrono::nanoseconds t) {
  return t == kNever ? "never" : std::to_string(double(t.count()) / 1e9) + "s";
}

}  // namespace

void add_topic_commands(CLI::App& app) {
  CLI::App* topic = app.add_subcommand("topic", "Create and list topics");
  topic->require_subcommand(1);

  struct CreateArgs {
    std::string bus, name, schema, type, policy = "block", ring_size = "4MiB", mode = "0600", timeout = "5", retention = "3600";
    int64_t group = -1;
    bool json = false;
  };
  auto args = std::make_shared<CreateArgs>();
  CLI::App* create = topic->add_subcommand("create", "Register a topic: its event type, schema, policy, ring size and permissions");
  create->add_option("bus", args->bus, "bus name (created if missing)")->required();
  create->add_option("topic", args->name, "topic name, e.g. orders.created")->required();
  create->add_option("--schema", args->schema, "the event schema, .fbs (or a compiled .bfbs)")->required();
  create->add_option("--type", args->type, "root table, e.g. examples.Order (default: the schema's root_type)");
  create->add_option("--policy", args->policy, "block (lossless, default) or latest (telemetry, overwrites)")->check(CLI::IsMember({"block", "latest"}));
  create->add_option("--ring-size", args->ring_size, "bytes per publisher ring, a power of two (default 4MiB)");
  create->add_option("--mode", args->mode, "permission bits of the topic's segments (default 0600)");
  create->add_option("--group", args->group, "gid for the topic's segments (readers in this group, with --mode 0640)");
  create->add_option("--timeout", args->timeout, "slow-consumer timeout in seconds, or inf (default 5)");
  create->add_option("--retention", args->retention, "seconds a gone publisher's ring is kept (default 3600)");
  create->add_flag("--json", args->json, "print the topic as JSON");
  create->callback([args] {
    TopicSpec spec;
    spec.name = args->name;
    spec.schema = compile_schema_file(args->schema);
    spec.type = args->type.empty() ? schema_root_type(spec.schema) : args->type;
    spec.policy = parse_policy(args->policy);
    spec.ring_size = parse_size(args->ring_size);
    spec.mode = parse_mode(args->mode);
    spec.group = args->group;
    spec.slow_consumer_timeout = parse_seconds(args->timeout);
    spec.retention = std::chrono::duration_cast<std::chrono::seconds>(parse_seconds(args->retention));
    Bus bus = Bus::open(args->bus, BusOptions{spec.mode, spec.group});
    const TopicInfo info = bus.create_topic(spec);
    if (args->json)
      std::printf("{\"bus\":\"%s\",\"topic\":\"%s\",\"type\":\"%s\",\"schema_id\":\"%s\",\"policy\":\"%s\",\"ring_size\":%llu}\n",
                  args->bus.c_str(), info.name.c_str(), info.type.c_str(), info.schema_id.c_str(), to_string(info.policy),
                  static_cast<unsigned long long>(info.ring_size));
    else
      std::printf("topic %s on bus %s: type %s, schema %s, policy %s, ring %llu bytes\n", info.name.c_str(),
                  args->bus.c_str(), info.type.c_str(), info.schema_id.c_str(), to_string(info.policy),
                  static_cast<unsigned long long>(info.ring_size));
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
    if (!ls_args->json) std::printf("%-32s %-28s %-7s %10s %6s %s\n", "TOPIC", "TYPE", "POLICY", "RING", "MODE", "TIMEOUT");
    for (const TopicInfo& t : topics) {
      if (ls_args->json)
        std::printf("{\"topic\":\"%s\",\"type\":\"%s\",\"schema_id\":\"%s\",\"policy\":\"%s\",\"ring_size\":%llu,\"mode\":\"%04o\",\"group\":%lld}\n",
                    t.name.c_str(), t.type.c_str(), t.schema_id.c_str(), to_string(t.policy),
                    static_cast<unsigned long long>(t.ring_size), t.mode, static_cast<long long>(t.group));
      else
        std::printf("%-32s %-28s %-7s %10llu %04o   %s\n", t.name.c_str(), t.type.c_str(), to_string(t.policy),
                    static_cast<unsigned long long>(t.ring_size), t.mode, describe_timeout(t.slow_consumer_timeout).c_str());
    }
  });
}

}  // namespace flowbus::cli
