"""InfluxDB's JSON series turned into DataFrames with the stored types.

InfluxDB's JSON writes a float field holding 1.0 as `1`, so a column's type cannot be
guessed from its values: it comes from the measurement's field keys (`Schema`), but for the
float fields that hold counts (cloud.query.written.COUNTS), which come back as Int64. Every
frame of one query gets the same columns and dtypes, whether its chunk held data or not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from cloud.query.catalog import tag_order
from cloud.query.errors import BadArgument, NotWholeCount
from urbanpulse.influx_http import Series

# A float field that holds counts (cloud.query.written.COUNTS): not a type of InfluxDB's
COUNT = "count"
# InfluxDB field type (or COUNT) -> pandas dtype
DTYPES = {"float": "float64", "integer": "Int64", "boolean": "boolean", "string": "object",
          COUNT: "Int64"}
# Whole numbers below this in size fit in Int64 (a float64 of 2^63 or more does not)
_INT64_BOUND = 2.0**63
# The columns of a `SHOW FIELD KEYS` answer, and of a `SHOW TAG KEYS` one
FIELD_KEY_COLUMNS = ["fieldKey", "fieldType"]
TAG_KEY_COLUMNS = ["tagKey"]


@dataclass(frozen=True)
class Schema:
    tags: tuple[str, ...]  # in column order
    fields: dict[str, str]  # field key -> InfluxDB type, in column order
    # False: not InfluxDB's keys but the ones the processor writes (cloud.query.written),
    # for a measurement with nothing stored
    stored: bool = True

    @property
    def empty(self) -> bool:
        """No key at all: InfluxDB knows nothing of the measurement there."""
        return not self.tags and not self.fields

    @classmethod
    def from_series(cls, series: Sequence[Series]) -> Schema:
        """From `SHOW TAG KEYS` and `SHOW FIELD KEYS` answers, every field in name order. A
        key stored with several types (in different shards) gets the one that holds them all."""
        tags: set[str] = set()
        types: dict[str, set[str]] = {}
        for s in series:
            if s.columns == TAG_KEY_COLUMNS:
                tags.update(row[0] for row in s.values)
            elif s.columns == FIELD_KEY_COLUMNS:
                for key, kind in s.values:
                    types.setdefault(key, set()).add(kind)
        return cls(tuple(tag_order(sorted(tags))), {k: _widest(types[k]) for k in sorted(types)})

    def select(self, fields: Sequence[str] | None, where: str) -> Schema:
        """The schema of the chosen fields, in their order (None: all of them). An empty
        schema (nothing stored, a measurement the processor does not write) has nothing to
        check the names against: the (empty) frames get those columns, as object."""
        if fields is None:
            return self
        if self.empty:
            return Schema((), dict.fromkeys(fields, "string"))
        missing = [f for f in fields if f not in self.fields]
        if missing:
            names = ", ".join(map(repr, missing))
            if self.stored:
                raise BadArgument("fields", f"{names} not stored in {where} "
                                            f"(stored: {', '.join(self.fields) or 'none'})")
            raise BadArgument("fields", f"{names} not a field of {where}, where nothing is stored "
                                        f"yet (the processor writes: {', '.join(self.fields)})")
        return Schema(self.tags, {f: self.fields[f] for f in fields}, self.stored)

    def counting(self, counts: frozenset[str]) -> Schema:
        """The float fields among `counts` typed COUNT: returned as Int64. A field stored as
        an integer is one already; one stored as a string (in some shard) stays one."""
        if counts.isdisjoint(self.fields):
            return self
        fields = {k: COUNT if k in counts and t == "float" else t for k, t in self.fields.items()}
        return Schema(self.tags, fields, self.stored)

    @property
    def columns(self) -> list[str]:
        return [*self.tags, *self.fields]


def _widest(kinds: set[str]) -> str:
    for kind in ("string", "float", "integer", "boolean"):
        if kind in kinds:
            return kind
    return "string"


def empty_index() -> pd.DatetimeIndex:
    return pd.DatetimeIndex([], dtype="datetime64[ns, UTC]", name="time")


def to_frame(series: Sequence[Series], schema: Schema, measurement: str) -> pd.DataFrame:
    """Rows of `SELECT ... GROUP BY *` answers of `measurement` ("rp.name") in time
    order (ties by tags); a missing tag is None. The index is the UTC time, named `time`.
    A COUNT field holding a value that is not a whole number raises NotWholeCount."""
    times: list[int] = []
    columns: dict[str, list[Any]] = {c: [] for c in schema.columns}
    for s in series:
        rows = s.values
        if not rows:
            continue
        n = len(rows)
        where = {c: i for i, c in enumerate(s.columns)}
        t = where["time"]
        times.extend(row[t] for row in rows)
        for tag in schema.tags:
            columns[tag].extend([s.tags.get(tag) or None] * n)
        for name in schema.fields:
            i = where.get(name)
            columns[name].extend([None] * n if i is None else [row[i] for row in rows])
    data = {"time": pd.Series(times, dtype=np.int64)}
    for name, kind in schema.fields.items():
        if kind == COUNT:
            data[name] = whole_counts(columns.pop(name), times, measurement, name)
    data.update({c: _typed(values, schema.fields.get(c, "string")) for c, values in columns.items()})
    frame = pd.DataFrame(data, columns=["time", *schema.columns])
    if len(series) > 1:
        frame = frame.sort_values(["time", *schema.tags], kind="stable", na_position="first")
    frame.index = pd.DatetimeIndex(pd.to_datetime(frame.pop("time").to_numpy(), unit="ns", utc=True),
                                   name="time")
    return frame


def _typed(values: list[Any], kind: str) -> pd.Series:
    if kind == "float":
        return pd.Series([np.nan if v is None else v for v in values], dtype=np.float64)
    # Strings as object, not pandas' inferred `str`: an empty chunk's column would not be
    # inferred so, and every chunk of a query must have the same dtypes.
    return pd.Series(values, dtype=DTYPES[kind])


def whole_counts(values: Sequence[Any], times: Sequence[int], measurement: str, field: str
                 ) -> pd.Series:
    """Counts stored as floats (None where missing) as Int64, <NA> where missing. A value
    that is not a whole number, or too large for Int64, raises NotWholeCount naming it and
    the time (`times`, ns, one per value) of its first such value: never cut to an integer."""
    floats = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    missing = np.isnan(floats)
    whole = missing | ((np.floor(floats) == floats) & (np.abs(floats) < _INT64_BOUND))
    if not whole.all():
        at = int(np.argmin(whole))
        raise NotWholeCount(measurement, field, int(times[at]), values[at])
    ints = np.where(missing, 0.0, floats).astype(np.int64)
    return pd.Series(pd.arrays.IntegerArray(ints, missing))
