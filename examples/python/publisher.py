#!/usr/bin/python3
"""Publishes sensor readings on topic sensor.temp of a bus: FlatBuffers built
with the classes `flatc --python` generates, then one given as JSON.

    PYTHONPATH=build/python /usr/bin/python3 examples/python/publisher.py plant --count 5
"""
import argparse
from pathlib import Path

import flatbuffers

import flowbus
from examples import SensorReading  # flatc --python schemas/examples/sensor.fbs (the build puts it in build/python)

SCHEMA = Path(__file__).resolve().parents[2] / "schemas" / "examples" / "sensor.fbs"


def reading(line: str, sensor: str, celsius: float, seq: int) -> bytes:
    builder = flatbuffers.Builder(64)
    line_offset, sensor_offset = builder.CreateString(line), builder.CreateString(sensor)
    SensorReading.Start(builder)
    SensorReading.AddLine(builder, line_offset)
    SensorReading.AddSensor(builder, sensor_offset)
    SensorReading.AddCelsius(builder, celsius)
    SensorReading.AddSeq(builder, seq)
    builder.Finish(SensorReading.End(builder))
    return builder.Output()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bus")
    parser.add_argument("--count", type=int, default=5, help="readings to publish (the last one as JSON)")
    parser.add_argument("--name", default="py-line1", help="publisher name: part of each event's source")
    args = parser.parse_args()

    bus = flowbus.Bus(args.bus)
    bus.create_topic("sensor.temp", schema=SCHEMA)  # accepted as it is if it exists with these settings
    with bus.publisher("sensor.temp", name=args.name) as pub:
        for seq in range(args.count - 1):
            pub.publish(reading("line1", "t1", 20.0 + seq / 2, seq))  # copied once into the ring
        pub.publish_json({"line": "line1", "sensor": "t1", "celsius": 22.5, "seq": args.count - 1})
        print(f"published {args.count} readings as {pub.source}")


if __name__ == "__main__":
    main()
