#!/usr/bin/env bash
# Interleaved A/B of flowbus binaries on this noisy machine: each round first
# measures the floor's 64 B round trip (which tells which of the machine's two
# speeds the round ran at, see bench/README.md), then runs each binary's
# `perf throughput` 1->1 64 B back to back, so every binary meets the same
# moment. Compare medians over the rounds, never single runs.
set -euo pipefail
if [[ $# -lt 2 || $1 == -h || $1 == --help ]]; then
  echo "usage: bench/ab.sh ROUNDS FLOWBUS_BINARY [FLOWBUS_BINARY...]" >&2
  echo "  prints per round: floor=<64 B round-trip p50 ns> <binary>=<1->1 64 B events/s> ..." >&2
  echo "  e.g. cp build/bin/flowbus /tmp/flowbus-new; bench/ab.sh 12 /tmp/flowbus-old /tmp/flowbus-new" >&2
  exit 2
fi
rounds=$1; shift
for _ in $(seq 1 "$rounds"); do
  floor=$("$1" perf latency --transport floor --size 64 --iters 20000 --json 2>/dev/null | grep -o '"rtt_p50_ns":[0-9.]*' | cut -d: -f2)
  line="floor=$floor"
  for b in "$@"; do
    rate=$("$b" perf throughput --seconds 0.5 --size 64 --json 2>/dev/null |
           grep '"mode":"1->1","transport":"flowbus"' | grep -E '"coalesce_ns":0(,"batch":1)?}' | grep -o '"events_per_s":[0-9]*' | cut -d: -f2)
    line="$line $(basename "$b")=$rate"
  done
  echo "$line"
done
