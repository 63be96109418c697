"""Nothing a node puts in a status message can crash the dataflow (a crash would replay the
same message forever) or reach line protocol unchecked: numbers beyond a float, NaN,
stamps outside the readings' range, driver ids that are no sensor ids, supervision of
any shape. Found by review with crafted payloads."""

from __future__ import annotations

import json

import pytest

from cloud.journal import JournalRecord
from cloud.logic.node import NodeState
from cloud.logic.records import MAX_SUPERVISED, decode_record
from cloud.logic.rollup import HOUR_NS

RECEIVED_NS = 1_780_000_000_000_000_000  # 2026-05-28
TS = "2026-05-28T08:00:00Z"
TS2 = "2026-05-28T08:00:30Z"


def _status(health: object, ts: str = TS) -> bytes:
    return json.dumps({"v": 1, "state": "online", "ts": ts, "health": health}).encode()


def _run(*payloads: bytes) -> list[str]:
    state = NodeState(HOUR_NS)
    lines: list[str] = []
    for i, payload in enumerate(payloads):
        data, points = decode_record(JournalRecord("i0", i + 1, RECEIVED_NS,
                                                   "urbanpulse/v1/s1/n1/status", payload), 4096)
        if data is not None:
            points.extend(state.process(data))
        lines.extend(text for _, text in points)
    return lines


BASE = _status({"uptime_s": 10, "clock": {"jumps": 0}})


@pytest.mark.parametrize("second", [
    _status({"uptime_s": 10**400, "clock": {"jumps": 0}}, TS2),
    _status({"uptime_s": 1e308, "clock": {"jumps": 1}}, TS2),
    _status({"uptime_s": 1e11, "clock": {"jumps": 0}}, TS2),
    b'{"v":1,"state":"online","ts":"' + TS2.encode() + b'","health":{"uptime_s":Infinity}}',
    b'{"v":1,"state":"online","ts":"' + TS2.encode() + b'","health":{"uptime_s":NaN,"cpu_temp_c":NaN}}',
    _status({"uptime_s": 40, "clock": {"jumps": 10**310}}, TS2),
    _status({"uptime_s": 40, "clock": {"jumps": -3}}, TS2),
    _status({"uptime_s": 40, "drivers": [1, 2]}, TS2),
    _status({"uptime_s": 40, "drivers": {"k": {"supervision": {"cable": ["x"], "ready": 1}}}}, TS2),
    _status([1, 2], TS2),
    _status({"uptime_s": 40, "clock": [1]}, TS2),
])
def test_a_malformed_health_is_stored_as_far_as_it_is_sound_and_raises_nothing(second: bytes) -> None:
    lines = _run(BASE, second)
    assert not any(text.startswith("events,") for text in lines), "no event from nonsense"
    assert not any("nan" in text or "inf" in text for text in lines)


@pytest.mark.parametrize("ts", ["0001-01-01T00:00:30Z", "9999-12-31T23:59:59Z"])
def test_a_status_stamped_outside_the_readings_range_is_a_dead_letter(ts: str) -> None:
    lines = _run(BASE, _status({"uptime_s": 1000, "clock": {"jumps": 1}}, ts))
    assert any(text.startswith("dead_letter,") and "reason=ts_out_of_range" in text for text in lines)
    assert not any(text.startswith("events,") for text in lines)


def test_driver_ids_that_are_no_sensor_ids_never_reach_line_protocol() -> None:
    evil = "k\nair_pm,node=other,sensor=pms5003"
    lines = _run(_status({"uptime_s": 10, "drivers": {evil: {"supervision": {"cable": "ok"}}}}),
                 _status({"uptime_s": 40, "drivers": {evil: {"supervision": {"cable": "cut"}}}}, TS2))
    assert all("\n" not in text for text in lines)
    assert not any(text.startswith("events,") for text in lines)


def test_a_heartbeat_naming_thousands_of_drivers_is_bounded() -> None:
    many = {f"k{i}": {"supervision": {"cable": "cut"}} for i in range(5000)}
    lines = _run(_status({"uptime_s": 10, "drivers": many}))
    assert sum(text.startswith("events,") for text in lines) <= MAX_SUPERVISED


