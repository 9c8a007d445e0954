#!/usr/bin/env bash
# flowbus as a subproject: a small project does add_subdirectory(<flowbus
# source> flowbus) and links flowbus::flowbus and flowbus::c. Only the
# libraries are configured and built: no CLI, sidecar, tests or benchmarks,
# no flatc run, no install rules.
# Usage: subproject_test.sh SOURCE_DIR VERSION
source "$(dirname "$0")/lib.sh"
SRC="$1" VERSION="$2"
APP="$WORK/app"
mkdir -p "$APP"
cat >"$APP/CMakeLists.txt" <<CMAKE
cmake_minimum_required(VERSION 3.25)
project(app LANGUAGES C CXX)
add_subdirectory("$SRC" flowbus)
add_executable(app app.cpp)
target_link_libraries(app PRIVATE flowbus::flowbus)
add_executable(app_c app.c)
target_link_libraries(app_c PRIVATE flowbus::c)
CMAKE
cat >"$APP/app.cpp" <<'CPP'
#include <flowbus/flowbus.hpp>
#include <cstdio>
int main(int argc, char** argv) {
  if (argc != 3) return 2;
  flowbus::Bus bus = flowbus::Bus::open(argv[1]);
  flowbus::TopicSpec topic;
  topic.name = "sensor.temp.line1";
  topic.type = "examples.SensorReading";
  topic.schema = flowbus::compile_schema_file(argv[2]);
  bus.create_topic(topic);
  std::printf("app: flowbus %s, %zu topic(s)\n", flowbus::version(), bus.topics().size());
  return bus.topics().size() == 1 ? 0 : 1;
}
CPP
cat >"$APP/app.c" <<'C'
#include <flowbus.h>
#include <stdio.h>
int main(void) {
  printf("app_c: flowbus %s\n", flowbus_version());
  return flowbus_version()[0] != '\0' ? 0 : 1;
}
C

step "configure"
run_logged "$WORK/configure.log" cmake -S "$APP" -B "$APP/build"
! grep -q '^FLATC:' "$APP/build/CMakeCache.txt" || fail "configuring flowbus as a subproject looked for flatc"
make -C "$APP/build" help >"$WORK/targets.txt"
for t in flowbus flowbus_core flowbus_sidecar flowbus_wire flowbus_schemas_gen ring_bench schema_test c_api_test; do
  ! grep -qx "\.\.\. $t" "$WORK/targets.txt" || fail "the subproject defines target $t"
done
for t in app app_c flowbus_shared flowbus_c_shared; do
  grep -qx "\.\.\. $t" "$WORK/targets.txt" || fail "no target $t"
done
[ ! -e "$APP/build/flowbus/CTestTestfile.cmake" ] || fail "the subproject registers tests"
[ ! -e "$APP/build/flowbus/cmake_install.cmake" ] || ! grep -q 'flowbusTargets' "$APP/build/flowbus/cmake_install.cmake" \
  || fail "the subproject has install rules"

step "build (the libraries and the two programs)"
run_logged "$WORK/build.log" cmake --build "$APP/build" -j2
[ ! -e "$APP/build/flowbus/bin/flowbus" ] || fail "the flowbus CLI was built"
grep -q 'Building' "$WORK/build.log" || fail "nothing was built"
if grep -E 'Building .*(tools|net|tests|bench)/' "$WORK/build.log"; then fail "tools, sidecar, tests or benchmarks were built"; fi

step "run"
"$APP/build/app" "$BUS_CPP" "$SRC/schemas/examples/sensor.fbs" | tee "$WORK/app.log"
"$APP/build/app_c" | tee "$WORK/app_c.log"
grep -q "^app: flowbus $VERSION, 1 topic" "$WORK/app.log" || fail "app: not flowbus $VERSION with its topic"
grep -q "^app_c: flowbus $VERSION\$" "$WORK/app_c.log" || fail "app_c: flowbus_version() is not $VERSION"
step "passed"
