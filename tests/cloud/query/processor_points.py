"""Points of every measurement the processor writes, made by its own code: a simulated
city's readings through the dataflow's node and site steps with detection on
(bench.influx.points.make_points), refused input as dead letters, status messages (a
node's clock jump among them), a cross-station drift and the processor's report on itself.
And line protocol read back into measurement, tags and field types, as InfluxDB reads it."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path

from bench.influx.points import make_points
from cloud.detect.drift import Drift
from cloud.detect.faults import FaultEvent, FaultType
from cloud.health import ProcessorHealth
from cloud.journal import JournalRecord
from cloud.logic.domain.city_drift import _event as drift_event
from cloud.logic.node import NodeState
from cloud.logic.records import REFUSAL_CODES, Point, decode_record
from cloud.logic.rollup import HOUR_NS
from cloud.sink import SinkStats
from urbanpulse.clock import FakeClock, to_epoch_ns
from urbanpulse.wire import KINDS, Reading, data_topic, encode_batch, encode_status, status_topic

# Enough of the default city for every rollup: the first queue waits come after ~100,000.
READINGS = 120_000
T0 = datetime(2026, 5, 28, 8, 0, tzinfo=UTC)
T0_NS = to_epoch_ns(T0)
SITE, NODE = "hn-test", "station-1"


def _record(offset: int, topic: str, payload: bytes, received_ns: int = T0_NS) -> JournalRecord:
    return JournalRecord("i0", offset, received_ns, topic, payload)


def _decoded(records: list[JournalRecord], max_bytes: int = 4096) -> list[Point]:
    """What the dataflow's node step writes for these records, in order (cloud/flow.py)."""
    state = NodeState(HOUR_NS, detect=True)
    out: list[Point] = []
    for rec in records:
        data, points = decode_record(rec, max_bytes)
        out.extend(points)
        if data is not None:
            out.extend(state.process(data))
    return out


def every_field() -> list[Point]:
    """One sensor of each kind sending every field the contract knows (the optional ones the
    simulated city leaves out), once plain and once flagged `backlog`, through the wire."""
    readings = []
    for i, spec in enumerate(KINDS.values()):
        values = {name: 1.0 if f.low is None or f.low <= 1.0 <= (f.high or 1.0) else float(f.low)
                  for name, f in spec.fields.items()}
        for seq, flags in ((0, ()), (1, ("backlog",))):
            readings.append(Reading(f"all-{i}", spec.name, T0_NS + seq * 10**9, seq, values, flags))
    payload = encode_batch(SITE, NODE, readings)
    return _decoded([_record(1, data_topic(SITE, NODE), payload, T0_NS + 5 * 10**9)])


def dead_letters() -> list[Point]:
    """A bad topic, a payload that is no JSON (cut to 8 bytes), a batch with one refused
    reading."""
    good = Reading("pm-1", "air.pm", T0_NS, 1, {"pm25": 10.0, "pm10": 20.0})
    batch = json.loads(encode_batch(SITE, NODE, [good]))
    batch["readings"].append({**batch["readings"][0], "kind": "air.ozone"})
    return _decoded([_record(1, "nowhere", b"{}"),
                     _record(2, data_topic(SITE, NODE), b"not json at all"),
                     _record(3, data_topic(SITE, NODE), json.dumps(batch).encode())], max_bytes=8)


def statuses() -> list[Point]:
    """Heartbeats with every health figure; the second counts a clock jump (a node event).
    Their drivers send every bad-input counter of the contract (a `driver_status` point), a
    driver's samples refused for every refusal code of the contract among them."""
    reasons = {code: k + 1 for k, code in enumerate(sorted(REFUSAL_CODES))}
    health = {"outbox_depth": 3, "outbox_oldest_age_s": 12.5, "outbox_evicted": 0,
              "readings_per_s": 1.5, "uptime_s": 300, "cpu_temp_c": 51.2,
              "clock": {"jumps": 0, "synchronised": True},
              "outbox_uncommitted": 0, "readings_dropped": 0, "mqtt": {"unsendable": 2},
              "drivers": {"pm-1": {"driver": "pms5003", "state": "running", "bad_input": {
                  "checksum_errors": 2, "bytes_skipped": 40, "malformed": 0, "sensor_errors": 0}},
                          "board-1": {"driver": "upfw", "state": "running", "bad_input": {
                              "lost_sentences": 1, "door_gaps": 0, "ignored": 0,
                              "uneven_intervals": 0}},
                          "loop-1": {"driver": "traffic_loop", "state": "running", "bad_input": {
                              "glitches": 3, "unmatched_upstream": 0, "unmatched_downstream": 1,
                              "implausible_length": 0}},
                          "kiosk-1": {"driver": "queue_kiosk", "state": "running",
                                      "bad_input": {"glitches": 0, "empty_calls": 2}},
                          "co2-1": {"driver": "mhz19b", "state": "running",
                                    "refused": sum(reasons.values()), "refused_reasons": reasons}}}
    second = {**health, "uptime_s": 330, "clock": {"jumps": 1, "synchronised": True}}
    topic = status_topic(SITE, NODE)
    return _decoded([
        _record(1, topic, encode_status("online", T0, health), T0_NS),
        _record(2, topic, encode_status("online", T0 + timedelta(seconds=30), second),
                T0_NS + 30 * 10**9),
        _record(3, topic, encode_status("offline", T0 + timedelta(seconds=60)), T0_NS + 60 * 10**9)])


