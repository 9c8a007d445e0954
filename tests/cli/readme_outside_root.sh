#!/bin/sh
# readme_example run where schemas/examples/sensor.fbs is not (outside the
# repository root, no argument): it must say what was wrong and what to do,
# exit 1, and leave no flowbus.hello in /dev/shm (it used to abort on an
# uncaught flowbus::Error and leave the bus behind).
exe=$1
dir=$(mktemp -d) || exit 1
trap 'rm -rf "$dir"' EXIT
cd "$dir" || exit 1
"$exe" >out.txt 2>err.txt
code=$?
fail() { echo "FAIL: $1"; echo "exit $code"; echo "stderr:"; cat err.txt; exit 1; }
[ "$code" -eq 1 ] || fail "exit code is not 1"
grep -q "cannot read schema file 'schemas/examples/sensor.fbs'" err.txt || fail "the message does not name the schema file"
grep -q "run it from the root of the flowbus repository, or give the schema's path" err.txt || fail "the message does not say what to do"
[ ! -e /dev/shm/flowbus.hello ] || fail "/dev/shm/flowbus.hello was left behind"
echo "ok: exit 1, the message names the file and what to do, nothing left in /dev/shm"
