// The topic an importing sidecar creates for a stream it is offered: the
// origin topic's schema, policy, ring size, retention and slow-consumer
// timeout (as its StreamOpen announces them), or this side's --import-*
// choices where set.
#pragma once

#include <string>

#include "flowbus/sidecar.hpp"
#include "flowbus/topic.hpp"
#include "flowbus/wire/codec.hpp"

namespace flowbus::sidecar {

TopicSpec imported_topic_spec(const SidecarOptions& options, const wire::StreamOpenView& open);
/// For the log line: "examples.SensorReading, block, ring 64 MiB (the origin's), ...".
std::string describe_spec(const SidecarOptions& options, const wire::StreamOpenView& open, const TopicSpec& spec);

}  // namespace flowbus::sidecar
