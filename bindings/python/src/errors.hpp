// flowbus.Error and its subclasses: the core's ErrorCode values as Python
// exception types, and the hot-path statuses that Python raises instead of
// returning (Full, TooLarge, EventsLost, WrongProcess).
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "flowbus/error.hpp"
#include "flowbus/status.hpp"

namespace flowbus::python {

namespace py = pybind11;

/// The exception types that are not an ErrorCode of the core.
struct ErrorTypes {
  PyObject* base = nullptr;         // flowbus.Error
  PyObject* full = nullptr;         // flowbus.Full: a block ring stayed full for the whole timeout
  PyObject* too_large = nullptr;    // flowbus.TooLarge: the event can never fit the ring
  PyObject* events_lost = nullptr;  // flowbus.EventsLost: raised by subscribers made with raise_on_loss
  PyObject* released = nullptr;     // flowbus.EventReleased: the event's bytes were given back
  PyObject* closed = nullptr;       // flowbus.Closed: the handle was closed
};
const ErrorTypes& error_types();

/// Creates the exception types in `m` and translates flowbus::Error.
void register_errors(py::module_& m);

/// Sets `type(message)` as the Python error and throws
/// error_already_set, which pybind11 hands to Python as it is.
[[noreturn]] void raise(PyObject* type, const std::string& message);
[[noreturn]] void raise(ErrorCode code, const std::string& message);

/// Raises the exception for a failed publish on `topic` (never Ok).
/// `published`, for batches: how many went in before it stopped.
[[noreturn]] void raise_publish_status(PublishStatus status, const std::string& topic, int64_t published = -1);

/// Raises flowbus.EventsLost with `missed` and `reason` ("evicted", "lapped",
/// "corrupt" or "torn") as attributes.
[[noreturn]] void raise_events_lost(const std::string& reason, uint64_t missed, const std::string& message);

/// A handle that came to this process through fork().
[[noreturn]] void raise_wrong_process(const char* handle);

}  // namespace flowbus::python
