"""What the bench city's door counters report in their node's heartbeat, from the
driver's own logic: each door runs `edge/drivers/door_counter/logic.py` `DoorCounter`
(its debounce, minimum pulse, loopback supervision, blocked-beam watch and
`self_test.py` `BeamSelfTest`, at the driver's defaults: a test every 300 s, 0.2 s
dark, blocked after 60 s) on the levels its pins would read, and the heartbeat carries
what the driver's `supervision()` returns, read through `Supervision.from_report` as
the cloud reads it.

The pins' levels come from the simulated beam (`DoorSensor.timeline`, faults
included) and from what the fault does to the wiring; these are the assumptions:

* the receiver reads the beam; while the driver blanks the emitters (its test output)
  it reads "broken" `RESPONSE_S` later, and the beam again as long after they are lit,
  unless a `stuck` fault holds it (it reads what the timeline holds: stuck clear, or
  stuck broken) or a `cut_cable` fault cuts it off (it reads clear);
* the loopback pair reads "whole" except during a `cut_cable` fault;
* a `silence` fault is the driver not running: no entry in the heartbeat, and the
  agent starts it afresh when the fault ends.

The drivers start `WARM_S` before the run (the nodes have been up for a day).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from cloud.detect.faults import Supervision
from edge.drivers.door_counter.driver import DoorCounterParams
from edge.drivers.door_counter.logic import DoorCounter
from edge.drivers.door_counter.self_test import BeamSelfTest
from urbanpulse.simulate import Simulation
from urbanpulse.simulate.events import Event
from urbanpulse.simulate.visits import DoorSensor

DEFAULTS = DoorCounterParams(pin=0, supervision_pin=1, test_pin=2)
EVERY_S = DEFAULTS.self_test_every_s
BLOCKED_AFTER_S = DEFAULTS.blocked_after_s
RESPONSE_S = 0.001  # a receiver's response to its emitter going dark or lit
WARM_S = 600.0
BEAM, LOOP = 0, 1  # the door counter's lines: one beam, then the loopback
_STEPS_PER_S = 10_000  # a bound on the logic's deadlines per simulated second


@dataclass
class _Door:
    """One door counter's pins and driver logic, advanced in time order."""

    sensor: str
    beam: DoorSensor
    faults: tuple[Event, ...]
    t: float = -WARM_S  # the pins' changes before this have been fed
    now: float = -WARM_S  # the time of the logic's current call (for its test output)
    beam_level: bool = False  # the simulated beam (the timeline)
    dark: bool = False  # the receiver sees its emitter switched off
    fed: tuple[bool, bool] = (False, True)  # the pin levels the logic was last given
    logic: DoorCounter | None = None
    started: bool = False
    pending: list[tuple[float, int, bool]] = field(default_factory=list)  # (t, n, dark)
    blanks: int = 0

    def _within(self, kind: str, t: float) -> bool:
        return any(f.type == kind and f.start_s <= t < f.end_s for f in self.faults)

    def _pins(self, t: float) -> tuple[bool, bool]:
        """(receiver broken, loopback whole) as the node reads them at `t`."""
        held = not self.beam.receiver_answers(t)
        receiver = self.beam_level if held or not self.dark else True
        return receiver, not self._within("cut_cable", t)

    def _blank(self, on: bool) -> None:
        """The driver's test output: the receiver answers RESPONSE_S later."""
        self.blanks += 1
        heapq.heappush(self.pending, (self.now + RESPONSE_S, self.blanks, on))

    def _start(self, t: float) -> None:
        self.dark, self.pending = False, []
        self.fed = self._pins(t)
        test = lambda beams, t0: BeamSelfTest(  # noqa: E731 - as the driver builds it
            beams=beams, t0=t0, every_s=EVERY_S, test_s=DEFAULTS.self_test_s,
            blank=self._blank)
        self.logic = DoorCounter(
            bounce_s=DEFAULTS.debounce_s, levels=list(self.fed), t0=t,
            min_pulse_s=DEFAULTS.min_pulse_s, supervised=True, whole_level=True,
            fault_delay_s=DEFAULTS.fault_delay_s, blocked_after_s=BLOCKED_AFTER_S,
            self_test=test)

    def _feed(self, t: float) -> None:
        pins = self._pins(t)
        if self.logic is not None:
            self.now = t
            for line in (BEAM, LOOP):
                if pins[line] != self.fed[line]:
                    self.logic.feed(line, pins[line], t)
        self.fed = pins

    def _run_until(self, until: float, changes: list[tuple[float, int, bool]], i: int) -> int:
        """Feed the changes and the receiver's answers before `until`, polling the logic
        at its deadlines; the index of the first change not fed."""
        steps = 0
        while True:
            nxt = min(changes[i][0] if i < len(changes) else until,
                      self.pending[0][0] if self.pending else until)
            due = None if self.logic is None else self.logic.next_deadline()
            if self.logic is not None and due is not None and due <= nxt and due < until:
                self.now = due
                self.logic.poll(due)
                steps += 1
                assert steps < _STEPS_PER_S * (until - self.t + 1), "the logic does not settle"
                continue
            if nxt >= until:
                return i
            if self.pending and self.pending[0][0] == nxt:
                _, _, self.dark = heapq.heappop(self.pending)
            else:
                t, what, level = changes[i]
                i += 1
                if what == BEAM:
                    self.beam_level = level
                elif self._within("silence", t):
                    self.logic, self.dark, self.pending = None, False, []
                elif self.logic is None:
                    self._start(t)  # the agent restarts the driver
            self._feed(nxt)

    def reports(self, times: list[float]) -> list[Supervision | None]:
        """The heartbeat's entry at each of `times` (sorted, after those before)."""
        if not times:
            return []
        end = times[-1]
        track = self.beam.timeline(self.t, end).track(self.t, end)
        changes = [(e.t, BEAM, bool(e.level)) for e in track.edges]
        if not self.started:
            self.started, self.beam_level = True, bool(track.initial)
            if not self._within("silence", self.t):
                self._start(self.t)
        elif bool(track.initial) != self.beam_level:  # an edge exactly at the last call's end
            changes.append((self.t, BEAM, bool(track.initial)))
        changes += [(x, LOOP, False) for f in self.faults for x in (f.start_s, f.end_s)
                    if self.t <= x < end]
        changes.sort()
        out: list[Supervision | None] = []
        i = 0
        for t in times:
            i = self._run_until(t, changes, i)
            self.t = t
            if self.logic is None:
                out.append(None)
                continue
            self.now = t
            self.logic.close_interval(t, t)  # consumes what it counted: bounded
            report: dict[str, object] = {"blocked": self.logic.blocked(t)}
            test = self.logic.self_test
            if test is not None and test.result is not None:
                report["self_test"] = test.result
            out.append(Supervision.from_report(report))
        self.t = end  # the changes at `end` itself are fed at the next call
        return out


class DoorSelfTests:
    """Each door's supervision entry in its node's heartbeats; `reports` is called with
    times in increasing order, run after run of `node_heartbeats`."""

    def __init__(self, sim: Simulation) -> None:
        self._doors: dict[tuple[str, str], list[_Door]] = {}
        for n in sim.nodes:
            for s in n.sensors:
                if s.driver != "door_counter":
                    continue
                beam = sim.output(n.site, n.node, s.id)
                assert isinstance(beam, DoorSensor)
                faults = tuple(e for e in sim.events if e.site == n.site and e.node == n.node
                               and e.sensor == s.id)
                self._doors.setdefault((n.site, n.node), []).append(_Door(s.id, beam, faults))

    def reports(self, site: str, node: str, times: list[float]
                ) -> list[dict[str, Supervision]]:
        """The node's doors' supervision at each heartbeat time (true offsets, sorted,
        after those of the call before)."""
        out: list[dict[str, Supervision]] = [{} for _ in times]
        for door in self._doors.get((site, node), []):
            for i, entry in enumerate(door.reports(times)):
                if entry is not None:
                    out[i][door.sensor] = entry
        return out
