"""Simulated time: offsets in seconds from the run's start, and the calendar around them.

Models work on float offsets `t` (seconds since the simulation started); the local
calendar (hour of day, weekday, day of year in the city's time zone) drives profiles;
readings are stamped in UTC epoch nanoseconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
from numpy.typing import ArrayLike

from urbanpulse.clock import Clock, from_epoch_ns, to_epoch_ns
from urbanpulse.simulate.errors import SimulationError
from urbanpulse.simulate.randomness import FloatArray, IntArray

EARLIEST_START = datetime(2020, 1, 2, tzinfo=UTC)
_DAY = 86_400.0


def require_utc(ts: datetime, what: str) -> datetime:
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise SimulationError(f"{what} must be a timezone-aware datetime, got naive {ts}")
    return ts.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class TimeBase:
    start: datetime
    utc_offset_s: int

    @classmethod
    def create(cls, start: datetime, utc_offset_hours: float) -> TimeBase:
        start = require_utc(start, "start")
        if start < EARLIEST_START:
            raise SimulationError(f"start {start} is before {EARLIEST_START} (the contract "
                                  "rejects readings stamped before 2020)")
        return cls(start, round(utc_offset_hours * 3600))

    @property
    def start_ns(self) -> int:
        return to_epoch_ns(self.start)

    @property
    def start_epoch_s(self) -> float:
        return self.start_ns / 1e9

    def at(self, t: float) -> datetime:
        return self.start + timedelta(seconds=t)

    def offset(self, ts: datetime) -> float:
        return (require_utc(ts, "ts") - self.start).total_seconds()

    def ts_ns(self, t: ArrayLike) -> IntArray:
        """Epoch nanoseconds, rounded to the microsecond (the contract's resolution)."""
        micros = np.rint(np.asarray(t, dtype=np.float64) * 1e6).astype(np.int64)
        return micros * 1000 + self.start_ns

    def _local_s(self, t: ArrayLike) -> FloatArray:
        local: FloatArray = np.asarray(t, dtype=np.float64) + (
            self.start_epoch_s + self.utc_offset_s)
        return local

    def local_hour(self, t: ArrayLike) -> FloatArray:
        hour: FloatArray = np.mod(self._local_s(t), _DAY) / 3600.0
        return hour

    def week_hour(self, t: ArrayLike) -> FloatArray:
        """Hours since Monday 00:00 local (1970-01-05 was a Monday)."""
        hours: FloatArray = np.mod(self._local_s(t) - 4 * _DAY, 7 * _DAY) / 3600.0
        return hours

    def local_day(self, t: ArrayLike) -> IntArray:
        """Local calendar day number (days since 1970-01-01 in the city's zone)."""
        return np.floor(self._local_s(t) / _DAY).astype(np.int64)

    def local_weekday(self, t: ArrayLike) -> IntArray:
        """0 = Monday ... 6 = Sunday."""
        weekday: IntArray = (self.local_day(t) + 3) % 7
        return weekday

    def day_of_year(self, t: ArrayLike) -> FloatArray:
        """Fractional day of the local year, 0 at 1 January 00:00."""
        local = self._local_s(t)
        days = np.floor(local / _DAY).astype("datetime64[D]")
        year_start = days.astype("datetime64[Y]").astype("datetime64[D]")
        doy: FloatArray = (days - year_start).astype(np.float64) + np.mod(local, _DAY) / _DAY
        return doy

    def day_start(self, local_day: int) -> float:
        """Offset of local midnight starting the given local day."""
        return local_day * _DAY - self.utc_offset_s - self.start_epoch_s

    def aligned_ends(self, t0: float, t1: float, period: float) -> FloatArray:
        """Ends of the intervals of `period` seconds aligned to the epoch, within [t0, t1)."""
        epoch0 = self.start_epoch_s
        first = math.ceil((t0 + epoch0) / period - 1e-9)
        last = math.ceil((t1 + epoch0) / period - 1e-9)
        ends: FloatArray = np.arange(first, last, dtype=np.float64) * period - epoch0
        return ends


class SimClock:
    """A `urbanpulse.clock.Clock` running at `speed` times a base clock, from `start`.

    `now()` is the simulated wall time; `monotonic()` the simulated seconds elapsed since
    the clock was made (it never jumps); `offset()` the simulation offset that the models
    take. With speed 1440 a day passes in a minute.
    """

    def __init__(self, timebase: TimeBase, speed: float, base: Clock,
                 at_offset: float = 0.0) -> None:
        if not math.isfinite(speed) or speed <= 0:
            raise SimulationError(f"speed must be a positive finite number, got {speed}")
        self._timebase = timebase
        self._speed = speed
        self._base = base
        self._base_mono0 = base.monotonic()
        self._offset0 = at_offset

    @property
    def speed(self) -> float:
        return self._speed

    def offset(self) -> float:
        return self._offset0 + (self._base.monotonic() - self._base_mono0) * self._speed

    def now(self) -> datetime:
        return from_epoch_ns(int(self._timebase.ts_ns(self.offset())))

    def monotonic(self) -> float:
        return self.offset() - self._offset0

    def wall_delay(self, t: float) -> float:
        """Base-clock seconds to wait until simulated offset `t` (0 if already past)."""
        return max(0.0, (t - self.offset()) / self._speed)


class NodeClock:
    """What a node's own clock reads: simulated time plus the node's clock faults."""

    def __init__(self, sim_clock: SimClock, skew_s: SkewFn) -> None:
        self._clock = sim_clock
        self._skew = skew_s

    def now(self) -> datetime:
        t = self._clock.offset()
        return self._clock.now() + timedelta(seconds=self._skew(t))

    def monotonic(self) -> float:
        return self._clock.monotonic()


class SkewFn:
    """Seconds a node's clock is off at simulated offset t (from clock_jump faults)."""

    def __init__(self, jumps: list[tuple[float, float, float]]) -> None:
        self._jumps = jumps

    def __call__(self, t: float) -> float:
        return sum(off for start, end, off in self._jumps if start <= t < end)

    def array(self, t: FloatArray) -> FloatArray:
        skew = np.zeros_like(t)
        for start, end, off in self._jumps:
            skew[(t >= start) & (t < end)] += off
        return skew
