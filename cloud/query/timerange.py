"""The half-open time range [start, end) of a query, and its split into chunks.

Chunks adapt to the data's density: a chunk that returned more than `rows` rows halves
the next one, one that returned under a quarter of it doubles the next one, so a long
range of sparse data takes few requests and a dense one stays near `rows` per request.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import pandas as pd

from cloud.query.errors import BadArgument
from urbanpulse.clock import to_epoch_ns

MIN_CHUNK_NS = 1_000_000_000  # 1 s
MAX_CHUNK_NS = 366 * 86_400 * 1_000_000_000
# InfluxDB's own bounds (models.MinNanoTime, MaxNanoTime), within pandas' nanosecond index
FIRST_NS = -(2**63) + 2
LAST_NS = 2**63 - 2


def epoch_ns(value: datetime, argument: str) -> int:
    """An aware datetime (any offset) as nanoseconds since the epoch; a pandas Timestamp
    keeps its nanoseconds (a frame's own index values are exact bounds)."""
    if not isinstance(value, datetime):
        raise BadArgument(argument, f"must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise BadArgument(argument, f"{value.isoformat()} is naive: give a timezone (UTC: "
                                    "tzinfo=datetime.UTC, or 'Z' in text)")
    ns = value.value if isinstance(value, pd.Timestamp) else to_epoch_ns(value)
    if not FIRST_NS <= ns <= LAST_NS:
        raise BadArgument(argument, f"{value.isoformat()} is outside the times InfluxDB holds "
                                    f"({pd.Timestamp(FIRST_NS, tz='UTC')} to "
                                    f"{pd.Timestamp(LAST_NS, tz='UTC')})")
    return ns


@dataclass(frozen=True)
class TimeRange:
    start_ns: int
    end_ns: int

    @classmethod
    def of(cls, start: datetime, end: datetime) -> TimeRange:
        start_ns, end_ns = epoch_ns(start, "start"), epoch_ns(end, "end")
        if start_ns >= end_ns:
            raise BadArgument("start", f"{start.isoformat()} is not before end {end.isoformat()}")
        return cls(start_ns, end_ns)


def chunk_length_ns(chunk: timedelta) -> int:
    if not isinstance(chunk, timedelta) or chunk.total_seconds() < MIN_CHUNK_NS / 1e9:
        raise BadArgument("chunk", f"must be a timedelta of at least 1 s, got {chunk!r}")
    return min(MAX_CHUNK_NS, chunk // timedelta(microseconds=1) * 1000)


class Chunks:
    """The next chunk to fetch: `next_span()`, then `fetched(rows)` once it is read."""

    def __init__(self, span: TimeRange, first_ns: int, rows: int) -> None:
        self._at = span.start_ns
        self._end = span.end_ns
        self._length = first_ns
        self._rows = rows

    def next_span(self) -> tuple[int, int] | None:
        if self._at >= self._end:
            return None
        upto = min(self._end, self._at + self._length)
        return self._at, upto

    def cut(self) -> None:
        """The last span's answer was cut short by the server: the next try is half as long,
        from the same start (below the usual floor if need be)."""
        upto = min(self._end, self._at + self._length)
        self._length = max(1, (upto - self._at) // 2)

    def fetched(self, upto: int, rows: int) -> None:
        self._at = upto
        if rows > self._rows:
            self._length = max(MIN_CHUNK_NS, self._length // 2)
        elif rows < self._rows // 4:
            self._length = min(MAX_CHUNK_NS, self._length * 2)
