"""Windows too old to be held in memory, rebuilt from the raw points when late data lands.

A reading older than the aggregation horizon cannot be merged into its window (the window
left memory long ago). Its raw point is written as always; the dataflow then asks the
sink to rebuild that window from every raw point InfluxDB holds for it, with exactly the
rules of the in-memory rollup, and to overwrite the stored aggregate. Rebuilding is
idempotent, so a replay after a crash does no harm.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from cloud.logic.lines import line
from cloud.logic.rollup import OUT_OF_WINDOWS, Window
from urbanpulse.wire import outside_range

RECOMPUTE = "__recompute__"  # pseudo retention policy: the sink handles these itself
_META = frozenset({"time", "site", "node", "sensor", "kind", "seq", "flags"})


def row_values(row: Mapping[str, object]) -> dict[str, float]:
    """A raw point's measured values, as read back from InfluxDB: every numeric field but
    the sequence number (tags, time and flags are no values)."""
    return {k: float(v) for k, v in row.items()
            if k not in _META and isinstance(v, int | float) and not isinstance(v, bool)}


@dataclass(frozen=True, slots=True)
class Recompute:
    rp: str
    measurement: str
    site: str
    node: str
    sensor: str
    kind: str
    width_ns: int
    start_ns: int

    def encode(self) -> str:
        return "|".join((self.rp, self.measurement, self.site, self.node, self.sensor, self.kind,
                         str(self.width_ns), str(self.start_ns)))

    @classmethod
    def decode(cls, text: str) -> Recompute:
        rp, measurement, site, node, sensor, kind, width, start = text.split("|")
        return cls(rp, measurement, site, node, sensor, kind, int(width), int(start))

    def query(self) -> str:
        """The window's raw points: of its site too, as nodes of different sites may share
        their ids and their sensors' (every hospital's opd-hall has a door-main)."""
        q, n, s = (influx_literal(v) for v in (self.sensor, self.node, self.site))
        return (f'SELECT * FROM "raw"."{self.measurement}" WHERE "site" = {s} AND "node" = {n} '
                f'AND "sensor" = {q} AND time >= {self.start_ns} AND time < {self.start_ns + self.width_ns}')

    def rebuild(self, rows: list[dict[str, object]]) -> str | None:
        """The window's aggregate line from its raw rows (as InfluxHTTP.query_points gives
        them, epoch ns), or None if none count (all warming up, stamped by a clock not yet
        synchronised, or out of range)."""
        window = Window(self.start_ns, 0, {})
        for row in sorted(rows, key=lambda r: int(str(r["time"]))):
            if not OUT_OF_WINDOWS.isdisjoint(str(row.get("flags") or "").split(",")):
                continue
            values = row_values(row)
            if values and outside_range(self.kind, values) is None:
                window.add(int(str(row["time"])), values)
        if window.count == 0:
            return None
        tags = {"site": self.site, "node": self.node, "sensor": self.sensor, "kind": self.kind}
        return line(self.measurement, tags, window.as_fields(), self.start_ns)


def influx_literal(value: str) -> str:
    """An InfluxQL string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
