"""Building readings and reading back line-protocol points, for the domain rollup tests."""

from __future__ import annotations

import re

from urbanpulse.wire import Reading

T0 = 1_704_067_200 * 10**9  # 2024-01-01T00:00:00Z
S = 10**9
MIN = 60 * S
HOUR = 60 * MIN

_seq = iter(range(10**9))


def rd(sensor: str, kind: str, ts_ns: int, flags: tuple[str, ...] = (), **values: float) -> Reading:
    return Reading(sensor, kind, ts_ns, next(_seq), values, flags)


_FIELD = re.compile(r'([^=,]+)=("(?:[^"\\]|\\.)*"|[^,]+)')


def parse(point: str) -> tuple[str, dict[str, str], dict[str, object], int]:
    head, rest = point.split(" ", 1)
    fields_part, ts = rest.rsplit(" ", 1)
    name, *tag_parts = head.split(",")
    tags = dict(t.split("=", 1) for t in tag_parts)
    fields: dict[str, object] = {}
    for key, raw in _FIELD.findall(fields_part):
        if raw.startswith('"'):
            fields[key] = raw[1:-1]
        elif raw.endswith("i"):
            fields[key] = int(raw[:-1])
        elif raw in ("true", "false"):
            fields[key] = raw == "true"
        else:
            fields[key] = float(raw)
    return name, tags, fields, int(ts)


def final(points: list[tuple[str, str]]) -> dict[tuple[str, str, tuple[tuple[str, str], ...], int],
                                                 dict[str, object]]:
    """What InfluxDB would hold after all these writes: the last point per series and time."""
    out: dict[tuple[str, str, tuple[tuple[str, str], ...], int], dict[str, object]] = {}
    for rp, p in points:
        name, tags, fields, ts = parse(p)
        out[(rp, name, tuple(sorted(tags.items())), ts)] = fields
    return out


def select(points: list[tuple[str, str]], rp: str, measurement: str,
           **tags: str) -> dict[int, dict[str, object]]:
    """Final fields by timestamp of one series."""
    res: dict[int, dict[str, object]] = {}
    for (p_rp, name, p_tags, ts), fields in final(points).items():
        if p_rp == rp and name == measurement and dict(p_tags) == tags:
            res[ts] = fields
    return res
