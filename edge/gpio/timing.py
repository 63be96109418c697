"""Interval boundaries and timestamps, on the injectable clock's monotonic time."""

from __future__ import annotations

from datetime import datetime, timedelta

from urbanpulse.clock import Clock

# The wire contract's bound on a reading's interval_s (traffic.loop, hospital.door).
MAX_INTERVAL_S = 3600.0


def wall_time_at(clock: Clock, t: float) -> datetime:
    """The aware UTC wall time of monotonic instant `t` (in the past or now)."""
    lag = max(0.0, clock.monotonic() - t)
    return clock.now() - timedelta(seconds=lag)


class IntervalSchedule:
    """Consecutive reporting intervals whose ends fall on wall-clock multiples of
    `interval_s` (a 60 s interval ends on the minute), tracked in monotonic time.

    The first interval runs from start-up to the first aligned boundary; when that is
    shorter than a tenth of an interval it is merged into the next one, unless the two
    together would pass the contract's bound on `interval_s` (an hour: such a reading is
    out of range, left out of every rollup). Each interval is closed `settle_s` after its
    end so that debounced edges from just before the boundary have been confirmed.
    """

    def __init__(self, interval_s: float, wall_now: datetime, mono_now: float,
                 settle_s: float = 0.0) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be > 0")
        self.interval_s = interval_s
        self.settle_s = settle_s
        remaining = interval_s - (wall_now.timestamp() % interval_s)
        if remaining < interval_s / 10 and remaining + interval_s <= MAX_INTERVAL_S:
            remaining += interval_s
        self.start = mono_now
        self.end = mono_now + remaining

    @property
    def close_at(self) -> float:
        return self.end + self.settle_s

    def advance(self) -> None:
        self.start = self.end
        self.end += self.interval_s
