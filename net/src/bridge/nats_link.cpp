// Connecting to NATS and setting up the stream (see nats_link.hpp).
#include "nats_link.hpp"

#include <atomic>
#include <string_view>
#include <vector>

#include "flowbus/error.hpp"

namespace flowbus::bridge {

std::string nats_error(natsStatus s, const std::string& context) {
  std::string text = natsStatus_GetText(s);
  natsStatus last = NATS_OK;
  const char* detail = nats_GetLastError(&last);
  if (detail != nullptr && *detail != 0 && std::string_view(detail) != text) text += " (" + std::string(detail) + ")";
  return context.empty() ? text : context + ": " + text;
}

namespace {

void check(natsStatus s, const std::string& what) {
  if (s != NATS_OK) throw Error(ErrorCode::InvalidArgument, nats_error(s, what));
}

bool contains(const std::string& text, std::string_view part) { return text.find(part) != std::string::npos; }

std::atomic<uint64_t> g_disconnects{0};
void on_disconnected(natsConnection*, void*) { g_disconnects.fetch_add(1, std::memory_order_release); }

}  // namespace

uint64_t disconnects() noexcept { return g_disconnects.load(std::memory_order_acquire); }

Connection connect(const BridgeOptions& o) {
  natsOptions* raw = nullptr;
  check(natsOptions_Create(&raw), "natsOptions_Create");
  std::unique_ptr<natsOptions, void (*)(natsOptions*)> opts(raw, natsOptions_Destroy);
  check(natsOptions_SetURL(raw, o.url.c_str()), "--url '" + o.url + "'");
  check(natsOptions_SetName(raw, ("flowbus bridge " + o.node).c_str()), "name");
  check(natsOptions_SetTimeout(raw, o.connect_timeout.count()), "timeout");
  check(natsOptions_SetMaxReconnect(raw, -1), "max reconnect");  // once connected: forever
  check(natsOptions_SetReconnectWait(raw, 250), "reconnect wait");
  // No publishing into a buffer while reconnecting: such a publish fails at
  // once, so the exporter resends in order from what JetStream acknowledged.
  check(natsOptions_SetReconnectBufSize(raw, 1), "reconnect buffer");
  check(natsOptions_SetDisconnectedCB(raw, on_disconnected, nullptr), "disconnected callback");
  if (!o.token.empty()) check(natsOptions_SetToken(raw, o.token.c_str()), "--token-file");
  if (!o.creds_file.empty())
    check(natsOptions_SetUserCredentialsFromFiles(raw, o.creds_file.c_str(), nullptr),
          "--creds '" + o.creds_file + "'");
  const bool tls = !o.tls_ca.empty() || !o.tls_cert.empty() || !o.tls_key.empty();
  if (tls) {
    check(natsOptions_SetSecure(raw, true), "TLS");
    if (!o.tls_ca.empty())
      check(natsOptions_LoadCATrustedCertificates(raw, o.tls_ca.c_str()), "--tls-ca '" + o.tls_ca + "'");
    if (!o.tls_cert.empty() || !o.tls_key.empty()) {
      if (o.tls_cert.empty() || o.tls_key.empty())
        throw Error(ErrorCode::InvalidArgument, "a client certificate needs both --tls-cert and --tls-key");
      check(natsOptions_LoadCertificatesChain(raw, o.tls_cert.c_str(), o.tls_key.c_str()), "--tls-cert/--tls-key");
    }
  }
  natsConnection* nc = nullptr;
  const natsStatus s = natsConnection_Connect(&nc, raw);
  if (s != NATS_OK) {
    std::string why = nats_error(s);
    std::string hint;
    if (s == NATS_NOT_PERMITTED || contains(why, "uthorization"))
      hint = "the server refused our credentials: check --token-file (or --creds) against the server's";
    else if (s == NATS_SSL_ERROR || contains(why, "SSL") || contains(why, "certificate"))
      hint = "TLS failed: --tls-ca must be the CA that signed the server's certificate (and the server must speak TLS)";
    else if (s == NATS_NO_SERVER)
      hint = "nothing answered at " + o.url + ": is nats-server running there (with -js)?";
    throw Error(ErrorCode::InvalidArgument,
                "cannot connect to NATS at " + o.url + ": " + why + (hint.empty() ? "" : "; " + hint));
  }
  return Connection(nc);
}

JetStream jetstream(natsConnection* nc, const BridgeOptions& o, jsPubAckHandler ack, void* closure) {
  jsOptions jo;
  jsOptions_Init(&jo);
  jo.Wait = 5000;
  jo.PublishAsync.MaxPending = int64_t(o.max_pending) + 16;  // our own bound is the one that holds
  jo.PublishAsync.AckHandler = ack;
  jo.PublishAsync.AckHandlerClosure = closure;
  jsCtx* js = nullptr;
  check(natsConnection_JetStream(&js, nc, &jo), "JetStream");
  return JetStream(js);
}

natsStatus fetch(natsMsgList* list, natsSubscription* sub, int batch, int64_t timeout_ms, jsErrCode* jerr) {
  // cnats 3.4.1 (Debian's libnats3.4), _fetch in js.c: it first takes up to
  // `batch` messages already queued in the subscription (c of them: sent for
  // an earlier pull request after that Fetch had returned, by a timeout, an
  // error or a reconnect), then asks the server for batch - c more, storing
  // that in req->Batch, but reads on until count == req->Batch. With
  // c > batch / 2 that never holds: every further message (the rest of the
  // earlier request, the new one) is stored past the end of its
  // calloc(batch) array until the timeout. That is the heap corruption of a
  // server restart (glibc: "malloc(): unaligned fastbin chunk detected"; ASan:
  // the importer reading list.Msgs[batch], a list longer than its array).
  // Later nats.c compares with the batch as asked. The overflow needs c > 0
  // when the loop starts: while anything is queued, fetch one message at a
  // time (taken from the queue, no request sent; a count of 1 cannot pass 1).
  // What is left is the instant between this check and _fetch's own: more
  // than batch / 2 messages would have to arrive in it.
  uint64_t queued = 0;
  if (natsSubscription_QueuedMsgs(sub, &queued) == NATS_OK && queued > 0) batch = 1;
  return natsSubscription_Fetch(list, sub, batch, timeout_ms, jerr);
}

namespace {

// Checks that an existing stream can take the bridge's messages.
void check_existing_stream(const jsStreamConfig& c, const BridgeOptions& o, const std::string& wanted) {
  bool covered = false;
  std::string subjects;
  for (int i = 0; i < c.SubjectsLen; ++i) {
    subjects += std::string(i ? ", " : "") + c.Subjects[i];
    if (wanted == c.Subjects[i] || std::string_view(c.Subjects[i]) == ">") covered = true;
  }
  if (!covered)
    throw Error(ErrorCode::InvalidArgument,
                "stream " + o.stream + " exists but takes subjects [" + subjects + "], not '" + wanted +
                    "': the bridge publishes every topic under --subject-prefix " + o.subject_prefix +
                    "; give another --stream (it is created), another --subject-prefix, or add '" + wanted +
                    "' to that stream's subjects");
  if (c.Retention != js_LimitsPolicy)
    throw Error(ErrorCode::InvalidArgument,
                "stream " + o.stream +
                    " does not use the limits retention policy (work queue or interest): "
                    "messages would vanish when one consumer acknowledges them; give another --stream");
  if (c.Duplicates <= 0)
    throw Error(ErrorCode::InvalidArgument,
                "stream " + o.stream + " has no duplicate window: the bridge needs one (Nats-Msg-Id)");
}

}  // namespace

bool ensure_stream(jsCtx* js, const BridgeOptions& o) {
  const std::string wanted = o.subject_prefix + ".>";
  // Two bridges started together (or both seeing the stream deleted) race:
  // both look it up, both find nothing, one creates it, and the other's
  // create fails (JetStream says its subjects overlap the new stream's). A
  // failed create therefore looks once more before it reports anything.
  for (int attempt = 0;; ++attempt) {
    jsStreamInfo* si = nullptr;
    jsErrCode jerr = jsErrCode(0);
    natsStatus s = js_GetStreamInfo(&si, js, o.stream.c_str(), nullptr, &jerr);
    if (s == NATS_OK) {
      std::unique_ptr<jsStreamInfo, void (*)(jsStreamInfo*)> info(si, jsStreamInfo_Destroy);
      check_existing_stream(*si->Config, o, wanted);
      return false;
    }
    if (s != NATS_NOT_FOUND && jerr != JSStreamNotFoundErr) {
      if (jerr == JSNotEnabledErr || s == NATS_NO_RESPONDERS)
        throw Error(ErrorCode::InvalidArgument,
                    "JetStream is not enabled on the server at " + o.url + " (start nats-server with -js)");
      throw Error(ErrorCode::InvalidArgument, nats_error(s, "cannot look up stream " + o.stream));
    }
    jsStreamConfig cfg;
    jsStreamConfig_Init(&cfg);
    cfg.Name = o.stream.c_str();
    const char* subjects[] = {wanted.c_str()};
    cfg.Subjects = subjects;
    cfg.SubjectsLen = 1;
    cfg.Storage = js_FileStorage;
    cfg.Retention = js_LimitsPolicy;
    cfg.Duplicates = int64_t(std::chrono::nanoseconds(o.duplicate_window).count());
    cfg.AllowDirect = true;
    jerr = jsErrCode(0);
    s = js_AddStream(nullptr, js, &cfg, nullptr, &jerr);
    if (s == NATS_OK) return true;
    if (attempt == 0) continue;  // created by another bridge since we looked?
    throw Error(ErrorCode::InvalidArgument,
                nats_error(s, "cannot create stream " + o.stream + " on subjects '" + wanted + "'") +
                    " (JetStream error " + std::to_string(int(jerr)) +
                    "; another stream may already take these subjects)");
  }
}

}  // namespace flowbus::bridge
