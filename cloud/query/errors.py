"""The query package's errors: a bad argument (found before any I/O), a failed query, an
answer InfluxDB cut short, and a stored count that is not a whole number."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from cloud.errors import QueryError
from urbanpulse.errors import ConfigError

__all__ = ["BadArgument", "ConfigFileError", "IncompleteAnswer", "NotWholeCount", "QueryError"]


class ConfigFileError(ConfigError):
    """A key of the config file `path` is wrong: the message names the file, then the key
    (`key` and `reason` as in ConfigError)."""

    def __init__(self, path: Path, key: str, reason: str) -> None:
        super().__init__(key, reason)
        self.path = path

    def __str__(self) -> str:
        return f"{self.path}: {self.key}: {self.reason}"


class BadArgument(QueryError):
    """An argument is wrong; `argument` names it, the message says why."""

    def __init__(self, argument: str, reason: str) -> None:
        super().__init__(f"{argument}: {reason}")
        self.argument = argument
        self.reason = reason


class IncompleteAnswer(QueryError):
    """InfluxDB's answer for `measurement` ("rp.name") over [start, end) ended before its
    last rows, and asking for less did not help: nothing is returned rather than a part."""

    def __init__(self, measurement: str, start_ns: int, end_ns: int, what: str) -> None:
        self.measurement = measurement
        self.start = pd.Timestamp(start_ns, tz="UTC")
        self.end = pd.Timestamp(end_ns, tz="UTC")
        super().__init__(f"{measurement} from {self.start.isoformat()} to {self.end.isoformat()}: "
                         f"InfluxDB's answer {what} ended before its last rows (partial)")


class NotWholeCount(QueryError):
    """`field` of `measurement` ("rp.name"), stored as a float and returned as a count
    (Int64: cloud.query.written.COUNTS), holds `value` at `time`, which is not a whole number
    (or is too large for Int64): a node that broke the contract, a corrupted point. Nothing
    is returned rather than the value cut to an integer, or a column whose dtype would
    change from one chunk of the query to the next. `CityData(..., float_counts=True)`
    (`urbanpulse query --float-counts`) returns the counts as stored, float64."""

    def __init__(self, measurement: str, field: str, time_ns: int, value: Any) -> None:
        self.measurement = measurement
        self.field = field
        self.time = pd.Timestamp(time_ns, tz="UTC")
        self.value = value
        super().__init__(f"{measurement}: {field} is {value!r} at {self.time.isoformat()}, not a "
                         "whole number, so not returned as a count (Int64); float_counts=True "
                         "(urbanpulse query --float-counts) returns the counts as stored, as floats")
