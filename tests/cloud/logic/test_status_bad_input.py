"""The drivers' bad-input counts of a heartbeat reach InfluxDB, as `driver_status` points.

Every driver sends, in each heartbeat, its counts of the input it could not use since the
agent started (`health.drivers.<id>.bad_input`, docs/wire-contract.md): a serial sensor's
corrupt frames and skipped bytes (a bad cable, a wrong baud rate), a board's lost sentences,
a kiosk's glitches and empty calls (no reading carries those). The cloud read only
`supervision` of a driver's entry and stored none of it: an operator saw nothing.

The statuses go the processor's way: journal records stamped on reception, payloads as the
agent encodes them (`encode_status`), decoded by `decode_record`, heartbeats through the
node's state, written by the real sink's writer to the session's InfluxDB and read back. A
heartbeat is a node's word: what is not a contract's counter is left out, and said in a
dead letter (`bad_input_counts`), and a heartbeat naming thousands of drivers makes a
bounded number of series."""

from __future__ import annotations

import ast
import itertools
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cloud.config import CloudInflux, parse_cloud_config
from cloud.journal import JournalRecord
from cloud.logic.node import NodeState
from cloud.logic.records import (
    BAD_INPUT_COUNTERS,
    MAX_COUNTED_DRIVERS,
    MAX_DRIVER_COUNT,
    REFUSAL_CODES,
    REFUSED_FIELDS,
    Point,
    decode_record,
)
from cloud.sink import InfluxWriter, make_writer
from cloud.stack_config import cloud_config_for_stack
from firmware_bridge.stats import DecoderStats
from urbanpulse.clock import SystemClock, from_epoch_ns, to_epoch_ns
from urbanpulse.influx_http import InfluxHTTP
from urbanpulse.stack import StackInfo
from urbanpulse.wire import MAX_PAYLOAD_BYTES, encode_status, status_topic

S = 10**9
_runs = itertools.count()
WIRE_CONTRACT = Path(__file__).resolve().parents[3] / "docs" / "wire-contract.md"
RECEIVED_NS = 1_795_000_000_000_000_000  # 2026-11-18T11:06:40Z

# Counts as the agent sends them, the names each driver of the tree sends (0 included).
SERIAL = {"checksum_errors": 3, "bytes_skipped": 41, "malformed": 0}
KIOSK = {"glitches": 2, "empty_calls": 1}
BOARD = {"checksum_errors": 0, "bytes_skipped": 0, "malformed": 0, "lost_sentences": 4,
         "door_gaps": 0, "ignored": 1, "uneven_intervals": 0}


def _health(run: str, uptime: int, drivers: dict[str, Any]) -> dict[str, Any]:
    return {"run_id": run, "uptime_s": uptime, "outbox_depth": 0, "clock": {"jumps": 0},
            "drivers": {sensor: {"driver": "x", "state": "running", "restarts": 0,
                                 "last_error": None, **entry}
                        for sensor, entry in drivers.items()}}


