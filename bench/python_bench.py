#!/usr/bin/python3
"""The Python binding's figures beside the C++ ones, measured in the same run.

Each round runs every measurement once, in turn (interleaved), so a slow
spell of the machine hits Python and C++ alike; the table gives medians over
the rounds and the ratio of Python to C++ (`flowbus perf` in the same round).
Events are 64-byte SensorReading FlatBuffers, as `flowbus perf` sends 64-byte
payloads.

    PYTHONPATH=build/python /usr/bin/python3 bench/python_bench.py [--cli build/bin/flowbus] [--ring-bench build/bin/ring_bench] [--rounds 5]

Measurements:
  publish alone        Python publishes with no reader: publish() per event, publish_batch() of 64
  read prefilled       Python reads events already in the ring: wait()+with+ev.data per event, poll(256)
  1->1 Python          Python publisher process -> Python subscriber process (per event; batches of 64 / poll(256))
  1->1 C++ -> Python   `flowbus pub --count N` -> Python subscriber (per event; poll(256))
  round trip           64 B ping-pong between two Python processes on two CPUs (sub.wait() spinning)
  C++                  one process: ring_bench's BM_Ring_PublishLatest/64, BM_Ring_PublishBatch/64 and
                       BM_Ring_ReadRelease (64 B); two processes: `flowbus perf throughput --size 64` 1->1
                       (batch 1 and 64) and `flowbus perf latency --size 64 --transport flowbus`
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import flowbus

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "schemas" / "examples" / "sensor.fbs"
STREAM_EVENTS = 409_600  # multiples of the batch sizes (64, 100, 256)
PREFILLED_EVENTS = 204_800
PUBLISH_EVENTS = 409_600
CPP_SECONDS = 0.5  # each run of `flowbus perf throughput`


def reading_64_bytes(bus):
    """A finished SensorReading of exactly 64 bytes and its JSON, made through the topic's schema."""
    bus.create_topic("bench.shape", schema=SCHEMA, ring_size=1 << 16)
    sub = bus.subscribe("bench.shape")
    with bus.publisher("bench.shape", name="shape") as pub:
        for pad in range(0, 64):
            document = json.dumps({"line": "l" * (1 + pad), "sensor": "t1", "celsius": 20.5, "seq": 1})
            pub.publish_json(document)
            with sub.wait(1) as ev:
                if len(ev) == 64:
                    return bytes(ev.data), document
    raise SystemExit("no 64-byte SensorReading found")


def rate(events, seconds):
    return events / seconds if seconds > 0 else float("inf")


# --- Python alone ---------------------------------------------------------------------------------

