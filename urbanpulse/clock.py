"""Injectable clocks: wall time as aware UTC datetimes, and a monotonic counter."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """Wall-clock time, timezone-aware UTC."""
        ...

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin that never jumps."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()


class FakeClock:
    """A clock the caller moves by hand; wall and monotonic time advance together
    unless a wall-clock jump is simulated with `jump`."""

    def __init__(self, start: datetime | None = None) -> None:
        start = start or datetime(2026, 1, 1, tzinfo=UTC)
        if start.tzinfo is None or start.utcoffset() != timedelta(0):
            raise ValueError("FakeClock needs a timezone-aware UTC start")
        self._wall = start
        self._mono = 1000.0
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._wall

    def monotonic(self) -> float:
        with self._lock:
            return self._mono

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("time only moves forward; use jump() for wall-clock steps")
        with self._lock:
            self._wall += timedelta(seconds=seconds)
            self._mono += seconds

    def jump(self, seconds: float) -> None:
        """Step the wall clock only (an NTP correction or a bad RTC)."""
        with self._lock:
            self._wall += timedelta(seconds=seconds)


def to_epoch_ns(ts: datetime) -> int:
    """Nanoseconds since the epoch of an aware datetime, exact to the microsecond."""
    delta = ts - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


def from_epoch_ns(ns: int) -> datetime:
    return _EPOCH + timedelta(microseconds=ns // 1000)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
