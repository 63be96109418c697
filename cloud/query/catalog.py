"""What is stored where (docs/influx-schema.md, docs/domain-rollups.md), and the checks of
the names an analyst passes: all made before any I/O."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cloud.detect.faults import FaultType
from cloud.logic.records import RP_1H, RP_1M, RP_RAW
from cloud.query.errors import BadArgument
from urbanpulse.wire import KINDS

POLICIES = (RP_RAW, RP_1M, RP_1H)
RESOLUTIONS = {"1m": RP_1M, "1h": RP_1H}

# rollup measurement -> the policies it is written to
ROLLUPS: dict[str, tuple[str, ...]] = {
    "ward_occupancy": (RP_1M, RP_1H),
    "hospital_occupancy": (RP_1M, RP_1H),
    "door_flow": (RP_1H,),
    "hospital_flow": (RP_1H,),
    "queue_wait": (RP_1H,),
    "hospital_wait": (RP_1H,),
    "traffic_lane": (RP_1M, RP_1H),
    "traffic_intersection": (RP_1M, RP_1H),
    "air_quality": (RP_1H,),
}



@dataclass(frozen=True, slots=True)
class Void:
    """Fields of a rollup that are undefined (void) where its `counts` sum to 0: a ratio
    or a statistic of nothing. The processor leaves them out of such a point, and InfluxDB
    keeps in them what an earlier write of the point held (docs/influx-schema.md, "Fields
    that can be void"); read back, they are set to NaN there."""

    fields: tuple[str, ...]
    counts: tuple[str, ...]


_OCCUPANCY = Void(("occupancy_pct",), ("occupied", "available"))
_WAITS = Void(("median_s", "p90_s", "mean_s"), ("n",))
VOID: dict[str, Void] = {
    "ward_occupancy": _OCCUPANCY,
    "hospital_occupancy": _OCCUPANCY,
    "queue_wait": _WAITS,
    "hospital_wait": _WAITS,
}

EVENT_TYPES = ("anomaly", *(str(t) for t in FaultType))

# Tag columns come first, in this order; tags not listed follow in name order.
TAG_ORDER = ("site", "node", "sensor", "kind", "type", "reason")

Filters = Mapping[str, str | Sequence[str] | None]


def policy(rp: str) -> str:
    if rp not in POLICIES:
        raise BadArgument("rp", f"unknown retention policy {rp!r} (known: {', '.join(POLICIES)})")
    return rp


def resolution(value: str) -> str:
    """'1m' or '1h' -> its retention policy."""
    rp = RESOLUTIONS.get(value)
    if rp is None:
        raise BadArgument("resolution", f"{value!r}: use '1m' or '1h'")
    return rp


def kind_measurement(kind: str) -> str:
    spec = KINDS.get(kind)
    if spec is None:
        raise BadArgument("kind", f"unknown kind {kind!r} (known: {', '.join(sorted(KINDS))})")
    return spec.measurement


def rollup_policy(name: str, resolution_: str) -> str:
    """The policy a rollup is read from at a resolution; refused where it is not written."""
    policies = ROLLUPS.get(name)
    if policies is None:
        raise BadArgument("rollup", f"unknown rollup {name!r} (known: {', '.join(ROLLUPS)})")
    rp = resolution(resolution_)
    if rp not in policies:
        raise BadArgument("resolution", f"{name} is stored per hour only: use '1h'")
    return rp


def measurement_name(name: str) -> str:
    if not isinstance(name, str) or not name:
        raise BadArgument("measurement", "must be a non-empty string")
    return name


def tag_filters(filters: Filters) -> dict[str, tuple[str, ...]]:
    """Tag key -> accepted values; None drops the filter. A value is one string or a
    sequence of them (any matches); empty strings and empty sequences are refused, since
    InfluxQL reads `tag = ''` as 'tag missing'."""
    out: dict[str, tuple[str, ...]] = {}
    for key, value in filters.items():
        if value is None:
            continue
        values = (value,) if isinstance(value, str) else tuple(value)
        if not values:
            raise BadArgument(key, "an empty list of values matches nothing")
        for v in values:
            if not isinstance(v, str) or not v:
                raise BadArgument(key, f"each value must be a non-empty string, got {v!r}")
        out[key] = values
    return out


def field_names(fields: Sequence[str] | None) -> tuple[str, ...] | None:
    if fields is None:
        return None
    if isinstance(fields, str):
        raise BadArgument("fields", f"a list of field names, not one string ({fields!r})")
    names = tuple(fields)
    if not names:
        raise BadArgument("fields", "an empty list: leave it out (None) for every field")
    for f in names:
        if not isinstance(f, str) or not f:
            raise BadArgument("fields", f"each field must be a non-empty string, got {f!r}")
    if len(set(names)) != len(names):
        raise BadArgument("fields", f"a field is named twice in {list(names)}")
    return names


def event_types(value: str | Sequence[str] | None) -> str | Sequence[str] | None:
    values = (value,) if isinstance(value, str) else (() if value is None else tuple(value))
    for v in values:
        if v not in EVENT_TYPES:
            raise BadArgument("type", f"unknown event type {v!r} (known: {', '.join(EVENT_TYPES)})")
    return value


def tag_order(keys: Sequence[str]) -> list[str]:
    known = [k for k in TAG_ORDER if k in keys]
    return known + sorted(k for k in keys if k not in TAG_ORDER)
