// The bridge's export side, on a thread of its own: reads the exported
// topics as a holding subscriber (mirroring::export_subscriber), publishes
// each event asynchronously to JetStream with Nats-Msg-Id = its CloudEvents
// id, and moves the ring's cursor (mirroring::acknowledge) only as far as
// JetStream has acknowledged, in order. A failed publish rewinds the ring to
// the last acknowledged event and sends again (JetStream and the importers
// drop what they hold already).
#pragma once

#include <atomic>

#include "context.hpp"

namespace flowbus::bridge {

/// Runs until `stop`. Throws Error only while starting (bus, stream).
void run_exporter(BridgeContext& ctx, const std::atomic<bool>& stop);

}  // namespace flowbus::bridge
