"""Fault events of readings out of the "Sensor fault" alert's reach are stamped when the
cloud received them (cloud/logic/events.py, `stamped_at_reception`), and a replay, in any
order the merge of two ingests' journals gives, writes the same points.

A node's clock an hour behind: its readings reach the cloud an hour after their stamps.
Their events are stamped at the reception of the reading each fired on (the journal's
stamp), the reading's stamp in `node_ts`. A sequence gap is held in case the missing
readings are only late (a swapped message); a run still missing when the late message
came is raised on a late reading, as in order: it must carry that reading's reception (the
event the readings in order raise), not the reception of the reading after the whole gap.
(On the real InfluxDB and the alert's query: tests/dashboards/test_dashboards_sensor_fault_clock.py.)
"""

from __future__ import annotations

import pickle
from datetime import UTC, datetime

from cloud.journal import JournalRecord
from cloud.logic.events import reception_stamp
from cloud.logic.node import NodeState
from cloud.logic.records import decode_record
from cloud.logic.rollup import HOUR_NS
from tests.cloud.logic.domain_helpers import parse
from urbanpulse.clock import from_epoch_ns, to_epoch_ns
from urbanpulse.wire import Reading, data_topic, encode_batch, encode_status, format_ts, status_topic

SITE, NODE, SENSOR = "hn-hoankiem", "aq-01", "pm-1"
T0_NS = to_epoch_ns(datetime(2026, 5, 1, 8, 0, tzinfo=UTC))
STEP_NS = 10 * 10**9  # a reading every 10 s, 10 a message
BEHIND_NS = 3600 * 10**9  # the node's clock, behind the cloud's


def _reading(seq: int, behind_ns: int = BEHIND_NS, **values: float) -> Reading:
    return Reading(SENSOR, "air.pm", T0_NS + seq * STEP_NS - behind_ns, seq,
                   values or {"pm25": 12.0 + seq % 5, "pm10": 20.0 + seq % 7})


def _received(seq: int) -> int:
    """When the cloud received the message sent on reading `seq` (its true time, 20 ms on)."""
    return T0_NS + seq * STEP_NS + 20_000_000


def _stream(skip: tuple[int, ...] = (), bad: int | None = None,
            behind_ns: int = BEHIND_NS) -> list[JournalRecord]:
    """60 messages of 10 readings, numbers in `skip` never taken, reading `bad` out of range;
    a heartbeat every 30 s; stamped by the node's clock, `behind_ns` behind the cloud's; in
    the order of their journal stamps (as a replay reads them)."""
    records = []
    for m in range(60):
        readings = [_reading(s, behind_ns, pm25=5000.0, pm10=20.0) if s == bad else _reading(s, behind_ns)
                    for s in range(m * 10, m * 10 + 10) if s not in skip]
        received = _received(m * 10 + 9)
        records.append(JournalRecord("i0", m + 1, received, data_topic(SITE, NODE),
                                     encode_batch(SITE, NODE, readings)))
    for i, t in enumerate(range(T0_NS, _received(600), 30 * 10**9)):
        health = {"run_id": "0123456789abcdef", "uptime_s": (t - T0_NS) / 1e9 + 100.0,
                  "clock": {"jumps": 0, "synchronised": True}}
        records.append(JournalRecord("i1", 10_000 + i, t + 5_000_000, status_topic(SITE, NODE),
                                     encode_status("online", from_epoch_ns(t - behind_ns), health)))
    return sorted(records, key=lambda rec: rec.received_ns)


def _faults(records: list[JournalRecord], state: NodeState | None = None) -> list[str]:
    state = NodeState(HOUR_NS) if state is None else state
    out = []
    for rec in records:
        data, points = decode_record(rec, 4096)
        if data is not None:
            points.extend(state.process(data))
        out += [ln for _, ln in points if ln.startswith("events,") and "type=anomaly" not in ln]
    return out


