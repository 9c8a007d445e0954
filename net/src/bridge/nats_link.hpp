// The bridge's NATS side: one connection (token, creds or TLS), JetStream
// contexts, and the stream the bridge writes to (created, or checked and
// its mismatch explained). Errors are flowbus::Error naming the fix.
#pragma once

#include <nats/nats.h>

#include <memory>
#include <string>

#include "flowbus/bridge.hpp"

namespace flowbus::bridge {

/// "NATS_TIMEOUT: Timeout (detail from the client's error stack)".
std::string nats_error(natsStatus s, const std::string& context = {});

struct ConnectionDeleter {
  void operator()(natsConnection* nc) const noexcept { natsConnection_Destroy(nc); }
};
struct JsDeleter {
  void operator()(jsCtx* js) const noexcept { jsCtx_Destroy(js); }
};
using Connection = std::unique_ptr<natsConnection, ConnectionDeleter>;
using JetStream = std::unique_ptr<jsCtx, JsDeleter>;

/// Connects (reconnecting forever afterwards). Throws Error with the reason
/// and what to check: a wrong token or creds, a CA that did not sign the
/// server's certificate, nothing listening at the URL.
Connection connect(const BridgeOptions& options);

/// How many times a connection made by connect() lost its server so far. An
/// exporter that sees it change resends what was in flight, before anything
/// newer: publishes to the lost server may be gone while later ones succeed.
uint64_t disconnects() noexcept;

/// A JetStream context; `ack` (optional) gets every asynchronous publish's outcome.
JetStream jetstream(natsConnection* nc, const BridgeOptions& options, jsPubAckHandler ack = nullptr,
                    void* closure = nullptr);

/// natsSubscription_Fetch, made safe against a heap overflow in the cnats
/// the bridge is built with (3.4.1): see nats_link.cpp. Same arguments.
natsStatus fetch(natsMsgList* list, natsSubscription* sub, int batch, int64_t timeout_ms, jsErrCode* jerr);

/// Makes sure `options.stream` exists and takes `<prefix>.>`: creates it
/// (file storage, options.duplicate_window) if missing; returns true if it
/// did. Throws Error explaining a mismatch of an existing stream.
bool ensure_stream(jsCtx* js, const BridgeOptions& options);

}  // namespace flowbus::bridge
