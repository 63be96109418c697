"""The points the processor writes for the pipeline benchmark's workload, made by the
project's own code (decode_record, NodeState, HospitalSite) in the dataflow's order, and the
line-protocol rewrites the variants try (time shift, series order, second precision, fewer
fields).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from bench.influx.errors import InfluxBenchError
from bench.pipeline.stages import HORIZON_NS, _records
from bench.pipeline.workload import Workload, generate
from cloud.logic.domain.hospital_site import HospitalSite
from cloud.logic.node import NodeState
from cloud.logic.recompute import RECOMPUTE
from cloud.logic.records import RP_1H, RP_1M, Point, decode_record

HOUR_NS = 3600 * 1_000_000_000
SECOND_NS = 1_000_000_000
AGGREGATE_RPS = (RP_1M, RP_1H)
# The fields a rollup point has beside <field>_mean and count: what "fewer fields" drops.
_ROLLUP_EXTRA = re.compile(r",[^,= ]+_(?:min|max|last)=[^, ]+")
_SEQ_FIELD = re.compile(r",seq=\d+i(?=[ ,])")


@dataclass(frozen=True)
class PointSet:
    """The processor's points for a workload, in the order it emits them."""

    points: list[Point]
    readings: int
    span_ns: int  # first to last timestamp, rounded up to the hour

    def by_rp(self, rp: str) -> PointSet:
        return PointSet([p for p in self.points if p[0] == rp], self.readings, self.span_ns)


def make_points(readings: int, *, detect: bool = True, seed: int = 1,
                now: datetime | None = None) -> PointSet:
    """The points of `readings` simulated readings, as the dataflow makes them (node state per
    node, the hospital site step per site), without the late-window rebuild requests; the
    city's time ends at `now` (default: the present)."""
    workload: Workload = generate(readings, seed=seed, now=now)
    nodes: dict[str, NodeState] = {}
    sites: dict[str, HospitalSite] = {}
    out: list[Point] = []
    for record in _records(workload):
        data, points = decode_record(record, 4096)
        out.extend(points)
        if data is None:
            continue
        state = nodes.get(data.key)
        if state is None:
            state = nodes[data.key] = NodeState(HORIZON_NS, detect)
        out.extend(state.process(data))
        state.take_alerts()
        updates = state.take_site_updates()
        if updates:
            site = sites.get(data.site)
            if site is None:
                site = sites[data.site] = HospitalSite(HORIZON_NS)
            out.extend(site.process(data.site, updates))
    out = [p for p in out if p[0] != RECOMPUTE]
    if not out:
        raise InfluxBenchError("the workload made no points")
    stamps = [timestamp(ln) for _, ln in out]
    span = max(stamps) - min(stamps) + 1
    return PointSet(out, workload.readings, -(-span // HOUR_NS) * HOUR_NS)


def series_key(line: str) -> str:
    """Measurement and tags: the line up to its first space that is not escaped."""
    i = line.find(" ")
    while i > 0 and line[i - 1] == "\\":
        i = line.find(" ", i + 1)
    if i < 0:
        raise InfluxBenchError(f"not a line of line protocol: {line[:200]!r}")
    return line[:i]


def timestamp(line: str) -> int:
    return int(line[line.rindex(" ") + 1:])


def shifted(line: str, by_ns: int) -> str:
    cut = line.rindex(" ") + 1
    return line[:cut] + str(int(line[cut:]) + by_ns)


def in_seconds(line: str) -> str:
    """The line with its timestamp in seconds; it must be a whole second."""
    cut = line.rindex(" ") + 1
    ts = int(line[cut:])
    if ts % SECOND_NS:
        raise InfluxBenchError(f"not a whole second, cannot be written with precision=s: {line[:200]!r}")
    return line[:cut] + str(ts // SECOND_NS)


def whole_seconds(lines: list[str]) -> bool:
    return all(timestamp(ln) % SECOND_NS == 0 for ln in lines)


def without_seq(line: str) -> str:
    """A raw point without its `seq` field (the fields before it stay)."""
    return _SEQ_FIELD.sub("", line, count=1)


def count_and_means(line: str) -> str:
    """A rollup point reduced to its count and means (min, max and last dropped)."""
    head = series_key(line)
    return head + _ROLLUP_EXTRA.sub("", line[len(head):])


def field_count(line: str) -> int:
    """Fields of a line without string fields holding commas (the processor's numeric points)."""
    head = series_key(line)
    fields = line[len(head) + 1:line.rindex(" ")]
    return fields.count(",") + 1
