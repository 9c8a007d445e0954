#include "bus.hpp"

#include <pybind11/stl.h>

#include <memory>
#include <optional>
#include <string>

#include "errors.hpp"
#include "flowbus/bus.hpp"
#include "flowbus/schema.hpp"
#include "publisher.hpp"
#include "subscriber.hpp"

namespace flowbus::python {

namespace {

std::chrono::nanoseconds to_ns(double seconds) { return std::chrono::nanoseconds(int64_t(seconds * 1e9)); }

/// A schema given as a path (str or os.PathLike: compiled, or read if .bfbs) or as bfbs bytes.
std::vector<uint8_t> schema_bytes(py::handle schema) {
  if (PyObject_CheckBuffer(schema.ptr())) {
    const std::string bytes = py::bytes(py::reinterpret_borrow<py::object>(schema)).cast<std::string>();
    return {bytes.begin(), bytes.end()};
  }
  static py::handle fspath =
      py::object(py::module_::import("os").attr("fspath")).release();  // kept: no destructor after Python finalizes
  return compile_schema_file(fspath(schema).cast<std::string>());
}

class PyBus {
 public:
  PyBus(const std::string& name, bool create, uint32_t mode, int64_t group)
      : bus_(std::make_shared<Bus>(create ? Bus::open(name, BusOptions{mode, group}) : Bus::open_existing(name))) {}

  Bus& use() {
    if (!bus_) raise(error_types().closed, "this Bus was closed");
    return *bus_;
  }

  TopicInfo create_topic(const std::string& name, py::handle schema, std::optional<std::string> type,
                         const std::string& policy, uint64_t ring_size, std::optional<double> slow_consumer_timeout,
                         double retention, uint32_t mode, int64_t group, bool untrusted) {
    Bus& bus = use();
    TopicSpec spec;
    spec.name = name;
    spec.schema = schema_bytes(schema);
    spec.type = type ? *type : schema_root_type(spec.schema);
    spec.policy = parse_policy(policy);
    spec.ring_size = ring_size;
    spec.slow_consumer_timeout = slow_consumer_timeout ? to_ns(*slow_consumer_timeout) : kNever;
    spec.retention = std::chrono::seconds(int64_t(retention));
    spec.mode = mode;
    spec.group = group;
    spec.untrusted = untrusted;
    return bus.create_topic(spec);
  }

  PyPublisher publisher(const std::string& topic, const std::string& name) {
    return PyPublisher(bus_, use().publisher(topic, PublisherOptions{name, {}}));
  }

  PySubscriber subscribe(const std::string& pattern, const std::string& start, bool raise_on_loss, double spin,
                         const std::string& wait, int64_t backoff_spins, int64_t backoff_yields,
                         double backoff_min_park, double backoff_max_park) {
    SubscriberOptions options;
    if (wait == "backoff")
      options.wait_strategy = WaitStrategy::Backoff;
    else if (wait != "futex")
      raise(ErrorCode::InvalidArgument,
            "wait='" + wait +
                "': use 'futex' (spin, then sleep until a publish wakes it) or 'backoff' (spin, yield, "
                "then short sleeps)");
    // Counts out of uint32_t's range are refused here, the rest by subscribe() (it names the setting).
    auto count = [](int64_t value, const char* name, uint32_t most) {
      if (value < 0 || value > int64_t(most))
        raise(ErrorCode::InvalidArgument,
              std::string(name) + "=" + std::to_string(value) + ": from 0 to " + std::to_string(most));
      return uint32_t(value);
    };
    options.backoff.spins = count(backoff_spins, "backoff_spins", BackoffOptions::kMaxSpins);
    options.backoff.yields = count(backoff_yields, "backoff_yields", BackoffOptions::kMaxYields);
    options.backoff.min_park = to_ns(backoff_min_park);
    options.backoff.max_park = to_ns(backoff_max_park);
    if (start == "earliest")
      options.from = StartAt::Earliest;
    else if (start != "latest")
      raise(ErrorCode::InvalidArgument,
            "start='" + start + "': use 'latest' (events published from now on) or 'earliest' (the oldest retained)");
    options.spin = to_ns(spin);
    return PySubscriber(bus_, use().subscribe(pattern, options), raise_on_loss);
  }

  std::optional<TopicInfo> find_topic(const std::string& name) { return use().find_topic(name); }
  std::vector<TopicInfo> topics() { return use().topics(); }
  const std::string& name() { return use().name(); }
  void close() { bus_.reset(); }
  bool closed() const { return !bus_; }

