#!/usr/bin/env bash
# flowbus installed from the build tree with `cmake --install BUILD --prefix P`:
# the files are there (libraries with their SONAME, headers that compile alone,
# CMake package, pkg-config files, CLI, schemas), and examples/consumer-cmake
# (find_package) and examples/consumer-c (pkg-config) build against P alone
# and exchange events across two processes.
# Usage: prefix_test.sh SOURCE_DIR BUILD_DIR VERSION
source "$(dirname "$0")/lib.sh"
SRC="$1" BUILD="$2" VERSION="$3"
MAJOR="${VERSION%%.*}" MINOR="$(echo "$VERSION" | cut -d. -f2)"
if [ "$MAJOR" = 0 ]; then ABI="$MAJOR.$MINOR"; else ABI="$MAJOR"; fi
P="$WORK/prefix"

step "cmake --install $BUILD --prefix $P"
run_logged "$WORK/install.log" cmake --install "$BUILD" --prefix "$P"
LIBDIR="$(dirname "$(dirname "$(find "$P" -name flowbus.pc -path '*/pkgconfig/*' | head -1)")")"
[ -d "$LIBDIR" ] || fail "no flowbus.pc installed"
echo "libdir: ${LIBDIR#"$P"/}"

step "installed files"
expect_file "$P/include/flowbus/flowbus.hpp" "$P/include/flowbus/version.hpp" "$P/include/flowbus.h" \
            "$P/include/flowbus/detail/ring.hpp" \
            "$LIBDIR/libflowbus.so" "$LIBDIR/libflowbus.a" "$LIBDIR/libflowbus-c.so" "$LIBDIR/libflowbus-c.a" \
            "$LIBDIR/cmake/flowbus/flowbusConfig.cmake" "$LIBDIR/cmake/flowbus/flowbusConfigVersion.cmake" \
            "$LIBDIR/cmake/flowbus/flowbusTargets.cmake" \
            "$LIBDIR/pkgconfig/flowbus.pc" "$LIBDIR/pkgconfig/flowbus-c.pc" \
            "$P/bin/flowbus" "$P/share/flowbus/schemas/examples/sensor.fbs" "$P/share/flowbus/schemas/examples/order.fbs" \
            "$P/share/doc/flowbus/copyright" "$P/share/doc/flowbus/changelog.gz"
check_soname "$LIBDIR/libflowbus.so" "libflowbus.so.$ABI"
check_soname "$LIBDIR/libflowbus-c.so" "libflowbus-c.so.$ABI"
grep -q "^prefix=$P\$" "$LIBDIR/pkgconfig/flowbus.pc" || fail "flowbus.pc: prefix is not $P: $(head -1 "$LIBDIR/pkgconfig/flowbus.pc")"
grep -q "#define FLOWBUS_VERSION_STRING \"$VERSION\"" "$P/include/flowbus/version.hpp" || fail "version.hpp does not say $VERSION"
grep -q "^Version: $VERSION\$" "$LIBDIR/pkgconfig/flowbus-c.pc" || fail "flowbus-c.pc does not say $VERSION"
# Nothing of the build or source tree leaks into what is installed.
if grep -rlI -e "$BUILD" -e "$SRC/" "$P" >"$WORK/leaks.txt"; then cat "$WORK/leaks.txt" >&2; fail "installed files name the build or source tree"; fi

# (Private members may be declared; tests/unit/public_api_test.cpp checks no
# application can call them.)
step "the installed headers offer none of the sidecar's calls"
[ ! -e "$P/include/flowbus/internal" ] || fail "flowbus/internal/ (the sidecar's calls) is installed"
if grep -rnE 'mirror_publisher|export_subscriber|hold_until_acknowledged|accept_ring|reserve_new_rings|internal/mirroring' \
     "$P/include" >"$WORK/internal.txt"; then cat "$WORK/internal.txt" >&2; fail "an installed header offers the sidecar's calls"; fi

step "each public header compiles from $P/include alone"
check_headers_from "$P"

check_python_package "$P" "$BUILD"

build_consumers "$SRC" "$P" "$LIBDIR"
run_consumers "$P" "$LIBDIR"

step "a C program on flowbus::c_static (libflowbus-c.a + libflowbus.a) through find_package"
mkdir -p "$WORK/c-static"
cat >"$WORK/c-static/CMakeLists.txt" <<'CMAKE'
cmake_minimum_required(VERSION 3.25)
project(c_static LANGUAGES C CXX)
find_package(flowbus 0.2 CONFIG REQUIRED)
add_executable(app_c app.c)
target_link_libraries(app_c PRIVATE flowbus::c_static)
CMAKE
printf '#include <flowbus.h>\n#include <stdio.h>\nint main(void) { flowbus_bus* b = flowbus_bus_open("Bad Name"); printf("%%s %%d\\n", flowbus_version(), b == NULL); return 0; }\n' \
  >"$WORK/c-static/app.c"
run_logged "$WORK/c-static.configure.log" cmake -S "$WORK/c-static" -B "$WORK/c-static/build" -DCMAKE_PREFIX_PATH="$P"
run_logged "$WORK/c-static.build.log" cmake --build "$WORK/c-static/build"
[ "$("$WORK/c-static/build/app_c")" = "$VERSION 1" ] || fail "the static C program does not run"
deps="$(ldd "$WORK/c-static/build/app_c")"
! grep -q libflowbus <<<"$deps" || { echo "$deps" >&2; fail "the static C program loads a libflowbus shared library"; }

step "find_package(flowbus 0.1), (flowbus 0.3) and (flowbus 1.0) are refused (SameMinorVersion)"
for wrong in 0.1 0.3 1.0; do
  mkdir -p "$WORK/version-$wrong"
  printf 'cmake_minimum_required(VERSION 3.25)\nproject(v LANGUAGES CXX)\nfind_package(flowbus %s CONFIG REQUIRED)\n' "$wrong" \
    >"$WORK/version-$wrong/CMakeLists.txt"
  if cmake -S "$WORK/version-$wrong" -B "$WORK/version-$wrong/build" -DCMAKE_PREFIX_PATH="$P" >"$WORK/version-$wrong.log" 2>&1; then
    fail "find_package(flowbus $wrong) accepted flowbus $VERSION"
  fi
  grep -q 'compatible with requested version' "$WORK/version-$wrong.log" \
    || { cat "$WORK/version-$wrong.log" >&2; fail "find_package(flowbus $wrong) failed for another reason than the version"; }
done
step "passed"
