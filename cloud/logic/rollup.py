"""Per-sensor event-time aggregates over fixed windows (1 minute, 1 hour).

Every window is stamped with its start, and the whole aggregate is re-emitted whenever a
reading lands in it, so a late reading simply overwrites the stored point with the
corrected one. Windows older than the horizon (behind the newest reading of the sensor)
are dropped from memory; a reading that old is counted as too late for aggregation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

MINUTE_NS = 60 * 1_000_000_000
HOUR_NS = 60 * MINUTE_NS


@dataclass(slots=True)
class FieldAgg:
    n: int
    total: float
    low: float
    high: float
    last_ts: int
    last: float

    def add(self, ts_ns: int, value: float) -> None:
        self.n += 1
        self.total += value
        if value < self.low:
            self.low = value
        if value > self.high:
            self.high = value
        if ts_ns >= self.last_ts:
            self.last_ts = ts_ns
            self.last = value


@dataclass(slots=True)
class Window:
    start_ns: int
    count: int
    fields: dict[str, FieldAgg]

    def add(self, ts_ns: int, values: Mapping[str, float]) -> None:
        self.count += 1
        for name, value in values.items():
            agg = self.fields.get(name)
            if agg is None:
                v = float(value)
                self.fields[name] = FieldAgg(1, v, v, v, ts_ns, v)
            else:
                agg.add(ts_ns, float(value))

    def as_fields(self) -> dict[str, float | int]:
        out: dict[str, float | int] = {"count": self.count}
        for name, a in sorted(self.fields.items()):
            out[f"{name}_mean"] = a.total / a.n
            out[f"{name}_min"] = a.low
            out[f"{name}_max"] = a.high
            out[f"{name}_last"] = a.last
        return out


class SensorRollup:
    """The open windows of one sensor at one width."""

    __slots__ = ("horizon_ns", "newest_ns", "too_late", "width_ns", "windows")

    def __init__(self, width_ns: int, horizon_ns: int) -> None:
        self.width_ns = width_ns
        self.horizon_ns = horizon_ns
        self.windows: dict[int, Window] = {}
        self.newest_ns = 0
        self.too_late = 0

    def add(self, ts_ns: int, values: Mapping[str, float]) -> Window | None:
        """Add a reading; returns its window, or None when it is too late to aggregate."""
        if ts_ns < self.newest_ns - self.horizon_ns:
            self.too_late += 1
            return None
        start = ts_ns - ts_ns % self.width_ns
        window = self.windows.get(start)
        if window is None:
            window = self.windows[start] = Window(start, 0, {})
        window.add(ts_ns, values)
        if ts_ns > self.newest_ns:
            self.newest_ns = ts_ns
        return window

    def evict(self) -> None:
        floor = self.newest_ns - self.horizon_ns - self.width_ns
        for start in [s for s in self.windows if s < floor]:
            del self.windows[start]


def windows_of(rollups: Iterable[SensorRollup]) -> int:
    return sum(len(r.windows) for r in rollups)
