"""Interval boundaries and timestamps, on the injectable clock's monotonic time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from urbanpulse.clock import Clock

# The wire contract's bound on a reading's interval_s (traffic.loop, hospital.door).
MAX_INTERVAL_S = 3600.0

# A change of wall minus monotonic time larger than this is a wall-clock step (NTP's
# correction); smaller ones (two reads racing, a slewed correction) keep the schedule.
STEP_S = 2.0


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

    A wall-clock step (NTP correcting a Pi, which has no RTC, after the agent started)
    moves the wall clock and not monotonic time. `advance(clock)` notices it (wall minus
    monotonic time changed by more than STEP_S since the schedule was aligned) and aligns
    the intervals after the one that has just ended on the corrected clock's boundaries,
    by the same rules as at start-up; without it every later interval would end at the
    pre-step phase (:37 instead of :00) until a restart. `stamp(clock)` is the wall time
    of the current end: the boundary it was aimed at, or, when the clock has stepped
    since, the end's time by the corrected clock.
    """

    def __init__(self, interval_s: float, wall_now: datetime, mono_now: float,
                 settle_s: float = 0.0) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be > 0")
        self.interval_s = interval_s
        self.settle_s = settle_s
        self.start = mono_now
        self.end = mono_now
        self.end_wall = wall_now
        self.offset_s = 0.0
        self._align(wall_now, mono_now)

    @property
    def close_at(self) -> float:
        return self.end + self.settle_s

    def stepped(self, clock: Clock) -> bool:
        """Whether the wall clock has stepped since the schedule was aligned."""
        return abs(_offset_s(clock.now(), clock.monotonic()) - self.offset_s) > STEP_S

    def stamp(self, clock: Clock) -> datetime:
        """The aware UTC wall time of the current interval's end."""
        return wall_time_at(clock, self.end) if self.stepped(clock) else self.end_wall

    def advance(self, clock: Clock | None = None) -> None:
        """Start the next interval at the current one's end; with `clock`, a wall-clock
        step since the alignment re-aligns its end on the corrected clock."""
        self.start = self.end
        if clock is not None and self.stepped(clock):
            self._align(clock.now(), clock.monotonic())
            return
        self.end += self.interval_s
        self.end_wall += timedelta(microseconds=_us(self.interval_s))

    def _align(self, wall_now: datetime, mono_now: float) -> None:
        """End the interval starting at `self.start` on the first wall-clock multiple after
        it (by the clock read as `wall_now` at `mono_now`), or the one after when that is
        closer than a tenth of an interval and the two stay within the contract's hour."""
        interval_us = _us(self.interval_s)
        start_us = to_epoch_us(wall_now) - _us(max(0.0, mono_now - self.start))
        remaining_us = interval_us - start_us % interval_us
        if remaining_us * 10 < interval_us and remaining_us + interval_us <= _us(MAX_INTERVAL_S):
            remaining_us += interval_us
        self.offset_s = _offset_s(wall_now, mono_now)
        self.end = self.start + remaining_us / 1e6
        self.end_wall = _EPOCH + timedelta(microseconds=start_us + remaining_us)


def _us(seconds: float) -> int:
    return round(seconds * 1_000_000)


def to_epoch_us(ts: datetime) -> int:
    delta = ts - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _offset_s(wall: datetime, mono: float) -> float:
    """Wall minus monotonic time: constant until the wall clock steps."""
    return to_epoch_us(wall) / 1e6 - mono


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
