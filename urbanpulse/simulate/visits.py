"""People coming to a hospital: the emergency entrance and the outpatient hall.

ER patients arrive as a non-homogeneous Poisson process shaped by the hour of day, with
companions (families come along): each person breaks the entrance's door beam once.
Outpatients arrive mostly in the early morning; each takes a ticket at a kiosk and waits
until a counter calls it (queues.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from urbanpulse.simulate.city import Entrance, Outpatient
from urbanpulse.simulate.events import Event
from urbanpulse.simulate.faults import MIN_PULSE_S, in_faults, pulse_timeline
from urbanpulse.simulate.profiles import WeeklyProfile, per_day_rate
from urbanpulse.simulate.queues import KioskDay, QueueEvent, events_over, kiosk_days
from urbanpulse.simulate.randomness import FloatArray, IntArray, substream
from urbanpulse.simulate.timebase import TimeBase
from urbanpulse.simulate.timeline import Intervals, LruCache, PinTrack, poisson_times

CHUNK = 3600.0
LOOKBACK = 120.0
MIN_GAP_S = 0.05  # a beam interrupted twice within this reads as one person
FAULT_DELAY_S = 1.0  # the door driver's default: a supervision fault must last this long


def beam_pulses(rng: np.random.Generator, arrivals: FloatArray, sizes: IntArray) -> Intervals:
    """Beam breaks of groups of people walking in one after another."""
    n = int(sizes.sum())
    if n == 0:
        return Intervals.empty()
    group_start = np.repeat(arrivals, sizes)
    gaps = rng.uniform(0.8, 2.5, n)
    first = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    gaps[first[sizes > 0]] = 0.0
    cum = np.cumsum(gaps)
    offsets = cum - np.repeat(cum[first], sizes)
    starts = group_start + offsets
    return Intervals.merged(starts, starts + rng.uniform(0.25, 0.6, n), MIN_GAP_S)


@dataclass(frozen=True, slots=True)
class GroupArrivals:
    t: FloatArray
    size: IntArray
    beam: Intervals


@dataclass
class EntranceModel:
    """The emergency entrance of a hospital."""

    seed: int
    site: str
    entrance: Entrance
    timebase: TimeBase
    profile: WeeklyProfile
    surges: list[Event] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._cache: LruCache[int, GroupArrivals] = LruCache(self._chunk, keep=4)

    def rate(self, t: FloatArray) -> FloatArray:
        """Patients per second."""
        tb = self.timebase
        rate: FloatArray = (self.entrance.arrivals_per_day / 3600.0 / self.profile.days[0].day_sum
                            * self.profile.at(tb.week_hour(t)))
        for e in self.surges:
            rate[(t >= e.start_s) & (t < e.end_s)] *= e.params["factor"]
        return rate

    def _chunk(self, k: int) -> GroupArrivals:
        rng = substream(self.seed, "er", self.site, self.entrance.node, k)
        t = poisson_times(rng, self.rate, k * CHUNK, (k + 1) * CHUNK)
        sizes = 1 + rng.poisson(self.entrance.companions_mean, t.size)
        return GroupArrivals(t, sizes, beam_pulses(rng, t, sizes))

    def arrivals(self, t0: float, t1: float) -> FloatArray:
        """Patient arrival times in [t0, t1)."""
        k0, k1 = int(np.floor(t0 / CHUNK)), int(np.floor(t1 / CHUNK))
        t = np.concatenate([self._cache.get(k).t for k in range(k0, k1 + 1)])
        selected: FloatArray = t[(t >= t0) & (t < t1)]
        return selected

    def beam(self, t0: float, t1: float) -> Intervals:
        k0, k1 = int(np.floor((t0 - LOOKBACK) / CHUNK)), int(np.floor(t1 / CHUNK))
        parts = [self._cache.get(k).beam for k in range(k0, k1 + 1)]
        return Intervals.merged(np.concatenate([p.starts for p in parts]),
                                np.concatenate([p.ends for p in parts]), MIN_GAP_S)


@dataclass(frozen=True, slots=True)
class OutpatientDay:
    visits: FloatArray
    beam: Intervals
    kiosks: dict[str, KioskDay]


@dataclass
class OutpatientModel:
    seed: int
    site: str
    outpatient: Outpatient
    timebase: TimeBase
    profile: WeeklyProfile

    def __post_init__(self) -> None:
        self._days: LruCache[int, OutpatientDay] = LruCache(self._day, keep=3)

    def rate(self, t: FloatArray) -> FloatArray:
        """Visits per second."""
        return per_day_rate(self.outpatient.visits_per_day, self.profile,
                            self.timebase.week_hour(t))

    def _day(self, day: int) -> OutpatientDay:
        o = self.outpatient
        rng = substream(self.seed, "outpatient", self.site, o.node, day)
        day0 = self.timebase.day_start(day)
        visits = poisson_times(rng, self.rate, day0, day0 + 86_400.0, step=60.0)
        sizes = 1 + rng.poisson(o.companions_mean, visits.size)
        door = visits - rng.uniform(60.0, 300.0, visits.size)
        beam = beam_pulses(rng, door, sizes)
        choice = rng.uniform(size=visits.size)
        kiosks = kiosk_days(self.seed, self.site, o.node, o.kiosks, day, day0, visits, choice)
        return OutpatientDay(visits, beam, kiosks)

    def day(self, day: int) -> OutpatientDay:
        return self._days.get(day)

    def _days_over(self, t0: float, t1: float) -> range:
        tb = self.timebase
        return range(int(tb.local_day(t0)), int(tb.local_day(t1)) + 1)

    def beam(self, t0: float, t1: float) -> Intervals:
        parts = [self.day(d).beam for d in self._days_over(t0 - LOOKBACK, t1)]
        return Intervals.merged(np.concatenate([p.starts for p in parts]),
                                np.concatenate([p.ends for p in parts]), MIN_GAP_S)

    def kiosk_events(self, sensor: str, t0: float, t1: float) -> list[QueueEvent]:
        return events_over(self.timebase, lambda d: self.day(d).kiosks, sensor, t0, t1)


@dataclass
class DoorSensor:
    """A door counter's beam, faults included (a cut cable stops the counting), and its
    supervision loopback (open while the cable is cut)."""

    seed: int
    sensor_id: str
    period_s: float
    source: EntranceModel | OutpatientModel
    faults: list[Event]

    def timeline(self, t0: float, t1: float) -> Intervals:
        return pulse_timeline(self.source.beam(t0, t1), self.faults, t0, t1, self.seed,
                              lambda t: self.source.beam(t, t + 1e-6).level_at(t), 0)

    def loopback(self, t0: float, t1: float) -> Intervals:
        """When the supervision loop is closed around [t0, t1): always, but while a cut
        cable opens it (the pair runs in the beam's cable). A silence leaves it closed."""
        closed = Intervals(np.array([t0 - 1.0]), np.array([t1 + 1.0]))
        for f in self.faults:
            if f.type == "cut_cable" and f.covers(t0, t1):
                closed = closed.hold(f.start_s, f.end_s, 0)
        return closed

    def receiver_answers(self, t: float) -> bool:
        """Whether the beam's receiver answers its emitter being switched off at `t` (the
        driver's self-test through the emitters' test input): it reads "broken" while
        dark, unless a `stuck` fault holds it (it reads what the timeline holds) or a
        `cut_cable` fault cuts it off (it reads clear). What bench/faults/door_tests.py
        assumes of the bench's doors."""
        return not any(f.type in ("stuck", "cut_cable") and f.start_s <= t < f.end_s
                       for f in self.faults)

    def pin_tracks(self, t0: float, t1: float) -> dict[str, PinTrack]:
        return {"beam": self.timeline(t0, t1).track(t0, t1),
                "loopback": self.loopback(t0, t1).track(t0, t1)}

    def reports(self, t0: float, t1: float) -> tuple[FloatArray, list[dict[str, float]]]:
        """hospital.door readings stamped in [t0, t1), one per period, at its end."""
        ends = self.source.timebase.aligned_ends(t0, t1, self.period_s)
        ends = ends[(ends >= self.period_s) & ~in_faults(self.faults, ("silence",), ends)]
        return ends, self.aggregates(ends)

    def aggregates(self, ends: FloatArray) -> list[dict[str, float]]:
        if ends.size == 0:
            return []
        lo = ends - self.period_s
        # Pulses shorter than the driver's minimum are glitches, not people. The beam is
        # supervised (a loopback pair): every reading carries `fault`, 1 when a cut
        # lasting the driver's fault delay was present at any moment of the interval.
        beam, short = self.timeline(float(lo[0]), float(ends[-1])).split_short(
            MIN_PULSE_S["door_counter"])
        counts = beam.count_starts(lo, ends).tolist()
        glitches = short.count_starts(lo, ends).tolist()
        cut = np.zeros(ends.shape, dtype=bool)
        for f in self.faults:
            if f.type == "cut_cable" and f.end_s - f.start_s > FAULT_DELAY_S:
                cut |= (f.start_s + FAULT_DELAY_S < ends) & (f.end_s > lo)
        out: list[dict[str, float]] = []
        for c, g, x in zip(counts, glitches, cut.tolist(), strict=True):
            values = {"count": c, "interval_s": self.period_s, "fault": int(x)}
            if g:
                values["glitches"] = g
            out.append(values)
        return out
