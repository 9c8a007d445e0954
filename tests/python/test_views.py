"""ev.data: a read-only memoryview into the ring itself, revoked when the
event is released."""
import io

import pytest

import flowbus
from conftest import SENSOR_FBS, SensorReading, sensor_reading


@pytest.fixture
def pub_sub(bus, sensor_topic):
    return bus.publisher(sensor_topic), bus.subscribe(sensor_topic, start="earliest")


def test_data_is_a_read_only_view_of_the_ring_itself(bus):
    # Zero copy shows on a latest ring: the writer's later events change the bytes under a view we hold.
    bus.create_topic("tele", schema=SENSOR_FBS, policy="latest", ring_size=4096)
    pub, sub = bus.publisher("tele"), bus.subscribe("tele", start="earliest")
    first = sensor_reading(line="first", seq=0)
    pub.publish(first)
    ev = sub.wait(1)
    view = ev.data
    assert isinstance(view, memoryview) and view.readonly and view.format == "B" and bytes(view) == first
    assert len(ev) == len(first) and ev.data is view  # one view per event
    with pytest.raises(TypeError):
        view[0] = 1
    with pytest.raises(TypeError, match="read-write"):
        io.BytesIO(b"xy").readinto(view.obj)  # asks the exporter itself for a writable buffer
    for seq in range(1, 100):
        pub.publish(sensor_reading(line="later", seq=seq))
    assert bytes(view) != first and not ev.still_valid()


def test_views_raise_after_release(pub_sub):
    pub, sub = pub_sub
    pub.publish(sensor_reading(seq=5))
    with sub.wait(1) as ev:
        view = ev.data
        exporter = view.obj
        reading = SensorReading.GetRootAs(ev.data)
        assert reading.Seq() == 5
    assert ev.released
    with pytest.raises(ValueError, match="operation forbidden on released memoryview object"):
        view[0]
    with pytest.raises(ValueError, match="released memoryview"):
        reading.Seq()  # the generated class reads through the same view
    with pytest.raises(flowbus.EventReleased, match="ev.data: the event was released"):
        ev.data
    with pytest.raises(flowbus.EventReleased):
        ev.json()
    with pytest.raises(flowbus.EventReleased):
        memoryview(exporter)  # the exporter refuses new buffers too
    assert ev.sequence == 0 and ev.topic == "sensor.temp"  # the context stays readable
    ev.release()  # idempotent


def test_the_next_read_releases_the_event_held(pub_sub):
    pub, sub = pub_sub
    pub.publish(sensor_reading(seq=1))
    pub.publish(sensor_reading(seq=2))
    first = sub.wait(1)
    view = first.data
    second = sub.wait(1)
    assert first.released and not second.released
    with pytest.raises(ValueError, match="released memoryview"):
        bytes(view)
    assert SensorReading.GetRootAs(second.data).Seq() == 2


def test_a_slice_that_outlives_its_event_is_reported(pub_sub):
    pub, sub = pub_sub
    pub.publish(sensor_reading(seq=1))
    pub.publish(sensor_reading(seq=2))
    ev = sub.wait(1)
    kept = ev.data[0:4]  # a slice cannot be revoked
    with pytest.raises(BufferError, match="1 view.* still exist"):
        ev.release()
    assert ev.released
    del kept
    ev = sub.wait(1)  # released all the same: the subscriber went on
    assert SensorReading.GetRootAs(ev.data).Seq() == 2


def test_an_event_dropped_or_closed_without_release_gives_its_bytes_back(pub_sub):
    pub, sub = pub_sub
    pub.publish(sensor_reading(seq=1))
    ev = sub.wait(1)
    view = ev.data
    del ev  # no `with`, no release(): the last reference goes
    with pytest.raises(ValueError, match="released memoryview"):
        view[0]
    pub.publish(sensor_reading(seq=2))
    ev = sub.wait(1)
    view = ev.data
    sub.close()
    assert ev.released
    with pytest.raises(ValueError, match="released memoryview"):
        view[0]
