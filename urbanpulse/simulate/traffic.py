"""Traffic at one lane: vehicles over a pair of inductive loops.

Arrivals are a non-homogeneous Poisson process: the lane's peak hourly flow times the
hour-of-day and weekday profile (two rush hours on working days). Each vehicle has a
class (motorbikes dominate in Hanoi; heavy trucks only at night in the inner city), a
length and a speed that falls as the flow nears the peak. A vehicle is over loop 1
from its arrival for (length + loop length) / speed, and reaches loop 2, `spacing`
metres further, spacing / speed later. An incident divides the flow and the speed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from urbanpulse.simulate.city import Lane
from urbanpulse.simulate.events import Event
from urbanpulse.simulate.faults import HOLDING, MIN_PULSE_S, in_faults, pulse_timeline
from urbanpulse.simulate.profiles import WeeklyProfile
from urbanpulse.simulate.randomness import FloatArray, IntArray, key_hash, substream
from urbanpulse.simulate.timebase import TimeBase
from urbanpulse.simulate.timeline import Intervals, LruCache, PinTrack, poisson_times, with_bounce

CLASSES = ("motorbike", "car", "bus", "truck")
SHARE_DAY = np.array([0.86, 0.12, 0.015, 0.005])
SHARE_NIGHT = np.array([0.80, 0.13, 0.01, 0.06])  # trucks enter the inner city 21:00-06:00
LENGTH_MEAN = np.array([1.9, 4.5, 10.5, 8.5])
LENGTH_SD = np.array([0.12, 0.35, 1.0, 1.8])
SPEED_FACTOR = np.array([1.0, 0.95, 0.8, 0.85])
SPEED_SIGMA = 0.2
CONGESTION = 0.55  # share of the free speed lost at the peak flow
MIN_SPEED_KMH = 2.0
MIN_GAP_S = 0.05  # a detector card does not resolve shorter gaps between vehicles


@dataclass(frozen=True, slots=True)
class Passages:
    """Vehicles over a lane's loops, sorted by arrival at loop 1 (offsets in s)."""

    t_on1: FloatArray
    t_off1: FloatArray
    t_on2: FloatArray
    t_off2: FloatArray
    speed_kmh: FloatArray
    length_m: FloatArray
    vclass: IntArray

    def __len__(self) -> int:
        return int(self.t_on1.size)

    def select(self, mask: Any) -> Passages:
        return Passages(*(getattr(self, f)[mask] for f in _FIELDS))

    def between(self, t0: float, t1: float) -> Passages:
        lo, hi = np.searchsorted(self.t_on1, [t0, t1], side="left")
        return self.select(slice(int(lo), int(hi)))

    @staticmethod
    def concat(parts: list[Passages]) -> Passages:
        return Passages(*(np.concatenate([getattr(p, f) for p in parts]) for f in _FIELDS))

    def records(self) -> list[dict[str, Any]]:
        return [
            {"t_on1": a, "t_off1": b, "t_on2": c, "t_off2": d, "speed_kmh": v, "length_m": n,
             "vehicle": CLASSES[k]}
            for a, b, c, d, v, n, k in zip(
                self.t_on1.tolist(), self.t_off1.tolist(), self.t_on2.tolist(),
                self.t_off2.tolist(), self.speed_kmh.tolist(), self.length_m.tolist(),
                self.vclass.tolist(), strict=True)
        ]


_FIELDS = ("t_on1", "t_off1", "t_on2", "t_off2", "speed_kmh", "length_m", "vclass")


