// The checks on a peer's Hello, and the names of codes for logs.
#include "flowbus/wire/codec.hpp"

namespace flowbus::wire {

const char* to_string(RefuseCode code) noexcept {
  const char* name = EnumNameRefuseCode(code);
  return *name ? name : "Unknown";
}

bool is_valid_node_name(std::string_view name) noexcept {
  if (name.empty() || name.size() > kMaxNodeName) return false;
  for (const char c : name) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
                    c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

std::optional<Refusal> check_hello(const HelloView& hello, uint32_t local_version, std::string_view local_node) {
  if (hello.protocol_version != local_version) {
    return Refusal{RefuseCode::VersionMismatch,
                   "peer speaks flowbus wire protocol " + std::to_string(hello.protocol_version) +
                       ", this sidecar speaks " + std::to_string(local_version) +
                       ": run the same flowbus version on both hosts",
                   local_version, hello.protocol_version};
  }
  if (!local_node.empty() && hello.node == local_node) {
    return Refusal{RefuseCode::Protocol,
                   "peer has this sidecar's own node name \"" + std::string(local_node) +
                       "\": node names must differ; give each sidecar its own --node NAME (the default, the host "
                       "name, is the same for two sidecars on one host; or this is a loop, or a reflected handshake)",
                   local_version, hello.protocol_version};
  }
  return std::nullopt;
}

}  // namespace flowbus::wire