def _decode(site: str, node: str, statuses: list[dict[str, Any] | None], received_ns: int,
            state: NodeState | None = None) -> list[Point]:
    """One status message per health (None: the last will), 30 s apart, as the processor
    takes them: the decoder's points, then the node state's."""
    state = state or NodeState(3600 * S, detect=True)
    points: list[Point] = []
    for k, health in enumerate(statuses):
        received = received_ns + k * 30 * S
        rec = JournalRecord("i0", k + 1, received, status_topic(site, node),
                            encode_status("online" if health is not None else "offline",
                                          from_epoch_ns(received - S // 4), health))
        data, out = decode_record(rec, 4096)
        points += out
        if data is not None:
            points += state.process(data)
    return points


def _lines(points: list[Point], measurement: str) -> list[str]:
    return [text for _, text in points if text.startswith(measurement + ",")]


# -- against the real InfluxDB ------------------------------------------------------------


@pytest.fixture
def writer(db_ready: StackInfo) -> Iterator[InfluxWriter]:
    influx: CloudInflux = parse_cloud_config(
        cloud_config_for_stack(db_ready, Path("/nonexistent-state"))).influx
    out = make_writer(influx)
    yield out
    out.close()


def _stored(reader: InfluxHTTP, db: str, site: str) -> dict[str, list[tuple[int, dict[str, int]]]]:
    """Per sensor, (stamp, the counts that are set) of each driver_status point, oldest first."""
    out: dict[str, list[tuple[int, dict[str, int]]]] = {}
    for series in reader.query(f"SELECT * FROM \"raw\".\"driver_status\" WHERE \"site\" = '{site}' "
                               "GROUP BY \"node\", \"sensor\"", db=db, epoch="ns"):
        columns = series["columns"]
        for row in series["values"]:
            values = dict(zip(columns, row, strict=True))
            counts = {k: v for k, v in values.items() if k not in ("time", "site") and v is not None}
            out.setdefault(series["tags"]["sensor"], []).append((values["time"], counts))
    return out


@pytest.mark.stack
def test_each_heartbeat_stores_each_drivers_bad_input_counts(
        writer: InfluxWriter, reader: InfluxHTTP, db_ready: StackInfo) -> None:
    """Three heartbeats and a restart (a new run_id: counts from 0 again), then the last
    will (no health, nothing of the drivers)."""
    site = f"bad-input-{to_epoch_ns(SystemClock().now()) % 10**6}-{next(_runs)}"
    now = to_epoch_ns(SystemClock().now()) // S * S - 600 * S
    grown = {**SERIAL, "checksum_errors": 9, "bytes_skipped": 160}
    statuses: list[dict[str, Any] | None] = [
        _health("0a1b2c3d", 30, {"pm-1": {"bad_input": SERIAL}, "kiosk-1": {"bad_input": KIOSK},
                                 "board-1": {"bad_input": BOARD}}),
        _health("0a1b2c3d", 60, {"pm-1": {"bad_input": grown}, "kiosk-1": {"bad_input": KIOSK},
                                 "board-1": {"bad_input": BOARD}}),
        # restarted: its counts start again; a driver that failed to count has no counts
        _health("9f8e7d6c", 5, {"pm-1": {"bad_input": {**SERIAL, "checksum_errors": 1}},
                                "kiosk-1": {"bad_input_error": "DriverError: gone"},
                                "board-1": {"bad_input": BOARD}}),
        None,
    ]
    points = _decode(site, "pi", statuses, now)
    assert _lines(points, "dead_letter") == []
    writer.write(points)
    assert writer.stats.refused_requests == 0, writer.stats.last_error
    stamps = [now, now + 30 * S, now + 60 * S]  # at the reception, as node_status
    expected = {
        "pm-1": [(stamps[0], SERIAL), (stamps[1], grown), (stamps[2], {**SERIAL, "checksum_errors": 1})],
        "kiosk-1": [(stamps[0], KIOSK), (stamps[1], KIOSK)],
        "board-1": [(stamps[k], BOARD) for k in range(3)],
    }
    assert _stored(reader, db_ready.database, site) == expected
    tags = {(s["tags"]["node"], s["tags"]["sensor"]) for s in reader.query(
        f"SELECT last(\"malformed\") FROM \"raw\".\"driver_status\" WHERE \"site\" = '{site}' "
        "GROUP BY *", db=db_ready.database)}
    assert tags == {("pi", "pm-1"), ("pi", "board-1")}
    fields = {r["fieldKey"]: r["fieldType"] for r in reader.query_points(
        'SHOW FIELD KEYS FROM "raw"."driver_status"', db=db_ready.database)}
    assert {k: fields.get(k) for k in (*SERIAL, *KIOSK, *BOARD)} == dict.fromkeys(
        (*SERIAL, *KIOSK, *BOARD), "integer")
    # a replay of the journal writes the same points, no others
    writer.write(_decode(site, "pi", statuses, now))
    assert _stored(reader, db_ready.database, site) == expected


# -- what a heartbeat may claim --------------------------------------------------------------


def test_the_cloud_takes_every_counter_the_wire_contract_names() -> None:
    """docs/wire-contract.md's table of `bad_input` counters, and the decoders' own."""
    text = WIRE_CONTRACT.read_text(encoding="utf-8")
    table = text[text.index("| driver | `bad_input` counters |"):]
    table = table[:table.index("\n\n")]
    named = {name for row in table.splitlines()[2:]
             for name in re.findall(r"`([a-z][a-z_]*)`(?= \(| and `)", row.split("|")[2])}
    assert named == BAD_INPUT_COUNTERS
    assert set(DecoderStats().bad_input()) <= BAD_INPUT_COUNTERS


def test_a_sound_heartbeat_gives_one_point_per_counting_driver_and_no_dead_letter() -> None:
    points = _decode("s1", "n1", [_health("0a1b2c3d", 30, {
        "pm-1": {"bad_input": SERIAL}, "door-1": {"bad_input": {}},
        "loop-1": {"supervision": {"cable": "ok"}}})], RECEIVED_NS)
    assert _lines(points, "dead_letter") == []
    assert _lines(points, "driver_status") == [
        f"driver_status,node=n1,sensor=pm-1,site=s1 checksum_errors=3i,bytes_skipped=41i,malformed=0i "
        f"{RECEIVED_NS}"]


@pytest.mark.parametrize(("counts", "kept", "said"), [
    ({"checksum_errors": 2, "no_such_count": 5}, {"checksum_errors": 2}, "no_such_count"),
    ({"checksum_errors": -1, "malformed": 1}, {"malformed": 1}, "checksum_errors"),
    ({"checksum_errors": 1.5, "malformed": 1}, {"malformed": 1}, "checksum_errors"),
    ({"checksum_errors": True, "malformed": 1}, {"malformed": 1}, "checksum_errors"),
    ({"checksum_errors": "3", "malformed": 1}, {"malformed": 1}, "checksum_errors"),
    ({"checksum_errors": MAX_DRIVER_COUNT, "malformed": MAX_DRIVER_COUNT - 1},
     {"malformed": MAX_DRIVER_COUNT - 1}, "checksum_errors"),
    ({"checksum_errors": None}, {}, "checksum_errors"),
    ([1, 2], {}, "bad_input"),
    ("garbage", {}, "bad_input"),
])
def test_what_is_no_counter_of_the_contract_is_left_out_and_said_in_a_dead_letter(
        counts: object, kept: dict[str, int], said: str) -> None:
    points = _decode("s1", "n1", [_health("0a1b2c3d", 30, {"pm-1": {"bad_input": counts}})],
                     RECEIVED_NS)
    (status,) = _lines(points, "node_status")  # the heartbeat itself goes on
    assert "online=true" in status
    fields = ",".join(f"{k}={v}i" for k, v in kept.items())
    assert _lines(points, "driver_status") == (
        [f"driver_status,node=n1,sensor=pm-1,site=s1 {fields} {RECEIVED_NS}"] if kept else [])
    (dead,) = _lines(points, "dead_letter")
    assert dead.startswith("dead_letter,node=n1,reason=bad_input_counts,site=s1 ")
    assert said in dead
    assert dead.endswith(f" {RECEIVED_NS}")


def test_driver_ids_that_are_no_sensor_ids_never_reach_a_tag() -> None:
    evil = "k\ndriver_status,node=other,sensor=pm-9"
    points = _decode("s1", "n1", [_health("0a1b2c3d", 30, {evil: {"bad_input": SERIAL},
                                                            "pm-1": {"bad_input": SERIAL}})],
                     RECEIVED_NS)
    assert all("\n" not in text for _, text in points)
    assert [text.split(" ")[0] for text in _lines(points, "driver_status")] == [
        "driver_status,node=n1,sensor=pm-1,site=s1"]
    (dead,) = _lines(points, "dead_letter")
    assert "reason=bad_input_counts" in dead
    assert "not a sensor id" in dead


def test_a_heartbeat_naming_hundreds_of_counting_drivers_makes_a_bounded_number_of_points() -> None:
    many = {f"k{i}": {"bad_input": dict.fromkeys(sorted(BAD_INPUT_COUNTERS), i)} for i in range(500)}
    health = {"run_id": "0a1b2c3d", "uptime_s": 30, "drivers": many}
    assert len(json.dumps(health)) < MAX_PAYLOAD_BYTES  # a status the contract takes
    points = _decode("s1", "n1", [health], RECEIVED_NS)
    drivers = _lines(points, "driver_status")
    # the first ones the heartbeat names, each with its counters (fixed names: a bounded field set)
    assert [t.split(" ")[0] for t in drivers] == [
        f"driver_status,node=n1,sensor=k{i},site=s1" for i in range(MAX_COUNTED_DRIVERS)]
    assert all(len(t.split(" ")[1].split(",")) == len(BAD_INPUT_COUNTERS) for t in drivers)
    (dead,) = _lines(points, "dead_letter")
    assert "reason=bad_input_counts" in dead
    assert f"{500 - MAX_COUNTED_DRIVERS} more drivers" in dead
    assert len(dead) < 12_000  # the payload kept as every dead letter's: up to its limit


# -- the samples a node refused (drivers.<id>.refused, refused_reasons) --------------------

VALUES_RULE = Path(__file__).resolve().parents[3] / "urbanpulse" / "wire" / "values.py"


def _stored_node_status(reader: InfluxHTTP, db: str, site: str) -> list[dict[str, Any]]:
    return [dict(zip(s["columns"], row, strict=True)) for s in reader.query(
        f"SELECT \"mqtt_unsendable\", \"state\" FROM \"raw\".\"node_status\" WHERE \"site\" = '{site}'",
        db=db, epoch="ns") for row in s["values"]]


@pytest.mark.stack
def test_the_samples_a_node_refused_are_stored_per_driver_and_reason_and_a_bad_reason_only_is_left_out(
        writer: InfluxWriter, reader: InfluxHTTP, db_ready: StackInfo) -> None:
    """Since d46d918 the agent drops, before its outbox, a sample the contract refuses (a
    driver's bug: a NaN, 2.5 vehicles), which reached the cloud as a dead letter before:
    its heartbeat's counts are what an operator sees of it. A driver that counts no bad
    input has its point too; a reason that is no refusal code of the contract (or not a
    whole count) is left out and said in a dead letter, the rest of the heartbeat stored."""
    site = f"refused-{to_epoch_ns(SystemClock().now()) % 10**6}-{next(_runs)}"
    now = to_epoch_ns(SystemClock().now()) // S * S - 600 * S
    first = _health("0a1b2c3d", 30, {
        "pm-1": {"bad_input": SERIAL, "refused": 4, "refused_reasons": {"bad_value": 4}},
        "loop-1": {"refused": 3, "refused_reasons": {"bad_count": 2, "unknown_field": 1}}})
    first["mqtt"] = {"connected": True, "unsendable": 2}
    second = _health("0a1b2c3d", 60, {
        "pm-1": {"bad_input": SERIAL, "refused": 9,
                 "refused_reasons": {"bad_value": 4, "made_up": 3, "bad_count": 1.5}},
        "loop-1": {"refused": 3, "refused_reasons": {"bad_count": 2, "unknown_field": 1}}})
    second["mqtt"] = {"connected": True, "unsendable": -1}  # not a count: left out
    points = _decode(site, "pi", [first, second], now)
    dead = _lines(points, "dead_letter")
    assert len(dead) == 1  # the second heartbeat's, naming both parts left out
    assert "reason=bad_input_counts" in dead[0]
    assert "drivers.pm-1.refused_reasons['made_up']: no refusal code of the wire contract" in dead[0]
    assert "drivers.pm-1.refused_reasons.bad_count: not a whole number" in dead[0]
    assert dead[0].endswith(f" {now + 30 * S}")
    writer.write(points)
    assert writer.stats.refused_requests == 0, writer.stats.last_error
    assert _stored(reader, db_ready.database, site) == {
        "pm-1": [(now, {**SERIAL, "refused": 4, "refused_bad_value": 4}),
                 (now + 30 * S, {**SERIAL, "refused": 9, "refused_bad_value": 4})],
        "loop-1": [(t, {"refused": 3, "refused_bad_count": 2, "refused_unknown_field": 1})
                   for t in (now, now + 30 * S)]}
    assert _stored_node_status(reader, db_ready.database, site) == [
        {"time": now, "mqtt_unsendable": 2, "state": "online"},
        {"time": now + 30 * S, "mqtt_unsendable": None, "state": "online"}]
    (stored_dead,) = reader.query(
        f"SELECT \"detail\" FROM \"raw\".\"dead_letter\" WHERE \"site\" = '{site}' "
        "AND \"reason\" = 'bad_input_counts'", db=db_ready.database)
    assert len(stored_dead["values"]) == 1
    fields = {r["fieldKey"]: r["fieldType"] for r in reader.query_points(
        'SHOW FIELD KEYS FROM "raw"."driver_status"', db=db_ready.database)}
    assert {k: fields.get(k) for k in ("refused", "refused_bad_value", "refused_bad_count")} == \
        dict.fromkeys(("refused", "refused_bad_value", "refused_bad_count"), "integer")
    node_fields = {r["fieldKey"]: r["fieldType"] for r in reader.query_points(
        'SHOW FIELD KEYS FROM "raw"."node_status"', db=db_ready.database)}
    assert node_fields["mqtt_unsendable"] == "integer"


def test_the_cloud_takes_every_refusal_code_of_the_contracts_values_rule() -> None:
    """Each code urbanpulse.wire.values gives a `Refusal` (what the agent counts by) is one
    of REFUSAL_CODES, each stored as `refused_<code>`."""
    tree = ast.parse(VALUES_RULE.read_text(encoding="utf-8"))
    codes = {node.args[0].value for node in ast.walk(tree)
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
             and node.func.id == "Refusal" and isinstance(node.args[0], ast.Constant)}
    assert codes == REFUSAL_CODES
    assert {"refused", *(f"refused_{c}" for c in codes)} == REFUSED_FIELDS
    assert not REFUSED_FIELDS & BAD_INPUT_COUNTERS


@pytest.mark.parametrize(("entry", "kept", "said"), [
    ({"refused": 2, "refused_reasons": {"bad_value": 2}}, {"refused": 2, "refused_bad_value": 2}, None),
    ({"refused": 5, "refused_reasons": {"bad_value": 2, "nan_in_pm": 3}},
     {"refused": 5, "refused_bad_value": 2}, "refused_reasons['nan_in_pm']: no refusal code"),
    ({"refused": 1, "refused_reasons": {"bad_count": -1}}, {"refused": 1}, "refused_reasons.bad_count"),
    ({"refused": 2.5, "refused_reasons": {"bad_count": 1}}, {"refused_bad_count": 1}, "refused: not"),
    ({"refused": True}, {}, "refused: not"),
    ({"refused": MAX_DRIVER_COUNT}, {}, "refused: not"),
    ({"refused": 1, "refused_reasons": ["bad_count"]}, {"refused": 1}, "refused_reasons: not an object"),
    ({"refused_reasons": {"refused": 7}}, {}, "refused_reasons['refused']: no refusal code"),
])
def test_a_drivers_refused_counts_are_taken_as_its_bad_input_counts(
        entry: dict[str, Any], kept: dict[str, int], said: str | None) -> None:
    points = _decode("s1", "n1", [_health("0a1b2c3d", 30, {"loop-1": entry})], RECEIVED_NS)
    fields = ",".join(f"{k}={v}i" for k, v in kept.items())
    assert _lines(points, "driver_status") == (
        [f"driver_status,node=n1,sensor=loop-1,site=s1 {fields} {RECEIVED_NS}"] if kept else [])
    dead = _lines(points, "dead_letter")
    if said is None:
        assert dead == []
    else:
        (letter,) = dead
        assert "reason=bad_input_counts" in letter
        assert f"drivers.loop-1.{said}" in letter


@pytest.mark.parametrize(("mqtt", "stored"), [
    ({"unsendable": 0}, "mqtt_unsendable=0i"), ({"unsendable": 12}, "mqtt_unsendable=12i"),
    ({"unsendable": 1.5}, None), ({"unsendable": True}, None), ({"unsendable": -2}, None),
    ({"unsendable": 2**63}, None), ({"connected": True}, None), (None, None), ("up", None),
])
def test_a_nodes_unsendable_rows_are_an_integer_of_its_node_status(mqtt: object, stored: str | None) -> None:
    health = _health("0a1b2c3d", 30, {})
    health["mqtt"] = mqtt
    points = _decode("s1", "n1", [health], RECEIVED_NS)
    (status,) = _lines(points, "node_status")
    fields = status.split(" ")[1].split(",")
    assert [f for f in fields if f.startswith("mqtt_unsendable=")] == ([stored] if stored else [])
    assert _lines(points, "dead_letter") == []
