// `flowbus perf throughput`: events per second between real processes, with
// every receiver counting events and checking each publisher's order.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace flowbus::perf {

struct ThroughputResult {
  std::string mode;       ///< "1->1", "1->K", "P->1" or "in-process"
  std::string transport;  ///< flowbus, floor, uds, pipe or moodycamel
  size_t bytes = 0;       ///< payload per event
  int publishers = 1, subscribers = 1;
  double seconds = 0;   ///< from the start until the last receiver had every event
  uint64_t events = 0;  ///< events each subscriber received (and checked)
  uint64_t coalesce_ns = 0;  ///< flowbus: the subscribers' SubscriberOptions::coalesce
  size_t batch = 1;          ///< flowbus: events per publish call (publish_batch when above 1)
  bool untrusted = false;    ///< flowbus: an untrusted topic (readers verify a copy of each event)
  bool backoff = false;      ///< flowbus: subscribers wait with WaitStrategy::Backoff (else spin 50 us, then the futex)
  /// The side with several processes: each publisher's events/s in P->1
  /// (its events over the run's seconds), each subscriber's in 1->K (all
  /// events over the time it took to get them). Empty for 1->1.
  std::vector<double> per_process;
  bool time_shared = false;  ///< more processes than CPUs: some took turns on one
  double events_per_s() const { return seconds > 0 ? double(events) / seconds : 0; }  ///< 0: not run
  double mb_per_s() const { return events_per_s() * double(bytes) / 1e6; }
  /// Events moved per second by all processes of the many side together (1->K:
  /// deliveries, K per event); events_per_s() for 1->1.
  double total_events_per_s() const;
};

/// `publishers` processes publish on one Block topic through the normal API
/// (full CloudEvents context, one copy into the ring) for `seconds`;
/// `subscribers` processes read every event in place (waiting with
/// SubscriberOptions::coalesce = `coalesce_ns` when they run dry). With
/// `batch` above 1 each publisher hands `batch` events at a time to
/// Publisher::publish_batch (one clock read and one wake-up check per call).
/// `untrusted`: the topic is untrusted, so subscribers read verified copies.
/// `backoff`: subscribers wait with WaitStrategy::Backoff (default BackoffOptions).
ThroughputResult flowbus_throughput(size_t bytes, int publishers, int subscribers, double seconds,
                                    uint64_t coalesce_ns = 0, size_t batch = 1, bool untrusted = false,
                                    bool backoff = false);
/// The floor of 1->1: a bare single-writer ring of slots as large as
/// flowbus's records for this payload, in shared memory between two pinned
/// processes; a commit word per slot, the payload's first and last cache line
/// written and checked, the reader's position published once per eighth of
/// the ring. No header, no clock, no API: what moving the same lines costs.
ThroughputResult floor_throughput(size_t bytes, double seconds);
/// One writer process to one reader process over a Unix stream socket or a pipe.
ThroughputResult fd_throughput(bool unix_socket, size_t bytes, double seconds);
/// The in-process ceiling: moodycamel::ConcurrentQueue between two pinned
/// threads moving 64-byte items, preallocated, with producer and consumer
/// tokens; one item per call (as flowbus publishes and reads), or at its
/// best with `bulk` (256 items per enqueue and per dequeue).
ThroughputResult moodycamel_throughput(double seconds, bool bulk);

}  // namespace flowbus::perf
