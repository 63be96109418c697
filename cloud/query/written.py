"""What the processor writes: each of its measurements' tags and field types, per retention
policy (docs/influx-schema.md, docs/domain-rollups.md), and which of its float fields hold
counts (`COUNTS`).

A query takes its columns from InfluxDB's own keys (`SHOW TAG KEYS`, `SHOW FIELD KEYS`);
where InfluxDB knows nothing of a measurement in a policy (never written there: a fresh
deployment, no dead letter yet, a kind no node has sent), these give an empty result its
columns and dtypes instead. tests/cloud/query/test_written_schema.py holds them to the
points the processor's own code makes.
"""

from __future__ import annotations

from collections.abc import Iterable

from cloud.logic.records import BAD_INPUT_COUNTERS, REFUSED_FIELDS, RP_1H, RP_1M, RP_RAW
from cloud.query.catalog import ROLLUPS, tag_order
from cloud.query.frames import Schema
from urbanpulse.wire import KINDS

FLOAT, INTEGER, BOOLEAN, STRING = "float", "integer", "boolean", "string"
AGGREGATE_STATS = ("mean", "min", "max", "last")
SENSOR_TAGS = ("site", "node", "sensor", "kind")


def _schema(tags: tuple[str, ...], fields: dict[str, str]) -> Schema:
    """In the order `Schema.from_series` gives a stored measurement's keys."""
    return Schema(tuple(tag_order(tags)), {k: fields[k] for k in sorted(fields)}, stored=False)


def _readings() -> dict[tuple[str, str], Schema]:
    out: dict[tuple[str, str], Schema] = {}
    for spec in KINDS.values():
        # A reading's values are written as floats, whatever the JSON held (bools too).
        raw = {name: FLOAT for name in spec.fields} | {"seq": INTEGER, "flags": STRING}
        windows = {"count": INTEGER} | {f"{name}_{stat}": FLOAT for name in spec.fields
                                        for stat in AGGREGATE_STATS}
        out[(RP_RAW, spec.measurement)] = _schema(SENSOR_TAGS, raw)
        out[(RP_1M, spec.measurement)] = out[(RP_1H, spec.measurement)] = _schema(SENSOR_TAGS, windows)
    return out


_OCCUPANCY = {"beds": INTEGER, "occupied": INTEGER, "available": INTEGER, "faulty": INTEGER,
              "stale": INTEGER, "occupancy_pct": FLOAT}
_FLOW = {"er_arrivals": FLOAT, "visits": FLOAT, "faulty": INTEGER}
_WAITS = {"n": INTEGER, "median_s": FLOAT, "p90_s": FLOAT, "mean_s": FLOAT}
_TRAFFIC = {"vehicles": FLOAT, "flow_vpm": FLOAT, "occupancy_pct": FLOAT, "speed_kmh": FLOAT,
            "interval_s": FLOAT}
_AIR = {f"{p}_mean": FLOAT for p in ("pm25", "pm10", "co2")} \
    | {f"{p}_n": INTEGER for p in ("pm25", "pm10", "co2")} \
    | {"pm25_nowcast": FLOAT, "pm10_nowcast": FLOAT, "aqi_epa": INTEGER, "category_epa": STRING,
       "aqi_vn": INTEGER, "category_vn": STRING}

# rollup -> (tags, fields); the policies are catalog.ROLLUPS'
_ROLLUP_KEYS: dict[str, tuple[tuple[str, ...], dict[str, str]]] = {
    "ward_occupancy": (("site", "node"), _OCCUPANCY),
    "hospital_occupancy": (("site",), _OCCUPANCY),
    "door_flow": (("site", "node"), _FLOW),
    "hospital_flow": (("site",), _FLOW),
    "queue_wait": (("site", "node"), _WAITS),
    "hospital_wait": (("site",), _WAITS),
    "traffic_lane": (("site", "node", "sensor"), _TRAFFIC),
    "traffic_intersection": (("site", "node"), _TRAFFIC | {"lanes": INTEGER, "speed_lanes": INTEGER}),
    "air_quality": (("site", "node"), _AIR),
}


def _rollups() -> dict[tuple[str, str], Schema]:
    return {(rp, name): _schema(*_ROLLUP_KEYS[name]) for name, rps in ROLLUPS.items() for rp in rps}


