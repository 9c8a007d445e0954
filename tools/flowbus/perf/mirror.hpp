// `flowbus perf mirror`: events through two sidecars on loopback, against a
// plain loopback TCP echo measured in the same run.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace flowbus::perf {

struct MirrorThroughput {
  size_t bytes = 0;      ///< payload bytes per event (the FlatBuffer's byte vector)
  double seconds = 0;    ///< from the first timed publish to the last event read on B
  uint64_t events = 0;   ///< events read on B, every one in order and checked
  double events_per_s() const { return seconds > 0 ? double(events) / seconds : 0; }
  double mb_per_s() const { return events_per_s() * double(bytes) / 1e6; }
};

/// Two buses (perfmirror-<pid>-a and -b), each with an in-process
/// flowbus::Sidecar on its own thread, one loopback TCP connection between
/// them. A exports perf.ping and perf.mirror.> and imports perf.pong; B the
/// reverse. The destructor stops both sidecars and destroys both buses, also
/// after an error.
class MirrorRig {
 public:
  /// `sizes`: the payload sizes the throughput runs will use (their topics
  /// are made up front, with rings large enough for them).
  explicit MirrorRig(const std::vector<size_t>& sizes, size_t rtt_bytes);
  ~MirrorRig();
  MirrorRig(const MirrorRig&) = delete;
  MirrorRig& operator=(const MirrorRig&) = delete;

  /// A publisher on A publishes as fast as Block allows for `seconds`; a
  /// reader on B checks that every event arrives once and in order. Throws
  /// on a gap, a doubled or damaged event, or a stall.
  MirrorThroughput throughput(size_t bytes, double seconds);
  /// Round trips in ns: perf.ping on A -> B, an echo on B publishes
  /// perf.pong -> A. `warmup` round trips first, not returned.
  std::vector<double> round_trips(uint64_t iters, uint64_t warmup);
  /// The sidecars' log lines so far (for error messages).
  std::string logs() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// Round trips in ns of a plain loopback TCP echo (blocking sockets,
/// TCP_NODELAY, an echo thread), `bytes` each way.
std::vector<double> tcp_round_trips(size_t bytes, uint64_t iters, uint64_t warmup);

}  // namespace flowbus::perf
