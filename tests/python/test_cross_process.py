"""Python and C++ on one bus across processes, every event checked: the
flowbus CLI (C++) publishes to a Python subscriber, and a Python publisher
to the CLI's subscriber."""
import json
import subprocess

from conftest import CLI, SENSOR_FBS, SensorReading, sensor_reading

COUNT = 3000


def test_a_cpp_publisher_to_a_python_subscriber(bus, sensor_topic, tmp_path):
    sub = bus.subscribe(sensor_topic)  # from now on: every event of the CLI's new ring
    documents = [{"line": f"l{i % 7}", "sensor": f"t{i}", "celsius": i / 4, "seq": i} for i in range(COUNT)]
    events_file = tmp_path / "events.jsonl"
    events_file.write_text("".join(json.dumps(d) + "\n" for d in documents))
    cli = subprocess.Popen([str(CLI), "pub", bus.name, sensor_topic, "--file", str(events_file), "--name", "cli",
                            "--subject", "from-cpp"], stderr=subprocess.PIPE, text=True)
    # The 64 KiB ring holds ~700 of them: the CLI waits for this reader as it goes.
    for i, expected in enumerate(documents):
        ev = sub.wait(5)
        assert ev is not None, f"event {i} did not come"
        with ev:
            reading = SensorReading.GetRootAs(ev.data)
            got = {"line": reading.Line().decode(), "sensor": reading.Sensor().decode(), "celsius": reading.Celsius(),
                   "seq": reading.Seq()}
            assert got == expected and ev.json() == expected
            assert (ev.sequence, ev.subject, ev.publisher) == (i, "from-cpp", "cli")
    assert cli.wait(10) == 0, cli.stderr.read()
    assert sub.wait(0.1) is None and sub.missed == 0


def test_a_python_publisher_to_a_cpp_subscriber(bus):
    # 4 MiB holds every event: the CLI may subscribe after the first ones and still read them all (earliest).
    topic = bus.create_topic("sensor.all", schema=SENSOR_FBS).name
    cli = subprocess.Popen([str(CLI), "sub", bus.name, topic, "--from", "earliest", "--count", str(COUNT), "--json",
                            "--timeout", "10"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pub = bus.publisher(topic, name="py")
    expected = []
    batch = []
    for i in range(COUNT):  # every third way of publishing: bytes, JSON, bursts
        document = {"line": "py", "sensor": f"s{i}", "celsius": -i / 8, "seq": i}
        expected.append(document)
        if i % 3 == 0:
            pub.publish(sensor_reading(**document), timeout=10, subject=f"n{i}")
        elif i % 3 == 1:
            pub.publish_json(document, timeout=10, subject=f"n{i}")
        else:
            batch.append(sensor_reading(**document))
            if len(batch) == 10 or i == COUNT - 1:
                pub.publish_batch(batch, timeout=10)
                batch = []
    # A burst goes out when it has 10 events, after the single ones published meanwhile: match by payload.
    out, err = cli.communicate(timeout=30)
    assert cli.returncode == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == COUNT
    assert [line["flowbusseq"] for line in lines] == list(range(COUNT))
    by_seq = {line["data"]["seq"]: line for line in lines}
    assert sorted(by_seq) == list(range(COUNT))
    for i, document in enumerate(expected):
        line = by_seq[i]
        assert line["data"] == document
        assert line["source"] == pub.source and line["type"] == "examples.SensorReading"
        assert line["id"] == f"{pub.publisher_id:016x}-{line['flowbusseq']}"
        assert line.get("subject") == (f"n{i}" if i % 3 != 2 else None)