_OTHERS: dict[tuple[str, str], Schema] = {
    (RP_1H, "ledger"): _schema(("site", "node"), dict.fromkeys(
        ("duplicates", "expected", "late", "missing", "received", "restarts"), INTEGER)),
    (RP_RAW, "events"): _schema(("site", "node", "sensor", "kind", "type"), {
        "field": STRING, "value": FLOAT, "score": FLOAT, "delay_s": FLOAT, "seq": INTEGER,
        "node_ts": STRING, "pair": STRING, "detail": STRING}),
    (RP_RAW, "dead_letter"): _schema(("site", "node", "reason"), {
        "detail": STRING, "payload": STRING, "truncated": BOOLEAN, "topic": STRING,
        "offset": INTEGER, "partition": STRING}),
    # A status's numbers are written as floats, `clock_jumps` too; `mqtt_unsendable`, added
    # later, as an integer.
    (RP_RAW, "node_status"): _schema(("site", "node"), {
        "state": STRING, "online": BOOLEAN, "clock_synchronised": BOOLEAN,
        "mqtt_unsendable": INTEGER} | dict.fromkeys(
        ("outbox_depth", "outbox_oldest_age_s", "outbox_evicted", "readings_per_s", "uptime_s",
         "cpu_temp_c", "clock_jumps", "outbox_uncommitted", "readings_dropped",
         "clock_offset_s"), FLOAT)),
    # A driver's counts from the heartbeat: of bad input, the wire contract's counters only;
    # of samples the node refused, the total and one per refusal code of the contract.
    (RP_RAW, "driver_status"): _schema(("site", "node", "sensor"),
                                       dict.fromkeys(BAD_INPUT_COUNTERS | REFUSED_FIELDS, INTEGER)),
    (RP_RAW, "processor"): _schema(("process",), {
        "uptime_s": FLOAT, "read_lag_s": FLOAT, "write_denied_s": FLOAT} | dict.fromkeys(
        ("points_written", "write_requests", "write_retries", "write_refused", "write_denied",
         "windows_rebuilt",
         "windows_not_rebuilt", "domain_spans_replayed", "domain_spans_not_replayed",
         "domain_spans_refused", "windows_refused", "points_pending", "records_read",
         "journal_backlog", "state_free_bytes"), INTEGER)),
}

# (retention policy, measurement) -> its keys
WRITTEN: dict[tuple[str, str], Schema] = _readings() | _rollups() | _OTHERS


def written_schema(rp: str, measurement: str) -> Schema | None:
    """The keys the processor writes to `measurement` in `rp`; None for one it never writes."""
    return WRITTEN.get((rp, measurement))


# The contract's units that count things: a reading's field in one of them is a whole number
# (the edge's drivers count people, vehicles, pulses; docs/wire-contract.md).
COUNT_UNITS = frozenset({"persons", "vehicles", "pulses"})
# The window statistics of whole numbers that are whole numbers (a mean is not).
WHOLE_STATS = ("min", "max", "last")


def _count_fields() -> dict[tuple[str, str], frozenset[str]]:
    out: dict[tuple[str, str], frozenset[str]] = {}
    for spec in KINDS.values():
        counts = [name for name, f in spec.fields.items() if f.unit in COUNT_UNITS]
        if counts:
            out[(RP_RAW, spec.measurement)] = frozenset(counts)
            out[(RP_1M, spec.measurement)] = out[(RP_1H, spec.measurement)] = frozenset(
                f"{name}_{stat}" for name in counts for stat in WHOLE_STATS)
    return out


def _in(policies: Iterable[str], name: str, fields: frozenset[str]
        ) -> dict[tuple[str, str], frozenset[str]]:
    return {(rp, name): fields for rp in policies}


_FLOW_COUNTS = frozenset({"er_arrivals", "visits"})  # sums of door counts
_TRAFFIC_COUNTS = frozenset({"vehicles"})  # the sum of the loops' counts

# (retention policy, measurement) -> the fields it writes as floats whose values are whole
# numbers by construction: counts the nodes make (a reading's field in a count unit; a
# status's outbox rows, dropped readings, clock jumps), or their sums, minimum, maximum or
# last. Returned as Int64 (nullable integers), not as the float64 they are stored as: a
# field's type is fixed per shard in InfluxDB, so the processor cannot write them as
# integers without refusing writes to existing databases (docs/influx-schema.md, "Stored
# and returned types"). Left out on purpose: means and rates of counts (`count_mean`,
# `flow_vpm`, `readings_per_s`), seconds, the bools 0/1 of a reading (`occupied`, `fault`,
# `called`), and the queue's `ticket` and `counter`, numbers naming a ticket and a desk.
COUNTS: dict[tuple[str, str], frozenset[str]] = (
    _count_fields()
    | _in(ROLLUPS["door_flow"], "door_flow", _FLOW_COUNTS)
    | _in(ROLLUPS["hospital_flow"], "hospital_flow", _FLOW_COUNTS)
    | _in(ROLLUPS["traffic_lane"], "traffic_lane", _TRAFFIC_COUNTS)
    | _in(ROLLUPS["traffic_intersection"], "traffic_intersection", _TRAFFIC_COUNTS)
    | {(RP_RAW, "node_status"): frozenset({"clock_jumps", "outbox_depth", "outbox_evicted",
                                           "outbox_uncommitted", "readings_dropped"})})


def count_fields(rp: str, measurement: str) -> frozenset[str]:
    """The fields of `measurement` in `rp` returned as counts (COUNTS); none for another."""
    return COUNTS.get((rp, measurement), frozenset())
