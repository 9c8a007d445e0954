// The zero-copy view of an event: a read-only memoryview over ring memory
// whose exporter can be revoked when the event is released.
#pragma once

#include <pybind11/pybind11.h>

#include <cstddef>
#include <cstdint>
#include <memory>

namespace flowbus::python {

namespace py = pybind11;

/// A memoryview and the object that exports its buffer. Keep both: after
/// revoke() the exporter says whether anything still reads through it.
struct EventView {
  py::object view;      // memoryview, read-only, format 'B'
  py::object exporter;  // flowbus._EventBuffer
};

/// A read-only memoryview of [data, data + size). Its exporter holds
/// `mapping` (what keeps the ring mapped) for as long as any buffer it
/// exported is alive, so no view can outlive the memory it points at.
EventView make_event_view(const uint8_t* data, size_t size, std::shared_ptr<const void> mapping);

/// Releases `v.view` (later access raises ValueError "operation forbidden on
/// released memoryview object") and makes the exporter refuse new buffers.
/// Returns how many buffers are still exported: views that cannot be revoked
/// (slices of the view, or objects such as numpy arrays made from it).
Py_ssize_t revoke(const EventView& v);

/// Creates the exporter type (flowbus._EventBuffer) in `m`.
void register_event_buffer(py::module_& m);

}  // namespace flowbus::python
