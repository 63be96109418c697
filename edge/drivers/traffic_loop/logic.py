"""Inductive-loop detector logic: count, occupancy, speed and length per interval.

Pure: fed with raw edges (line, level, monotonic time) and told when an interval ends.

- Count: debounced rising edges of the (upstream) loop. A detection shorter than
  `min_pulse_s` is no vehicle but a glitch (see edge/gpio/pulse_filter.py), counted in the
  interval's `glitches` (both loops) instead. A loop change before an interval's end
  still undecided when the interval closes (the node polled late) is taken in the next
  interval, and every later change with it, so both loops' edges keep their order.
- Occupancy: the loop's on-time inside the interval / the interval's length. A vehicle on
  the loop at a boundary is split between the two intervals.
- Pulse output (one 100-250 ms pulse per vehicle): count only, no occupancy.
- Loop pair (a downstream loop `distance_m` further on): each reading says how many
  vehicles its speed is the mean of (`speed_count`, 0 when none was measured): a vehicle
  is measured when it reaches the downstream loop, often in the interval after the one that
  counted it when it crawls, and the cloud weights the speed by this number, not by the
  count (docs/domain-rollups.md). A vehicle's speed is
  distance_m / (t_on2 - t_on1); its length is speed x on-time - loop_length_m (on-time =
  mean of its on-times on the two loops). A downstream onset is matched to the oldest
  upstream onset whose transit time fits min_speed_kmh..max_speed_kmh and, for a vehicle
  that has left the upstream loop (presence output), its own on-time there: a vehicle on
  the loop for `on` seconds is at least (MIN_VEHICLE_M + loop_length_m) / on fast, so
  it reaches the downstream loop within SLACK x distance_m x on / (MIN_VEHICLE_M +
  loop_length_m). The window scales with the vehicle's speed: a crawling vehicle (long on
  the loop) is waited for down to min_speed_kmh, while the onset of a quick one that
  never reached the downstream loop (a lane change) stops waiting within about a second
  and is not paired with the vehicle behind it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from edge.gpio.debounce import Debouncer, Edge
from edge.gpio.pulse_filter import PulseFilter

Mode = Literal["presence", "pulse"]
MAX_LENGTH_M = 50.0
MAX_SPEED_KMH = 300.0
# Default slowest speed measured. Presence outputs: 1 km/h (a crawl in a jam is 2-8 km/h);
# the vehicle's own on-time keeps the pairing window short for faster vehicles. Pulse
# outputs carry no on-time: every onset waits distance / min_speed, so 5 km/h there.
MIN_SPEED_KMH = {"presence": 1.0, "pulse": 5.0}
MIN_VEHICLE_M = 1.0  # shorter than any motor vehicle (a motorbike is 1.8-2 m)
# The mean speed between the loops may fall to 1/SLACK of the least speed the upstream
# on-time allows: a braking motorbike to about half its speed over the loop, a car to a third.
SLACK = 1.5
_MAX_WAITING = 256
UPSTREAM, DOWNSTREAM = 0, 1


@dataclass(frozen=True, slots=True)
class LoopPair:
    distance_m: float
    loop_length_m: float | None = None
    min_speed_kmh: float = 5.0
    max_speed_kmh: float = 200.0

    @property
    def min_transit_s(self) -> float:
        return self.distance_m / (self.max_speed_kmh / 3.6)

    @property
    def max_transit_s(self) -> float:
        return self.distance_m / (self.min_speed_kmh / 3.6)

    def max_transit_after(self, on_time_s: float) -> float:
        """The longest transit time of a vehicle that was on the upstream loop for
        `on_time_s` (presence output): it is at least (MIN_VEHICLE_M + loop length) /
        on_time_s fast, give or take SLACK for braking between the loops."""
        sensed = MIN_VEHICLE_M + (self.loop_length_m or 0.0)
        return min(self.max_transit_s, SLACK * self.distance_m * on_time_s / sensed)


@dataclass(frozen=True, slots=True)
class LoopInterval:
    """One interval's aggregate. occupancy_pct is None for pulse outputs; speed_kmh and
    length_m are None when no vehicle of the interval was measured by a loop pair.
    `paired`: measured by a loop pair, so the reading says how many vehicles its speed is
    the mean of (`speed_count`, 0 too)."""

    count: int
    interval_s: float
    occupancy_pct: float | None
    speed_kmh: float | None = None
    length_m: float | None = None
    vehicles_measured: int = 0
    glitches: int = 0
    paired: bool = False

    def values(self) -> dict[str, float]:
        """The fields of a `traffic.loop` reading."""
        out: dict[str, float] = {"count": self.count, "interval_s": round(self.interval_s, 3)}
        if self.occupancy_pct is not None:
            out["occupancy_pct"] = round(self.occupancy_pct, 2)
        if self.speed_kmh is not None:
            out["speed_kmh"] = round(self.speed_kmh, 1)
        if self.paired:
            out["speed_count"] = self.vehicles_measured
        if self.length_m is not None:
            out["length_m"] = round(self.length_m, 2)
        if self.glitches:
            out["glitches"] = self.glitches
        return out


@dataclass(slots=True)
class _Vehicle:
    on0: float
    off0: float | None = None
    on1: float | None = None
    off1: float | None = None
    done: bool = False


@dataclass(slots=True)
class _LoopAccount:
    on: bool
    on_since: float
    on_time: float = 0.0
    count: int = 0


@dataclass(slots=True)
class LoopTotals:
    """Lifetime counters, for the node status."""

    vehicles: int = 0
    measured: int = 0
    unmatched_upstream: int = 0
    unmatched_downstream: int = 0
    implausible_length: int = 0
    late_edges: int = 0


@dataclass(slots=True)
class _Measures:
    speeds: list[float] = field(default_factory=list)
    lengths: list[float] = field(default_factory=list)


class TrafficLoopLogic:
    def __init__(self, *, mode: Mode, bounce_s: float, levels: Sequence[bool], t0: float,
                 pair: LoopPair | None = None, min_pulse_s: float = 0.0) -> None:
        lines = 2 if pair is not None else 1
        if len(levels) != lines:
            raise ValueError(f"expected {lines} initial levels, got {len(levels)}")
        self.mode = mode
        self.pair = pair
        self.bounce_s = bounce_s
        self.min_pulse_s = min_pulse_s
        self._filters = [PulseFilter(Debouncer(bounce_s, level, t0), min_pulse_s)
                         for level in levels]
        self._glitches_reported = 0
        self._accounts = [_LoopAccount(on=level, on_since=t0) for level in levels]
        self._start = t0
        self._edges: list[tuple[float, int, bool]] = []
        # per loop, since when its filter has had a change undecided (being debounced, or
        # an onset held back for min_pulse_s); None while nothing is pending
        self._pending_since: list[float | None] = [None] * lines
        self._waiting: deque[_Vehicle] = deque()
        self._on_loop: list[_Vehicle | None] = [None] * lines
        self.totals = LoopTotals()
        self._measures = _Measures()

    @property
    def settle_s(self) -> float:
        """How long after an interval's end to close it: long enough for an edge begun
        before the boundary to be confirmed by the debouncer (bounce plus margin) and
        by the minimum pulse length."""
        return 2 * self.bounce_s + self.min_pulse_s + 0.05

    def feed(self, line: int, level: bool, t: float) -> None:
        pulses = self._filters[line]
        # What was due by t first: fed straight in, an onset confirmed by this change
        # would stay held back behind the debounce of its own end.
        self._take(line, pulses.poll(t))
        if pulses.deadline() is None:
            self._pending_since[line] = None
        if self._pending_since[line] is None:
            self._pending_since[line] = t
        self._take(line, pulses.feed(level, t))
        if pulses.deadline() is None:
            self._pending_since[line] = None

    def poll(self, now: float) -> None:
        for line, pulses in enumerate(self._filters):
            self._take(line, pulses.poll(now))
            if pulses.deadline() is None:
                self._pending_since[line] = None

    def _take(self, line: int, edges: list[Edge]) -> None:
        for edge in edges:
            self._edges.append((edge.t, line, edge.level))

    def next_deadline(self) -> float | None:
        due = [d for d in (f.deadline() for f in self._filters) if d is not None]
        return min(due) if due else None

    def settling(self) -> float | None:
        """When the loops' changes under way are decided (the deadlines are the filters')."""
        return self.next_deadline()

    def level(self, line: int) -> bool:
        """The filtered level of `line` (True: vehicle present / pulse on)."""
        return self._filters[line].level

    @property
    def glitches(self) -> int:
        """Pulses too short to be real since start-up, both loops."""
        return sum(f.glitches for f in self._filters)

    def close_interval(self, end: float, now: float) -> LoopInterval:
        """Account every confirmed edge before `end` and return the interval
        [previous end, end). `now` (>= end) is when this runs."""
        self.poll(now)
        self._edges.sort()
        # A loop change from before `end` still undecided (the node polled late: an onset
        # held back for min_pulse_s while its end is debounced) comes later with its own
        # time: the edges after it wait for it, or the downstream onset would be applied
        # before its upstream one and the vehicle left unmatched and unmeasured.
        cutoff = min([end, *(t for t in self._pending_since if t is not None)])
        ready = [e for e in self._edges if e[0] < cutoff]
        self._edges = [e for e in self._edges if e[0] >= cutoff]
        for t, line, level in ready:
            self._apply(line, level, t)
        length_s = end - self._start
        upstream = self._accounts[UPSTREAM]
        for account in self._accounts:
            if account.on:
                account.on_time += end - max(account.on_since, self._start)
                account.on_since = end
        occupancy = None
        if self.mode == "presence" and length_s > 0:
            occupancy = min(100.0, max(0.0, 100.0 * upstream.on_time / length_s))
        measures = self._measures
        result = LoopInterval(
            count=upstream.count,
            interval_s=length_s,
            occupancy_pct=occupancy,
            speed_kmh=_mean(measures.speeds),
            length_m=_mean(measures.lengths),
            vehicles_measured=len(measures.speeds),
            glitches=self.glitches - self._glitches_reported,
            paired=self.pair is not None,
        )
        self._glitches_reported += result.glitches
        for account in self._accounts:
            account.on_time = 0.0
            account.count = 0
        self._measures = _Measures()
        self._start = end
        return result

    def _apply(self, line: int, level: bool, t: float) -> None:
        account = self._accounts[line]
        clamped = max(t, self._start)
        if t < self._start:
            self.totals.late_edges += 1
        if level and not account.on:
            account.on = True
            account.on_since = clamped
            account.count += 1
            if line == UPSTREAM:
                self.totals.vehicles += 1
        elif not level and account.on:
            account.on = False
            account.on_time += clamped - max(account.on_since, self._start)
        if self.pair is not None:
            if line == UPSTREAM:
                self._upstream(level, t)
            else:
                self._downstream(level, t)

    def _upstream(self, level: bool, t: float) -> None:
        if level:
            arrived = _Vehicle(on0=t)
            self._waiting.append(arrived)
            self._on_loop[UPSTREAM] = arrived
            while len(self._waiting) > _MAX_WAITING:
                self._waiting.popleft()
                self.totals.unmatched_upstream += 1
        else:
            vehicle = self._on_loop[UPSTREAM]
            self._on_loop[UPSTREAM] = None
            if vehicle is not None:
                vehicle.off0 = t
                self._complete(vehicle)

    def _downstream(self, level: bool, t: float) -> None:
        pair = self.pair
        if pair is None:
            return
        if not level:
            vehicle = self._on_loop[DOWNSTREAM]
            self._on_loop[DOWNSTREAM] = None
            if vehicle is not None:
                vehicle.off1 = t
                self._complete(vehicle)
            return
        if any(t - v.on0 > self._max_transit(pair, v) for v in self._waiting):
            kept = deque(v for v in self._waiting if t - v.on0 <= self._max_transit(pair, v))
            self.totals.unmatched_upstream += len(self._waiting) - len(kept)
            self._waiting = kept
        if self._waiting and t - self._waiting[0].on0 >= pair.min_transit_s:
            vehicle = self._waiting.popleft()
            vehicle.on1 = t
            self._on_loop[DOWNSTREAM] = vehicle
            self._complete(vehicle)
        else:
            self._on_loop[DOWNSTREAM] = None
            self.totals.unmatched_downstream += 1

    def _max_transit(self, pair: LoopPair, vehicle: _Vehicle) -> float:
        if self.mode == "presence" and vehicle.off0 is not None:
            return pair.max_transit_after(vehicle.off0 - vehicle.on0)
        return pair.max_transit_s

    def _complete(self, vehicle: _Vehicle) -> None:
        """Record the vehicle's speed (and length) once every edge it needs is known."""
        pair = self.pair
        on1, off0, off1 = vehicle.on1, vehicle.off0, vehicle.off1
        if pair is None or on1 is None or vehicle.done:
            return
        loop_length = pair.loop_length_m if self.mode == "presence" else None
        if loop_length is not None and (off0 is None or off1 is None):
            return
        vehicle.done = True
        speed_ms = pair.distance_m / (on1 - vehicle.on0)
        self.totals.measured += 1
        self._measures.speeds.append(speed_ms * 3.6)
        if loop_length is not None and off0 is not None and off1 is not None:
            on_time = ((off0 - vehicle.on0) + (off1 - on1)) / 2
            length = speed_ms * on_time - loop_length
            if 0 <= length <= MAX_LENGTH_M:
                self._measures.lengths.append(length)
            else:
                self.totals.implausible_length += 1


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None
