"""No leak over 1M events: the process's RSS after 1M events is that after
100k, through every path (zero-copy views with generated classes, JSON,
batches)."""
from conftest import SensorReading, sensor_reading


def rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc/self/status")


def test_rss_stays_steady_over_a_million_events(bus):
    bus.create_topic("leak", schema=str(__import__("conftest").SENSOR_FBS), ring_size=1 << 20)
    pub = bus.publisher("leak")
    sub = bus.subscribe("leak", start="earliest")
    burst = [sensor_reading(seq=i) for i in range(100)]
    expected = 0

    def exchange(events):
        nonlocal expected
        for _ in range(events // 100):
            pub.publish_batch(burst)
            for _ in range(50):  # zero copy, one at a time
                with sub.wait(1) as ev:
                    assert ev.sequence == expected
                    if expected % 1000 == 0:
                        assert SensorReading.GetRootAs(ev.data).Seq() == expected % 100 and ev.json()["seq"] == expected % 100
                    else:
                        assert ev.data.nbytes == len(burst[expected % 100])
                    expected += 1
            copies = sub.poll(50)  # copies, in one call
            assert [e.sequence for e in copies] == list(range(expected, expected + 50))
            expected += 50

    exchange(100_000)
    after_100k = rss_kib()
    exchange(900_000)
    after_1m = rss_kib()
    assert expected == 1_000_000 and sub.missed == 0
    print(f"VmRSS after 100k events: {after_100k} KiB, after 1M: {after_1m} KiB")
    assert after_1m - after_100k < 512, f"RSS grew by {after_1m - after_100k} KiB from 100k to 1M events"
