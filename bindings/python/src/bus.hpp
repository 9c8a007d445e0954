// flowbus.Bus and flowbus.TopicInfo.
#pragma once

#include <pybind11/pybind11.h>

namespace flowbus::python {

namespace py = pybind11;

void register_bus(py::module_& m);

}  // namespace flowbus::python
