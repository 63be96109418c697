"""The street, the ward and the door on gpiozero mock pins, played from the simulation.

A `PinPlayer` thread fetches each live GPIO sensor's pin edges from the simulator a
short window ahead (`Simulation.pin_tracks`) and drives the mock pins at the wall time
of each edge. The demo runs at real time (simulated speed 1), so an edge's wall time is
its offset on the simulation clock. Edges closer together than the thread can be
scheduled (the relay contact bounce of a few milliseconds) are driven as soon as
possible, in order: they are coalesced into a burst, and the final level is always
right. The driver's debounce (20-50 ms) swallows the burst as a real card's would.

A door counter's test output (`BeamTestOutput`, the driver's `test_pin`) switches the beam's
emitter off for the driver's self-test: while it is on, the player holds the beam line
"broken", as a working receiver reads in the dark, unless the simulator says the
receiver does not answer then (`DoorSensor.receiver_answers`: a `stuck` fault holds it at
the level the simulation holds, a `cut_cable` fault leaves it clear). The beam's own edges
meanwhile are remembered, and the line goes back to the simulated level when the emitter
is lit again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from gpiozero.pins.mock import MockFactory, MockPin

from urbanpulse.simulate import SimClock, Simulation
from urbanpulse.simulate.visits import DoorSensor

WINDOW_S = 0.5  # how much of the simulation is fetched per pass
LEAD_S = 0.1  # how early a window is fetched, so its first edges are not late
RECEIVERS = ("beam",)  # a door counter's pins that its test output darkens


class HeldPin(MockPin):  # type: ignore[misc]  # gpiozero is untyped
    """A mock input line held by an external device once the demo has driven it.

    MockPin drives the line to its pull whenever the pull is set, as when an edge agent
    opens it. A real line held by a loop card's output or a closed contact keeps its level
    against the pull resistor; this pin does the same, so the level the simulation set
    before the agent started is the level the agent reads at start-up."""

    def __init__(self, factory: Any, info: Any) -> None:
        super().__init__(factory, info)
        self.held = False
        # Told the level an output drives (None: released to an input again); set for a
        # door's test output by the pin player.
        self.on_output: Callable[[bool | None], None] | None = None

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

    def _set_state(self, value: Any) -> None:
        super()._set_state(value)
        if self.on_output is not None:
            self.on_output(bool(self._state))

    def _set_function(self, value: str) -> None:
        was = self._function
        super()._set_function(value)
        if was == "output" and value == "input" and self.on_output is not None:
            self.on_output(None)


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


@dataclass(frozen=True)
class BeamTestOutput:
    """A door counter's test output (`site/node/sensor`), the mock line its driver opens
    as `test_pin`; on (at `active_high`) switches the beam's emitter off."""

    site: str
    node: str
    sensor: str
    pin: HeldPin
    active_high: bool = True


class PinPlayer(threading.Thread):
    def __init__(self, sim: Simulation, clock: SimClock, wires: Sequence[PinWire],
                 tests: Sequence[BeamTestOutput] = ()) -> None:
        super().__init__(name="demo-pins", daemon=True)
        self.sim = sim
        self.clock = clock
        self.stop_event = threading.Event()
        self._sensors: dict[tuple[str, str, str], dict[str, PinWire]] = {}
        for w in wires:
            self._sensors.setdefault((w.site, w.node, w.sensor), {})[w.name] = w
        # The level the simulation last set on each line (by sensor and pin name), the
        # doors whose emitter is off, and whether each tested door's receiver answers.
        # The lock orders the player's edges and the drivers' test output (their thread).
        self._lock = threading.Lock()
        self._levels: dict[tuple[str, str, str, str], int] = {}
        self._dark: set[tuple[str, str, str]] = set()
        self._answers: dict[tuple[str, str, str], Callable[[float], bool]] = {}
        for t in tests:
            key = (t.site, t.node, t.sensor)
            door = sim.output(*key)
            if not isinstance(door, DoorSensor):
                raise ValueError(f"{'/'.join(key)} is not a door counter: no test output")
            self._answers[key] = door.receiver_answers
            t.pin.on_output = lambda level, key=key, high=t.active_high: self._emitter(
                key, level is not None and level == high)
        self.position = 0.0
        self.edges = 0
        self.max_late_s = 0.0
        self.blanks = 0  # times a test output switched an emitter off

    def _drive(self, wire: PinWire, level: int) -> None:
        """Set `wire` to the simulation's `level`, or "broken" while its emitter is off
        and its receiver answers."""
        key = (wire.site, wire.node, wire.sensor)
        with self._lock:
            self._levels[(*key, wire.name)] = level
            self._apply(key, wire)

    def _apply(self, key: tuple[str, str, str], wire: PinWire) -> None:
        level = self._levels[(*key, wire.name)]
        if (key in self._dark and wire.name in RECEIVERS
                and self._answers[key](self.clock.offset())):
            level = 1
        wire.drive(level)

    def _emitter(self, key: tuple[str, str, str], dark: bool) -> None:
        """A door's test output changed (called in the driver's thread)."""
        with self._lock:
            if dark == (key in self._dark):
                return
            if dark:
                self._dark.add(key)
                self.blanks += 1
            else:
                self._dark.discard(key)
            for name, wire in self._sensors.get(key, {}).items():
                if name in RECEIVERS and (*key, name) in self._levels:
                    self._apply(key, wire)

    def prime(self, at: float = 0.0) -> None:
        """Set every line to its level at offset `at`, before the agents open them."""
        for (site, node, sensor), wires in self._sensors.items():
            for name, track in self.sim.pin_tracks(site, node, sensor, at, at + WINDOW_S).items():
                self._drive(wires[name], track.initial)
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
                self._drive(wire, level)
                self.edges += 1
            t0 = self.position = t1

    def stop(self) -> None:
        self.stop_event.set()
        self.join(5)
