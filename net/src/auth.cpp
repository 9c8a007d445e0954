// Token authentication: each side proves it knows the shared token by an
// HMAC over the other side's fresh nonce, so the token never travels and a
// recorded Auth is useless on another connection.
#include <cstring>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "flowbus/wire/codec.hpp"

namespace flowbus::wire {

namespace {
constexpr std::string_view kAuthLabel = "flowbus-wire-auth-1";
}

Nonce make_nonce() {
  Nonce n;
  if (RAND_bytes(n.data(), static_cast<int>(n.size())) != 1) {
    throw std::runtime_error("flowbus wire: the OpenSSL random generator failed to make a nonce");
  }
  return n;
}

Mac compute_auth_mac(std::string_view token, std::span<const uint8_t> peer_nonce, std::string_view own_node) {
  // label | nonce | node is unambiguous: the label is fixed and the nonce
  // always 32 bytes (the decoder refuses others).
  if (peer_nonce.size() != kNonceSize || !is_valid_node_name(own_node)) {
    throw std::invalid_argument("compute_auth_mac: the nonce must be 32 bytes and the node name valid");
  }
  std::array<uint8_t, kAuthLabel.size() + kNonceSize + kMaxNodeName> message{};
  size_t n = 0;
  auto append = [&](const void* p, size_t size) {
    std::memcpy(message.data() + n, p, size);
    n += size;
  };
  append(kAuthLabel.data(), kAuthLabel.size());
  append(peer_nonce.data(), peer_nonce.size());
  append(own_node.data(), own_node.size());
  Mac mac{};
  unsigned int mac_len = 0;
  static constexpr uint8_t kEmptyKey = 0;  // HMAC's key may not be a null pointer
  if (!HMAC(EVP_sha256(), token.empty() ? static_cast<const void*>(&kEmptyKey) : token.data(), static_cast<int>(token.size()), message.data(),
            n, mac.data(), &mac_len) ||
      mac_len != mac.size()) {
    throw std::runtime_error("flowbus wire: HMAC-SHA256 failed");
  }
  return mac;
}

bool verify_auth_mac(std::string_view token, std::span<const uint8_t> own_nonce, std::string_view peer_node,
                     std::span<const uint8_t> mac) {
  if (mac.size() != kMacSize || own_nonce.size() != kNonceSize || !is_valid_node_name(peer_node)) return false;
  const Mac expected = compute_auth_mac(token, own_nonce, peer_node);
  return CRYPTO_memcmp(expected.data(), mac.data(), kMacSize) == 0;
}

std::optional<Refusal> check_auth(std::string_view token, std::span<const uint8_t> own_nonce,
                                  std::string_view peer_node, const AuthView& auth) {
  if (token.empty()) return std::nullopt;
  if (auth.mac.empty()) {
    return Refusal{RefuseCode::TokenRequired,
                   "this sidecar requires a token and peer \"" + std::string(peer_node) +
                       "\" sent none: configure the same --token-file on both sides"};
  }
  if (!verify_auth_mac(token, own_nonce, peer_node, auth.mac)) {
    return Refusal{RefuseCode::BadToken,
                   "peer \"" + std::string(peer_node) + "\" does not know this sidecar's token"};
  }
  return std::nullopt;
}

}  // namespace flowbus::wire
