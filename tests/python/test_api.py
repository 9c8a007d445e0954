"""The module's API: topics, publish (bytes, JSON, batches), wait, iteration,
poll, the CloudEvents attributes, loss counters and the errors."""
import json
import os
import re
import time

import pytest

import flowbus
from conftest import SENSOR_FBS, SensorReading, sensor_reading


def test_create_topic_returns_its_settings(bus):
    info = bus.create_topic("sensor.temp", schema=SENSOR_FBS, policy="latest", ring_size=1 << 16,
                            slow_consumer_timeout=None, retention=60)
    assert (info.name, info.type, info.policy, info.ring_size) == ("sensor.temp", "examples.SensorReading", "latest", 1 << 16)
    assert info.slow_consumer_timeout is None and info.retention == 60.0
    assert re.fullmatch(r"fnv1a64:[0-9a-f]{16}", info.schema_id)
    assert [t.name for t in bus.topics()] == ["sensor.temp"]
    assert bus.find_topic("sensor.temp").schema == info.schema and bus.find_topic("nope") is None
    # the same settings again: accepted; other settings: refused, naming the difference
    bus.create_topic("sensor.temp", schema=SENSOR_FBS, policy="latest", ring_size=1 << 16, slow_consumer_timeout=None,
                     retention=60)
    with pytest.raises(flowbus.AlreadyExists, match="policy latest, asked block") as e:
        bus.create_topic("sensor.temp", schema=info.schema, ring_size=1 << 16, slow_consumer_timeout=None, retention=60)
    assert e.value.code == "already-exists"


def test_publish_bytes_and_read_them_back_with_the_cloudevents_context(bus, sensor_topic):
    pub = bus.publisher(sensor_topic, name="py1")
    sub = bus.subscribe("sensor.>", start="earliest")
    before = time.time_ns()
    pub.publish(sensor_reading("l1", "t1", 20.5, 7), subject="hall-a")
    ev = sub.wait(1.0)
    assert ev is not None and ev.zero_copy
    with ev:
        reading = SensorReading.GetRootAs(ev.data)
        assert (reading.Line(), reading.Sensor(), reading.Celsius(), reading.Seq()) == (b"l1", b"t1", 20.5, 7)
        assert ev.json() == {"line": "l1", "sensor": "t1", "celsius": 20.5, "seq": 7}
        assert json.loads(ev.json_text()) == ev.json()
    assert ev.id == f"{pub.publisher_id:016x}-0" and ev.sequence == 0
    assert ev.source == pub.source and ev.source.endswith(f"/{bus.name}/py1") and ev.publisher == "py1"
    assert (ev.type, ev.topic, ev.subject, ev.policy) == ("examples.SensorReading", "sensor.temp", "hall-a", "block")
    assert ev.datacontenttype == "application/x-flatbuffers" and ev.dataschema.startswith("flowbus:schema/fnv1a64:")
    assert before <= ev.time_ns <= time.time_ns()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z", ev.time)
    assert sub.wait(0) is None


def test_publish_json_goes_through_the_topics_schema(bus, sensor_topic):
    pub = bus.publisher(sensor_topic)
    sub = bus.subscribe(sensor_topic, start="earliest")
    pub.publish_json({"line": "l1", "celsius": 20.5})
    pub.publish_json('{"line": "l2", "seq": 3}')
    assert sub.wait(1).json() == {"line": "l1", "celsius": 20.5, "seq": 0}  # unset strings are left out
    with sub.wait(1) as ev:
        assert SensorReading.GetRootAs(ev.data).Seq() == 3
    assert pub.next_sequence == 2


def test_wait_returns_none_after_its_timeout(bus, sensor_topic):
    sub = bus.subscribe(sensor_topic)
    start = time.monotonic()
    assert sub.wait(0.3) is None
    assert 0.29 <= time.monotonic() - start < 1.0
    assert sub.read() is None and sub.poll() == [] and sub.read_batch(timeout=0.05) == []


