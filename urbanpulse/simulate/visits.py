"""People coming to a hospital: the emergency entrance, the outpatient hall and its
queues.

ER patients arrive as a non-homogeneous Poisson process shaped by the hour of day, with
companions (families come along): each person breaks the entrance's door beam once.
Outpatients arrive mostly in the early morning; each takes a ticket at a kiosk and waits
until a counter calls it. Counters open in windows (morning, afternoon) and serve one
ticket at a time, first come first served, for a log-normal service time; when tickets
arrive faster than the open counters serve them, the wait grows. Tickets still waiting
when the last window closes are abandoned (no call).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from urbanpulse.simulate.city import Entrance, Kiosk, Outpatient
from urbanpulse.simulate.events import Event
from urbanpulse.simulate.faults import MIN_PULSE_S, in_faults, pulse_timeline
from urbanpulse.simulate.profiles import WeeklyProfile
from urbanpulse.simulate.randomness import FloatArray, IntArray, key_hash, substream
from urbanpulse.simulate.timebase import TimeBase
from urbanpulse.simulate.timeline import Intervals, LruCache, PinTrack, poisson_times

CHUNK = 3600.0
LOOKBACK = 120.0
MIN_GAP_S = 0.05  # a beam interrupted twice within this reads as one person
BUTTON_S = 0.15
PRINT_S = 2.0  # a kiosk button press or a counter's call key
ISSUE_BEFORE_OPEN_H = 1.0  # kiosks hand out tickets this long before counters open
ISSUE_STOP_BEFORE_CLOSE_H = 0.25
FAULT_DELAY_S = 1.0  # the door driver's default: a supervision fault must last this long


class QueueEvent(NamedTuple):
    t: float
    ticket: int
    called: int  # 0: ticket issued, 1: ticket called to a counter
    counter: int  # 1.. when called, 0 when issued


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
class KioskDay:
    issued: FloatArray
    called: FloatArray  # NaN: abandoned
    counter: IntArray  # 0: abandoned

    @property
    def waits(self) -> FloatArray:
        waits: FloatArray = self.called - self.issued
        return waits

    def events(self, t0: float, t1: float) -> list[QueueEvent]:
        tickets = np.arange(1, self.issued.size + 1)
        out = [QueueEvent(t, n, 0, 0) for t, n in zip(self.issued.tolist(), tickets.tolist(),
                                                      strict=True) if t0 <= t < t1]
        done = ~np.isnan(self.called)
        out += [QueueEvent(t, n, 1, c) for t, n, c in zip(
            self.called[done].tolist(), tickets[done].tolist(), self.counter[done].tolist(),
            strict=True) if t0 <= t < t1]
        out.sort()
        return out


@dataclass(frozen=True, slots=True)
class OutpatientDay:
    visits: FloatArray
    beam: Intervals
    kiosks: dict[str, KioskDay]


def serve(issued: FloatArray, service: FloatArray, windows: list[tuple[float, float, int]]
          ) -> tuple[FloatArray, IntArray]:
    """First come, first served over counters that open in windows (start, end, count):
    counter c (0-based) is open in a window if c < count. Returns call times (NaN when
    the ticket is never called) and 1-based counters (0 when never called)."""
    n_counters = max(w[2] for w in windows)
    free = [-np.inf] * n_counters
    called = np.full(issued.size, np.nan)
    counter = np.zeros(issued.size, dtype=np.int64)
    last_call = -np.inf
    durations = service.tolist()
    for i, arrival in enumerate(issued.tolist()):
        ready = max(arrival, last_call)
        for start, end, count in windows:
            if end <= ready:
                continue
            open_counters = free[:count]
            c = min(range(count), key=open_counters.__getitem__)  # the first to be free
            t = max(open_counters[c], ready, start)
            if t < end:
                break
        else:
            break  # no counter will call it, nor any later ticket: abandoned at closing
        called[i] = t
        counter[i] = c + 1
        free[c] = t + durations[i]
        last_call = t
    return called, counter


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
        tb = self.timebase
        rate: FloatArray = (self.outpatient.visits_per_day / 3600.0 / self.profile.days[0].day_sum
                            * self.profile.at(tb.week_hour(t)))
        return rate

    def _windows(self, kiosk: Kiosk, day0: float) -> list[tuple[float, float, int]]:
        return [(day0 + w.start_h * 3600, day0 + w.end_h * 3600, w.counters)
                for w in kiosk.windows]

    def _day(self, day: int) -> OutpatientDay:
        o = self.outpatient
        rng = substream(self.seed, "outpatient", self.site, o.node, day)
        day0 = self.timebase.day_start(day)
        visits = poisson_times(rng, self.rate, day0, day0 + 86_400.0, step=60.0)
        sizes = 1 + rng.poisson(o.companions_mean, visits.size)
        door = visits - rng.uniform(60.0, 300.0, visits.size)
        beam = beam_pulses(rng, door, sizes)
        choice = rng.uniform(size=visits.size)
        kiosks: dict[str, KioskDay] = {}
        low = 0.0
        for kiosk in o.kiosks:
            windows = self._windows(kiosk, day0)
            mine = (choice >= low) & (choice < low + kiosk.share)
            low += kiosk.share
            issuing = ((visits >= windows[0][0] - ISSUE_BEFORE_OPEN_H * 3600)
                       & (visits < windows[-1][1] - ISSUE_STOP_BEFORE_CLOSE_H * 3600))
            # One ticket at a time: a kiosk takes PRINT_S to print one.
            queue_at = visits[mine & issuing]
            spacing = PRINT_S * np.arange(queue_at.size)
            issued = np.maximum.accumulate(queue_at - spacing) + spacing
            krng = substream(self.seed, "kiosk", self.site, o.node, kiosk.sensor, day)
            mean_s = kiosk.service_mean_min * 60.0
            sigma = kiosk.service_sigma
            service = krng.lognormal(np.log(mean_s) - sigma**2 / 2, sigma, issued.size) \
                if sigma > 0 else np.full(issued.size, mean_s)
            called, counter = serve(issued, service, windows)
            kiosks[kiosk.sensor] = KioskDay(issued, called, counter)
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
        events: list[QueueEvent] = []
        for d in self._days_over(t0, t1):
            events += self.day(d).kiosks[sensor].events(t0, t1)
        return events


@dataclass
class DoorSensor:
    """A door counter's beam, faults included (a cut cable stops the counting)."""

    seed: int
    sensor_id: str
    period_s: float
    source: EntranceModel | OutpatientModel
    faults: list[Event]

    def timeline(self, t0: float, t1: float) -> Intervals:
        return pulse_timeline(self.source.beam(t0, t1), self.faults, t0, t1, self.seed,
                              lambda t: self.source.beam(t, t + 1e-6).level_at(t), 0)

    def pin_tracks(self, t0: float, t1: float) -> dict[str, PinTrack]:
        return {"beam": self.timeline(t0, t1).track(t0, t1)}

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


