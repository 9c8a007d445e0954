// flowbus.Event: one event, read in place (zero copy) or copied (batches).
#pragma once

#include <pybind11/pybind11.h>

#include <memory>
#include <string>

#include "event_buffer.hpp"
#include "subscriber_state.hpp"

namespace flowbus::python {

class PyEvent {
 public:
  /// Zero copy: `event` points into the ring until released.
  PyEvent(std::shared_ptr<SubscriberState> owner, const Event& event);
  /// Owns `copy`, the event's bytes, taken while it was valid.
  PyEvent(std::shared_ptr<SubscriberState> owner, const Event& event, py::bytes copy);
  ~PyEvent();
  PyEvent(const PyEvent&) = delete;
  PyEvent& operator=(const PyEvent&) = delete;

  py::object data();
  size_t size() const { return event_.size(); }
  /// Gives the bytes back to the ring (zero copy); a no-op for copies and when done already.
  void release();
  bool still_valid();
  std::string json_text();
  bool zero_copy() const { return zero_copy_; }
  bool released() const { return released_; }

  std::string id() const;
  std::string time() const { return format_rfc3339(event_.time_ns()); }
  uint64_t time_ns() const { return event_.time_ns(); }
  uint64_t sequence() const { return event_.sequence(); }
  const std::string& subject() const { return subject_; }
  const RingContext& context() const { return ring_->context; }
  Policy policy() const { return ring_->policy; }

 private:
  friend struct SubscriberState;
  void check_readable(const char* what) const;
  /// Revokes the view handed out; returns the buffers that escaped it.
  Py_ssize_t revoke_view();

  std::shared_ptr<SubscriberState> owner_;
  std::shared_ptr<const RingInfo> ring_;
  Event event_;
  std::string subject_;  // copied: the ring's bytes may be reused while the event object lives
  py::object copy_;      // bytes: copied events only
  EventView view_;       // zero copy: made at the first access to data
  bool zero_copy_;
  bool released_ = false;
};

void register_event(py::module_& m);

}  // namespace flowbus::python