def test_a_backing_off_subscriber_gets_events_keeps_its_timeout_and_its_settings_are_checked(bus, sensor_topic):
    sub = bus.subscribe(sensor_topic, wait="backoff", backoff_spins=10, backoff_yields=1, backoff_max_park=0.002)
    start = time.monotonic()
    assert sub.wait(0.1) is None
    assert 0.099 <= time.monotonic() - start < 1.0
    bus.publisher(sensor_topic).publish(sensor_reading(seq=7))
    event = sub.wait(1.0)
    assert event is not None and SensorReading.GetRootAs(event.data).Seq() == 7
    with pytest.raises(flowbus.InvalidArgument, match="wait='nap': use 'futex' .* or 'backoff'"):
        bus.subscribe(sensor_topic, wait="nap")
    with pytest.raises(flowbus.InvalidArgument, match="backoff_spins=-1: from 0 to 100000000"):
        bus.subscribe(sensor_topic, wait="backoff", backoff_spins=-1)
    with pytest.raises(flowbus.InvalidArgument, match=r"SubscriberOptions::backoff.max_park .*at most 1 s"):
        bus.subscribe(sensor_topic, wait="backoff", backoff_max_park=2.0)
    with pytest.raises(flowbus.InvalidArgument, match=r"SubscriberOptions::backoff.min_park .*at least 1 us"):
        bus.subscribe(sensor_topic, wait="backoff", backoff_min_park=0)


def test_iteration_yields_every_event_in_order(bus, sensor_topic):
    pub = bus.publisher(sensor_topic)
    sub = bus.subscribe(sensor_topic, start="earliest")
    for seq in range(100):
        pub.publish(sensor_reading(seq=seq))
    got = []
    for ev in sub:
        got.append(SensorReading.GetRootAs(ev.data).Seq())
        if len(got) == 100:
            break
    assert got == list(range(100))


def test_publish_batch_and_poll_move_many_events_per_call(bus, sensor_topic):
    pub = bus.publisher(sensor_topic)
    sub = bus.subscribe(sensor_topic, start="earliest")
    assert pub.publish_batch([sensor_reading(seq=i) for i in range(150)]) == 150
    first = sub.poll(100)
    rest = sub.read_batch(100, timeout=1)
    assert [len(first), len(rest)] == [100, 50]
    events = first + rest
    assert [SensorReading.GetRootAs(e.data).Seq() for e in events] == list(range(150))
    assert [e.sequence for e in events] == list(range(150))
    assert not events[0].zero_copy
    assert len({e.time_ns for e in events[:64]}) == 1  # one clock read per burst
    events[0].release()  # copies stay readable
    assert SensorReading.GetRootAs(events[0].data).Seq() == 0
    sub.close()
    assert events[149].json() == {"line": "l1", "sensor": "t1", "celsius": 20.5, "seq": 149} and events[149].still_valid()


def test_a_full_block_ring_raises_full_after_the_timeout_and_too_large_at_once(bus, sensor_topic):
    pub = bus.publisher(sensor_topic)
    stuck = bus.subscribe(sensor_topic)  # never reads; the topic evicts it only after 5 s
    event = sensor_reading(line="x" * 900)
    published = 0
    while pub.try_publish(event):
        published += 1
    assert 50 < published < 70  # 64 KiB of ~1 KiB records
    start = time.monotonic()
    with pytest.raises(flowbus.Full, match="stayed full") as e:
        pub.publish(event, timeout=0.3)
    assert 0.29 <= time.monotonic() - start < 1.5 and isinstance(e.value, TimeoutError)
    with pytest.raises(flowbus.Full) as e:
        pub.publish_batch([event, event], timeout=0.1)
    assert e.value.published == 0
    with pytest.raises(flowbus.TooLarge, match="larger than 7/16 of the ring"):
        pub.publish(b"\0" * (40 << 10))
    stuck.close()  # frees its cursor: the writer goes on at once
    pub.publish(event, timeout=0.1)