 private:
  std::shared_ptr<Bus> bus_;  // publishers and subscribers share it (their topics' schemas)
};

void register_topic_info(py::module_& m) {
  py::class_<TopicInfo>(m, "TopicInfo", "A topic as registered in a bus directory.")
      .def_readonly("name", &TopicInfo::name)
      .def_readonly("type", &TopicInfo::type, "Root table, e.g. 'examples.SensorReading'.")
      .def_readonly("schema_id", &TopicInfo::schema_id, "'fnv1a64:<16 hex digits>' of the binary schema.")
      .def_property_readonly(
          "policy", [](const TopicInfo& t) { return to_string(t.policy); }, "'block' or 'latest'.")
      .def_readonly("ring_size", &TopicInfo::ring_size, "Bytes per publisher ring.")
      .def_property_readonly(
          "slow_consumer_timeout",
          [](const TopicInfo& t) -> std::optional<double> {
            if (t.slow_consumer_timeout == kNever) return std::nullopt;
            return std::chrono::duration<double>(t.slow_consumer_timeout).count();
          },
          "Seconds after which a block reader that stopped is evicted; None: never.")
      .def_property_readonly(
          "retention", [](const TopicInfo& t) { return double(t.retention.count()); },
          "Seconds a dead publisher's ring is kept.")
      .def_readonly("mode", &TopicInfo::mode)
      .def_readonly("group", &TopicInfo::group)
      .def_readonly("owner_uid", &TopicInfo::owner_uid)
      .def_readonly("owner_gid", &TopicInfo::owner_gid)
      .def_readonly("untrusted", &TopicInfo::untrusted,
                    "True: readers copy each event out of the ring and verify the copy against the schema.")
      .def_property_readonly(
          "schema",
          [](const TopicInfo& t) { return py::bytes(reinterpret_cast<const char*>(t.schema.data()), t.schema.size()); },
          "The binary schema (.bfbs).")
      .def("__repr__", [](const TopicInfo& t) {
        return "<flowbus.TopicInfo '" + t.name + "' " + t.type + " " + to_string(t.policy) + " ring " +
               std::to_string(t.ring_size) + ">";
      });
}

}  // namespace

void register_bus(py::module_& m) {
  register_topic_info(m);
  py::class_<PyBus>(m, "Bus", R"doc(A bus: a named set of topics on this host, in /dev/shm/flowbus.<name>.

    bus = flowbus.Bus("plant")
    bus.create_topic("sensor.temp", schema="schemas/examples/sensor.fbs")
    pub = bus.publisher("sensor.temp", name="py1")
    sub = bus.subscribe("sensor.>", start="earliest")

The handle registers this process as a participant; publishers and
subscribers made from it keep working after close(). A handle belongs to the
process that made it: in a fork() child, calls raise WrongProcess (open the
bus again there). Set-up calls raise flowbus.Error subclasses with the core's
messages.)doc")
      .def(py::init<const std::string&, bool, uint32_t, int64_t>(), py::arg("name"), py::arg("create") = true,
           py::arg("mode") = 0600, py::arg("group") = -1,
           "Opens bus `name`, creating it unless create=False (then NotFound if there is none), and frees what dead "
           "participants left behind. `mode` and `group`: of the directory segment, when this call creates it.")
      .def(
          "create_topic", &PyBus::create_topic, py::arg("name"), py::kw_only(), py::arg("schema"),
          py::arg("type") = py::none(), py::arg("policy") = "block", py::arg("ring_size") = 4u << 20,
          py::arg("slow_consumer_timeout") = 5.0, py::arg("retention") = 3600.0, py::arg("mode") = 0600,
          py::arg("group") = -1, py::arg("untrusted") = false,
          "Registers a topic, or checks that the existing one has the same settings (else AlreadyExists naming each "
          "difference) and that `schema` is a compatible evolution of its schema. `schema`: a .fbs (or .bfbs) path, or "
          "binary schema bytes; `type`: the root table (default: the schema's root_type); `policy`: 'block' (lossless) "
          "or 'latest' (telemetry: the writer overwrites); `ring_size`: bytes per publisher ring, a power of two >= "
          "4096; `slow_consumer_timeout`: seconds, None for never; `untrusted`: readers copy each event out of the "
          "ring and verify the copy against the schema (one that fails is counted and skipped). Returns its "
          "TopicInfo.")
      .def("find_topic", &PyBus::find_topic, py::arg("name"), "The topic's TopicInfo, or None.")
      .def("topics", &PyBus::topics, "Every topic of the bus.")
      .def("publisher", &PyBus::publisher, py::arg("topic"), py::kw_only(), py::arg("name") = "main",
           "A Publisher on `topic` under `name` (part of each event's source). Takes over the ring of a dead publisher "
           "of that name (its sequence continues); NameInUse if a live process holds it.")
      .def("subscribe", &PyBus::subscribe, py::arg("pattern"), py::kw_only(), py::arg("start") = "latest",
           py::arg("raise_on_loss") = false, py::arg("spin") = 50e-6, py::arg("wait") = "futex",
           py::arg("backoff_spins") = 1000, py::arg("backoff_yields") = 10, py::arg("backoff_min_park") = 1e-6,
           py::arg("backoff_max_park") = 1e-3,
           "A Subscriber on every ring of every topic matching `pattern` ('*' one token, '>' the rest), now and "
           "created later. `start`: 'latest' (from now on) or 'earliest' (the oldest retained event) for rings that "
           "exist now. raise_on_loss: raise EventsLost at a gap instead of only counting it. `wait`: how wait() "
           "idles: 'futex' (spin `spin` seconds, then sleep until a publish wakes it; no CPU while idle) or "
           "'backoff' (look backoff_spins times, sched_yield backoff_yields times, then sleep backoff_min_park "
           "seconds doubling up to backoff_max_park: some CPU, and publishers never make a system call for it).")
      .def_property_readonly("name", &PyBus::name)
      .def_property_readonly("closed", &PyBus::closed)
      .def("close", &PyBus::close,
           "Lets go of this handle (publishers and subscribers made from it go on). Idempotent.")
      .def("__enter__", [](py::object self) { return self; })
      .def("__exit__", [](PyBus& b, py::args) { b.close(); })
      .def_static("destroy", &Bus::destroy, py::arg("name"),
                  "Removes every segment of bus `name`; processes that have them mapped keep their mappings. Returns "
                  "the number removed.")
      .def("__repr__", [](PyBus& b) {
        return b.closed() ? std::string("<flowbus.Bus closed>") : "<flowbus.Bus '" + b.name() + "'>";
      });
}

}  // namespace flowbus::python
