#!/usr/bin/python3
"""Record throughput against `flowbus perf throughput`, in interleaved rounds.

Each round runs, one after the other on the same machine:
  * `flowbus perf throughput --size 64 --json`: the bus alone, 1->1 (two processes);
  * `flowbus pub --count N` with no reader: the CLI publisher alone;
  * for zstd, lz4 and none: `flowbus record` as the only subscriber of a block
    topic while `flowbus pub --count N` publishes as fast as the ring lets it;
    the recorder's rate is N over the time from the publisher's start to the
    recorder's exit (its file finished);
  * an ordinary rate: `pub --rate R` with the recorder (zstd) subscribed: the
    rate the publisher achieves, and what the recorder lost.
Prints a Markdown table of medians, and the rounds as JSON lines with --raw.

    /usr/bin/python3 bench/record_bench.py [--build build] [--rounds 5] [--events 1000000]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ORDER = '{"id":123456,"customer":"acme-industries","sku":"SKU-000123","quantity":3,"price_cents":129900}'


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--rate", type=int, default=100_000, help="the ordinary rate (events/s)")
    ap.add_argument("--dir", default="/tmp", help="where the recordings go")
    ap.add_argument("--raw", action="store_true")
    a = ap.parse_args()
    cli = os.path.join(a.build, "bin", "flowbus")
    src = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    bus = f"recbench-{os.getpid()}"
    out = os.path.join(a.dir, f"record_bench-{os.getpid()}.mcap")
    run([cli, "topic", "create", bus, "orders.created", "--schema", os.path.join(src, "schemas/examples/order.fbs")])
    # The FlatBuffer of ORDER, as the recorder stores it (payload bytes per event).
    rounds = []
    try:
        for r in range(a.rounds):
            row = {}
            perf = [json.loads(l) for l in run([cli, "perf", "throughput", "--size", "64", "--seconds", "1", "--json"]).stdout.splitlines()]
            for p in perf:
                if p["mode"] == "1->1" and p["transport"] == "flowbus" and p["batch"] == 1:
                    row["perf_1to1"] = p["events_per_s"]
            t0 = time.monotonic()
            run([cli, "pub", bus, "orders.created", "--json", ORDER, "--count", str(a.events), "--name", "alone", "-q"])
            row["pub_alone"] = a.events / (time.monotonic() - t0)
            for comp in ("zstd", "lz4", "none"):
                rec = subprocess.Popen([cli, "record", bus, "orders.>", "-o", out, "--count", str(a.events), "--compression", comp],
                                       stderr=subprocess.PIPE, text=True)
                line = rec.stderr.readline()  # "recording: 0 events ...": subscribed
                assert "recording:" in line or "no topic" in line, line
                t0 = time.monotonic()
                run([cli, "pub", bus, "orders.created", "--json", ORDER, "--count", str(a.events), "--name", "fast", "-q",
                     "--timeout", "60"])
                t_pub = time.monotonic() - t0
                tail = rec.stderr.read()
                rec.wait()
                t = time.monotonic() - t0
                assert rec.returncode == 0, tail
                size = os.path.getsize(out)
                info = json.loads(run([cli, "record", "info", out, "--json"]).stdout)
                assert info["events"] == a.events and info["lost"] == 0, info
                row[comp] = {"events_per_s": a.events / t, "pub_events_per_s": a.events / t_pub,
                             "file_mb_per_s": size / t / 1e6, "file_bytes": size}
            # An ordinary rate with the recorder subscribed.
            n = a.rate * 2
            rec = subprocess.Popen([cli, "record", bus, "orders.>", "-o", out, "--count", str(n)], stderr=subprocess.PIPE, text=True)
            rec.stderr.readline()
            t0 = time.monotonic()
            run([cli, "pub", bus, "orders.created", "--json", ORDER, "--count", str(n), "--rate", str(a.rate), "--name", "ordinary", "-q"])
            row["ordinary_achieved"] = n / (time.monotonic() - t0)
            rec.stderr.read()
            rec.wait()
            row["ordinary_lost"] = json.loads(run([cli, "record", "info", out, "--json"]).stdout)["lost"]
            rounds.append(row)
            if a.raw:
                print(json.dumps(row), flush=True)
            print(f"round {r + 1}/{a.rounds} done", file=sys.stderr, flush=True)
    finally:
        subprocess.run([cli, "gc", bus, "--force"], capture_output=True)
        if os.path.exists(out):
            os.remove(out)
    med = lambda f: statistics.median(f(x) for x in rounds)
    payload = 96  # bytes of ORDER as a FlatBuffer (the MCAP message data of each event)
    print(f"| {a.events:,} events of {payload} B, medians of {a.rounds} interleaved rounds | events/s | payload MB/s | file MB/s | file bytes/event |")
    print("|---|---:|---:|---:|---:|")
    print(f"| `perf throughput --size 64`, 1->1 (the bus alone) | {med(lambda x: x['perf_1to1']):,.0f} | | | |")
    print(f"| `flowbus pub`, no reader | {med(lambda x: x['pub_alone']):,.0f} | | | |")
    for comp in ("zstd", "lz4", "none"):
        ev = med(lambda x: x[comp]["events_per_s"])
        print(f"| `flowbus record --compression {comp}` (publisher to finished file) | {ev:,.0f} | {ev * payload / 1e6:,.1f} | "
              f"{med(lambda x: x[comp]['file_mb_per_s']):,.1f} | {med(lambda x: x[comp]['file_bytes']) / a.events:,.1f} |")
    print(f"| `pub --rate {a.rate}` with `record` subscribed: achieved | {med(lambda x: x['ordinary_achieved']):,.0f} | | | "
          f"lost {max(x['ordinary_lost'] for x in rounds)} |")


if __name__ == "__main__":
    main()
