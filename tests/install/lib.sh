# Shared by the install tests (tests/install/*_test.sh): a temporary directory,
# a bus of our own, two-process runs of the consumers, and checks that fail
# loudly. Sourced, never run.
set -euo pipefail

# Buses of our own ([a-z0-9_-], at most 32: one for the C++ pair, one for the
# C pair) and a temporary directory; all go away on exit (FLOWBUS_KEEP_TMP=1
# keeps the directory to look at).
BUS="inst-$(basename "$0" _test.sh | tr -cd 'a-z' | cut -c1-12)-$$"
BUS_CPP="$BUS-p"
BUS_C="$BUS-c"
BUS_PKG="$BUS-k"
BUS_PY="$BUS-y"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/flowbus-install.XXXXXX")"
SUB_PID=""
cleanup() {
  local rc=$?
  if [ -n "$SUB_PID" ]; then kill "$SUB_PID" 2>/dev/null || true; wait "$SUB_PID" 2>/dev/null || true; fi
  local b
  for b in "$BUS_CPP" "$BUS_C" "$BUS_PKG" "$BUS_PY"; do rm -f /dev/shm/flowbus."$b" /dev/shm/flowbus."$b".*; done
  if [ "${FLOWBUS_KEEP_TMP:-0}" = 1 ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
  exit $rc
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
step() { echo "== $* ($(( SECONDS ))s)"; }

# run_logged LOG CMD...: runs CMD with its output in LOG; prints LOG's tail if it fails.
run_logged() {
  local log="$1"; shift
  if ! "$@" >"$log" 2>&1; then
    tail -40 "$log" >&2
    fail "$* (log: $log)"
  fi
}

# expect_file PATH...: each must exist (symlinks to existing files count).
expect_file() {
  local f
  for f in "$@"; do [ -e "$f" ] || fail "missing: $f"; done
}

# check_soname LIB EXPECTED: LIB's SONAME is EXPECTED, and LIB's directory holds EXPECTED.
check_soname() {
  local soname
  soname="$(readelf -d "$1" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')"
  [ "$soname" = "$2" ] || fail "$1: SONAME '$soname', expected '$2'"
  expect_file "$(dirname "$1")/$2"
}

# two_processes NAME SUB_CMD... -- PUB_CMD...: starts the subscriber in the
# background, waits until it has subscribed, runs the publisher, and checks
# that both exit 0 (the subscriber exits 0 only with every event, in order).
two_processes() {
  local name="$1"; shift
  local sub=() pub=()
  while [ "$1" != "--" ]; do sub+=("$1"); shift; done
  shift
  pub=("$@")
  local sub_log="$WORK/$name.sub.log" pub_log="$WORK/$name.pub.log"
  "${sub[@]}" >"$sub_log" 2>&1 &
  SUB_PID=$!
  local i
  for i in $(seq 100); do
    grep -q '^sub: ready' "$sub_log" && break
    kill -0 "$SUB_PID" 2>/dev/null || break
    sleep 0.1
  done
  grep -q '^sub: ready' "$sub_log" || { cat "$sub_log" >&2; fail "$name: the subscriber did not start"; }
  if ! "${pub[@]}" >"$pub_log" 2>&1; then
    cat "$pub_log" "$sub_log" >&2
    fail "$name: the publisher failed"
  fi
  local rc=0
  wait "$SUB_PID" || rc=$?
  SUB_PID=""
  cat "$pub_log" "$sub_log"
  [ "$rc" = 0 ] || fail "$name: the subscriber exited $rc"
}

# check_headers_from PREFIX: every public header compiles on its own with
# -I PREFIX/include only, and every flowbus header it pulls in comes from there
# (not from a flowbus installed in /usr or /usr/local, nor from the source tree).
check_headers_from() {
  local prefix="$1" h rel log
  for h in "$prefix"/include/flowbus/*.hpp; do
    rel="${h#"$prefix"/include/}"
    log="$WORK/header.$(basename "$h").log"
    echo "#include <$rel>" | c++ -std=c++20 -Wall -Wextra -Werror -fsyntax-only -H -I"$prefix/include" -x c++ - >"$log" 2>&1 \
      || { cat "$log" >&2; fail "<$rel> does not compile from $prefix/include alone"; }
    local outside
    outside="$(grep -E '^\.+ .*flowbus' "$log" | grep -v -- " $prefix/include/" || true)"
    [ -z "$outside" ] || { echo "$outside" >&2; fail "<$rel> takes flowbus headers from outside $prefix/include"; }
    grep -q -- " $prefix/include/$rel\$" "$log" || fail "<$rel> was not taken from $prefix/include"
  done
  echo '#include <flowbus.h>' | cc -std=c99 -Wall -Wextra -pedantic -Werror -fsyntax-only -H -I"$prefix/include" -x c - >"$WORK/header.flowbus.h.log" 2>&1 \
    || { cat "$WORK/header.flowbus.h.log" >&2; fail "<flowbus.h> does not compile as C99 from $prefix/include"; }
  grep -q -- " $prefix/include/flowbus.h" "$WORK/header.flowbus.h.log" || fail "<flowbus.h> was not taken from $prefix/include"
}

# build_consumers SRC PREFIX LIBDIR [PKG_CONFIG_SYSROOT]: builds
# examples/consumer-cmake (find_package, CMAKE_PREFIX_PATH=PREFIX) into
# $WORK/cmake-consumer and examples/consumer-c (pkg-config) into $WORK/c-consumer.
build_consumers() {
  local src="$1" prefix="$2" libdir="$3" sysroot="${4:-}"
  step "consumer-cmake: find_package(flowbus 0.2) in $prefix"
  run_logged "$WORK/cmake-consumer.configure.log" \
    cmake -S "$src/examples/consumer-cmake" -B "$WORK/cmake-consumer" -DCMAKE_BUILD_TYPE=Release \
          -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF
  local found
  found="$(sed -n 's/^flowbus_DIR:PATH=//p' "$WORK/cmake-consumer/CMakeCache.txt")"
  case "$found" in "$prefix"/*) ;; *) fail "find_package(flowbus) found '$found', not the one in $prefix" ;; esac
  run_logged "$WORK/cmake-consumer.build.log" cmake --build "$WORK/cmake-consumer" -j2

  step "consumer-c: pkg-config flowbus-c in $libdir/pkgconfig"
  export PKG_CONFIG_PATH="$libdir/pkgconfig"
  if [ -n "$sysroot" ]; then export PKG_CONFIG_SYSROOT_DIR="$sysroot"; fi
  local flags
  flags="$(pkg-config --cflags --libs flowbus-c)" || fail "pkg-config flowbus-c"
  echo "pkg-config --cflags --libs flowbus-c: $flags"
  case "$flags" in *"-I$prefix/include"*"-L$libdir"*) ;; *) fail "pkg-config flowbus-c does not point into $prefix: $flags" ;; esac
  mkdir -p "$WORK/c-consumer" "$WORK/pkg-consumer"
  # C++ through pkg-config too: the README's one-liner, on consumer-cmake's program.
  flatc --cpp --scoped-enums -o "$WORK/pkg-consumer" "$prefix/share/flowbus/schemas/examples/sensor.fbs"
  local cxxflags
  cxxflags="$(pkg-config --cflags --libs flowbus)" || fail "pkg-config flowbus"
  echo "pkg-config --cflags --libs flowbus: $cxxflags"
  case "$cxxflags" in *"-I$prefix/include"*"-L$libdir"*) ;; *) fail "pkg-config flowbus does not point into $prefix: $cxxflags" ;; esac
  run_logged "$WORK/pkg-consumer.build.log" c++ -std=c++20 -O2 -I"$WORK/pkg-consumer" \
    -DSENSOR_SCHEMA="\"$prefix/share/flowbus/schemas/examples/sensor.fbs\"" \
    -o "$WORK/pkg-consumer/sensor_bus" "$src/examples/consumer-cmake/sensor_bus.cpp" $cxxflags
  if [ -n "$sysroot" ]; then
    # The .pc's -rpath-link names /usr/lib/...: in a sysroot the linker finds
    # libflowbus.so (which libflowbus-c.so needs) through LD_LIBRARY_PATH.
    run_logged "$WORK/c-consumer.build.log" env LD_LIBRARY_PATH="$libdir" make -C "$src/examples/consumer-c" OUT="$WORK/c-consumer"
  else
    run_logged "$WORK/c-consumer.build.log" make -C "$src/examples/consumer-c" OUT="$WORK/c-consumer"
  fi
  unset PKG_CONFIG_PATH PKG_CONFIG_SYSROOT_DIR
}

# run_consumers PREFIX LIBDIR: (needs $VERSION) the consumers in pairs of processes on $BUS_CPP and $BUS_C,
# against the libraries in LIBDIR only.
run_consumers() {
  local prefix="$1" libdir="$2"
  local schema="$prefix/share/flowbus/schemas/examples/sensor.fbs"
  expect_file "$schema"
  local cpp="$WORK/cmake-consumer/sensor_bus" cpp_static="$WORK/cmake-consumer/sensor_bus_static" c="$WORK/c-consumer/bus_c"
  # The C++ programs resolve libflowbus.so through the RUNPATH CMake gave them; the
  # C program through LD_LIBRARY_PATH. Either way, from LIBDIR.
  # (ldd into a variable: with pipefail, `ldd | grep -q` fails when grep stops reading early.)
  local deps
  deps="$(LD_LIBRARY_PATH="$libdir" ldd "$c")"
  grep -q "libflowbus-c.so.* => $libdir/" <<<"$deps" || { echo "$deps" >&2; fail "bus_c does not load libflowbus-c from $libdir"; }
  grep -q "libflowbus.so.* => $libdir/" <<<"$deps" || { echo "$deps" >&2; fail "bus_c does not load libflowbus from $libdir"; }
  deps="$(ldd "$cpp")"
  grep -q "libflowbus.so.* => $libdir/" <<<"$deps" || { echo "$deps" >&2; fail "sensor_bus does not load libflowbus from $libdir"; }
  deps="$(ldd "$cpp_static")"
  ! grep -q libflowbus <<<"$deps" || { echo "$deps" >&2; fail "sensor_bus_static loads a libflowbus.so"; }

  step "C++: subscriber (libflowbus.so) and publisher (libflowbus.a), two processes"
  two_processes cpp "$cpp" sub "$BUS_CPP" 500 20 -- "$cpp_static" pub "$BUS_CPP" 500
  step "C++ built with pkg-config flowbus: subscriber and publisher, two processes"
  LD_LIBRARY_PATH="$libdir" two_processes pkg "$WORK/pkg-consumer/sensor_bus" sub "$BUS_PKG" 500 20 -- \
    "$WORK/pkg-consumer/sensor_bus" pub "$BUS_PKG" 500
  step "C: subscriber and publisher (libflowbus-c.so), two processes"
  LD_LIBRARY_PATH="$libdir" two_processes c "$c" sub "$BUS_C" 500 "$schema" 20 -- "$c" pub "$BUS_C" 500 "$schema"

  grep -q "flowbus $VERSION)" "$WORK/cpp.pub.log" || fail "the C++ program was not built against flowbus $VERSION"
  grep -q "flowbus $VERSION)" "$WORK/c.pub.log" || fail "flowbus_version() does not say $VERSION"

  step "the installed command line sees the bus"
  [ "$("$prefix/bin/flowbus" --version)" = "flowbus $VERSION" ] || fail "flowbus --version does not say $VERSION"
  "$prefix/bin/flowbus" topic ls "$BUS_CPP" >"$WORK/topic-ls.log" 2>&1 || { cat "$WORK/topic-ls.log" >&2; fail "flowbus topic ls"; }
  grep -q 'sensor.temp.line1' "$WORK/topic-ls.log" || { cat "$WORK/topic-ls.log" >&2; fail "flowbus topic ls does not list sensor.temp.line1"; }
}

# check_python_package PREFIX BUILD: the flowbus Python package is installed in
# PREFIX/lib/python3/dist-packages (where Debian's python3 looks for the prefix
# /usr) and, with that directory alone on PYTHONPATH, /usr/bin/python3 imports
# it from there and sends an event through a bus. Skipped when BUILD has no
# Python binding (pybind11-dev missing).
check_python_package() {
  local prefix="$1" build="$2"
  local pydir="$prefix/lib/python3/dist-packages"
  if [ ! -d "$build/python/flowbus" ]; then echo "no Python binding in $build: not checked"; return; fi
  step "Python: the package in ${pydir#"$prefix"/} imports and carries an event"
  expect_file "$pydir/flowbus/__init__.py" "$pydir/flowbus/_flowbus.pyi" "$pydir/flowbus/py.typed"
  compgen -G "$pydir/flowbus/_flowbus.cpython-*.so" >/dev/null || fail "no extension module in $pydir/flowbus"
  (cd "$WORK" && PYTHONPATH="$pydir" /usr/bin/python3 - "$pydir" "$BUS_PY" "$prefix/share/flowbus/schemas/examples/sensor.fbs" \
     "$VERSION" <<'PY') || fail "the installed Python package does not work"
import sys
import flowbus
pydir, bus_name, schema, version = sys.argv[1:]
assert flowbus.__file__.startswith(pydir + "/"), flowbus.__file__
assert flowbus.__version__ == version, flowbus.__version__
bus = flowbus.Bus(bus_name)
try:
    bus.create_topic("sensor.temp", schema=schema)
    sub = bus.subscribe("sensor.>")
    bus.publisher("sensor.temp").publish_json({"line": "l1", "celsius": 1.5})
    with sub.wait(5) as ev:
        assert ev.json() == {"line": "l1", "celsius": 1.5, "seq": 0}, ev.json()
finally:
    flowbus.Bus.destroy(bus_name)
print("flowbus", flowbus.__version__, "imported from", flowbus.__file__)
PY
}
