// The bridge's import side, on a thread of its own: a durable pull consumer
// on "<prefix>.>" (ack policy all); each message that is a CloudEvent of an
// imported topic is written to a mirror ring of its origin
// (mirroring::mirror_publisher, publish_mirrored), and a fetched batch is
// acknowledged only once all of it is committed to the bus. An event the
// mirror ring holds already ((source, id) seen: a redelivery after a crash)
// is dropped; an event whose origin is this bridge's node is never imported.
#pragma once

#include <atomic>

#include "context.hpp"

namespace flowbus::bridge {

void run_importer(BridgeContext& ctx, const std::atomic<bool>& stop);

}  // namespace flowbus::bridge
