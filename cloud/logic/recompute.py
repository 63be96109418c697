"""Windows too old to be held in memory, rebuilt from the raw points when late data lands.

A reading older than the aggregation horizon cannot be merged into its window (the window
left memory long ago). Its raw point is written as always; the dataflow then asks the
sink to rebuild that window from every raw point InfluxDB holds for it, with exactly the
rules of the in-memory rollup, and to overwrite the stored aggregate. Rebuilding is
idempotent, so a replay after a crash does no harm.

A node's backlog asks for thousands of windows (every minute and hour of every sensor it
holds); they are read together (`raw_reads`): one query per node, measurement and span of
at most READ_SPAN_NS, each raw point read once for its minute and its hour.

A reading of an interval (traffic loop, door counter) belongs to the windows of its last
instant, ts - 1 ns (`cloud.logic.rollup.window_ts`): a window [start, end) of such a kind
holds the raw points stamped within (start, end], the one exactly on its end included and
the one on its start left to the window before. Raw times are the stamp (whole
microseconds) plus the sequence number mod 1000 ns, so its reads take in the raw times
(start, end + 1000) and keep the rows whose stamp's window it is.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from cloud.logic.lines import line
from cloud.logic.rollup import HOUR_NS, INTERVAL_KINDS, OUT_OF_WINDOWS, Window, window_ts
from urbanpulse.wire import outside_range

RECOMPUTE = "__recompute__"  # pseudo retention policy: the sink handles these itself
_META = frozenset({"time", "site", "node", "sensor", "kind", "seq", "flags"})
# The longest span of a node's raw points one read takes in (bounds what a read holds).
READ_SPAN_NS = 6 * HOUR_NS


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
                f'AND "sensor" = {q} AND '
                f"{raw_times(self.kind in INTERVAL_KINDS, self.start_ns, self.start_ns + self.width_ns)}")

    def holds(self, row: Mapping[str, object]) -> bool:
        """Whether the raw row's reading belongs to this window (`window_ts` of its stamp)."""
        at = window_ts(self.kind, taken_order(row)[0])
        return self.start_ns <= at < self.start_ns + self.width_ns

    def rebuild(self, rows: list[dict[str, object]]) -> str | None:
        """The window's aggregate line from its raw rows (as InfluxHTTP.query_points gives
        them, epoch ns), or None if none count (all warming up, stamped by a clock not yet
        synchronised, or out of range)."""
        window = Window(self.start_ns, 0, {})
        for row in sorted(rows, key=taken_order):
            if not self.holds(row):  # a row of the read around it
                continue
            if not OUT_OF_WINDOWS.isdisjoint(str(row.get("flags") or "").split(",")):
                continue
            values = row_values(row)
            if values and outside_range(self.kind, values) is None:
                ts, seq = taken_order(row)
                window.add(ts, values, seq)
        if window.count == 0:
            return None
        tags = {"site": self.site, "node": self.node, "sensor": self.sensor, "kind": self.kind}
        return line(self.measurement, tags, window.as_fields(), self.start_ns)


@dataclass(frozen=True, slots=True)
class RawRead:
    """The raw points of some sensors of one node in [start_ns, end_ns), read once for the
    windows within it that are to be rebuilt."""

    measurement: str
    site: str
    node: str
    start_ns: int
    end_ns: int
    windows: tuple[Recompute, ...]

    def query(self) -> str:
        sensors = sorted({w.sensor for w in self.windows})
        which = " OR ".join(f'"sensor" = {influx_literal(s)}' for s in sensors)
        interval = any(w.kind in INTERVAL_KINDS for w in self.windows)
        return (f'SELECT * FROM "raw"."{self.measurement}" WHERE "site" = {influx_literal(self.site)} '
                f'AND "node" = {influx_literal(self.node)} AND ({which}) '
                f"AND {raw_times(interval, self.start_ns, self.end_ns)}")

    def rebuild(self, rows: Iterable[dict[str, object]]) -> list[tuple[str, str]]:
        """(rp, line) of each window that any raw point counts in."""
        kinds = {w.sensor: w.kind for w in self.windows}
        by_sensor: dict[str, list[tuple[int, dict[str, object]]]] = defaultdict(list)
        for row in rows:
            sensor = str(row.get("sensor", ""))
            # keyed by the instant whose windows the reading belongs to (window_ts)
            at = window_ts(kinds.get(sensor, ""), taken_order(row)[0])
            by_sensor[sensor].append((at, row))
        for timed in by_sensor.values():
            timed.sort(key=lambda x: x[0])
        out: list[tuple[str, str]] = []
        for w in self.windows:
            timed = by_sensor.get(w.sensor, [])
            lo = bisect_left(timed, w.start_ns, key=lambda x: x[0])
            hi = bisect_left(timed, w.start_ns + w.width_ns, key=lambda x: x[0])
            ln = w.rebuild([row for _, row in timed[lo:hi]])
            if ln is not None:
                out.append((w.rp, ln))
        return out


def raw_reads(windows: Sequence[Recompute]) -> list[RawRead]:
    """The reads that serve `windows`: per node and measurement, windows overlapping or
    adjacent merged into one read while it spans at most READ_SPAN_NS (a window longer
    than that is read alone)."""
    by_node: dict[tuple[str, str, str], list[Recompute]] = defaultdict(list)
    for w in windows:
        by_node[(w.measurement, w.site, w.node)].append(w)
    out: list[RawRead] = []
    for (measurement, site, node), ws in sorted(by_node.items()):
        ws.sort(key=lambda w: (w.start_ns, -w.width_ns))
        group: list[Recompute] = []
        start = end = 0
        for w in ws:
            w_end = w.start_ns + w.width_ns
            if group and w.start_ns <= end and max(end, w_end) - start <= READ_SPAN_NS:
                group.append(w)
                end = max(end, w_end)
                continue
            if group:
                out.append(RawRead(measurement, site, node, start, end, tuple(group)))
            group, start, end = [w], w.start_ns, w_end
        if group:
            out.append(RawRead(measurement, site, node, start, end, tuple(group)))
    return out


def raw_times(interval: bool, start_ns: int, end_ns: int) -> str:
    """The InfluxQL time condition taking in the raw points of the windows within
    [start_ns, end_ns): for readings of an interval, those stamped within (start, end]
    (`window_ts`), whose raw times (stamp plus up to 999 ns) are within (start, end + 1000);
    the rows stamped on `start` itself are left out by `Recompute.holds`."""
    if interval:
        return f"time > {start_ns} AND time < {end_ns + 1000}"
    return f"time >= {start_ns} AND time < {end_ns}"


def taken_order(row: Mapping[str, object]) -> tuple[int, int]:
    """A raw row's (reading ts, seq): the order the live rollups took the readings. The raw
    time is the ts plus the sequence number mod 1000 (cloud.logic.node), which puts a
    sensor's readings of one stamp numbered 999 and 1000 the other way round."""
    time = int(str(row["time"]))
    seq = row.get("seq")
    return time - time % 1000, int(seq) if isinstance(seq, int | float) else 0


def influx_literal(value: str) -> str:
    """An InfluxQL string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