def test_a_run_missing_within_a_late_message_is_the_same_point_in_either_order() -> None:
    """Readings 403-405 never taken (the sensor answered nothing): a SILENCE on 406, at the
    reception of its message (40), whichever order the processor read messages 40 and 41."""
    skip = (403, 404, 405)
    in_order = _faults(_stream(skip))
    silences = [parse(e) for e in in_order if "type=silence" in e]
    node_ts = format_ts(from_epoch_ns(_reading(406).ts_ns))
    assert [(fields["field"], fields["seq"], fields["node_ts"], ts) for _, _, fields, ts in silences] == [
        (name, 406, node_ts, reception_stamp(_received(409), 406, place))
        for place, name in enumerate(("pm25", "pm10"))]
    # Read live, message 41 came before 40 (its ingest's journal read first, the other's
    # record not yet committed): the gap 399 -> 410 held, filled but for 403-405 by the late
    # message. A replay reads them by their stamps: the same points.
    live = _stream(skip)
    data = [(rec.partition, rec.offset) for rec in live]
    live.insert(data.index(("i0", 41)), live.pop(data.index(("i0", 42))))  # readings 410-419
    assert [rec.offset for rec in live if rec.partition == "i0"][39:42] == [40, 42, 41]
    assert _faults(live) == in_order


def test_a_gap_released_by_a_heartbeat_or_after_a_snapshot_is_the_same_point() -> None:
    """Readings 400-409 never sent: the gap is held from the reading after it (410), and let
    go by the next heartbeat or reading received 10 s later, whichever comes first, or by
    a processor resumed from a snapshot taken while it was held: one point, stamped at
    410's reception."""
    records = [rec for rec in _stream() if rec.offset != 41]
    held_at = next(i for i, rec in enumerate(records) if rec.offset == 42)
    whole = _faults(records)
    state = NodeState(HOUR_NS)
    before = _faults(records[:held_at + 1], state)
    assert not [e for e in before if "type=silence" in e]
    resumed = pickle.loads(pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))
    assert before + _faults(records[held_at + 1:], resumed) == whole
    silences = [parse(e) for e in whole if "type=silence" in e]
    assert [(fields["seq"], ts) for _, _, fields, ts in silences] == [
        (410, reception_stamp(_received(419), 410, place)) for place in (0, 1)]


def test_events_within_reach_keep_the_readings_stamp() -> None:
    """A node whose clock is right: its events are where its readings are, as before (no
    `node_ts`); the same out-of-range reading an hour behind is stamped at its reception."""
    [right] = [parse(e) for e in _faults(_stream(bad=250, behind_ns=0))]
    [late] = [parse(e) for e in _faults(_stream(bad=250))]
    assert right[:2] == late[:2]
    assert right[1]["type"] == "out_of_range"
    assert "node_ts" not in right[2]
    assert right[3] == T0_NS + 250 * STEP_NS
    assert late[2]["node_ts"] == format_ts(from_epoch_ns(_reading(250).ts_ns))
    assert late[3] == reception_stamp(_received(259), 250, 0)
    assert {k: v for k, v in late[2].items() if k != "node_ts"} == right[2]


def test_a_gap_held_by_the_version_before_is_raised_at_the_gaps_reception() -> None:
    """A snapshot taken by the version before, holding the gap of the live order above with
    the late readings kept without their reception: loaded into this code, its run is
    raised as that version raised it, at the reception the gap was held with (message 41's)."""
    live = _stream((403, 404, 405))
    data = [(rec.partition, rec.offset) for rec in live]
    live.insert(data.index(("i0", 41)), live.pop(data.index(("i0", 42))))
    late = [rec.offset for rec in live].index(41) + 1
    state = NodeState(HOUR_NS)
    _faults(live[:late], state)
    for name in ("pm25", "pm10"):
        watch = state.watch[SENSOR].fields[name]
        assert watch is not None
        [gap] = watch.faults._gaps_held or []
        assert 406 in gap[5]
        for seq, kept in gap[5].items():
            gap[5][seq] = kept[:2]  # type: ignore[assignment]  # as that version kept them
    resumed = pickle.loads(pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))
    silences = [parse(e) for e in _faults(live[late:], resumed) if "type=silence" in e]
    assert [(fields["seq"], ts) for _, _, fields, ts in silences] == [
        (406, reception_stamp(_received(419), 406, place)) for place in (0, 1)]
