// What the calls that may wait share: their slice and clock, and running a
// step without the GIL.
#pragma once

#include <pybind11/pybind11.h>

#include <chrono>
#include <cmath>
#include <optional>

namespace flowbus::python {

namespace py = pybind11;

/// How long a wait sleeps before it looks for Python signals (Ctrl-C).
inline constexpr double kSliceSeconds = 0.1;

inline double monotonic_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

/// Refuses a negative or NaN timeout (as queue.Queue.get does) before the
/// call tries anything; None waits for ever, 0 tries once.
inline void check_timeout(std::optional<double> timeout) {
  if (timeout && !(*timeout >= 0))
    throw py::value_error("timeout must be None (wait for ever) or a number of seconds >= 0, not " +
                          std::to_string(*timeout));
}

/// Runs step() without the GIL, with `busy` set meanwhile so that the handle
/// refuses other threads' calls; `busy` is reset once the GIL is back,
/// whether step() returns or throws.
template <class Step>
auto without_gil(bool& busy, Step&& step) {
  struct Reset {
    bool& flag;
    ~Reset() { flag = false; }
  } reset{busy};
  busy = true;
  py::gil_scoped_release no_gil;  // destroyed (GIL taken back) before `reset`
  return step();
}

}  // namespace flowbus::python