@dataclass
class KioskSensor:
    seed: int
    site: str
    node: str
    kiosk: Kiosk
    model: OutpatientModel
    faults: list[Event]

    def __post_init__(self) -> None:
        self._key = key_hash(self.seed, "kiosk", self.site, self.node, self.kiosk.sensor)

    def events(self, t0: float, t1: float) -> list[QueueEvent]:
        events = self.model.kiosk_events(self.kiosk.sensor, t0, t1)
        if not events:
            return events
        mute = in_faults(self.faults, ("silence", "cut_cable"), np.array([e.t for e in events]))
        return [e for e, m in zip(events, mute.tolist(), strict=True) if not m]

    def pin_tracks(self, t0: float, t1: float) -> dict[str, PinTrack]:
        events = self.events(t0 - BUTTON_S, t1)
        tracks: dict[str, PinTrack] = {}
        for c in range(0, self.kiosk.max_counters + 1):
            name = "ticket" if c == 0 else f"call-{c}"
            starts = np.array([e.t for e in events if e.called == (c > 0) and e.counter == c])
            tracks[name] = Intervals.merged(starts, starts + BUTTON_S).track(t0, t1)
        return tracks

    def reports(self, t0: float, t1: float) -> tuple[FloatArray, list[dict[str, float]]]:
        events = self.events(t0, t1)
        times = np.array([e.t for e in events])
        values: list[dict[str, float]] = [
            {"ticket": e.ticket, "called": 1, "counter": e.counter} if e.called
            else {"ticket": e.ticket, "called": 0} for e in events]
        return times, values
