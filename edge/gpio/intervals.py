"""The reactor of interval-reporting GPIO drivers (loop detectors, door counters): feed
edges to the logic, confirm debounced levels at their deadlines, and emit one reading
per interval, stamped with the interval's end, a wall-clock boundary (after a wall-clock
step, the intervals after the one under way end on the corrected clock's boundaries:
IntervalSchedule). A run that stops between two ends (the agent stopping or restarting)
reports the interval so far, stamped with the stop, so that what it counted is not lost
with the run."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Protocol

from edge.drivers.base import Emit, Sample
from edge.gpio.runtime import RawEdge
from edge.gpio.timing import IntervalSchedule, wall_time_at
from urbanpulse.clock import Clock

# The contract's lower bound on interval_s: a stop within a millisecond of an interval's
# start reports no interval of its own (nothing can have been counted in it).
MIN_INTERVAL_S = 0.001


class IntervalResult(Protocol):
    def values(self) -> Mapping[str, float]: ...


class IntervalLogic(Protocol):
    @property
    def settle_s(self) -> float: ...

    def feed(self, line: int, level: bool, t: float) -> None: ...

    def poll(self, now: float) -> None: ...

    def next_deadline(self) -> float | None: ...

    def settling(self) -> float | None: ...

    def close_interval(self, end: float, now: float) -> IntervalResult: ...


class IntervalReactor:
    def __init__(self, logic: IntervalLogic, *, sensor_id: str, kind: str,
                 interval_s: float, clock: Clock, now: float, emit: Emit) -> None:
        self.logic = logic
        self.sensor_id = sensor_id
        self.kind = kind
        self.clock = clock
        self.emit = emit
        self.schedule = IntervalSchedule(interval_s, clock.now(), now, settle_s=logic.settle_s)
        self.last_values: Mapping[str, float] | None = None

    async def on_edge(self, edge: RawEdge) -> None:
        self.logic.feed(edge.line, edge.level, edge.t)

    def deadline(self) -> float | None:
        debounce = self.logic.next_deadline()
        close = self.schedule.close_at
        return close if debounce is None else min(debounce, close)

    async def on_time(self, now: float) -> None:
        self._close_due(now)

    def settling(self) -> float | None:
        return self.logic.settling()

    def on_stop(self, now: float) -> None:
        """The run stops at `now`: close the intervals due (one that ended less than its
        settle time ago too), then report [start, now) with its real length, stamped now.
        The next run starts an interval of its own, so nothing is counted twice; a change
        still being decided at the stop was decided first (GpioDriver settles before it
        stops), one still undecided then (an input chattering for seconds) is not counted,
        as at a crash."""
        self._close_due(now)
        if now >= self.schedule.end:
            self._close(self.schedule.end, now, self.schedule.stamp(self.clock))
            self.schedule.advance(self.clock)
        if now - self.schedule.start >= MIN_INTERVAL_S:
            self._close(now, now, wall_time_at(self.clock, now))

    def _close_due(self, now: float) -> None:
        self.logic.poll(now)
        while now >= self.schedule.close_at:
            self._close(self.schedule.end, now, self.schedule.stamp(self.clock))
            self.schedule.advance(self.clock)

    def _close(self, end: float, now: float, ts: datetime) -> None:
        values = self.logic.close_interval(end, now).values()
        self.last_values = values
        self.emit(Sample(self.sensor_id, self.kind, values, ts))
