#include "subscriber.hpp"

#include <pybind11/stl.h>

#include <chrono>

#include "errors.hpp"
#include "event.hpp"
#include "waiting.hpp"

namespace flowbus::python {

// --- SubscriberState ----------------------------------------------------------

Subscriber& SubscriberState::use() {
  if (!reader) raise(error_types().closed, "this Subscriber was closed");
  if (in_call_without_gil)
    raise(PyExc_RuntimeError,
          "this Subscriber is waiting in another thread: a subscriber is used by one thread at a time");
  return *reader;
}

void SubscriberState::release_held() {
  PyEvent* event = held;
  if (event == nullptr) return;
  held = nullptr;
  const Py_ssize_t escaped = event->revoke_view();
  const ReadStatus status = reader ? reader->release(event->event_) : ReadStatus::Ok;
  if (status == ReadStatus::Evicted) {
    ++losses.torn_views;
    if (raise_on_loss)
      raise_events_lost("torn", 0,
                        "topic '" + event->context().topic + "': this subscriber was evicted while it held event " +
                            event->id() + ": its bytes may have been reused as they were read");
  }
  if (escaped > 0)
    raise(PyExc_BufferError,
          "event " + event->id() + " was released while " + std::to_string(escaped) +
              " view(s) made from its data (a slice, a numpy array, ...) still exist; they now read ring memory the "
              "publisher may reuse: copy with bytes(ev.data[...]) what must outlive the event");
}

const std::shared_ptr<const RingInfo>& SubscriberState::ring(uint32_t index) {
  if (index >= rings.size()) rings.resize(index + 1);
  auto& info = rings[index];
  if (!info) info = std::make_shared<const RingInfo>(RingInfo{reader->ring_context(index), reader->ring_policy(index)});
  return info;
}

const SchemaCodec& SubscriberState::codec(const std::string& topic) {
  auto it = codecs.find(topic);
  if (it == codecs.end()) {
    const std::optional<TopicInfo> info = bus->find_topic(topic);
    if (!info)
      raise(ErrorCode::NotFound,
            "topic '" + topic + "' is no longer on bus '" + bus->name() + "': no schema to decode with");
    it = codecs.emplace(topic, std::make_unique<SchemaCodec>(info->schema, info->type)).first;
  }
  return *it->second;
}

// --- PySubscriber -------------------------------------------------------------

PySubscriber::PySubscriber(std::shared_ptr<Bus> bus, Subscriber reader, bool raise_on_loss)
    : state_(std::make_shared<SubscriberState>()), pattern_(reader.pattern()) {
  state_->bus = std::move(bus);
  state_->reader = std::make_shared<Subscriber>(std::move(reader));
  state_->raise_on_loss = raise_on_loss;
}

void PySubscriber::raise_pending_loss() {
  if (!pending_loss_) return;
  const PendingLoss loss = std::move(*pending_loss_);
  pending_loss_.reset();
  raise_events_lost(loss.reason, loss.missed, loss.message);
}

void PySubscriber::on_loss(const ReadResult& result, size_t batch_so_far) {
  LossCounters& c = state_->losses;
  std::string reason, message;
  switch (result.status) {
    case ReadStatus::Evicted:
      c.missed += result.missed;
      ++c.evictions;
      reason = "evicted";
      message = "evicted as a slow consumer of a block topic: " + std::to_string(result.missed) + " event(s) missed";
      break;
    case ReadStatus::Lost:
      c.missed += result.missed;
      ++c.laps;
      reason = "lapped";
      message = "lapped by the writer of a latest topic: " + std::to_string(result.missed) + " event(s) lost";
      break;
    case ReadStatus::Corrupt:
      ++c.corrupt_rings;
      reason = "corrupt";
      message = "ring " + std::string(result.ring) + " is corrupt and no longer read; check it with `flowbus inspect " +
                state_->bus->name() + " --check`";
      break;
    case ReadStatus::Rejected:
      c.rejected += result.missed;
      reason = "rejected";
      message = "ring " + std::string(result.ring) + ": " + std::to_string(result.missed) +
                " event(s) failed verification against the topic's schema and were skipped (untrusted topic)";
      break;
    case ReadStatus::WrongProcess:
      raise_wrong_process("Subscriber");
    default:
      return;
  }
  if (!state_->raise_on_loss) return;
  if (batch_so_far == 0) raise_events_lost(reason, result.missed, message);
  pending_loss_ = PendingLoss{reason, message, result.missed};
}

py::object PySubscriber::read() {
  Subscriber& reader = state_->use();
  state_->release_held();
  raise_pending_loss();
  for (;;) {
    Event event;
    const ReadResult r = reader.read(event);
    if (r.status == ReadStatus::Ok) {
      auto* e = new PyEvent(state_, event);
      py::object object = py::cast(e, py::return_value_policy::take_ownership);
      state_->held = e;
      return object;
    }
    if (r.status == ReadStatus::Empty) return py::none();
    on_loss(r, 0);
  }
}

py::list PySubscriber::poll(size_t max_events) {
  if (max_events == 0) raise(ErrorCode::InvalidArgument, "max=0: a batch takes at least one event");
  Subscriber& reader = state_->use();
  state_->release_held();
  raise_pending_loss();
  py::list batch;
  size_t taken = 0;
  while (taken < max_events) {
    Event event;
    const ReadResult r = reader.read(event);
    if (r.status == ReadStatus::Empty) break;
    if (r.status != ReadStatus::Ok) {
      on_loss(r, taken);
      if (pending_loss_) break;
      continue;
    }
    py::bytes copy(reinterpret_cast<const char*>(event.data()), event.size());
    // Block: evicted while copying, the writer may have reused the bytes. Either way the copy is torn: drop it, count
    // it.
    const bool intact = reader.ring_policy(event.ring()) == Policy::Block || reader.still_valid(event);
    auto owned = std::make_unique<PyEvent>(state_, event, std::move(copy));
    if (reader.release(event) == ReadStatus::Evicted || !intact) {
      ++state_->losses.torn_views;
      continue;
    }
    batch.append(py::cast(owned.release(), py::return_value_policy::take_ownership));
    ++taken;
  }
  return batch;
}

template <class TryOnce>
py::object PySubscriber::wait_for(std::optional<double> timeout, TryOnce&& try_once) {
  check_timeout(timeout);
  double deadline = -1;  // read the clock only once the first try found nothing
  for (;;) {
    py::object got = try_once();
    const bool nothing = got.is_none() || (PyList_Check(got.ptr()) && PyList_GET_SIZE(got.ptr()) == 0);
    if (!nothing) return got;
    double slice = kSliceSeconds;
    if (timeout) {
      if (deadline < 0) deadline = monotonic_seconds() + std::max(0.0, *timeout);
      const double left = deadline - monotonic_seconds();
      if (left <= 0) return got;
      slice = std::min(slice, left);
    }
    Subscriber& reader = state_->use();
    without_gil(state_->in_call_without_gil,
                [&] { return reader.wait(std::chrono::nanoseconds(int64_t(slice * 1e9))); });
    if (PyErr_CheckSignals() != 0) throw py::error_already_set();
  }
}

py::object PySubscriber::wait(std::optional<double> timeout) {
  return wait_for(timeout, [&] { return read(); });
}

py::list PySubscriber::read_batch(size_t max_events, std::optional<double> timeout) {
  return wait_for(timeout, [&] { return py::object(poll(max_events)); }).cast<py::list>();
}

void PySubscriber::close() {
  if (!state_->reader) return;
  state_->use();  // not while another thread waits on it
  std::optional<py::error_already_set> error;
  try {
    state_->release_held();
  } catch (py::error_already_set& e) {
    error = std::move(e);  // released all the same: close, then say it
  }
  // The rings stay mapped while a view that could not be revoked lives (it shares the reader).
  state_->reader.reset();
  state_->codecs.clear();
  if (error) throw *error;
}

void register_subscriber(py::module_& m) {
  py::class_<PySubscriber>(m, "Subscriber", R"doc(Reads every ring of every topic matching a pattern (Bus.subscribe).

Zero copy, one event at a time: wait(), read() and iteration return an Event
whose `data` points into the ring until the event is released (its `with`
block ends, release(), or the next read of this subscriber). Batches: poll()
and read_batch() return events that own a copy of their bytes.

Losses are never silent: the counters `missed`, `evictions`, `laps`,
`corrupt_rings` and `torn_views` say what was skipped, and a subscriber made
with raise_on_loss=True raises EventsLost at the read that finds a gap (the
next read goes on after it).

One thread at a time. Blocking calls let go of the GIL while they sleep and
look for signals every 0.1 s: Ctrl-C raises KeyboardInterrupt.)doc")
      .def("wait", &PySubscriber::wait, py::arg("timeout") = py::none(),
           "The next event (zero copy), waiting up to `timeout` seconds (None: for ever); None if none came.")
      .def("read", &PySubscriber::read, "The next event (zero copy) if one is there now, else None. Never waits.")
      .def("poll", &PySubscriber::poll, py::arg("max") = 64,
           "Up to `max` events that are there now, each with a copy of its bytes (list, maybe empty). Never waits.")
      .def("read_batch", &PySubscriber::read_batch, py::arg("max") = 64, py::arg("timeout") = py::none(),
           "As poll(), but waits up to `timeout` seconds (None: for ever) for the first event; [] after the timeout.")
      .def("__iter__", [](py::object self) { return self; })
      .def(
          "__next__", [](PySubscriber& s) { return s.wait(std::nullopt); },
          "Blocks for the next event (zero copy); Ctrl-C raises KeyboardInterrupt.")
      .def("close", &PySubscriber::close,
           "Releases the held event and the subscriber's cursors (a block writer no longer waits for it). Idempotent.")
      .def("__enter__", [](py::object self) { return self; })
      .def("__exit__", [](PySubscriber& s, py::args) { s.close(); })
      .def_property_readonly("pattern", &PySubscriber::pattern)
      .def_property_readonly("closed", &PySubscriber::closed)
      .def_property_readonly(
          "missed", [](const PySubscriber& s) { return s.losses().missed; },
          "Events skipped so far: evicted (block) or lapped (latest).")
      .def_property_readonly(
          "evictions", [](const PySubscriber& s) { return s.losses().evictions; },
          "Times this subscriber was evicted as a slow consumer of a block topic.")
      .def_property_readonly(
          "laps", [](const PySubscriber& s) { return s.losses().laps; },
          "Times the writer of a latest topic overtook this subscriber.")
      .def_property_readonly(
          "corrupt_rings", [](const PySubscriber& s) { return s.losses().corrupt_rings; },
          "Rings found corrupt (quarantined, no longer read).")
      .def_property_readonly(
          "rejected", [](const PySubscriber& s) { return s.losses().rejected; },
          "Events of untrusted topics that failed verification and were skipped.")
      .def_property_readonly(
          "torn_views", [](const PySubscriber& s) { return s.losses().torn_views; },
          "Events whose bytes may have been reused while held (evicted meanwhile), plus latest "
          "events dropped by poll() because the writer overwrote them while they were copied.")
      .def("__repr__", [](const PySubscriber& s) {
        return "<flowbus.Subscriber '" + s.pattern() + "'" + (s.closed() ? " closed>" : ">");
      });
}

}  // namespace flowbus::python
