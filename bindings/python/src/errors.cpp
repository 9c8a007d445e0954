#include "errors.hpp"

#include <unistd.h>

namespace flowbus::python {

namespace {

ErrorTypes g_types;
PyObject* g_by_code[int(ErrorCode::WrongProcess) + 1] = {};

struct CodeType {
  ErrorCode code;
  const char* name;
  PyObject* builtin;  // a second base, so that `except ValueError` catches it too (or null)
  const char* doc;
};

// Built in register_errors: PyExc_* are not constants before the interpreter runs.
std::vector<CodeType> code_types() {
  return {
      {ErrorCode::InvalidName, "InvalidName", PyExc_ValueError,
       "A bus, topic, publisher or pattern name breaks the naming rules."},
      {ErrorCode::InvalidArgument, "InvalidArgument", PyExc_ValueError,
       "An option is out of range (ring size, mode, ...)."},
      {ErrorCode::NotFound, "NotFound", PyExc_LookupError, "The bus or topic does not exist."},
      {ErrorCode::AlreadyExists, "AlreadyExists", nullptr,
       "A topic exists with other settings; the message names each difference."},
      {ErrorCode::NameInUse, "NameInUse", nullptr, "A live publisher (named in the message) owns this publisher name."},
      {ErrorCode::IncompatibleSchema, "IncompatibleSchema", PyExc_ValueError,
       "The schema is not a compatible evolution of the topic's registered one."},
      {ErrorCode::VersionMismatch, "VersionMismatch", nullptr,
       "A segment was written by another flowbus layout version."},
      {ErrorCode::Corrupt, "Corrupt", nullptr, "Shared memory fails a consistency check."},
      {ErrorCode::PermissionDenied, "PermissionDenied", PyExc_PermissionError,
       "Unix ownership and mode forbid the access."},
      {ErrorCode::NoSpace, "NoSpace", nullptr, "/dev/shm (or a table of the bus directory) is full."},
      {ErrorCode::BadPayload, "BadPayload", PyExc_ValueError, "JSON or bytes that do not fit the topic's schema."},
      {ErrorCode::System, "SystemFailure", PyExc_OSError, "An unexpected operating-system error."},
      {ErrorCode::WrongProcess, "WrongProcess", nullptr,
       "A handle used in a fork() child of the process that made it: open the bus again in the child."},
  };
}

PyObject* make_type(py::module_& m, const char* name, PyObject* base, PyObject* builtin, const char* doc,
                    const char* code) {
  const std::string qualified = std::string("flowbus.") + name;
  py::tuple bases =
      builtin != nullptr ? py::make_tuple(py::handle(base), py::handle(builtin)) : py::make_tuple(py::handle(base));
  py::dict attributes;
  attributes["code"] = code != nullptr ? py::object(py::str(code)) : py::object(py::none());
  PyObject* type = PyErr_NewExceptionWithDoc(qualified.c_str(), doc, bases.ptr(), attributes.ptr());
  if (type == nullptr) throw py::error_already_set();
  m.add_object(name, py::handle(type));  // the module keeps a reference; so do we (never freed)
  return type;
}

// Sets type(message) with attributes set by `decorate`, as the current Python error.
template <class Decorate>
void set_error(PyObject* type, const std::string& message, Decorate&& decorate) {
  py::object text = py::str(message);
  PyObject* exception = PyObject_CallOneArg(type, text.ptr());
  if (exception == nullptr) return;  // that error is set instead
  decorate(py::handle(exception));
  PyErr_SetObject(type, exception);
  Py_DECREF(exception);
}

}  // namespace

const ErrorTypes& error_types() { return g_types; }

void register_errors(py::module_& m) {
  g_types.base = make_type(
      m, "Error", PyExc_Exception, nullptr,
      "Base of every flowbus error. `code` names the kind ('not-found', 'bad-payload', ... as the core's "
      "ErrorCode; 'full', 'too-large', 'events-lost', 'event-released', 'closed'); the message says what to do next.",
      nullptr);
  for (const CodeType& t : code_types())
    g_by_code[int(t.code)] = make_type(m, t.name, g_types.base, t.builtin, t.doc, to_string(t.code));
  g_types.full =
      make_type(m, "Full", g_types.base, PyExc_TimeoutError,
                "A block ring stayed full for the whole timeout: a live reader holds it. `published`: events of "
                "a batch that went in before (None for one event).",
                "full");
  g_types.too_large =
      make_type(m, "TooLarge", g_types.base, PyExc_ValueError,
                "The event (with its header and subject) can never fit the ring: over 7/16 of its size. "
                "`published`: events of a batch that went in before (None for one event).",
                "too-large");
  g_types.events_lost =
      make_type(m, "EventsLost", g_types.base, nullptr,
                "Raised by a subscriber made with raise_on_loss=True when events were skipped. `missed`: "
                "how many; `reason`: 'evicted' (a block reader too slow), 'lapped' (a latest reader "
                "overtaken), 'corrupt' (a ring quarantined), 'torn' (evicted while holding an event: its "
                "bytes may have been reused) or 'rejected' (events of an untrusted topic that failed "
                "verification). Reading again goes on after the gap.",
                "events-lost");
  g_types.released =
      make_type(m, "EventReleased", g_types.base, PyExc_ValueError,
                "The event was released (its `with` block ended, release() was called, or its subscriber "
                "read the next event): its bytes belong to the ring again.",
                "event-released");
  g_types.closed = make_type(m, "Closed", g_types.base, PyExc_ValueError, "The handle was closed.", "closed");

  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const Error& e) {
      set_error(g_by_code[int(e.code())], e.what(), [](py::handle) {});
    }
  });
}

void raise(PyObject* type, const std::string& message) {
  set_error(type, message, [](py::handle) {});
  throw py::error_already_set();
}

void raise(ErrorCode code, const std::string& message) { raise(g_by_code[int(code)], message); }

void raise_publish_status(PublishStatus status, const std::string& topic, int64_t published) {
  const std::string after = published >= 0 ? " after " + std::to_string(published) + " event(s) of the batch" : "";
  PyObject* type = nullptr;
  std::string message;
  switch (status) {
    case PublishStatus::Full:
      type = g_types.full;
      message =
          "topic '" + topic + "': the ring stayed full for the whole timeout" + after +
          ": a live reader holds it (it is evicted after the topic's slow-consumer timeout); raise the timeout or "
          "look with `flowbus inspect`";
      break;
    case PublishStatus::TooLarge:
      type = g_types.too_large;
      message =
          "topic '" + topic + "': the event" + after +
          " is larger than 7/16 of the ring (the largest record it takes); create the topic with a larger ring_size";
      break;
    case PublishStatus::WrongProcess:
      raise_wrong_process("Publisher");
    default:
      type = g_types.base;
      message = "topic '" + topic + "': publish failed: " + to_string(status);
  }
  set_error(type, message, [&](py::handle e) {
    e.attr("published") = published >= 0 ? py::object(py::int_(published)) : py::object(py::none());
  });
  throw py::error_already_set();
}

void raise_events_lost(const std::string& reason, uint64_t missed, const std::string& message) {
  set_error(g_types.events_lost, message, [&](py::handle e) {
    e.attr("missed") = py::int_(missed);
    e.attr("reason") = py::str(reason);
  });
  throw py::error_already_set();
}

void raise_wrong_process(const char* handle) {
  raise(ErrorCode::WrongProcess,
        std::string("this ") + handle + " belongs to the process that made it, not to this one (pid " +
            std::to_string(getpid()) +
            "), which got it through fork(): open the bus again in this process (flowbus.Bus(name))");
}

}  // namespace flowbus::python