def test_a_lapped_latest_reader_counts_its_losses_and_still_valid_says_so(bus):
    bus.create_topic("tele", schema=SENSOR_FBS, policy="latest", ring_size=4096)
    pub = bus.publisher("tele")
    sub = bus.subscribe("tele", start="earliest")
    pub.publish(sensor_reading(seq=0))
    ev = sub.wait(1)
    assert ev.policy == "latest" and ev.still_valid()
    for seq in range(1, 200):  # laps the 4 KiB ring many times over
        pub.publish(sensor_reading(seq=seq))
    assert not ev.still_valid()
    ev.release()
    ev = sub.wait(1)
    assert sub.missed > 0 and sub.laps == 1 and ev.sequence == sub.missed + 1
    ev.release()
    loud = bus.subscribe("tele", start="earliest", raise_on_loss=True)
    for seq in range(200, 400):
        pub.publish(sensor_reading(seq=seq))
    with pytest.raises(flowbus.EventsLost) as e:
        loud.wait(1)
    assert e.value.reason == "lapped" and e.value.missed > 0 and loud.missed == e.value.missed
    assert loud.wait(1) is not None  # the next read goes on after the gap


def test_an_untrusted_topic_hands_over_verified_events_and_counts_the_rest(bus):
    info = bus.create_topic("careful", schema=SENSOR_FBS, ring_size=1 << 16, untrusted=True)
    assert info.untrusted and bus.find_topic("careful").untrusted
    with pytest.raises(flowbus.AlreadyExists, match="untrusted yes, asked no"):
        bus.create_topic("careful", schema=SENSOR_FBS, ring_size=1 << 16)
    pub = bus.publisher("careful")
    sub = bus.subscribe("careful", start="earliest")
    pub.publish(b"\xff" * 64)  # no SensorReading
    pub.publish(sensor_reading(seq=7))
    ev = sub.wait(1)
    assert ev is not None and SensorReading.GetRootAs(ev.data).Seq() == 7
    assert sub.rejected == 1 and sub.missed == 0
    ev.release()
    loud = bus.subscribe("careful", start="earliest", raise_on_loss=True)
    with pytest.raises(flowbus.EventsLost) as e:
        loud.wait(1)
    assert e.value.reason == "rejected" and e.value.missed == 1 and loud.rejected == 1
    assert loud.wait(1) is not None  # the next read goes on


def test_an_evicted_block_reader_counts_its_losses_and_its_torn_view(bus):
    bus.create_topic("slow", schema=SENSOR_FBS, ring_size=4096, slow_consumer_timeout=0.2)
    pub = bus.publisher("slow")
    quiet = bus.subscribe("slow", start="earliest")
    loud = bus.subscribe("slow", start="earliest", raise_on_loss=True)
    pub.publish(sensor_reading(seq=0))
    held = quiet.wait(1)  # held across the eviction
    start = time.monotonic()
    for seq in range(1, 100):  # ~10 KiB into 4 KiB: waits for both readers until they are evicted
        pub.publish(sensor_reading(seq=seq), timeout=5)
    assert 0.15 < time.monotonic() - start < 3 and pub.evictions == 2
    held.release()
    assert quiet.torn_views == 1
    ev = quiet.wait(1)
    assert quiet.evictions == 1 and quiet.missed > 0 and ev.sequence > 0
    with pytest.raises(flowbus.EventsLost) as e:
        loud.wait(1)
    assert e.value.reason == "evicted" and e.value.missed > 0 and loud.evictions == 1
    assert loud.wait(1) is not None


