// The extension module flowbus._flowbus; the package flowbus re-exports it.
#include <pybind11/pybind11.h>

#include "bus.hpp"
#include "errors.hpp"
#include "event.hpp"
#include "event_buffer.hpp"
#include "flowbus/version.hpp"
#include "publisher.hpp"
#include "subscriber.hpp"

PYBIND11_MODULE(_flowbus, m) {
  namespace fp = flowbus::python;
  m.doc() = "flowbus: a shared-memory event bus (FlatBuffers CloudEvents read in place).";
  m.attr("__version__") = flowbus::version();
  fp::register_errors(m);
  fp::register_event_buffer(m);
  fp::register_event(m);
  fp::register_subscriber(m);
  fp::register_publisher(m);
  fp::register_bus(m);
}
