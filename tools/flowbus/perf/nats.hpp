// `flowbus perf nats`: events through two NATS JetStream bridges (bus A ->
// bridge A -> JetStream -> bridge B -> bus B), next to a plain cnats
// JetStream publish loop on the same server, in interleaved rounds.
#pragma once

#include <CLI/CLI.hpp>

namespace flowbus::perf {

void add_nats_command(CLI::App& perf);

}  // namespace flowbus::perf
