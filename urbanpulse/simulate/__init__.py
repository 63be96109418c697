"""The city simulator: a deterministic Hanoi of hospitals, intersections and air
stations, its sensors' outputs, injected anomalies and faults, and their ground truth.

See docs/simulator.md.
"""

from urbanpulse.simulate.city import DEFAULT_CITY, City, NodeSpec, SensorSpec
from urbanpulse.simulate.events import EVENT_TYPES, Event, make_event
from urbanpulse.simulate.lightweight import NodeBatch, ReadingGenerator
from urbanpulse.simulate.queues import QueueEvent
from urbanpulse.simulate.simulation import DEFAULT_START, Simulation
from urbanpulse.simulate.sources import SerialSource
from urbanpulse.simulate.timebase import NodeClock, SimClock
from urbanpulse.simulate.timeline import PinEdge, PinTrack

__all__ = [
    "DEFAULT_CITY",
    "DEFAULT_START",
    "EVENT_TYPES",
    "City",
    "Event",
    "NodeBatch",
    "NodeClock",
    "NodeSpec",
    "PinEdge",
    "PinTrack",
    "QueueEvent",
    "ReadingGenerator",
    "SensorSpec",
    "SerialSource",
    "SimClock",
    "Simulation",
    "make_event",
]
