// What a Python Subscriber and the events it hands out share.
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "flowbus/bus.hpp"
#include "flowbus/schema.hpp"

namespace flowbus::python {

namespace py = pybind11;
class PyEvent;

/// A ring's CloudEvents context and policy, copied once per ring so that an
/// event's attributes stay readable after its subscriber is closed.
struct RingInfo {
  RingContext context;
  Policy policy = Policy::Block;
};

/// Losses seen by a subscriber (see Subscriber.missed etc. in the stubs).
struct LossCounters {
  uint64_t missed = 0;         // events skipped: evicted (block) or lapped (latest)
  uint64_t evictions = 0;      // times this subscriber was evicted as a slow consumer
  uint64_t laps = 0;           // times a latest writer overtook it
  uint64_t corrupt_rings = 0;  // rings quarantined
  uint64_t torn_views = 0;     // events held while being evicted, or copied while overwritten (latest)
  uint64_t rejected = 0;       // untrusted topics: events that failed verification, skipped
};

struct SubscriberState {
  std::shared_ptr<Bus> bus;  // topics' schemas, for json()
  // Null once closed. Zero-copy views share it: the rings stay mapped while
  // a view that could not be revoked is alive.
  std::shared_ptr<Subscriber> reader;
  PyEvent* held = nullptr;  // the zero-copy event handed out and not released yet
  bool raise_on_loss = false;
  bool in_call_without_gil = false;  // wait() let go of the GIL: another thread must not use the reader
  LossCounters losses;
  std::vector<std::shared_ptr<const RingInfo>> rings;  // by Event::ring(), filled as rings are seen
  std::map<std::string, std::unique_ptr<SchemaCodec>, std::less<>> codecs;  // by topic

  /// The reader, or raises Closed (closed) or RuntimeError (another thread is in wait()).
  Subscriber& use();
  /// Gives the held event back to the ring (revoking its view). Raises
  /// BufferError if a view derived from it could not be revoked, and
  /// EventsLost (raise_on_loss) if it was torn; it is released either way.
  void release_held();
  const std::shared_ptr<const RingInfo>& ring(uint32_t index);
  /// The topic's schema codec (the topic's registered schema and type).
  const SchemaCodec& codec(const std::string& topic);
};

}  // namespace flowbus::python
