#!/usr/bin/python3
"""Prints the readings of every sensor.* topic of a bus as they come, read in
place (zero copy), until --count events or Ctrl-C. Exits 1 if any were lost.

    PYTHONPATH=build/python /usr/bin/python3 examples/python/subscriber.py plant --count 5
"""
import argparse
import sys

import flowbus
from examples.SensorReading import SensorReading  # flatc --python schemas/examples/sensor.fbs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bus")
    parser.add_argument("--count", type=int, default=0, help="stop after this many events (default: Ctrl-C)")
    parser.add_argument("--start", choices=["latest", "earliest"], default="earliest")
    args = parser.parse_args()

    sub = flowbus.Bus(args.bus).subscribe("sensor.>", start=args.start)
    print(f"listening on sensor.> of bus {args.bus}", flush=True)
    received = 0
    try:
        for ev in sub:  # blocks; the GIL is free while it sleeps
            with ev:  # ev.data is valid inside the block only
                r = SensorReading.GetRootAs(ev.data)
                print(f"{ev.time} {ev.source} #{ev.sequence} {r.Line().decode()}/{r.Sensor().decode()} "
                      f"{r.Celsius():.1f} C", flush=True)
            received += 1
            if received == args.count:
                break
    except KeyboardInterrupt:
        pass
    if sub.missed:
        print(f"{sub.missed} event(s) lost (evicted {sub.evictions} times, lapped {sub.laps} times)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
