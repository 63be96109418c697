"""Turning journal records into validated data, dead letters and status points.

Stateless, so it runs on any worker; nothing a node sends can make it raise. A status
message becomes a `node_status` point and, when it carries the agent's health, a
`driver_status` point per driver that sends its bad-input or refused counts and a
`Heartbeat` for the node's state (the fault rules on heartbeats).

Data messages take a shortcut when they are sound as a whole (`_sound_readings`): parsed by
orjson and checked in one pass, they give exactly the readings `decode_batch` would. Any
batch the shortcut is not sure of (a rejected reading, a broken envelope, a number or
string orjson reads otherwise than json, a shape it does not expect) goes to
`urbanpulse.wire.decode_batch`, the contract's own decoder, which words the dead letters.

A site gateway's relay (urbanpulse.wire.relay) is one journal record for many node messages:
`expand_relays` turns it, where the journal is read and before the records are keyed by
node, into a record per relayed message, as if it had come on its node's own topic, and a
`RelayedReject` for what of it the contract refused (its envelope, or an item).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, TypeGuard

import orjson

from cloud.detect.faults import RUN_ID, Heartbeat, Supervision
from cloud.journal import RECEIVED_STEP_NS, JournalRecord
from cloud.logic.lines import line
from urbanpulse.clock import from_epoch_ns
from urbanpulse.errors import UrbanpulseError
from urbanpulse.wire import (
    CONTRACT_VERSION,
    KINDS,
    MAX_PAYLOAD_BYTES,
    MAX_READINGS_PER_BATCH,
    Reading,
    WireError,
    decode_batch,
    decode_status,
    parse_topic,
)
from urbanpulse.wire.kinds import BOOL_UNIT, COUNT_UNITS, MAX_WHOLE_COUNT
from urbanpulse.wire.payload import (
    EARLIEST_TS_NS,
    FLAGS,
    FUTURE_TOLERANCE,
    MAX_SEQ,
    NUMBERING_ID,
    SENSOR_ID,
    finite,
    is_sensor_id,
    parse_ts,
    sensor_id_cache,
)
from urbanpulse.wire.relay import decode_relay
from urbanpulse.wire.topics import ROOT, Topic, validate_id
from urbanpulse.wire.values import REFUSAL_CODES

RP_RAW = "raw"
RP_1M = "agg_1m"
RP_1H = "agg_1h"

Point = tuple[str, str]  # (retention policy, line)
# Topics parsed (`parsed_topic`): a node has a few, and each of its messages names one again.
_topics: dict[str, Topic] = {}
_TOPICS_MAX = 65_536

# What a heartbeat's health may claim: beyond these it is ignored, not trusted.
MAX_UPTIME_S = 1e9  # 31 years
MAX_COUNT = 2**31
MAX_SUPERVISED = 256  # supervised drivers of one node (an agent has a few)
# The counters a driver's `bad_input` may hold (docs/wire-contract.md, its table): a fixed
# set, so that a heartbeat adds no field of its own naming to `driver_status`.
BAD_INPUT_COUNTERS = frozenset({
    "checksum_errors", "bytes_skipped", "malformed", "sensor_errors", "lost_sentences",
    "door_gaps", "ignored", "uneven_intervals", "glitches", "unmatched_upstream",
    "unmatched_downstream", "implausible_length", "empty_calls"})
# Drivers of one heartbeat whose counts are stored, in the order it names them: each is a
# `driver_status` series. A node has a few (a Pi: 26 GPIO pins, a few serial ports).
MAX_COUNTED_DRIVERS = 64
# Why a node's agent refused a driver's samples before its outbox (`refused_reasons`: the
# codes of urbanpulse.wire.values, REFUSAL_CODES, the ones the cloud dead-letters such a
# reading with): each code's count is the field `refused_<code>` beside the total,
# `refused`, in `driver_status`. A fixed set, as BAD_INPUT_COUNTERS.
REFUSED_FIELDS = frozenset({"refused", *(f"refused_{code}" for code in REFUSAL_CODES)})
# The keys of a driver's entry whose counts make its `driver_status` point.
_COUNTED_KEYS = frozenset({"bad_input", "refused", "refused_reasons"})
MAX_DRIVER_COUNT = 2**63  # a count as InfluxDB's integer field holds it: [0, 2**63)
_PROBLEMS_SAID = 5  # of a heartbeat's drivers' counts the cloud left out
# A heartbeat's health numbers that count rows or readings: stored only when whole and
# within Int64, as the query API returns them (cloud.query.written.COUNTS, node_status).
HEALTH_COUNTS = frozenset({"outbox_depth", "outbox_evicted", "outbox_uncommitted",
                           "readings_dropped"})


class NodeData(NamedTuple):
    """A node's message as its state takes it. A named tuple, not a frozen dataclass: one is
    made per message, and the dataclass's `__init__` cost several times the tuple's
    (docs/throughput.md, "Session 17")."""

    key: str
    site: str
    node: str
    received_ns: int
    readings: list[Reading]
    status: Heartbeat | None = None  # a status message's health (then no readings)
    numbering: str | None = None  # the batch's numbering id (urbanpulse.wire), if it names one


@dataclass(frozen=True, slots=True)
class RelayedReject:
    """What the contract refused of a relay before any node's message was read: its envelope
    (`node` is the gateway, `raw` the relay) or one item (`node` is the item's node, or the
    gateway when the item names no valid one; `raw` is the item's JSON). It goes to that
    node's step (`key`) and becomes its dead letter there; `partition`, `offset` and `topic`
    are the relay's journal record, `received_ns` the item's reception (`expand_relays`)."""

    partition: str
    offset: int
    received_ns: int
    topic: str
    site: str
    node: str
    code: str
    detail: str
    raw: bytes

    @property
    def key(self) -> str:
        return f"{self.site}/{self.node}"


Record = JournalRecord | RelayedReject


def expand_relays(records: Sequence[JournalRecord]) -> Sequence[Record]:
    """`records` with each relay in its place replaced by its messages (`expand_relay`);
    `records` itself when it holds none (the nodes' own messages pay a look at each topic)."""
    for rec in records:
        if rec.topic.endswith("/relay"):
            break
    else:
        return records
    out: list[Record] = []
    for rec in records:
        if rec.topic.endswith("/relay"):
            out.extend(expand_relay(rec))
        else:
            out.append(rec)
    return out


def expand_relay(rec: JournalRecord) -> list[Record]:
    """A relay's items in their order: each message as the record it would have been on its
    node's topic (`urbanpulse/v1/<site>/<node>/<stream>`, its payload's bytes), item k
    received at the relay's reception + k * RECEIVED_STEP_NS (the journal leaves those
    receptions free: cloud.journal.received_steps), so that each has a reception of its own
    as a direct message has (a dead letter's, a status point's, a fault event's stamp), and
    a replay expands it the same. The journal record's partition and offset stay the relay's.
    A refused envelope or item is a `RelayedReject`; a topic that is not a relay's goes on
    as it is, for `decode_record`'s `bad_topic` dead letter. Raises nothing."""
    try:
        topic = parse_topic(rec.topic)
    except UrbanpulseError:
        return [rec]
    site, gateway = topic.site, topic.node
    try:
        relay = decode_relay(rec.payload, site=site, gateway=gateway)
    except WireError as exc:
        return [RelayedReject(rec.partition, rec.offset, rec.received_ns, rec.topic, site, gateway,
                              exc.code, exc.detail, rec.payload)]
    rejected = {r.index: r for r in relay.rejected}
    messages = iter(relay.messages)
    out: list[Record] = []
    for k in range(len(relay.messages) + len(relay.rejected)):
        received_ns = rec.received_ns + k * RECEIVED_STEP_NS
        bad = rejected.get(k)
        if bad is None:
            m = next(messages)
            out.append(JournalRecord(rec.partition, rec.offset, received_ns,
                                     f"{ROOT}/{site}/{m.node}/{m.stream}", m.payload))
            continue
        named = bad.raw.get("node") if isinstance(bad.raw, dict) else None
        try:
            node = validate_id("node", named)  # type: ignore[arg-type]  # (anything JSON holds)
        except UrbanpulseError:
            node = gateway
        out.append(RelayedReject(rec.partition, rec.offset, received_ns, rec.topic, site, node,
                                 bad.code, bad.detail, _item_json(bad.raw)))
    return out


def _item_json(raw: Any) -> bytes:
    """A refused item as JSON again (what json.loads read back, so json writes it)."""
    try:
        return json.dumps(raw, default=str).encode()
    except (ValueError, RecursionError) as exc:  # nesting as deep as the reader let through
        return f"(item not written back as JSON: {type(exc).__name__})".encode()


def dead_letter(rec: Record, site: str, node: str, code: str, detail: str, raw: bytes,
                index: int, max_bytes: int) -> Point:
    return dead_letter_point(site, node, code, detail, raw, max_bytes, rec.received_ns + index,
                             rec.topic, rec.offset, rec.partition)


def dead_letter_point(site: str, node: str, code: str, detail: str, raw: bytes, max_bytes: int,
                      stamp_ns: int, topic: str = "", offset: int = 0, partition: str = "") -> Point:
    """A `dead_letter` point; `topic`, `offset` and `partition` locate the journal record
    (empty for a rejection made from the dataflow's state, not from one record)."""
    payload = raw[:max_bytes].decode("utf-8", errors="backslashreplace")
    fields: dict[str, str | int | float | bool] = {
        "detail": _utf8(detail[:1000]), "payload": payload, "topic": _utf8(topic[:300]),
        "truncated": len(raw) > max_bytes, "offset": offset, "partition": partition}
    return RP_RAW, line("dead_letter", {"site": site, "node": node, "reason": code}, fields,
                        stamp_ns)


def _utf8(text: str) -> str:
    """`text` as UTF-8 can carry it: a lone surrogate (JSON's `"\\ud800"`, which json.loads
    keeps, quoted in a detail) as its escape, `\\ud800`. The sink encodes lines as UTF-8,
    which has no surrogates: such a detail raised there, and stopped the flow for good."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return text.encode(errors="backslashreplace").decode()
    return text


def parsed_topic(text: str) -> Topic:
    """`parse_topic(text)`, remembered (a topic it refuses is not: it raises again)."""
    topic = _topics.get(text)
    if topic is None:
        topic = parse_topic(text)
        if len(_topics) >= _TOPICS_MAX:
            _topics.clear()
        _topics[text] = topic
    return topic


def decode_record(rec: Record, max_dead_letter_bytes: int) -> tuple[NodeData | None, list[Point]]:
    """Split a record into the node's good readings and the points to write straight away
    (dead letters, status)."""
    if isinstance(rec, RelayedReject):
        return None, [dead_letter(rec, rec.site, rec.node, rec.code, rec.detail, rec.raw, 0,
                                  max_dead_letter_bytes)]
    try:
        topic = parsed_topic(rec.topic)
    except UrbanpulseError as exc:
        return None, [dead_letter(rec, "", "", "bad_topic", str(exc), rec.payload, 0,
                                  max_dead_letter_bytes)]
    if topic.stream == "ack":
        return None, []  # the cloud's own acknowledgements to nodes: nothing to store
    if topic.stream == "relay":  # expanded before it is keyed (`expand_relays`): not here
        return None, [dead_letter(rec, topic.site, topic.node, "relay_not_expanded",
                                  "a relay reached a node's step whole", rec.payload, 0,
                                  max_dead_letter_bytes)]
    if topic.stream == "status":
        if not rec.payload:  # MQTT's deletion of a retained status (docs/gateway.md): none
            return None, []
        status_points, beat = _status(rec, topic.site, topic.node, max_dead_letter_bytes)
        if beat is None:
            return None, status_points
        return NodeData(f"{topic.site}/{topic.node}", topic.site, topic.node, rec.received_ns,
                        [], beat), status_points
    sound = _sound_readings(rec.payload, topic.site, topic.node, rec.received_ns)
    if sound is not None:
        readings, numbering = sound
        return (NodeData(f"{topic.site}/{topic.node}", topic.site, topic.node, rec.received_ns,
                         readings, None, numbering) if readings else None), []
    try:
        batch = decode_batch(rec.payload, site=topic.site, node=topic.node, now_ns=rec.received_ns)
    except WireError as exc:
        return None, [dead_letter(rec, topic.site, topic.node, exc.code, exc.detail, rec.payload, 0,
                                  max_dead_letter_bytes)]
    points = [
        dead_letter(rec, topic.site, topic.node, r.code, r.detail,
                    json.dumps(r.raw, default=str).encode(), r.index + 1, max_dead_letter_bytes)
        for r in batch.rejected
    ]
    data = NodeData(f"{topic.site}/{topic.node}", topic.site, topic.node, rec.received_ns,
                    batch.readings, None, batch.numbering) if batch.readings else None
    return data, points


_BODY_KEYS = frozenset({"v", "site", "node", "batch", "numbering", "units", "readings"})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_FUTURE_NS = int(FUTURE_TOLERANCE.total_seconds() * 1e9)
# orjson reads an integer beyond 64 bits as a float, where json keeps the int: a float this
# large may have been one, so its batch goes the contract's way.
_INT_AS_FLOAT = 2.0**63
_NO_FLAGS: tuple[str, ...] = ()


def _sound_readings(payload: bytes, site: str, node: str, now_ns: int
                    ) -> tuple[list[Reading], str | None] | None:
    """The readings and numbering id of a data payload whose every reading the contract
    accepts, equal to `decode_batch(...)`'s (same values, stamps and flags, in order); None when the
    payload is anything else, for `decode_batch` to decide. The shapes taken here are
    bounded (numbers in values, strings in flags and units), so no nesting depth or
    integer size that json refuses can hide in a part this pass does not read."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        return None
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None  # NaN, 1e400, a lone surrogate, a BOM...: json reads some of them
    if (type(body) is not dict or not body.keys() <= _BODY_KEYS or body.get("v") != CONTRACT_VERSION
            or body.get("site") != site or body.get("node") != node
            or type(body.get("batch", "")) is not str):
        return None
    numbering = body.get("numbering")
    if numbering is not None and (type(numbering) is not str or not NUMBERING_ID.fullmatch(numbering)):
        return None
    units = body.get("units")
    raws = body.get("readings")
    if type(units) is not dict or type(raws) is not list or len(raws) > MAX_READINGS_PER_BATCH:
        return None
    for kind_units in units.values():
        if type(kind_units) is not dict or any(type(u) is not str for u in kind_units.values()):
            return None
    latest = now_ns + _FUTURE_NS
    # (kind, field names) whose names and units passed -> its bool fields, its count fields
    sound: dict[tuple[str, tuple[str, ...]], _Checked] = {}
    sensor_ids = sensor_id_cache()
    parse = datetime.fromisoformat
    out: list[Reading] = []
    for raw in raws:
        if type(raw) is not dict:
            return None
        n = len(raw)
        if n != 5 and (n != 6 or "flags" not in raw):
            return None  # a key the contract does not read
        sensor = raw.get("sensor")
        if type(sensor) is not str or (sensor not in sensor_ids and not is_sensor_id(sensor)):
            return None
        seq = raw.get("seq")
        if type(seq) is not int or not 0 <= seq <= MAX_SEQ:
            return None
        ts = raw.get("ts")
        if type(ts) is not str or not ts.endswith("Z"):
            return None
        try:
            stamp = parse(ts)
        except ValueError:
            return None
        ts_ns = (stamp - _EPOCH) // _MICROSECOND * 1000
        if ts_ns < EARLIEST_TS_NS or ts_ns > latest:
            return None
        kind = raw.get("kind")
        values = raw.get("values")
        if type(kind) is not str or type(values) is not dict:
            return None
        fields = (kind, tuple(values))
        checked = sound.get(fields)
        if checked is None:
            known = _known_fields.get(fields)
            if known is None:
                checked = _sound_fields(kind, values, units)
                if checked is None:
                    return None
                if len(_known_fields) >= _KNOWN_FIELDS_MAX:
                    _known_fields.clear()
                _known_fields[fields] = (tuple(KINDS[kind].fields[name].unit for name in values),
                                         checked)
            else:  # _sound_fields's answer for these names: their units are left to check
                kind_units = units.get(kind)
                if type(kind_units) is not dict:
                    return None
                for name, unit in zip(fields[1], known[0], strict=True):
                    if kind_units.get(name) != unit:
                        return None
                checked = known[1]
            sound[fields] = checked
        for v in values.values():
            t = type(v)
            if t is float:
                if not -_INT_AS_FLOAT < v < _INT_AS_FLOAT:  # also NaN and the infinities
                    return None
            elif t is not int:
                return None
        bools, counts = checked
        for name in bools:
            if values[name] != 0 and values[name] != 1:
                return None
        for name in counts:  # whole and in [0, 2^53] (urbanpulse.wire.kinds.count_problem)
            v = values[name]
            if not 0 <= v <= MAX_WHOLE_COUNT or v % 1:
                return None
        flags = raw.get("flags", _NO_FLAGS)
        if flags is not _NO_FLAGS:
            if type(flags) is not list or not all(type(f) is str and f in FLAGS for f in flags):
                return None
            flags = tuple(flags)
        out.append(Reading(sensor, kind, ts_ns, seq, values, flags))
    return out, numbering


# The bool fields and the count fields of a reading's field names (`_sound_fields`).
_Checked = tuple[tuple[str, ...], tuple[str, ...]]
# (kind, field names in a reading's order) that `_sound_fields` took -> the units it took
# them in, and its answer: a live message holds a reading or two, whose names recur. The
# values (bools 0 or 1, counts whole) are checked per reading, with or without it.
_known_fields: dict[tuple[str, tuple[str, ...]], tuple[tuple[str, ...], _Checked]] = {}
_KNOWN_FIELDS_MAX = 4096


def _sound_fields(kind: str, values: dict[str, Any], units: dict[str, Any]) -> _Checked | None:
    """The names of the bool fields and of the count fields (COUNT_UNITS) among `values`,
    when its kind is the contract's, its field names known, their units the contract's and
    its required fields present (the values themselves are checked per reading); None
    otherwise."""
    spec = KINDS.get(kind)
    kind_units = units.get(kind)
    if spec is None or type(kind_units) is not dict or not values:
        return None
    for name in values:
        field = spec.fields.get(name)
        if field is None or kind_units.get(name) != field.unit:
            return None
    if not all(name in values for name, field in spec.fields.items() if field.required):
        return None
    return (tuple(name for name in values if spec.fields[name].unit == BOOL_UNIT),
            tuple(name for name in values if spec.fields[name].unit in COUNT_UNITS))


def _status(rec: JournalRecord, site: str, node: str, max_bytes: int
            ) -> tuple[list[Point], Heartbeat | None]:
    """The `node_status` point, the drivers' `driver_status` points (and a dead letter
    saying what of their counts was left out), and the heartbeat for the node's state."""
    try:
        body = decode_status(rec.payload, now_ns=rec.received_ns)
    except WireError as exc:
        return [dead_letter(rec, site, node, exc.code, exc.detail, rec.payload, 0, max_bytes)], None
    fields: dict[str, str | int | float | bool] = {"state": body["state"],
                                                   "online": body["state"] == "online"}
    health = body.get("health")
    if isinstance(health, dict):
        for key in ("outbox_depth", "outbox_oldest_age_s", "outbox_evicted", "readings_per_s",
                    "uptime_s", "cpu_temp_c", "outbox_uncommitted", "readings_dropped"):
            value = _number(health.get(key))
            if value is not None and (key not in HEALTH_COUNTS or (
                    value.is_integer() and abs(value) < MAX_DRIVER_COUNT)):
                fields[key] = value
        clock = health.get("clock")
        jumps = _count(clock.get("jumps")) if isinstance(clock, dict) else None
        if jumps is not None:
            fields["clock_jumps"] = float(jumps)
        # What the kernel told the agent of its clock (STA_UNSYNC): beside clock_offset_s it
        # tells a clock that never synchronised from one synchronised to a wrong server.
        # Absent when the agent does not say (older agents, clock_check off: null).
        synced = clock.get("synchronised") if isinstance(clock, dict) else None
        if isinstance(synced, bool):
            fields["clock_synchronised"] = synced
        # Outbox rows an older agent stored that the contract refuses, deleted unsent by the
        # publisher: a new field, so an integer (not a float as the counts above).
        mqtt = health.get("mqtt")
        unsendable = mqtt.get("unsendable") if isinstance(mqtt, dict) else None
        if _whole(unsendable):
            fields["mqtt_unsendable"] = unsendable
    ts = parse_ts(body["ts"])
    if isinstance(health, dict):
        # The MQTT last will (the one status without health) is stamped when the agent
        # connected, and sent by the broker when the node vanished, maybe days later, or
        # when the node came back and took its session over, just before its "online".
        # So every node_status point is stamped by one clock, the ingest's reception (a
        # replay of the journal stamps it the same): at the node's own stamps a will landed
        # behind the last heartbeat (the node read online for ever), and an "online" from a
        # node whose clock lags behind the will (offline until the next heartbeat). What the
        # node's clock said is kept as its offset.
        fields["clock_offset_s"] = (ts - rec.received_ns) / 1e9
    points = [(RP_RAW, line("node_status", {"site": site, "node": node}, fields, rec.received_ns))]
    if not isinstance(health, dict):
        return points, None
    points += _driver_counts(rec, site, node, health.get("drivers"), max_bytes)
    return points, _heartbeat(from_epoch_ns(ts), health, rec.received_ns)


def _driver_counts(rec: JournalRecord, site: str, node: str, drivers: object,
                   max_bytes: int) -> list[Point]:
    """A `driver_status` point per driver whose entry has `bad_input` or `refused`: its
    counts of the input it could not use since the agent started, and of the samples it
    emitted that the agent refused before its outbox (`refused`, and `refused_<code>` per
    reason of `refused_reasons`), as integer fields, stamped as the node_status point is
    (the reception: a replay writes the same point). Only the contract's counters and
    refusal codes, whole numbers in [0, 2**63), of drivers whose id is a sensor id (a tag),
    and of the first MAX_COUNTED_DRIVERS such drivers: what else the heartbeat held is left
    out, and said in one dead letter (`bad_input_counts`), the heartbeat's other parts going
    on. An entry with neither (a driver that failed to count: its `bad_input_error`; an
    older agent) gives no point."""
    if not isinstance(drivers, dict):
        return []
    out: list[Point] = []
    problems: list[str] = []
    taken = beyond = 0
    for sensor, entry in drivers.items():
        if not isinstance(entry, dict) or not _COUNTED_KEYS & entry.keys():
            continue
        if not SENSOR_ID.fullmatch(sensor):
            problems.append(f"drivers[{sensor!r:.40}]: not a sensor id")
            continue
        if taken == MAX_COUNTED_DRIVERS:
            beyond += 1
            continue
        taken += 1
        fields: dict[str, str | int | float | bool] = {}
        if "bad_input" in entry:
            _take_counts(entry["bad_input"], f"drivers.{sensor}.bad_input", BAD_INPUT_COUNTERS,
                         "", "counter", fields, problems)
        if "refused" in entry:
            total = entry["refused"]
            if _whole(total):
                fields["refused"] = total
            else:
                problems.append(f"drivers.{sensor}.refused: not a whole number in [0, 2^63), "
                                f"got {total!r:.40}")
        if "refused_reasons" in entry:
            _take_counts(entry["refused_reasons"], f"drivers.{sensor}.refused_reasons",
                         REFUSAL_CODES, "refused_", "refusal code", fields, problems)
        if fields:
            out.append((RP_RAW, line("driver_status", {"site": site, "node": node, "sensor": sensor},
                                     fields, rec.received_ns)))
    if problems or beyond:
        said = problems[:_PROBLEMS_SAID]
        if len(problems) > _PROBLEMS_SAID:
            said.append(f"{len(problems) - _PROBLEMS_SAID} more such counts")
        if beyond:
            said.append(f"{beyond} more drivers with counts than the {MAX_COUNTED_DRIVERS} "
                        "whose counts one heartbeat may store")
        out.append(dead_letter(rec, site, node, "bad_input_counts",
                               "left out of driver_status: " + "; ".join(said), rec.payload, 0,
                               max_bytes))
    return out


def _take_counts(counts: object, where: str, names: frozenset[str], prefix: str, what: str,
                 fields: dict[str, str | int | float | bool], problems: list[str]) -> None:
    """Into `fields`, as `<prefix><name>`, the counts of `counts` (a JSON object at `where`)
    named in `names` and whole; each other one said in `problems`."""
    if not isinstance(counts, dict):
        problems.append(f"{where}: not an object, got {counts!r:.40}")
        return
    for name, value in counts.items():
        if name not in names:
            problems.append(f"{where}[{name!r:.40}]: no {what} of the wire contract")
        elif not _whole(value):
            problems.append(f"{where}.{name}: not a whole number in [0, 2^63), got {value!r:.40}")
        else:
            fields[prefix + name] = value


def _whole(value: object) -> TypeGuard[int]:
    """A count InfluxDB's integer field holds: an int (not a bool) in [0, 2**63)."""
    return type(value) is int and 0 <= value < MAX_DRIVER_COUNT


def _heartbeat(ts: datetime, health: dict[str, Any], received_ns: int) -> Heartbeat:
    """What the fault rules read of the health: fields of the wrong type are left out.
    Received at `received_ns` (the journal's stamp: a replay gives the same)."""
    uptime = _number(health.get("uptime_s"))
    run = health.get("run_id")
    clock = health.get("clock")
    jumps = _count(clock.get("jumps")) if isinstance(clock, dict) else None
    synced = clock.get("synchronised") if isinstance(clock, dict) else None
    supervision: dict[str, Supervision] = {}
    listed: set[str] = set()
    drivers = health.get("drivers")
    for sensor, state in (drivers.items() if isinstance(drivers, dict) else ()):
        if not SENSOR_ID.fullmatch(sensor):
            continue  # an id that is not a sensor's would reach line protocol as a tag
        if len(listed) == MAX_SUPERVISED:
            break
        listed.add(sensor)
        sup = state.get("supervision") if isinstance(state, dict) else None
        if isinstance(sup, dict):
            supervision[sensor] = Supervision.from_report(sup)
    return Heartbeat(
        ts,
        uptime if uptime is not None and 0 <= uptime <= MAX_UPTIME_S else None,
        jumps,
        supervision or None,
        run if isinstance(run, str) and RUN_ID.fullmatch(run) else None,
        from_epoch_ns(received_ns),
        frozenset(listed) if isinstance(drivers, dict) else None,
        synced if isinstance(synced, bool) else None)


def _number(value: object) -> float | None:
    """A JSON number as a finite float; None for anything else (bool, NaN, 1e400, 10**400)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not finite(value):
        return None
    return float(value)


def _count(value: object) -> int | None:
    """A counter: an integer in [0, 2**31)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < MAX_COUNT:
        return None
    return value
