#!/usr/bin/env bash
# The Debian package: cpack (DEB) from the build tree into a temporary
# directory gives flowbus_<version>_<arch>.deb with its Depends; lintian (when
# installed) finds no error in it; extracted with dpkg-deb -x, its headers,
# CMake package and pkg-config files build examples/consumer-cmake and
# examples/consumer-c, which exchange events across two processes; its Python
# package imports from usr/lib/python3/dist-packages.
# Usage: deb_test.sh SOURCE_DIR BUILD_DIR VERSION
source "$(dirname "$0")/lib.sh"
SRC="$1" BUILD="$2" VERSION="$3"
ARCH="$(dpkg --print-architecture)"
MULTIARCH="$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch)"

step "cpack -G DEB from $BUILD"
run_logged "$WORK/cpack.log" cpack -G DEB --config "$BUILD/CPackConfig.cmake" -B "$WORK/pkg"
DEB="$WORK/pkg/flowbus_${VERSION}_${ARCH}.deb"
expect_file "$DEB"
echo "$(basename "$DEB"): $(du -k "$DEB" | cut -f1) KiB"
dpkg-deb -f "$DEB" Package Version Architecture Depends Recommends Section | tee "$WORK/control.txt"
grep -q "^Version: $VERSION\$" "$WORK/control.txt" || fail "the package's Version is not $VERSION"
grep -q '^Depends:.*libflatbuffers2' "$WORK/control.txt" || fail "Depends lacks libflatbuffers2"
grep -q '^Depends:.*libstdc++6' "$WORK/control.txt" || fail "Depends lacks libstdc++6"
if [ -d "$BUILD/python/flowbus" ]; then
  grep -q '^Depends:.*python3 (>= 3\.[0-9]*~), python3 (<< 3\.[0-9]*)' "$WORK/control.txt" || fail "Depends lacks python3 (the Python package)"
fi

if command -v lintian >/dev/null; then
  step "lintian"
  lintian --tag-display-limit 0 "$DEB" >"$WORK/lintian.log" 2>&1 || true
  cat "$WORK/lintian.log"
  ! grep -q '^E:' "$WORK/lintian.log" || fail "lintian reports errors"
else
  echo "lintian is not installed: not run (apt-get install lintian)"
fi

step "dpkg-deb -x"
ROOT="$WORK/root"
dpkg-deb -x "$DEB" "$ROOT"
P="$ROOT/usr"
LIBDIR="$P/lib/$MULTIARCH"
expect_file "$P/bin/flowbus" "$P/include/flowbus/flowbus.hpp" "$P/include/flowbus.h" \
            "$LIBDIR/libflowbus.so" "$LIBDIR/libflowbus.a" "$LIBDIR/libflowbus-c.so" "$LIBDIR/libflowbus-c.a" \
            "$LIBDIR/cmake/flowbus/flowbusConfig.cmake" "$LIBDIR/pkgconfig/flowbus.pc" "$LIBDIR/pkgconfig/flowbus-c.pc" \
            "$P/share/flowbus/schemas/examples/sensor.fbs" "$P/share/doc/flowbus/copyright"
grep -q '^prefix=/usr$' "$LIBDIR/pkgconfig/flowbus-c.pc" || fail "flowbus-c.pc in the package: prefix is not /usr"
if grep -rlI -e "$BUILD" -e "$SRC/" -e "_CPack_Packages" "$ROOT" >"$WORK/leaks.txt"; then cat "$WORK/leaks.txt" >&2; fail "packaged files name the build or source tree"; fi

step "each public header compiles from the package alone"
check_headers_from "$P"

check_python_package "$P" "$BUILD"

# The .pc files say prefix=/usr: pkg-config finds the extracted tree as a sysroot.
build_consumers "$SRC" "$P" "$LIBDIR" "$ROOT"
run_consumers "$P" "$LIBDIR"
step "passed"
