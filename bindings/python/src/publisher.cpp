#include "publisher.hpp"

#include <pybind11/stl.h>

#include "errors.hpp"
#include "waiting.hpp"

namespace flowbus::python {

namespace {

/// A bytes-like object's memory, held (and so kept alive and unresized) while in scope.
class HeldBuffer {
 public:
  explicit HeldBuffer(py::handle object) {
    if (PyObject_GetBuffer(object.ptr(), &buffer_, PyBUF_SIMPLE) != 0) throw py::error_already_set();
  }
  ~HeldBuffer() { PyBuffer_Release(&buffer_); }
  HeldBuffer(const HeldBuffer&) = delete;
  HeldBuffer& operator=(const HeldBuffer&) = delete;
  std::span<const uint8_t> bytes() const { return {static_cast<const uint8_t*>(buffer_.buf), size_t(buffer_.len)}; }

 private:
  Py_buffer buffer_;
};

}  // namespace

PyPublisher::PyPublisher(std::shared_ptr<Bus> bus, Publisher writer)
    : bus_(std::move(bus)), writer_(std::move(writer)), topic_(writer_->topic()) {}

Publisher& PyPublisher::use() {
  if (!writer_) raise(error_types().closed, "this Publisher (topic '" + topic_ + "') was closed");
  if (in_call_without_gil_)
    raise(PyExc_RuntimeError,
          "this Publisher is waiting for room in another thread: a publisher is used by one thread at a time");
  return *writer_;
}

template <class TrySlice>
PublishStatus PyPublisher::retry_without_gil(std::optional<double> timeout, TrySlice&& try_slice) {
  const double deadline = timeout ? monotonic_seconds() + std::max(0.0, *timeout) : 0;
  for (;;) {
    double slice = kSliceSeconds;
    if (timeout) {
      const double left = deadline - monotonic_seconds();
      if (left <= 0) return PublishStatus::Full;
      slice = std::min(slice, left);
    }
    const PublishStatus status =
        without_gil(in_call_without_gil_, [&] { return try_slice(std::chrono::nanoseconds(int64_t(slice * 1e9))); });
    if (status != PublishStatus::Full) return status;
    if (PyErr_CheckSignals() != 0) throw py::error_already_set();
  }
}

void PyPublisher::publish_bytes(std::span<const uint8_t> bytes, std::optional<double> timeout,
                                std::string_view subject) {
  check_timeout(timeout);
  Publisher& writer = use();
  PublishStatus status = writer.try_publish(bytes, subject);  // with the GIL: the common case costs no hand-over
  if (status == PublishStatus::Full)
    status = retry_without_gil(timeout,
                               [&](std::chrono::nanoseconds slice) { return writer.publish(bytes, slice, subject); });
  if (status != PublishStatus::Ok) raise_publish_status(status, topic_);
}

void PyPublisher::publish(py::buffer data, std::optional<double> timeout, std::optional<std::string> subject) {
  const HeldBuffer held(data);
  publish_bytes(held.bytes(), timeout, subject ? std::string_view(*subject) : std::string_view());
}

bool PyPublisher::try_publish(py::buffer data, std::optional<std::string> subject) {
  const HeldBuffer held(data);
  const PublishStatus status =
      use().try_publish(held.bytes(), subject ? std::string_view(*subject) : std::string_view());
  if (status == PublishStatus::Full) return false;
  if (status != PublishStatus::Ok) raise_publish_status(status, topic_);
  return true;
}

size_t PyPublisher::publish_batch(py::iterable events, std::optional<double> timeout) {
  check_timeout(timeout);
  Publisher& writer = use();
  py::object sequence = py::reinterpret_steal<py::object>(
      PySequence_Fast(events.ptr(), "publish_batch takes a list of bytes-like objects"));
  if (!sequence) throw py::error_already_set();
  const Py_ssize_t count = PySequence_Fast_GET_SIZE(sequence.ptr());
  PyObject** items = PySequence_Fast_ITEMS(sequence.ptr());
  buffers_.resize(size_t(count));
  events_.resize(size_t(count));
  Py_ssize_t held = 0;
  struct Release {  // the buffers taken so far, whatever happens
    std::vector<Py_buffer>& buffers;
    Py_ssize_t& held;
    ~Release() {
      for (Py_ssize_t i = 0; i < held; ++i) PyBuffer_Release(&buffers[size_t(i)]);
    }
  } release{buffers_, held};
  for (; held < count; ++held) {
    Py_buffer& b = buffers_[size_t(held)];
    if (PyObject_GetBuffer(items[held], &b, PyBUF_SIMPLE) != 0) throw py::error_already_set();
    events_[size_t(held)] = {static_cast<const uint8_t*>(b.buf), size_t(b.len)};
  }
  const std::span<const std::span<const uint8_t>> all(events_.data(), events_.size());
  BatchResult result = writer.try_publish_batch(all);
  size_t published = result.published;
  PublishStatus status = result.status;
  if (status == PublishStatus::Full)
    status = retry_without_gil(timeout, [&](std::chrono::nanoseconds slice) {
      const BatchResult more = writer.publish_batch(all.subspan(published), slice);
      published += more.published;
      return more.status;
    });
  if (status != PublishStatus::Ok) raise_publish_status(status, topic_, int64_t(published));
  return published;
}

const SchemaCodec& PyPublisher::codec() {
  if (!codec_) {
    const std::optional<TopicInfo> info = bus_->find_topic(topic_);
    if (!info) raise(ErrorCode::NotFound, "topic '" + topic_ + "' is no longer on bus '" + bus_->name() + "'");
    codec_ = std::make_unique<SchemaCodec>(info->schema, info->type);
  }
  return *codec_;
}

void PyPublisher::publish_json(py::object document, std::optional<double> timeout, std::optional<std::string> subject) {
  check_timeout(timeout);
  use();
  std::string text;
  if (PyUnicode_Check(document.ptr()) || PyBytes_Check(document.ptr())) {
    text = document.cast<std::string>();
  } else {
    static py::handle dumps =
        py::object(py::module_::import("json").attr("dumps")).release();  // kept: no destructor after Python finalizes
    text = dumps(document).cast<std::string>();
  }
  std::vector<uint8_t> event;
  try {
    event = codec().json_to_flatbuffer(text);
  } catch (const Error& e) {
    raise(e.code(), "topic '" + topic_ + "' (" + codec().root_type() + "): " + e.what());
  }
  publish_bytes(event, timeout, subject ? std::string_view(*subject) : std::string_view());
}

void register_publisher(py::module_& m) {
  py::class_<PyPublisher>(m, "Publisher", R"doc(The single writer of one ring of one topic (Bus.publisher).

publish() copies a finished FlatBuffer (any bytes-like object, e.g.
builder.Output()) into the ring; publish_json() converts a dict or JSON text
through the topic's registered schema first; publish_batch() copies a list of
them as one burst. When a block ring is full they wait up to `timeout`
seconds (None: for ever), letting go of the GIL, then raise Full; a reader
that stopped is evicted after the topic's slow-consumer timeout, a dead one
at once. One thread at a time.)doc")
      .def("publish", &PyPublisher::publish, py::arg("data"), py::arg("timeout") = 5.0, py::arg("subject") = py::none(),
           "Copies `data` (a finished FlatBuffer of the topic's type) into the ring. Raises Full after `timeout` "
           "seconds without room, TooLarge if it can never fit.")
      .def("try_publish", &PyPublisher::try_publish, py::arg("data"), py::arg("subject") = py::none(),
           "As publish(), but never waits: False if the ring is full now.")
      .def("publish_batch", &PyPublisher::publish_batch, py::arg("events"), py::arg("timeout") = 5.0,
           "Copies a list of finished FlatBuffers in order as one burst (one clock read and one wake-up per burst). "
           "Returns how many were published (all of them); on Full or TooLarge the exception's `published` says how "
           "many went in before.")
      .def("publish_json", &PyPublisher::publish_json, py::arg("document"), py::arg("timeout") = 5.0,
           py::arg("subject") = py::none(),
           "Publishes a dict (or JSON text) converted through the topic's registered schema. Raises BadPayload naming "
           "the field that does not fit.")
      .def("close", &PyPublisher::close,
           "Lets go of the ring: it stays, with its events, for the topic's retention; a publisher of the same name "
           "continues its sequence. Idempotent.")
      .def("__enter__", [](py::object self) { return self; })
      .def("__exit__", [](PyPublisher& p, py::args) { p.close(); })
      .def_property_readonly("topic", &PyPublisher::topic)
      .def_property_readonly("closed", &PyPublisher::closed)
      .def_property_readonly("name", [](PyPublisher& p) { return p.use().context().publisher_name; })
      .def_property_readonly(
          "source", [](PyPublisher& p) { return p.use().source(); },
          "The CloudEvents source of its events: 'flowbus://<host>/<bus>/<name>'.")
      .def_property_readonly("publisher_id", [](PyPublisher& p) { return p.use().publisher_id(); })
      .def_property_readonly(
          "next_sequence", [](PyPublisher& p) { return p.use().next_sequence(); }, "The sequence the next event gets.")
      .def_property_readonly(
          "evictions", [](PyPublisher& p) { return p.use().evictions(); },
          "Readers this publisher evicted as slow consumers.")
      .def("__repr__", [](const PyPublisher& p) {
        return "<flowbus.Publisher '" + p.topic() + "'" + (p.closed() ? " closed>" : ">");
      });
}

}  // namespace flowbus::python