@dataclass
class LaneModel:
    seed: int
    site: str
    node: str
    lane: Lane
    timebase: TimeBase
    profile: WeeklyProfile
    incidents: list[Event] = field(default_factory=list)

    CHUNK = 1800.0
    LOOKBACK = 300.0  # longest span of one detection worth looking back for

    def __post_init__(self) -> None:
        self._peak = self.profile.peak
        self._cache: LruCache[int, Passages] = LruCache(self._chunk, keep=8)

    def base_rate(self, t: FloatArray) -> FloatArray:
        """Vehicles per second without incidents."""
        tb = self.timebase
        shape = self.profile.at(tb.week_hour(t)) / self._peak
        rate: FloatArray = self.lane.peak_vph / 3600.0 * shape
        return rate

    def _factor(self, t: FloatArray, name: str) -> FloatArray:
        factor = np.ones_like(t)
        for e in self.incidents:
            factor[(t >= e.start_s) & (t < e.end_s)] *= e.params[name]
        return factor

    def rate(self, t: FloatArray) -> FloatArray:
        rate: FloatArray = self.base_rate(t) * self._factor(t, "flow_factor")
        return rate

    def expected_count(self, t0: float, t1: float) -> float:
        grid = np.linspace(t0, t1, max(2, int((t1 - t0) / 5) + 1))
        r = self.rate(grid)
        return float(np.sum((r[1:] + r[:-1]) * 0.5 * np.diff(grid)))

    def _chunk(self, k: int) -> Passages:
        rng = substream(self.seed, "traffic", self.site, self.node, self.lane.sensor, k)
        t = poisson_times(rng, self.rate, k * self.CHUNK, (k + 1) * self.CHUNK)
        n = t.size
        hour = self.timebase.local_hour(t)
        night = (hour >= 21) | (hour < 6)
        u = rng.uniform(size=n)
        cls_day = np.searchsorted(np.cumsum(SHARE_DAY), u * SHARE_DAY.sum(), side="right")
        cls_night = np.searchsorted(np.cumsum(SHARE_NIGHT), u * SHARE_NIGHT.sum(), side="right")
        vclass = np.where(night, cls_night, cls_day).astype(np.int64)
        length = np.clip(LENGTH_MEAN[vclass] + LENGTH_SD[vclass] * rng.standard_normal(n),
                         1.2, 18.0)
        load = self.base_rate(t) * 3600.0 / max(self.lane.peak_vph, 1e-9)
        mean_speed = (self.lane.free_speed_kmh * (1.0 - CONGESTION * load**2)
                      * SPEED_FACTOR[vclass] * self._factor(t, "speed_factor"))
        speed = np.maximum(mean_speed * np.exp(SPEED_SIGMA * rng.standard_normal(n)
                                               - SPEED_SIGMA**2 / 2), MIN_SPEED_KMH)
        v = speed / 3.6
        dwell = (length + self.lane.loop_length_m) / v
        t_on2 = t + self.lane.loop_spacing_m / v
        return Passages(t, t + dwell, t_on2, t_on2 + dwell, speed, length, vclass)

    def passages(self, t0: float, t1: float) -> Passages:
        """Vehicles arriving at loop 1 in [t0, t1)."""
        first = int(np.floor(t0 / self.CHUNK))
        last = int(np.ceil(t1 / self.CHUNK))
        parts = [self._cache.get(k) for k in range(first, max(last, first + 1))]
        return Passages.concat(parts).between(t0, t1)

    def presence(self, t0: float, t1: float, loop: int = 1) -> Intervals:
        """When loop 1 (or 2) detects a vehicle, merged, around [t0, t1).

        Vehicles arriving up to MIN_GAP_S after t1 are taken too: one that closes a gap
        begun before t1 merges the two detections, and the time on before t1 (the last
        interval's occupancy, a stuck loop's level) must not depend on where a window
        ends. Vehicles arriving later start after t1 on both loops and change nothing."""
        p = self.passages(t0 - self.LOOKBACK, t1 + 2 * MIN_GAP_S)
        if loop == 1:
            return Intervals.merged(p.t_on1, p.t_off1, MIN_GAP_S)
        return Intervals.merged(p.t_on2, p.t_off2, MIN_GAP_S)


@dataclass
class LaneSensor:
    """What the loop-detector pair of a lane outputs, faults included."""

    model: LaneModel
    faults: list[Event]

    def __post_init__(self) -> None:
        m = self.model
        self._bounce_key = key_hash(m.seed, "bounce", m.site, m.node, m.lane.sensor)

    def _timeline(self, t0: float, t1: float, loop: int) -> Intervals:
        m = self.model
        base = m.presence(t0, t1, loop)
        faults = self.faults if loop == 1 else [f for f in self.faults if f.type != "spikes"]
        return pulse_timeline(base, faults, t0, t1, m.seed,
                              lambda t: m.presence(t, t + 1e-6, loop).level_at(t), 1)

    def pin_tracks(self, t0: float, t1: float) -> dict[str, PinTrack]:
        bounce = self.model.lane.bounce_ms / 1000.0
        return {
            f"loop{loop}": with_bounce(self._timeline(t0, t1, loop).track(t0, t1),
                                       self._bounce_key + loop, bounce)
            for loop in (1, 2)
        }

    def reports(self, t0: float, t1: float) -> tuple[FloatArray, list[dict[str, float]]]:
        """traffic.loop readings stamped in [t0, t1), one per period, at its end."""
        period = self.model.lane.period_s
        ends = self.model.timebase.aligned_ends(t0, t1, period)
        ends = ends[(ends >= period) & ~in_faults(self.faults, ("silence",), ends)]
        return ends, self.aggregates(ends)

    def aggregates(self, ends: FloatArray) -> list[dict[str, float]]:
        """traffic.loop values for the intervals ending at `ends` (one period each)."""
        if ends.size == 0:
            return []
        period = self.model.lane.period_s
        lo = ends - period
        # Pulses shorter than the driver's minimum are glitches, not vehicles.
        timeline, short = self._timeline(float(lo[0]), float(ends[-1]), 1).split_short(
            MIN_PULSE_S["traffic_loop"])
        counts = timeline.count_starts(lo, ends).tolist()
        glitches = short.count_starts(lo, ends).tolist()
        occupancy = np.minimum(timeline.on_time(lo, ends) / period * 100.0, 100.0)
        p = self.model.passages(float(lo[0]), float(ends[-1]))
        p = p.select(~in_faults(self.faults, HOLDING, p.t_on1))
        # Each interval on its own: `ends` need not follow one another (a silence's
        # readings are left out).
        first = np.searchsorted(p.t_on1, lo, side="left")
        after = np.searchsorted(p.t_on1, ends, side="left")
        n = after - first
        cum_v = np.concatenate([[0.0], np.cumsum(p.speed_kmh)])
        cum_len = np.concatenate([[0.0], np.cumsum(p.length_m)])
        with np.errstate(invalid="ignore", divide="ignore"):
            speed = ((cum_v[after] - cum_v[first]) / n).round(1).tolist()
            length = ((cum_len[after] - cum_len[first]) / n).round(2).tolist()
        out: list[dict[str, float]] = []
        for c, occ, vehicles, v, ln, g in zip(counts, occupancy.round(2).tolist(), n.tolist(),
                                              speed, length, glitches, strict=True):
            values = {"count": c, "occupancy_pct": occ, "interval_s": period}
            if c and vehicles:
                values["speed_kmh"] = v
                values["length_m"] = ln
            if g:
                values["glitches"] = g
            out.append(values)
        return out
