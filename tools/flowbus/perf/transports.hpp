// The transports `flowbus perf latency` compares, each as one ping-pong pair:
// the parent's side sends message i and waits for the echo; the child's side
// echoes. Every transport writes the payload's first and last cache line and
// the receiver reads them, so copying transports pay their copies and
// zero-copy pays none.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "flowbus/subscriber.hpp"

namespace flowbus::perf {

/// How flowbus's receivers wait (the other transports wait as they do):
/// spin on read() with a pause, Subscriber::wait under WaitStrategy::Backoff
/// (default BackoffOptions), or under SpinThenSleep with no spin (the futex).
enum class WaitMode { Spin, Backoff, Futex };
/// "spin", "backoff", "futex"
const char* to_string(WaitMode mode) noexcept;

class PingPong {
 public:
  virtual ~PingPong() = default;
  /// Called in the child after fork, before the first message.
  virtual void start_echo_side() = 0;
  /// Called in the parent after fork, before the first message.
  virtual void start_ping_side() = 0;
  /// Parent: send message `i` and wait for its echo.
  virtual void round_trip(uint64_t i) = 0;
  /// Child: echo messages first, first + 1, ... (`count` of them).
  virtual void echo(uint64_t first, uint64_t count) = 0;
  /// Child: after the last echo, before the process exits.
  virtual void end_echo_side() {}
};

/// Made in the parent before fork (shared set-up: mappings, sockets, bus names).
/// `backoff`: flowbus's receivers under WaitMode::Backoff.
std::unique_ptr<PingPong> make_transport(const std::string& name, size_t bytes, WaitMode wait,
                                         const BackoffOptions& backoff = {});

/// The payload's first and last cache lines carry `i`; the reader checks them.
void stamp(uint8_t* payload, size_t bytes, uint64_t i) noexcept;
bool check_stamp(const uint8_t* payload, size_t bytes, uint64_t i) noexcept;

/// Throws std::runtime_error("perf: " + what).
[[noreturn]] void fail(const std::string& what);

/// The binary schema of flowbus.perf.Payload (schemas/flowbus/perf.fbs), for creating perf topics.
std::vector<uint8_t> perf_schema();

// One factory per transport, each in its own file (transport_<name>.cpp).
std::unique_ptr<PingPong> make_floor(size_t bytes);
std::unique_ptr<PingPong> make_uds(size_t bytes);
std::unique_ptr<PingPong> make_pipe(size_t bytes);
std::unique_ptr<PingPong> make_flowbus(size_t bytes, WaitMode wait, const BackoffOptions& backoff, bool untrusted);
std::unique_ptr<PingPong> make_zmq(size_t bytes);
std::unique_ptr<PingPong> make_bmq(size_t bytes);

/// Every transport a run measures by default, in that order.
extern const char* const kTransportNames;  // "flowbus,floor,uds,pipe,zmq,bmq"
/// flowbus on untrusted topics (readers verify a copy of each event): on
/// request only (`--untrusted`, or by name), not in a default run.
extern const char* const kUntrustedTransport;  // "flowbus-untrusted"

}  // namespace flowbus::perf
