#!/usr/bin/env bash
# Interleaved A/B of flowbus binaries on this noisy machine. Each round first
# measures the floor's 64 B round trip (which tells which of the machine's two
# speeds the round ran at, see bench/README.md), then runs every binary back
# to back, in the opposite order every other round, so each meets the same
# moments: `perf throughput` 1->1 64 B (one event per call, and bursts of 64)
# and `perf latency` 64 B (spin). At the end: the median of each figure over
# the rounds, its ratio to the first binary's, and the median of the per-round
# ratios (each binary against the first one in the same round: the machine's
# speed changes between rounds, so this pairs like with like). Compare medians
# over the rounds, never single runs.
set -euo pipefail
if [[ $# -lt 2 || $1 == -h || $1 == --help ]]; then
  echo "usage: bench/ab.sh ROUNDS FLOWBUS_BINARY [FLOWBUS_BINARY...]" >&2
  echo "  per round: floor=<64 B round-trip p50 ns>, then per binary: b1=<1->1 events/s, one per call>" >&2
  echo "  b64=<bursts of 64> p50=<64 B round trip p50 ns> p99=<p99 ns>; then medians and ratios to the first binary" >&2
  echo "  e.g. cp build/bin/flowbus /tmp/flowbus-new; bench/ab.sh 12 /tmp/flowbus-old /tmp/flowbus-new" >&2
  exit 2
fi
rounds=$1; shift
binaries=("$@")
results=$(mktemp)
trap 'rm -f "$results"' EXIT
field() { grep -o "\"$1\":[0-9.]*" | head -1 | cut -d: -f2; }
for round in $(seq 1 "$rounds"); do
  floor=$("${binaries[0]}" perf latency --transport floor --size 64 --iters 20000 --json 2>/dev/null | field rtt_p50_ns)
  order=("${binaries[@]}")
  if (( round % 2 == 0 )); then
    order=(); for (( i=${#binaries[@]}-1; i>=0; i-- )); do order+=("${binaries[i]}"); done
  fi
  line="round $round floor=$floor"
  for b in "${order[@]}"; do
    tput=$("$b" perf throughput --seconds 0.5 --size 64 --rows flowbus,batch --json 2>/dev/null | grep '"mode":"1->1","transport":"flowbus"')
    b1=$(grep '"batch":1,' <<<"$tput" | field events_per_s)
    b64=$(grep '"batch":64,' <<<"$tput" | field events_per_s)
    lat=$("$b" perf latency --transport flowbus --size 64 --iters 20000 --json 2>/dev/null)
    p50=$(field rtt_p50_ns <<<"$lat")
    p99=$(field rtt_p99_ns <<<"$lat")
    for metric in b1 b64 p50 p99; do echo "$round $b $metric ${!metric}" >>"$results"; done
    line="$line | $(basename "$b") b1=$b1 b64=$b64 p50=$p50 p99=$p99"
  done
  echo "$line"
done
/usr/bin/python3 - "$results" "${binaries[@]}" <<'EOF'
import statistics, sys
values, by_round = {}, {}
for row in open(sys.argv[1]):
    round_, b, metric, v = row.split()
    values.setdefault((b, metric), []).append(float(v))
    by_round[(round_, b, metric)] = float(v)
base = sys.argv[2]
rounds = sorted({k[0] for k in by_round})
name = lambda b: b.rsplit("/", 1)[-1]
print("medians over the rounds (ratio of medians to %s; median of the per-round ratios in brackets):" % name(base))
for b in sys.argv[2:]:
    cells = []
    for metric in ("b1", "b64", "p50", "p99"):
        m = statistics.median(values[(b, metric)])
        r = m / statistics.median(values[(base, metric)])
        paired = statistics.median(by_round[(k, b, metric)] / by_round[(k, base, metric)] for k in rounds)
        cells.append("%s=%s (%.2fx [%.2fx])" % (metric, "%.3gM" % (m / 1e6) if metric.startswith("b") else "%.0f" % m, r, paired))
    print("  %s: %s" % (name(b), "  ".join(cells)))
EOF