def publish_alone(bus, event, batch, topic):
    bus.create_topic(topic, schema=SCHEMA, policy="latest")  # as ring_bench's publish figures: never waits
    with bus.publisher(topic, name="alone") as pub:
        burst = [event] * batch
        start = time.perf_counter()
        if batch == 1:
            for _ in range(PUBLISH_EVENTS):
                pub.publish(event)
        else:
            for _ in range(PUBLISH_EVENTS // batch):
                pub.publish_batch(burst)
        return rate(PUBLISH_EVENTS, time.perf_counter() - start)


def read_prefilled(bus, event, batch, topic):
    bus.create_topic(topic, schema=SCHEMA, ring_size=32 << 20)
    sub = bus.subscribe(topic, start="earliest")
    with bus.publisher(topic, name="fill") as pub:
        for _ in range(PREFILLED_EVENTS // 100):
            pub.publish_batch([event] * 100)
    got = 0
    start = time.perf_counter()
    if batch == 1:
        for _ in range(PREFILLED_EVENTS):
            with sub.wait(1) as ev:
                ev.data
        got = PREFILLED_EVENTS
    else:
        while got < PREFILLED_EVENTS:
            got += len(sub.poll(batch))
    seconds = time.perf_counter() - start
    assert got == PREFILLED_EVENTS and sub.missed == 0
    sub.close()
    return rate(got, seconds)


# --- across processes ------------------------------------------------------------------------------

def produce(bus_name, topic, count, batch, event):
    """--produce: a Python publisher process."""
    bus = flowbus.Bus(bus_name, create=False)
    with bus.publisher(topic, name="py") as pub:
        if batch == 1:
            for _ in range(count):
                pub.publish(event, timeout=30)
        else:
            burst = [event] * batch
            for _ in range(count // batch):
                pub.publish_batch(burst, timeout=30)


def consume(sub, count, batch):
    """Reads `count` events; the rate from the first to the last (the producer's start-up is not counted)."""
    first = sub.wait(30)
    assert first is not None, "the producer sent nothing"
    first.release()
    got = 1
    start = time.perf_counter()
    if batch == 1:
        for ev in sub:
            with ev:
                ev.data
            got += 1
            if got == count:
                break
    else:
        while got < count:
            got += len(sub.read_batch(batch, timeout=30))
    seconds = time.perf_counter() - start
    assert got == count and sub.missed == 0, (got, sub.missed)
    return rate(count - 1, seconds)


def stream(bus, event, producer, batch, topic, cli):
    """Events/s a subscriber of this process reads from a producer process (a Python publisher or `flowbus pub`)."""
    bus.create_topic(topic, schema=SCHEMA)
    sub = bus.subscribe(topic, spin=1e-3)
    data, document = event
    if producer == "python":
        cmd = [sys.executable, __file__, "--produce", bus.name, topic, str(STREAM_EVENTS), "64" if batch > 1 else "1",
               data.hex()]
    else:
        cmd = [cli, "pub", bus.name, topic, "--json", document, "--count", str(STREAM_EVENTS), "--quiet", "--timeout", "30"]
    child = subprocess.Popen(cmd)
    try:
        events_per_s = consume(sub, STREAM_EVENTS, batch)
    finally:
        if child.wait(60) != 0:
            raise SystemExit(f"{cmd[0]} failed")
    sub.close()
    return events_per_s


def pong(bus_name, iterations):
    """--pong: echoes every ping as a pong, pinned to the second CPU."""
    os.sched_setaffinity(0, {1})
    bus = flowbus.Bus(bus_name, create=False)
    sub = bus.subscribe("bench.ping", start="earliest", spin=1.0)
    pub = bus.publisher("bench.pong", name="pong")
    print("ready", flush=True)
    for _ in range(iterations):
        with sub.wait(30) as ev:
            pub.publish(ev.data)


def round_trip(bus, event, iterations):
    bus.create_topic("bench.ping", schema=SCHEMA, ring_size=1 << 16)
    bus.create_topic("bench.pong", schema=SCHEMA, ring_size=1 << 16)
    sub = bus.subscribe("bench.pong", start="earliest", spin=1.0)
    pub = bus.publisher("bench.ping", name="ping")
    warmup = iterations // 10
    child = subprocess.Popen([sys.executable, __file__, "--pong", bus.name, str(iterations + warmup)],
                             stdout=subprocess.PIPE, text=True)
    affinity = os.sched_getaffinity(0)
    try:
        assert child.stdout.readline().strip() == "ready"
        os.sched_setaffinity(0, {0})
        samples = []
        clock = time.perf_counter_ns
        for i in range(iterations + warmup):
            start = clock()
            pub.publish(event)
            with sub.wait(5):
                pass
            if i >= warmup:
                samples.append(clock() - start)
    finally:
        os.sched_setaffinity(0, affinity)
        child.wait(30)
    samples.sort()
    pub.close()
    sub.close()
    return samples[len(samples) // 2], samples[len(samples) * 99 // 100]


# --- C++, same round ------------------------------------------------------------------------------

def cpp_throughput(cli):
    out = subprocess.run([cli, "perf", "throughput", "--size", "64", "--seconds", str(CPP_SECONDS), "--batch", "64", "--json"],
                         check=True, capture_output=True, text=True).stdout
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    one = [r for r in rows if r["mode"] == "1->1" and r["transport"] == "flowbus" and r["batch"] == 1 and r["coalesce_ns"] == 0]
    burst = [r for r in rows if r["mode"] == "1->1" and r["transport"] == "flowbus" and r["batch"] == 64]
    return one[0]["events_per_s"], burst[0]["events_per_s"]


def cpp_one_process(ring_bench):
    """ring_bench's figures for the same operations in one C++ process (events/s)."""
    out = subprocess.run([ring_bench, "--benchmark_filter=BM_Ring_PublishLatest/64$|BM_Ring_PublishBatch/64$|BM_Ring_ReadRelease",
                          "--benchmark_min_time=0.2", "--benchmark_format=json"],
                         check=True, capture_output=True, text=True).stdout
    rates = {b["name"].split("/")[0]: b["items_per_second"] for b in json.loads(out)["benchmarks"]}
    return rates["BM_Ring_PublishLatest"], rates["BM_Ring_PublishBatch"], rates["BM_Ring_ReadRelease"]


def cpp_latency(cli, iterations):
    out = subprocess.run([cli, "perf", "latency", "--size", "64", "--transport", "flowbus", "--iters", str(iterations),
                          "--json"], check=True, capture_output=True, text=True).stdout
    row = json.loads(next(line for line in out.splitlines() if line.startswith("{")))
    return row["rtt_p50_ns"], row["rtt_p99_ns"]


# --- the run --------------------------------------------------------------------------------------

def one_round(cli, ring_bench, iterations, results):
    name = f"pybench-{os.getpid()}"
    bus = flowbus.Bus(name)
    try:
        event, document = reading_64_bytes(bus)
        m = {}
        m["cpp 1->1 per event"], m["cpp 1->1 batch 64"] = cpp_throughput(cli)
        m["cpp rtt p50"], m["cpp rtt p99"] = cpp_latency(cli, iterations)
        m["cpp publish alone"], m["cpp publish_batch 64 alone"], m["cpp read+release"] = cpp_one_process(ring_bench)
        m["py publish alone per event"] = publish_alone(bus, event, 1, "bench.alone1")
        m["py publish alone batch 64"] = publish_alone(bus, event, 64, "bench.alone64")
        m["py read prefilled per event"] = read_prefilled(bus, event, 1, "bench.fill1")
        m["py read prefilled poll 256"] = read_prefilled(bus, event, 256, "bench.fill256")
        m["py->py 1->1 per event"] = stream(bus, (event, document), "python", 1, "bench.pp1", cli)
        m["py->py 1->1 batch 64 / poll 256"] = stream(bus, (event, document), "python", 256, "bench.pp64", cli)
        m["cpp->py 1->1 per event"] = stream(bus, (event, document), "cpp", 1, "bench.cp1", cli)
        m["cpp->py 1->1 poll 256"] = stream(bus, (event, document), "cpp", 256, "bench.cp256", cli)
        m["py rtt p50"], m["py rtt p99"] = round_trip(bus, event, iterations)
    finally:
        bus.close()
        flowbus.Bus.destroy(name)
    for key, value in m.items():
        results.setdefault(key, []).append(value)
    print(json.dumps({k: round(v) for k, v in m.items()}), file=sys.stderr, flush=True)


def report(results):
    med = {k: statistics.median(v) for k, v in results.items()}
    rows = [
        ("publish, 1 per call (one process, no reader)", "py publish alone per event", "cpp publish alone"),
        ("publish_batch(64) (one process, no reader)", "py publish alone batch 64", "cpp publish_batch 64 alone"),
        ("read in place: wait() + with + ev.data (one process)", "py read prefilled per event", "cpp read+release"),
        ("read copies: poll(256) (one process)", "py read prefilled poll 256", "cpp read+release"),
        ("1->1 Python -> Python, per event", "py->py 1->1 per event", "cpp 1->1 per event"),
        ("1->1 Python -> Python, batch 64 / poll(256)", "py->py 1->1 batch 64 / poll 256", "cpp 1->1 batch 64"),
        ("1->1 C++ (flowbus pub) -> Python, per event", "cpp->py 1->1 per event", "cpp 1->1 per event"),
        ("1->1 C++ (flowbus pub) -> Python, poll(256)", "cpp->py 1->1 poll 256", "cpp 1->1 per event"),
    ]
    n = len(next(iter(results.values())))
    print(f"medians of {n} interleaved rounds, 64-byte events\n")
    print("| events/s | Python | C++, same rounds | Python / C++ |")
    print("|---|---:|---:|---:|")
    cpp_labels = {"cpp publish alone": "PublishLatest/64", "cpp publish_batch 64 alone": "PublishBatch/64",
                  "cpp read+release": "ReadRelease", "cpp 1->1 per event": "perf 1->1",
                  "cpp 1->1 batch 64": "perf 1->1 batch 64"}
    for label, py, cpp in rows:
        print(f"| {label} | {med[py]:,.0f} | {med[cpp]:,.0f} ({cpp_labels[cpp]}) | {med[py] / med[cpp]:.3f} |")
    print("\n| round trip, ns | Python | C++ | Python / C++ |")
    print("|---|---:|---:|---:|")
    for p in ("p50", "p99"):
        print(f"| {p} | {med['py rtt ' + p]:,.0f} | {med['cpp rtt ' + p]:,.0f} | {med['py rtt ' + p] / med['cpp rtt ' + p]:.1f}x |")


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--produce":
        produce(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), bytes.fromhex(sys.argv[6]))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--pong":
        pong(sys.argv[2], int(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cli", default=str(ROOT / "build" / "bin" / "flowbus"), help="the flowbus command line")
    parser.add_argument("--ring-bench", default=str(ROOT / "build" / "bin" / "ring_bench"), help="bench/ring_bench, built")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iters", type=int, default=20000, help="round trips per round")
    parser.add_argument("--smoke", action="store_true", help="tiny counts: checks that the script runs, measures nothing")
    args = parser.parse_args()
    if args.smoke:
        global STREAM_EVENTS, PREFILLED_EVENTS, PUBLISH_EVENTS, CPP_SECONDS
        STREAM_EVENTS, PREFILLED_EVENTS, PUBLISH_EVENTS, CPP_SECONDS = 6400, 6400, 6400, 0.02  # multiples of 64, 100, 256
        args.rounds, args.iters = 1, 100
    results = {}
    for _ in range(args.rounds):
        one_round(args.cli, args.ring_bench, args.iters, results)
    report(results)


if __name__ == "__main__":
    main()
