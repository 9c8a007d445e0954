"""flowbus from Python: a shared-memory event bus of FlatBuffers CloudEvents.

    import flowbus
    bus = flowbus.Bus("plant")
    bus.create_topic("sensor.temp", schema="schemas/examples/sensor.fbs")
    pub = bus.publisher("sensor.temp", name="py1")
    pub.publish_json({"line": "l1", "celsius": 20.5})
    sub = bus.subscribe("sensor.>", start="earliest")
    with sub.wait(1.0) as ev:          # ev.data: a read-only memoryview into the ring
        print(ev.id, ev.json())

help(flowbus.Bus), help(flowbus.Subscriber), help(flowbus.Event) and
help(flowbus.Error) say the rest; README.md ("Python") shows whole programs.
"""
from ._flowbus import (  # noqa: F401  (re-exported)
    __version__,
    Bus,
    TopicInfo,
    Publisher,
    Subscriber,
    Event,
    Error,
    InvalidName,
    InvalidArgument,
    NotFound,
    AlreadyExists,
    NameInUse,
    IncompatibleSchema,
    VersionMismatch,
    Corrupt,
    PermissionDenied,
    NoSpace,
    BadPayload,
    SystemFailure,
    WrongProcess,
    Full,
    TooLarge,
    EventsLost,
    EventReleased,
    Closed,
)

__all__ = [
    "Bus", "TopicInfo", "Publisher", "Subscriber", "Event",
    "Error", "InvalidName", "InvalidArgument", "NotFound", "AlreadyExists", "NameInUse", "IncompatibleSchema",
    "VersionMismatch", "Corrupt", "PermissionDenied", "NoSpace", "BadPayload", "SystemFailure", "WrongProcess",
    "Full", "TooLarge", "EventsLost", "EventReleased", "Closed",
]