def drift() -> list[Point]:
    """A drift found between a station's two modules (`pair` set), on a reading the cloud
    received an hour after its stamp (`node_ts` set)."""
    event = FaultEvent("pm-1", "pm25", FaultType.DRIFT, T0, T0 + timedelta(hours=6), 31.5,
                       "pm25 drifted from its second module")
    point, _alert = drift_event(Drift((SITE, NODE, "pm-1"), event, ("pm-1", "pm-1-b")), 360, 0,
                                T0_NS + 7 * 3600 * 10**9)
    return [point]


def processor_report(state_dir: Path) -> list[Point]:
    """The processor's report while it reads the journals (every field it writes)."""
    clock = FakeClock(T0)
    health = ProcessorHealth(0, 10.0, clock, state_dir)
    clock.advance(12.5)
    health.journal_read([_record(1, data_topic(SITE, NODE), b"{}", T0_NS)], False, lambda: 4)
    return [health.report(SinkStats(points=10, requests=2), 5)]


# The city's time ends here whatever the hour of the run: the simulated span then always
# holds the outpatient hours that make queue waits (and never reaches past the present).
CITY_NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


@cache
def city_points() -> tuple[Point, ...]:
    return tuple(make_points(READINGS, detect=True, now=CITY_NOW).points)


def processor_points(state_dir: Path) -> list[Point]:
    return [*city_points(), *every_field(), *dead_letters(), *statuses(), *drift(),
            *processor_report(state_dir)]


@dataclass(frozen=True)
class Parsed:
    measurement: str
    tags: dict[str, str]
    fields: dict[str, str]  # field key -> InfluxDB type


_BOOLEANS = {"t", "T", "true", "True", "TRUE", "f", "F", "false", "False", "FALSE"}


def _unescaped(text: str, stops: str, at: int) -> int:
    """The index of the first character of `stops` at or after `at` not escaped by a
    backslash (len(text) if none)."""
    while at < len(text):
        c = text[at]
        if c == "\\":
            at += 2
            continue
        if c in stops:
            return at
        at += 1
    return len(text)


def _unescape(text: str) -> str:
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            i += 1
        out.append(text[i])
        i += 1
    return "".join(out)


def parse_line(text: str) -> Parsed:
    """Measurement, tags and each field's type (line protocol: `i` integer, quoted string,
    t/f boolean, any other number float)."""
    head_end = _unescaped(text, " ", 0)
    head = text[:head_end]
    comma = _unescaped(head, ",", 0)
    measurement = _unescape(head[:comma])
    tags: dict[str, str] = {}
    at = comma + 1
    while at < len(head):
        end = _unescaped(head, ",", at)
        key_end = _unescaped(head, "=", at)
        tags[_unescape(head[at:key_end])] = _unescape(head[key_end + 1:end])
        at = end + 1
    body, _stamp = text[head_end + 1:].rsplit(" ", 1)
    fields: dict[str, str] = {}
    at = 0
    while at < len(body):
        key_end = _unescaped(body, "=", at)
        key = _unescape(body[at:key_end])
        at = key_end + 1
        if body[at] == '"':
            close = _unescaped(body, '"', at + 1)
            fields[key] = "string"
            at = close + 2  # past the quote and the comma
            continue
        end = _unescaped(body, ",", at)
        value = body[at:end]
        fields[key] = ("integer" if value.endswith("i") else "boolean" if value in _BOOLEANS
                       else "float")
        if fields[key] == "float":
            float(value)  # a number, or this is no line InfluxDB takes
        at = end + 1
    return Parsed(measurement, tags, fields)


# A tag or field value: quoted (a string field) or bare, escapes included.
_VALUE = re.compile(r'=("(?:[^"\\]|\\.)*"|(?:[^,\s\\]|\\.)*)')


def _marker(match: re.Match[str]) -> str:
    value = match.group(1)
    kind = ("s" if value.startswith('"') else "i" if value.endswith("i")
            else "b" if value in _BOOLEANS else "f")
    return "=" + kind


def one_per_shape(points: list[Point]) -> list[Point]:
    """The first point of each shape: policy, measurement, tag keys, field keys and the
    look of each value's type (a quoted string, an `i` integer, a boolean, a float)."""
    seen: dict[tuple[str, str], Point] = {}
    for rp, text in points:
        seen.setdefault((rp, _VALUE.sub(_marker, text.rsplit(" ", 1)[0])), (rp, text))
    return list(seen.values())


def parse_shapes(points: list[Point]) -> list[tuple[str, Parsed]]:
    """`parse_line` of one point of each shape: the same answers as of every point, at a
    fraction of the cost."""
    return [(rp, parse_line(text)) for rp, text in one_per_shape(points)]
