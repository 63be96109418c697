"""The street, the ward and the door on gpiozero mock pins, played from the simulation.

A `PinPlayer` thread fetches each live GPIO sensor's pin edges from the simulator a
short window ahead (`Simulation.pin_tracks`) and drives the mock pins at the wall time
of each edge. The demo runs at real time (simulated speed 1), so an edge's wall time is
its offset on the simulation clock. Edges closer together than the thread can be
scheduled (the relay contact bounce of a few milliseconds) are driven as soon as
possible, in order: they are coalesced into a burst, and the final level is always
right. The driver's debounce (20-50 ms) swallows the burst as a real card's would.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gpiozero.pins.mock import MockFactory, MockPin

from urbanpulse.simulate import SimClock, Simulation

WINDOW_S = 0.5  # how much of the simulation is fetched per pass
LEAD_S = 0.1  # how early a window is fetched, so its first edges are not late


class HeldPin(MockPin):  # type: ignore[misc]  # gpiozero is untyped
    """A mock input line held by an external device once the demo has driven it.

    MockPin drives the line to its pull whenever the pull is set, as when an edge agent
    opens it. A real line held by a loop card's output or a closed contact keeps its level
    against the pull resistor; this pin does the same, so the level the simulation set
    before the agent started is the level the agent reads at start-up."""

    def __init__(self, factory: Any, info: Any) -> None:
        super().__init__(factory, info)
        self.held = False

    def hold(self, high: bool) -> None:
        self.held = True
        if high:
            self.drive_high()
        else:
            self.drive_low()

    def _set_pull(self, value: str) -> None:
        level = self._state
        super()._set_pull(value)
        if self.held and self._state != level:
            self._change_state(level)


def pin_factory() -> MockFactory:
    return MockFactory(pin_class=HeldPin)


@dataclass(frozen=True)
class PinWire:
    """One simulator pin (`site/node/sensor`, pin `name`) wired to a mock line."""

    site: str
    node: str
    sensor: str
    name: str
    pin: HeldPin
    active_high: bool

    def drive(self, level: int) -> None:
        self.pin.hold(bool(level) == self.active_high)


class PinPlayer(threading.Thread):
    def __init__(self, sim: Simulation, clock: SimClock, wires: Sequence[PinWire]) -> None:
        super().__init__(name="demo-pins", daemon=True)
        self.sim = sim
        self.clock = clock
        self.stop_event = threading.Event()
        self._sensors: dict[tuple[str, str, str], dict[str, PinWire]] = {}
        for w in wires:
            self._sensors.setdefault((w.site, w.node, w.sensor), {})[w.name] = w
        self.position = 0.0
        self.edges = 0
        self.max_late_s = 0.0

    def prime(self, at: float = 0.0) -> None:
        """Set every line to its level at offset `at`, before the agents open them."""
        for (site, node, sensor), wires in self._sensors.items():
            for name, track in self.sim.pin_tracks(site, node, sensor, at, at + WINDOW_S).items():
                wires[name].drive(track.initial)
        self.position = at

    def _window(self, t0: float, t1: float) -> list[tuple[float, int, PinWire]]:
        edges: list[tuple[float, int, PinWire]] = []
        for (site, node, sensor), wires in self._sensors.items():
            for name, track in self.sim.pin_tracks(site, node, sensor, t0, t1).items():
                wire = wires[name]
                edges += [(e.t, e.level, wire) for e in track.edges]
        edges.sort(key=lambda e: e[0])
        return edges

    def run(self) -> None:
        t0 = self.position
        while not self.stop_event.wait(self.clock.wall_delay(t0 - LEAD_S)):
            t1 = t0 + WINDOW_S
            for t, level, wire in self._window(t0, t1):
                delay = self.clock.wall_delay(t)
                if delay > 0 and self.stop_event.wait(delay):
                    return
                self.max_late_s = max(self.max_late_s, self.clock.offset() - t)
                wire.drive(level)
                self.edges += 1
            t0 = self.position = t1

    def stop(self) -> None:
        self.stop_event.set()
        self.join(5)
