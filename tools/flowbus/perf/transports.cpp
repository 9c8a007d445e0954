#include "transports.hpp"

#include <cstring>
#include <stdexcept>

namespace flowbus::perf {

const char* const kTransportNames = "flowbus,floor,uds,pipe,zmq,bmq";
const char* const kUntrustedTransport = "flowbus-untrusted";

const char* to_string(WaitMode mode) noexcept {
  return mode == WaitMode::Spin ? "spin" : mode == WaitMode::Backoff ? "backoff" : "futex";
}

void fail(const std::string& what) { throw std::runtime_error("perf: " + what); }

void stamp(uint8_t* payload, size_t bytes, uint64_t i) noexcept {
  std::memcpy(payload, &i, sizeof i);
  std::memcpy(payload + bytes - 64, &i, sizeof i);
}

bool check_stamp(const uint8_t* payload, size_t bytes, uint64_t i) noexcept {
  uint64_t first, last;
  std::memcpy(&first, payload, sizeof first);
  std::memcpy(&last, payload + bytes - 64, sizeof last);
  return first == i && last == i;
}

std::unique_ptr<PingPong> make_transport(const std::string& name, size_t bytes, WaitMode wait,
                                         const BackoffOptions& backoff) {
  if (bytes < 64) fail("a payload is at least 64 bytes (one cache line)");
  if (name == "floor") return make_floor(bytes);
  if (name == "uds") return make_uds(bytes);
  if (name == "pipe") return make_pipe(bytes);
  if (name == "flowbus") return make_flowbus(bytes, wait, backoff, false);
  if (name == kUntrustedTransport) return make_flowbus(bytes, wait, backoff, true);
  if (name == "zmq") return make_zmq(bytes);
  if (name == "bmq") return make_bmq(bytes);
  fail("unknown transport '" + name + "': use flowbus, floor, uds, pipe, zmq or bmq (or flowbus-untrusted)");
}

}  // namespace flowbus::perf
