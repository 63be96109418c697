"""Turning a dashboard query into the InfluxQL Grafana would send.

Grafana replaces `$timeFilter` with the dashboard's time range, `$__interval` with a step
derived from the range, and each `$variable` with its value (regex-escaped inside
`/.../`; `.*` for All). `interpolate` does the same for one chosen set of values and
refuses to leave any `$name` behind.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from urbanpulse.dashboards.errors import QueryTemplateError

_VARIABLE = re.compile(r"\$(\w+)|\$\{(\w+)\}")
# Grafana's nice steps (the ones its interval rounding lands on), in seconds.
_STEPS = (1, 2, 5, 10, 15, 20, 30, 60, 120, 300, 600, 900, 1200, 1800, 3600, 7200, 10800,
          21600, 43200, 86400)
MAX_DATA_POINTS = 1000


@dataclass(frozen=True)
class TimeRange:
    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("TimeRange needs timezone-aware datetimes")
        if self.end <= self.start:
            raise ValueError(f"TimeRange end {self.end} is not after start {self.start}")

    @classmethod
    def last(cls, now: datetime, span: timedelta, end_offset: timedelta = timedelta()) -> TimeRange:
        return cls(now - span, now - end_offset)

    def influxql(self) -> str:
        return (f"time >= {_epoch_ms(self.start)}ms and time <= {_epoch_ms(self.end)}ms")

    def interval(self, min_interval_s: int = 10) -> str:
        wanted = (self.end - self.start).total_seconds() / MAX_DATA_POINTS
        step = next((s for s in _STEPS if s >= max(wanted, min_interval_s)), _STEPS[-1])
        return f"{step}s"


def _epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def regex_value(value: str) -> str:
    """A variable value as Grafana puts it into `/^$var$/`: regex-escaped, `/` escaped."""
    return re.escape(value).replace("/", "\\/")


def interpolate(query: str, time_range: TimeRange, values: Mapping[str, str]) -> str:
    """The query with `$timeFilter`, `$__interval` and every `$variable` replaced.

    `values` maps variable names to the text to insert (already regex-formatted).
    """
    builtins = {"timeFilter": time_range.influxql(), "__interval": time_range.interval()}
    unknown: list[str] = []

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name in builtins:
            return builtins[name]
        if name in values:
            return values[name]
        unknown.append("$" + name)
        return match.group(0)

    text = _VARIABLE.sub(replace, query)
    if unknown:
        raise QueryTemplateError(query, unknown)
    return text
