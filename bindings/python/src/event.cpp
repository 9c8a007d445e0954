#include "event.hpp"

#include <cstdio>

#include "errors.hpp"

namespace flowbus::python {

PyEvent::PyEvent(std::shared_ptr<SubscriberState> owner, const Event& event)
    : owner_(std::move(owner)),
      ring_(owner_->ring(event.ring())),
      event_(event),
      subject_(event.subject()),
      zero_copy_(true) {}

PyEvent::PyEvent(std::shared_ptr<SubscriberState> owner, const Event& event, py::bytes copy)
    : owner_(std::move(owner)),
      ring_(owner_->ring(event.ring())),
      event_(event),
      subject_(event.subject()),
      copy_(std::move(copy)),
      zero_copy_(false) {}

PyEvent::~PyEvent() {
  // Dropped without release (no `with`): give the bytes back now, not at the next read.
  if (zero_copy_ && !released_ && owner_->held == this) {
    try {
      owner_->release_held();
    } catch (py::error_already_set& e) {
      e.discard_as_unraisable("flowbus.Event was dropped");
    }
  }
}

void PyEvent::check_readable(const char* what) const {
  if (released_)
    raise(error_types().released, std::string("ev.") + what +
                                      ": the event was released (its `with` block ended, release() was called, or its "
                                      "subscriber read the next event); copy with bytes(ev.data) what must outlive it");
}

py::object PyEvent::data() {
  if (!zero_copy_) return py::reinterpret_steal<py::object>(PyMemoryView_FromObject(copy_.ptr()));
  check_readable("data");
  if (!view_.view) view_ = make_event_view(event_.data(), event_.size(), owner_->reader);
  return view_.view;
}

Py_ssize_t PyEvent::revoke_view() {
  released_ = true;
  if (!view_.exporter) return 0;
  const Py_ssize_t escaped = revoke(view_);
  view_ = EventView{};
  return escaped;
}

void PyEvent::release() {
  if (!zero_copy_ || released_) return;
  if (owner_->held == this) owner_->release_held();
  released_ = true;
}

bool PyEvent::still_valid() {
  if (!zero_copy_) return true;  // checked when it was copied
  check_readable("still_valid()");
  return owner_->use().still_valid(event_);
}

std::string PyEvent::json_text() {
  const SchemaCodec& codec = owner_->codec(context().topic);
  if (!zero_copy_) {
    const std::string_view bytes = copy_.cast<std::string_view>();
    return codec.flatbuffer_to_json(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  }
  check_readable("json()");
  std::string text = codec.flatbuffer_to_json(event_.data(), event_.size());
  // Latest: the writer may have overwritten the bytes while they were decoded.
  if (policy() == Policy::Latest && !owner_->use().still_valid(event_))
    raise_events_lost("torn", 1,
                      "topic '" + context().topic + "': the writer overwrote event " + id() +
                          " while it was decoded (latest policy); read the next one");
  return text;
}

std::string PyEvent::id() const {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%016llx-%llu", static_cast<unsigned long long>(context().publisher_id),
                static_cast<unsigned long long>(event_.sequence()));
  return buf;
}

void register_event(py::module_& m) {
  py::class_<PyEvent>(m, "Event", R"doc(One event of a subscription, with its CloudEvents context.

Events from Subscriber.wait(), read() and iteration are zero copy: `data` is a
read-only memoryview into the ring, valid until the event is released (the
end of its `with` block, release(), or the subscriber's next read). Afterwards
`data`, `json()` and `still_valid()` raise EventReleased, and views taken
before raise ValueError. The context attributes stay readable.

Events from poll() and read_batch() own a copy of their bytes: `data` stays
valid and release() does nothing.)doc")
      .def_property_readonly("data", &PyEvent::data,
                             "The FlatBuffer, a read-only memoryview (zero copy for events from wait/read/iteration).")
      .def_property_readonly("id", &PyEvent::id, "CloudEvents id: '<publisher id hex>-<sequence>', unique on the bus.")
      .def_property_readonly(
          "source", [](const PyEvent& e) { return e.context().source; },
          "CloudEvents source: 'flowbus://<host>/<bus>/<publisher>'.")
      .def_property_readonly(
          "type", [](const PyEvent& e) { return e.context().type; },
          "CloudEvents type: the topic's root table, e.g. 'examples.SensorReading'.")
      .def_property_readonly("time", &PyEvent::time, "CloudEvents time: RFC 3339 with nanoseconds, UTC.")
      .def_property_readonly("time_ns", &PyEvent::time_ns, "Publish time in ns since the Unix epoch.")
      .def_property_readonly(
          "subject",
          [](const PyEvent& e) -> py::object {
            return e.subject().empty() ? py::object(py::none()) : py::object(py::str(e.subject()));
          },
          "CloudEvents subject, or None.")
      .def_property_readonly("sequence", &PyEvent::sequence, "Sequence number in its publisher's ring (from 0).")
      .def_property_readonly(
          "topic", [](const PyEvent& e) { return e.context().topic; }, "The topic it was published on.")
      .def_property_readonly(
          "dataschema", [](const PyEvent& e) { return e.context().dataschema; },
          "CloudEvents dataschema: 'flowbus:schema/<schema id>'.")
      .def_property_readonly(
          "datacontenttype", [](const PyEvent& e) { return e.context().datacontenttype; },
          "CloudEvents datacontenttype: 'application/x-flatbuffers'.")
      .def_property_readonly(
          "publisher", [](const PyEvent& e) { return e.context().publisher_name; },
          "The name of the publisher that wrote it.")
      .def_property_readonly(
          "policy", [](const PyEvent& e) { return to_string(e.policy()); }, "Its topic's policy: 'block' or 'latest'.")
      .def_property_readonly("zero_copy", &PyEvent::zero_copy, "True if `data` points into the ring.")
      .def_property_readonly("released", &PyEvent::released, "True once the event's bytes went back to the ring.")
      .def("__len__", &PyEvent::size, "Size of the FlatBuffer in bytes.")
      .def("release", &PyEvent::release,
           "Gives the bytes back to the ring (revoking `data`). Idempotent. Raises BufferError if a slice of `data` "
           "(or an object made from it) is still alive: it was released anyway, and that slice now reads memory the "
           "publisher may reuse.")
      .def("still_valid", &PyEvent::still_valid,
           "Latest topics: True if the writer did not overwrite the bytes while you read them. Call after reading, "
           "before trusting what you read. Always True for block topics and copied events.")
      .def("json_text", &PyEvent::json_text, "The payload as JSON text, decoded through the topic's registered schema.")
      .def(
          "json",
          [](PyEvent& e) {
            static py::handle loads = py::object(py::module_::import("json").attr("loads"))
                                          .release();  // kept: no destructor after Python finalizes
            return loads(e.json_text());
          },
          "The payload as a dict, decoded through the topic's registered schema (every field, defaults included).")
      .def("__enter__", [](py::object self) { return self; })
      .def(
          "__exit__", [](PyEvent& e, py::args) { e.release(); }, "Releases the event.")
      .def("__repr__", [](const PyEvent& e) {
        return "<flowbus.Event " + e.context().topic + " " + e.id() + " " + std::to_string(e.size()) + " bytes" +
               (e.released() ? ", released>" : ">");
      });
}

}  // namespace flowbus::python