def test_a_door_whose_self_test_fails_raises_stuck_through_the_decoder() -> None:
    ok = {"uptime_s": 10, "drivers": {"door-main": {"supervision": {"self_test": "ok", "blocked": False}}}}
    failed = {"uptime_s": 40, "drivers": {"door-main": {"supervision": {"self_test": "failed",
                                                                        "blocked": False}}}}
    lines = _run(_status(ok), _status(failed, TS2))
    events = [t for t in lines if t.startswith("events,")]
    assert len(events) == 1
    assert "type=stuck" in events[0]
    assert "sensor=door-main" in events[0]


def test_the_last_will_is_stamped_when_received_not_when_the_agent_connected() -> None:
    """The will's `ts` is the agent's connection time (MQTT fixes it at connect), hours
    before the broker sends it: at that stamp it would land behind the node's last
    heartbeat, and "Nodes now" would go on reading the node as online (found by review)."""
    connected = "2026-05-27T20:00:00Z"  # 12 h before RECEIVED_NS
    will = json.dumps({"v": 1, "state": "offline", "ts": connected}).encode()
    clean_stop = json.dumps({"v": 1, "state": "offline", "ts": TS2, "health": {"uptime_s": 40}}).encode()
    will_line, stop_line = [ln for ln in _run(BASE, will, clean_stop) if "offline" in ln]
    assert will_line.endswith(f" {RECEIVED_NS}")
    assert "clock_offset_s" not in will_line  # its stamp is no reading of the node's clock
    # a clean stop too (every node_status point is), its own stamp kept as an offset
    assert stop_line.endswith(f" {RECEIVED_NS}")
    assert f"clock_offset_s={(1_779_955_230_000_000_000 - RECEIVED_NS) / 1e9}" in stop_line


def test_a_full_sd_card_is_stored_from_the_heartbeat() -> None:
    """The agent holds readings its outbox cannot commit and reports them (and those it
    had to drop) in its heartbeat; node_status keeps them, beside the outbox depth."""
    (status,) = [ln for ln in _run(_status({"uptime_s": 10, "outbox_uncommitted": 120,
                                            "readings_dropped": 3}))
                 if ln.startswith("node_status")]
    assert "outbox_uncommitted=120.0" in status
    assert "readings_dropped=3.0" in status


def _points_at(*records: tuple[int, bytes]) -> list[tuple[int, str]]:
    """(stamp, line) of each node_status point, for records received at the given times."""
    state = NodeState(HOUR_NS)
    out: list[tuple[int, str]] = []
    for i, (received_ns, payload) in enumerate(records):
        data, points = decode_record(JournalRecord("i0", i + 1, received_ns,
                                                   "urbanpulse/v1/s1/n1/status", payload), 4096)
        if data is not None:
            points.extend(state.process(data))
        out.extend((int(text.rsplit(" ", 1)[1]), text) for _, text in points
                   if text.startswith("node_status"))
    return out


def test_a_node_back_with_its_clock_behind_reads_online_at_once() -> None:
    """A node that reconnects takes its session over: the broker sends its will then, and
    the node's "online" a moment later. Stamped with the node's clock, two seconds behind
    the cloud's, "online" landed before the will, and the node read as offline (and the
    offline alert counted no heartbeat) until its next heartbeat, or for ever while its
    clock lagged by more than its heartbeat interval (found by review)."""
    connected = "2026-05-27T20:00:00Z"
    will = json.dumps({"v": 1, "state": "offline", "ts": connected}).encode()
    behind = "2026-05-28T20:26:38Z"  # 2 s behind the cloud's RECEIVED_NS (20:26:40)
    back = _status({"uptime_s": 5, "clock": {"jumps": 0}}, behind)
    points = _points_at((RECEIVED_NS, will), (RECEIVED_NS + 50_000_000, back))
    latest = max(points)[1]
    assert "online=true" in latest, points
    assert "clock_offset_s=-2.05" in latest  # the node's stamp against the cloud's reception
