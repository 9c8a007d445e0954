// flowbus.Publisher: the single writer of one ring of one topic.
#pragma once

#include <pybind11/pybind11.h>

#include <chrono>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "flowbus/bus.hpp"
#include "flowbus/schema.hpp"

namespace flowbus::python {

namespace py = pybind11;

class PyPublisher {
 public:
  PyPublisher(std::shared_ptr<Bus> bus, Publisher writer);
  void publish(py::buffer data, std::optional<double> timeout, std::optional<std::string> subject);
  bool try_publish(py::buffer data, std::optional<std::string> subject);
  size_t publish_batch(py::iterable events, std::optional<double> timeout);
  void publish_json(py::object document, std::optional<double> timeout, std::optional<std::string> subject);
  void close() {
    if (writer_) use();  // not while another thread waits for room
    writer_.reset();
  }
  bool closed() const { return !writer_; }
  Publisher& use();
  const std::string& topic() const { return topic_; }

 private:
  /// After a Full: tries again with try_slice(slice) without the GIL, in
  /// slices so that a signal (Ctrl-C) stops it, until something else than
  /// Full or the timeout (None: never). try_slice returns a PublishStatus.
  template <class TrySlice>
  PublishStatus retry_without_gil(std::optional<double> timeout, TrySlice&& try_slice);
  void publish_bytes(std::span<const uint8_t> bytes, std::optional<double> timeout, std::string_view subject);
  const SchemaCodec& codec();

  std::shared_ptr<Bus> bus_;
  std::optional<Publisher> writer_;
  std::string topic_;
  std::unique_ptr<SchemaCodec> codec_;  // publish_json's, made at its first call
  bool in_call_without_gil_ = false;
  std::vector<Py_buffer> buffers_;                // publish_batch's, reused
  std::vector<std::span<const uint8_t>> events_;  // publish_batch's, reused
};

void register_publisher(py::module_& m);

}  // namespace flowbus::python
