"""A Python reader killed (kill -9) while it holds a zero-copy view of a
block topic does not stop the publisher: a dead reader is let go at once,
long before the topic's slow-consumer timeout."""
import signal
import subprocess
import time

from conftest import SENSOR_FBS, sensor_reading, spawn_python

HOLDER = """
import sys, time, flowbus
sub = flowbus.Bus(sys.argv[1]).subscribe("slow", start="earliest")
ev = sub.wait(5)
view = ev.data  # held, never released
print("holding", ev.sequence, bytes(view[:4]).hex(), flush=True)
time.sleep(60)
"""


def test_a_reader_killed_mid_view_does_not_stall_the_publisher(bus):
    bus.create_topic("slow", schema=SENSOR_FBS, ring_size=64 << 10, slow_consumer_timeout=30)
    pub = bus.publisher("slow")
    live = bus.subscribe("slow", start="earliest")
    event = sensor_reading(line="x" * 900)
    pub.publish(event)
    holder = spawn_python(HOLDER, bus.name, stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().split()[:2] == ["holding", "0"]
        # While it lives, the holder keeps the ring from filling up past it.
        published = 1
        while pub.try_publish(event):
            published += 1
            assert len(live.poll(1)) <= 1
        assert 50 < published < 70
        holder.send_signal(signal.SIGKILL)
        holder.wait(5)
        start = time.monotonic()
        for _ in range(200):  # three rings' worth
            pub.publish(event, timeout=10)
            live.poll(1)
        elapsed = time.monotonic() - start
    finally:
        holder.kill()
        holder.wait()
    assert elapsed < 5, f"the publisher waited {elapsed:.1f}s for a dead reader (slow-consumer timeout 30s)"
    assert live.missed == 0
