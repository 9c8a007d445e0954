"""Ctrl-C (SIGINT) stops a blocking call promptly with KeyboardInterrupt:
the waits let go of the GIL and look for signals between slices."""
import signal
import subprocess
import time

import pytest

from conftest import SENSOR_FBS, spawn_python

CHILD = """
import sys, flowbus
sys.path.insert(0, sys.argv[3])
from conftest import sensor_reading
bus = flowbus.Bus(sys.argv[1])
bus.create_topic("t", schema=sys.argv[2], ring_size=4096, slow_consumer_timeout=None)
pub = bus.publisher("t")
sub = bus.subscribe("t")
blocking = {
    "wait": lambda: sub.wait(),
    "iteration": lambda: next(iter(sub)),
    "read_batch": lambda: sub.read_batch(),
    "publish": lambda: pub.publish(sensor_reading(), timeout=None),  # sub never reads: the ring stays full
}[sys.argv[4]]
if sys.argv[4] == "publish":
    while pub.try_publish(sensor_reading()):
        pass
print("ready", flush=True)
try:
    blocking()
except KeyboardInterrupt:
    print("KeyboardInterrupt", flush=True)
    sys.exit(3)
print("returned", flush=True)
"""


@pytest.mark.parametrize("call", ["wait", "iteration", "read_batch", "publish"])
def test_sigint_interrupts_a_blocking_call(bus_name, call):
    from pathlib import Path
    child = spawn_python(CHILD, bus_name, SENSOR_FBS, Path(__file__).parent, call, stdout=subprocess.PIPE)
    try:
        assert child.stdout.readline().strip() == "ready"
        time.sleep(0.3)  # well inside the call, asleep on the ring
        assert child.poll() is None
        sent = time.monotonic()
        child.send_signal(signal.SIGINT)
        assert child.wait(5) == 3
        elapsed = time.monotonic() - sent
        assert child.stdout.read().strip() == "KeyboardInterrupt"
        assert elapsed < 1.0, f"KeyboardInterrupt came {elapsed:.2f}s after SIGINT (waits look for signals every 0.1 s)"
    finally:
        child.kill()
        child.wait()
