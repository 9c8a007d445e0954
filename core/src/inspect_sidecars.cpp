// The sidecars of a bus, as `flowbus inspect` shows them: each writes a small
// JSON status next to the bus's segments ("flowbus.<bus>.~sidecar-<node>");
// this reads them (read-only, like the rest of the inspector) and works out
// each exported stream's lag against the ring it comes from.
#include <dirent.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include <flatbuffers/flexbuffers.h>
#include <flatbuffers/idl.h>

#include "flowbus/inspect.hpp"
#include "liveness.hpp"

namespace flowbus {
namespace detail {

namespace {

uint64_t parse_hex(const std::string& text) { return std::strtoull(text.c_str(), nullptr, 16); }

MirrorStreamSnapshot stream_of(const flexbuffers::Map& m) {
  MirrorStreamSnapshot s;
  s.topic = m["topic"].AsString().str();
  s.publisher_id = parse_hex(m["publisher_id"].AsString().str());
  s.origin = m["origin"].AsString().str();
  s.sent_sequence = m["sent_sequence"].AsUInt64();
  s.acked_sequence = m["acked_sequence"].AsUInt64();
  s.next_sequence = m["next_sequence"].AsUInt64();
  s.gaps = m["gaps"].AsUInt64();  // 0 when absent (an older sidecar)
  s.refused = m["refused"].AsString().str();
  return s;
}

SidecarSnapshot read_status(const std::string& path, const std::vector<RingSnapshot>& rings) {
  SidecarSnapshot snap;
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  flatbuffers::Parser parser;
  flexbuffers::Builder builder;
  if (!in || !parser.ParseFlexBuffer(text.str().c_str(), nullptr, &builder)) {
    snap.error = "unreadable status " + path + (parser.error_.empty() ? "" : ": " + parser.error_);
    return snap;
  }
  const flexbuffers::Map root = flexbuffers::GetRoot(builder.GetBuffer()).AsMap();
  snap.node = root["node"].AsString().str();
  snap.pid = root["pid"].AsInt64();
  snap.alive = snap.pid > 0 && process_alive(pid_t(snap.pid), 0);
  snap.listen_port = uint32_t(root["listen_port"].AsUInt64());
  snap.updated_ns = root["updated_ns"].AsUInt64();
  snap.events_sent = root["events_sent"].AsUInt64();
  snap.events_received = root["events_received"].AsUInt64();
  snap.duplicates_dropped = root["duplicates_dropped"].AsUInt64();
  snap.gaps = root["gaps"].AsUInt64();
  const flexbuffers::Vector peers = root["peers"].AsVector();
  for (size_t i = 0; i < peers.size(); ++i) {
    const flexbuffers::Map p = peers[i].AsMap();
    MirrorPeerSnapshot peer;
    peer.node = p["node"].AsString().str();
    peer.address = p["address"].AsString().str();
    peer.connected = p["connected"].AsBool();
    peer.outbound = p["outbound"].AsBool();
    peer.queued_bytes = p["queued_bytes"].AsUInt64();
    const flexbuffers::Vector ex = p["exports"].AsVector(), im = p["imports"].AsVector();
    for (size_t k = 0; k < ex.size(); ++k) {
      MirrorStreamSnapshot s = stream_of(ex[k].AsMap());
      for (const RingSnapshot& r : rings)
        if (r.publisher_id == s.publisher_id && r.topic == s.topic && r.error.empty())
          s.lag_events = int64_t(r.next_sequence) - int64_t(s.acked_sequence);
      peer.exports.push_back(std::move(s));
    }
    for (size_t k = 0; k < im.size(); ++k) peer.imports.push_back(stream_of(im[k].AsMap()));
    snap.peers.push_back(std::move(peer));
  }
  return snap;
}

}  // namespace

std::vector<SidecarSnapshot> read_sidecars(const std::string& bus, const std::vector<RingSnapshot>& rings) {
  std::vector<SidecarSnapshot> out;
  const std::string prefix = "flowbus." + bus + ".~sidecar-";
  DIR* d = ::opendir("/dev/shm");
  if (d == nullptr) return out;
  while (const dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name.rfind(prefix, 0) != 0 || name.size() < 4 || name.compare(name.size() - 4, 4, ".tmp") == 0) continue;
    out.push_back(read_status("/dev/shm/" + name, rings));
  }
  ::closedir(d);
  return out;
}

}  // namespace detail
}  // namespace flowbus
