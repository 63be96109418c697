"""What the bench city's door counters report in their node's heartbeat: each has the
self-test and the blocked-beam watch of `edge/drivers/door_counter` (a `test_pin` at the
defaults: a test every `EVERY_S`, a beam broken `BLOCKED_AFTER_S` is blocked).

Emulated on the door's simulated beam, faults included (`DoorSensor.timeline`):

* A test is due every `EVERY_S` from a phase of the door's own; due while the beam
  reads broken, it runs when the beam clears (the driver tries every second), unless
  that is a whole period away (then the next one is due). It fails while a `stuck`
  fault holds the beam clear (the receiver does not see its emitter go dark); it does
  not run while a `cut_cable` fault lasts (the driver sees the loopback cut); any
  other test passes. The report is the last test's result; the nodes have been up for
  a day, so one passed before the run.
* Blocked: the beam broken since `BLOCKED_AFTER_S` or longer (a `stuck` fault that
  held it broken; nobody in the city takes that long).
* During a `silence` fault the door reports nothing (its driver sends nothing).
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

from cloud.detect.faults import Supervision
from urbanpulse.simulate import Simulation
from urbanpulse.simulate.events import Event
from urbanpulse.simulate.timeline import Intervals
from urbanpulse.simulate.visits import DoorSensor

EVERY_S = 300.0  # the driver's default self_test_every_s
BLOCKED_AFTER_S = 60.0  # the driver's default blocked_after_s
RETRY_S = 1.0  # a test due while the beam is broken is tried again this much later


@dataclass(frozen=True, slots=True)
class _Door:
    sensor: str
    beam: DoorSensor
    phase: float
    faults: tuple[Event, ...]


class DoorSelfTests:
    """Each door's supervision entry in its node's heartbeats."""

    def __init__(self, sim: Simulation) -> None:
        self._doors: dict[tuple[str, str], list[_Door]] = {}
        for n in sim.nodes:
            for s in n.sensors:
                if s.driver != "door_counter":
                    continue
                beam = sim.output(n.site, n.node, s.id)
                assert isinstance(beam, DoorSensor)
                phase = zlib.crc32(f"{n.site}/{n.node}/{s.id}".encode()) % int(EVERY_S)
                faults = tuple(e for e in sim.events if e.site == n.site and e.node == n.node
                               and e.sensor == s.id)
                self._doors.setdefault((n.site, n.node), []).append(
                    _Door(s.id, beam, float(phase), faults))

    def reports(self, site: str, node: str, times: list[float]
                ) -> list[dict[str, Supervision]]:
        """The node's doors' supervision at each heartbeat time (true offsets, sorted)."""
        out: list[dict[str, Supervision]] = [{} for _ in times]
        if not times:
            return out
        for door in self._doors.get((site, node), []):
            lo = times[0] - 2 * EVERY_S
            timeline = door.beam.timeline(lo, times[-1] + EVERY_S)
            for i, t in enumerate(times):
                if not _within(door.faults, "silence", t):
                    out[i][door.sensor] = Supervision(
                        self_test=_last_result(door, timeline, t),
                        blocked=_broken_since(timeline, t) <= t - BLOCKED_AFTER_S)
        return out


def _within(faults: tuple[Event, ...], kind: str, t: float) -> bool:
    return any(f.type == kind and f.start_s <= t < f.end_s for f in faults)


def _broken_since(timeline: Intervals, t: float) -> float:
    """When the span of broken beam holding `t` began; +inf when the beam is clear."""
    k = int(timeline.starts.searchsorted(t, side="right"))
    if k > 0 and t < timeline.ends[k - 1]:
        return float(timeline.starts[k - 1])
    return math.inf


def _last_result(door: _Door, timeline: Intervals, t: float) -> str:
    """The result of the last test run at or before `t`."""
    due = door.phase + math.floor((t - door.phase) / EVERY_S) * EVERY_S
    for _ in range(2):  # the timeline reaches two periods back
        ran = due
        if _broken_since(timeline, due) < math.inf:  # postponed until the beam clears
            k = int(timeline.starts.searchsorted(due, side="right"))
            cleared = float(timeline.ends[k - 1])
            ran = due + math.ceil((cleared - due) / RETRY_S) * RETRY_S
        if ran <= t and ran < due + EVERY_S and not _within(door.faults, "cut_cable", ran):
            return "failed" if _within(door.faults, "stuck", ran) else "ok"
        due -= EVERY_S
    return "ok"