def test_bad_input_gets_the_cores_clear_errors(bus, sensor_topic):
    with pytest.raises(flowbus.NotFound, match="topic 'no.such.topic'") as e:
        bus.publisher("no.such.topic")
    assert isinstance(e.value, LookupError) and e.value.code == "not-found"
    pub = bus.publisher(sensor_topic)
    with pytest.raises(flowbus.BadPayload, match="topic 'sensor.temp' .*unknown field.*colour") as e:
        pub.publish_json({"line": "l1", "colour": "red"})
    assert isinstance(e.value, ValueError)
    with pytest.raises(flowbus.BadPayload, match="celsius"):
        pub.publish_json({"celsius": "warm"})
    with pytest.raises(flowbus.InvalidName, match="bus name"):
        flowbus.Bus("Bad Name")
    with pytest.raises(flowbus.NotFound):
        flowbus.Bus("py-never-made", create=False)
    with pytest.raises(flowbus.InvalidArgument, match="ring"):
        bus.create_topic("other", schema=SENSOR_FBS, ring_size=1000)
    with pytest.raises(flowbus.InvalidArgument, match="start="):
        bus.subscribe(sensor_topic, start="yesterday")
    with pytest.raises(flowbus.InvalidArgument, match="nope.fbs"):
        bus.create_topic("other", schema="nope.fbs")
    with pytest.raises(TypeError, match=r"incompatible function arguments(.|\n)*data: buffer"):
        pub.publish("a str is not a FlatBuffer")
    with pytest.raises(TypeError, match="bytes-like object is required, not 'str'"):
        pub.publish_batch([sensor_reading(), "nor in a batch"])
    with pytest.raises(flowbus.InvalidArgument, match="max=0"):
        bus.subscribe(sensor_topic).poll(0)
    with pytest.raises(flowbus.NameInUse):
        bus.publisher(sensor_topic)  # "main" is pub's
    for bad in (-1, -0.001, float("nan")):
        with pytest.raises(ValueError, match="timeout must be None .* >= 0"):
            pub.publish(sensor_reading(), timeout=bad)
        with pytest.raises(ValueError, match="timeout must be None"):
            pub.publish_json({"line": "l1"}, timeout=bad)
        with pytest.raises(ValueError, match="timeout must be None"):
            pub.publish_batch([sensor_reading()], timeout=bad)
        with pytest.raises(ValueError, match="timeout must be None"):
            bus.subscribe(sensor_topic).wait(bad)
        with pytest.raises(ValueError, match="timeout must be None"):
            bus.subscribe(sensor_topic).read_batch(4, timeout=bad)
    assert pub.next_sequence == 0  # nothing went in


def test_closed_handles_say_so(bus, sensor_topic):
    pub = bus.publisher(sensor_topic)
    sub = bus.subscribe(sensor_topic)
    pub.close()
    sub.close()
    with pytest.raises(flowbus.Closed, match="Publisher .* was closed"):
        pub.publish(sensor_reading())
    with pytest.raises(flowbus.Closed, match="Subscriber was closed"):
        sub.wait(0)
    bus.close()
    with pytest.raises(flowbus.Closed):
        bus.topics()


def test_handles_used_in_a_fork_child_raise_wrong_process(bus, sensor_topic):
    pub = bus.publisher(sensor_topic)
    sub = bus.subscribe(sensor_topic)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report each call's exception type, then leave without cleanup
        results = []
        for call in (lambda: pub.publish(sensor_reading()), lambda: sub.wait(0), lambda: bus.publisher("sensor.temp", name="child")):
            try:
                call()
                results.append("no error")
            except Exception as e:  # noqa: BLE001
                results.append(f"{type(e).__name__}: {e}")
        os.write(write, "\n".join(results).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        results = f.read().splitlines()
    os.waitpid(pid, 0)
    assert len(results) == 3
    for line in results:
        assert line.startswith("WrongProcess: ") and "fork()" in line, line
    pub.publish(sensor_reading())  # the parent's handles are intact
    assert sub.wait(1) is not None


def test_help_documents_the_api():
    for cls, words in ((flowbus.Bus, "create_topic"), (flowbus.Subscriber, "raise_on_loss"),
                       (flowbus.Event, "memoryview"), (flowbus.Publisher, "publish_json")):
        assert words in cls.__doc__ or any(words in (getattr(cls, m).__doc__ or "") for m in dir(cls)), cls
    assert "released" in flowbus.Event.data.__doc__ or "memoryview" in flowbus.Event.data.__doc__
    assert issubclass(flowbus.Full, flowbus.Error) and flowbus.__version__.count(".") == 2


def test_a_wait_lets_other_threads_run_and_its_handle_is_theirs_to_wait_for(bus, sensor_topic):
    import threading
    pub = bus.publisher(sensor_topic)
    sub = bus.subscribe(sensor_topic)
    got = []
    waiter = threading.Thread(target=lambda: got.append(sub.wait(5)))
    waiter.start()
    time.sleep(0.2)  # the waiter sleeps without the GIL: this thread runs
    with pytest.raises(RuntimeError, match="waiting in another thread"):
        sub.close()
    with pytest.raises(RuntimeError, match="waiting in another thread"):
        sub.read()
    pub.publish(sensor_reading(seq=9))
    waiter.join(5)
    assert not waiter.is_alive() and SensorReading.GetRootAs(got[0].data).Seq() == 9
    sub.close()
