// flowbus.Subscriber: reads every ring of every topic matching a pattern.
#pragma once

#include <pybind11/pybind11.h>

#include <memory>
#include <optional>

#include "subscriber_state.hpp"

namespace flowbus::python {

class PySubscriber {
 public:
  PySubscriber(std::shared_ptr<Bus> bus, Subscriber reader, bool raise_on_loss);
  py::object read();
  py::object wait(std::optional<double> timeout);
  py::list poll(size_t max_events);
  py::list read_batch(size_t max_events, std::optional<double> timeout);
  void close();
  const LossCounters& losses() const { return state_->losses; }
  bool closed() const { return !state_->reader; }
  const std::string& pattern() const { return pattern_; }

 private:
  /// Calls try_once() until it gives something (a non-empty result), then
  /// returns it; sleeps on the rings between tries without the GIL, in
  /// slices, so that Ctrl-C (or any signal handler raising) stops it.
  /// Returns what try_once gave last (empty) once `timeout` passed.
  template <class TryOnce>
  py::object wait_for(std::optional<double> timeout, TryOnce&& try_once);
  /// Counts (and, raise_on_loss, raises) a status other than Ok and Empty.
  /// With `batch_so_far` events in hand, the exception waits for the next call.
  void on_loss(const ReadResult& result, size_t batch_so_far);
  void raise_pending_loss();

  std::shared_ptr<SubscriberState> state_;
  std::string pattern_;
  struct PendingLoss {
    std::string reason, message;
    uint64_t missed;
  };
  std::optional<PendingLoss> pending_loss_;
};

void register_subscriber(py::module_& m);

}  // namespace flowbus::python
