#!/bin/bash
# Every CloudEvents JSON line flowbus prints (sub --json, with --raw-data,
# inspect --dump --json, with --raw-data) and every message the NATS bridge
# exports, validated with the CloudEvents SDK for JavaScript (npm
# `cloudevents`), round trips through binary and structured mode included.
# The npm packages go into the build tree (BUILD/npm), never the source tree.
# Usage: cloudevents_test.sh SOURCE_DIR BUILD_DIR
set -euo pipefail
src=$1
build=$2
fb=$build/bin/flowbus
npm_dir=$build/npm
if [ ! -f "$npm_dir/node_modules/cloudevents/package.json" ] || [ ! -f "$npm_dir/node_modules/nats/package.json" ]; then
  mkdir -p "$npm_dir"
  (cd "$npm_dir" && npm install --no-audit --no-fund --silent cloudevents@10.0.0 nats@2.29.3 >/dev/null)
fi
work=$(mktemp -d /tmp/flowbus-ce-XXXXXX)
bus=ce-$$
server=
bridge=
cleanup() {
  [ -n "$bridge" ] && kill "$bridge" 2>/dev/null && wait "$bridge" 2>/dev/null || true
  [ -n "$server" ] && kill -9 "$server" 2>/dev/null && wait "$server" 2>/dev/null || true
  rm -f /dev/shm/flowbus."$bus" /dev/shm/flowbus."$bus".*
  rm -rf "$work"
}
trap cleanup EXIT

"$fb" topic create "$bus" orders.created --schema "$src/schemas/examples/order.fbs" >/dev/null
"$fb" topic create "$bus" sensor.temp --schema "$src/schemas/examples/sensor.fbs" >/dev/null
"$fb" pub "$bus" orders.created --json '{"id":7,"customer":"acme","sku":"A-1","quantity":2,"price_cents":1999}' --count 3 >/dev/null
"$fb" pub "$bus" sensor.temp --json '{"line":"l1","sensor":"t1","celsius":20.5,"seq":1}' --count 3 >/dev/null
"$fb" sub "$bus" '>' --from earliest --count 6 --timeout 2 --json >"$work/sub.jsonl"
"$fb" sub "$bus" '>' --from earliest --count 6 --timeout 2 --json --raw-data >"$work/sub-raw.jsonl"
"$fb" inspect "$bus" orders.created --dump 3 --from earliest --json >"$work/dump.jsonl"
"$fb" inspect "$bus" sensor.temp --dump 3 --from earliest --json --raw-data >"$work/dump-raw.jsonl"
grep -q '"datacontenttype":"application/json"' "$work/sub.jsonl"
grep -q '"data_base64"' "$work/sub-raw.jsonl"

port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
nats-server -js -a 127.0.0.1 -p "$port" -sd "$work/store" 2>"$work/server.log" &
server=$!
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break; sleep 0.05; done
"$fb" bridge nats --bus "$bus" --url "nats://127.0.0.1:$port" --stream CE --node ce --export '>' 2>"$work/bridge.log" &
bridge=$!
for _ in $(seq 200); do
  grep -q '"acked_sequence":3.*"acked_sequence":3' /dev/shm/flowbus."$bus".~sidecar-nats-ce 2>/dev/null && break
  sleep 0.05
done
# ESM resolves packages next to the script: run a copy from the npm directory.
cp "$src/tests/cloudevents/check.mjs" "$npm_dir/check.mjs"
node "$npm_dir/check.mjs" --lines "$work/sub.jsonl" "$work/sub-raw.jsonl" "$work/dump.jsonl" "$work/dump-raw.jsonl" \
  --nats "nats://127.0.0.1:$port" CE 'flowbus.>'
