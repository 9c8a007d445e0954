"""examples/python: the subscriber prints what the publisher publishes, as
the README shows."""
import re
import subprocess
import sys

from conftest import SOURCE_DIR, child_env

EXAMPLES = SOURCE_DIR / "examples" / "python"


def test_the_subscriber_prints_every_reading_of_the_publisher(bus_name):
    sub = subprocess.Popen([sys.executable, str(EXAMPLES / "subscriber.py"), bus_name, "--count", "5"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env())
    try:
        assert sub.stdout.readline().startswith(f"listening on sensor.> of bus {bus_name}")
        pub = subprocess.run([sys.executable, str(EXAMPLES / "publisher.py"), bus_name, "--count", "5"],
                             capture_output=True, text=True, env=child_env(), timeout=30)
        assert pub.returncode == 0, pub.stderr
        assert re.fullmatch(rf"published 5 readings as flowbus://[^/]+/{bus_name}/py-line1\n", pub.stdout)
        out, err = sub.communicate(timeout=30)
    finally:
        sub.kill()
    assert sub.returncode == 0, err
    lines = out.splitlines()
    assert len(lines) == 5
    for seq, line in enumerate(lines):
        celsius = 22.5 if seq == 4 else 20.0 + seq / 2  # the last one went as JSON
        assert re.fullmatch(rf"\S+Z flowbus://\S+/py-line1 #{seq} line1/t1 {celsius:.1f} C", line), line
