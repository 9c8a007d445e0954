#include "event_buffer.hpp"

#include <new>

#include "errors.hpp"

namespace flowbus::python {

namespace {

// The exporter: counts its buffers so that revoke() can tell whether any
// escaped the memoryview it released.
struct EventBufferObject {
  PyObject_HEAD const uint8_t* data;
  Py_ssize_t size;
  Py_ssize_t exports;
  bool revoked;
  std::shared_ptr<const void> mapping;
};

PyTypeObject* g_type = nullptr;

int get_buffer(PyObject* self, Py_buffer* view, int flags) {
  auto* b = reinterpret_cast<EventBufferObject*>(self);
  if (b->revoked) {
    view->obj = nullptr;
    PyErr_SetString(
        error_types().released,
        "the event was released: its bytes belong to the ring again; copy with bytes(ev.data) what must outlive it");
    return -1;
  }
  if ((flags & PyBUF_WRITABLE) == PyBUF_WRITABLE) {
    view->obj = nullptr;
    PyErr_SetString(PyExc_BufferError,
                    "ev.data is read-only: it points into the ring, which other readers share; copy it with "
                    "bytearray(ev.data) to change it");
    return -1;
  }
  if (PyBuffer_FillInfo(view, self, const_cast<uint8_t*>(b->data), b->size, 1, flags) != 0) return -1;
  ++b->exports;
  return 0;
}

void release_buffer(PyObject* self, Py_buffer*) { --reinterpret_cast<EventBufferObject*>(self)->exports; }

void dealloc(PyObject* self) {
  auto* b = reinterpret_cast<EventBufferObject*>(self);
  b->mapping.~shared_ptr();
  PyTypeObject* type = Py_TYPE(self);
  type->tp_free(self);
  Py_DECREF(type);  // heap types are referenced by their instances
}

PyType_Slot g_slots[] = {
    {Py_tp_dealloc, reinterpret_cast<void*>(dealloc)},
    {Py_bf_getbuffer, reinterpret_cast<void*>(get_buffer)},
    {Py_bf_releasebuffer, reinterpret_cast<void*>(release_buffer)},
    {Py_tp_doc, const_cast<char*>("Exports an event's bytes in the ring, read-only, until the event is released.")},
    {0, nullptr},
};

PyType_Spec g_spec = {"flowbus._EventBuffer", sizeof(EventBufferObject), 0,
                      Py_TPFLAGS_DEFAULT | Py_TPFLAGS_DISALLOW_INSTANTIATION, g_slots};

}  // namespace

EventView make_event_view(const uint8_t* data, size_t size, std::shared_ptr<const void> mapping) {
  PyObject* raw = g_type->tp_alloc(g_type, 0);
  if (raw == nullptr) throw py::error_already_set();
  auto* b = reinterpret_cast<EventBufferObject*>(raw);
  b->data = data;
  b->size = Py_ssize_t(size);
  b->exports = 0;
  b->revoked = false;
  new (&b->mapping) std::shared_ptr<const void>(std::move(mapping));
  EventView v;
  v.exporter = py::reinterpret_steal<py::object>(raw);
  v.view = py::reinterpret_steal<py::object>(PyMemoryView_FromObject(raw));
  if (!v.view) throw py::error_already_set();
  return v;
}

Py_ssize_t revoke(const EventView& v) {
  auto* b = reinterpret_cast<EventBufferObject*>(v.exporter.ptr());
  b->revoked = true;
  if (v.view) {
    static PyObject* release_name = PyUnicode_InternFromString("release");
    PyObject* r = PyObject_CallMethodNoArgs(v.view.ptr(), release_name);
    if (r == nullptr) PyErr_Clear();  // BufferError: the view itself is exported (a numpy array, say): counted below
    Py_XDECREF(r);
  }
  return b->exports;
}

void register_event_buffer(py::module_& m) {
  g_type = reinterpret_cast<PyTypeObject*>(PyType_FromSpec(&g_spec));
  if (g_type == nullptr) throw py::error_already_set();
  m.add_object("_EventBuffer", py::handle(reinterpret_cast<PyObject*>(g_type)));
}

}  // namespace flowbus::python
