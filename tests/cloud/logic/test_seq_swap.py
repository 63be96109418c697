"""Two data messages of one node swapped by the merge of two ingests' journals
(cloud.journal.MergedJournals, by the ingests' reception stamps: each ingest stamps on
receipt, with small skews) must raise no SILENCE: the message that comes first shows a
jump in the sequence numbers that the other one fills a moment later. A gap nothing fills
is still a silence, raised within the grace; the points are the same whatever the order."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime

from cloud.journal import JournalRecord
from cloud.logic.node import NodeState
from cloud.logic.records import decode_record
from cloud.logic.rollup import HOUR_NS
from urbanpulse.clock import from_epoch_ns, to_epoch_ns
from urbanpulse.wire import Reading, data_topic, encode_batch, encode_status, status_topic

SITE, NODE, SENSOR = "hn-hoankiem", "aq-01", "pm-1"
T0_NS = to_epoch_ns(datetime(2026, 5, 1, 8, 0, tzinfo=UTC))
STEP_S = 10  # a reading every 10 s
PER_MESSAGE = 10  # readings a message: one message every 100 s
SKEW_NS = 3_000_000  # the two ingests' stamps apart by 3 ms


def _reading(seq: int) -> Reading:
    return Reading(SENSOR, "air.pm", T0_NS + seq * STEP_S * 10**9, seq,
                   {"pm25": 12.0 + seq % 5, "pm10": 20.0 + seq % 7})


def _message(first: int, offset: int, received_ns: int | None = None) -> JournalRecord:
    """Readings `first` .. `first` + PER_MESSAGE - 1, sent when the last was taken and
    received 20 ms later (unless `received_ns`)."""
    readings = [_reading(s) for s in range(first, first + PER_MESSAGE)]
    if received_ns is None:
        received_ns = readings[-1].ts_ns + 20_000_000
    return JournalRecord("i0", offset, received_ns, data_topic(SITE, NODE),
                         encode_batch(SITE, NODE, readings))


def _heartbeat(at_ns: int, offset: int) -> JournalRecord:
    health = {"run_id": "0123456789abcdef", "uptime_s": (at_ns - T0_NS) / 1e9 + 100.0,
              "clock": {"jumps": 0, "synchronised": True}}
    return JournalRecord("i1", offset, at_ns + 5_000_000, status_topic(SITE, NODE),
                         encode_status("online", from_epoch_ns(at_ns), health))


def _events(state: NodeState, records: list[JournalRecord]) -> list[str]:
    out = []
    for rec in records:
        data, points = decode_record(rec, 4096)
        if data is not None:
            points.extend(state.process(data))
        out += [ln for _, ln in points if ln.startswith("events,")]
    return out


def _stream(messages: int, swap: int | None = None, drop: int | None = None) -> list[JournalRecord]:
    """`messages` data messages of PER_MESSAGE readings each, in the order the merge gives
    them: message `swap` received SKEW_NS after message `swap` + 1 (the ingest that took it
    stamped it a little late), message `drop` never sent; a heartbeat every 30 s."""
    records: list[JournalRecord] = []
    for m in range(messages):
        if m == drop:
            continue
        rec = _message(m * PER_MESSAGE, len(records) + 1)
        if swap is not None and m == swap:
            after = _reading((m + 2) * PER_MESSAGE - 1).ts_ns + 20_000_000
            rec = JournalRecord(rec.partition, rec.offset, after + SKEW_NS, rec.topic, rec.payload)
        records.append(rec)
    first_ns, last_ns = T0_NS, _reading(messages * PER_MESSAGE).ts_ns
    records += [_heartbeat(t, 10_000 + i) for i, t in enumerate(range(first_ns, last_ns, 30 * 10**9))]
    return sorted(records, key=lambda rec: rec.received_ns)


def test_two_messages_swapped_by_the_merge_raise_no_silence() -> None:
    records = _stream(60, swap=40)
    swapped = [rec.offset for rec in records if rec.topic.endswith("/data")]
    assert swapped[40:42] == [42, 41]  # the later message first, as the merge gives them
    events = _events(NodeState(HOUR_NS), records)
    assert not [e for e in events if "type=silence" in e], events


def test_the_outcome_does_not_depend_on_the_swap() -> None:
    in_order = _events(NodeState(HOUR_NS), _stream(60))
    swapped = _events(NodeState(HOUR_NS), _stream(60, swap=40))
    assert swapped == in_order


def test_a_gap_nothing_fills_is_still_a_silence_raised_within_the_grace() -> None:
    records = _stream(60, drop=41)
    state = NodeState(HOUR_NS)
    gap_at = next(i for i, rec in enumerate(records) if rec.offset == 42 and rec.topic.endswith("/data"))
    assert not [e for e in _events(state, records[:gap_at + 1]) if "type=silence" in e]  # held
    later = _events(state, records[gap_at + 1:])
    [pm25] = [e for e in later if "type=silence" in e and 'field="pm25"' in e]
    assert "10 readings missing (seq 409 -> 420)" in pm25
    assert f" {_reading(420).ts_ns}" in pm25  # stamped as if raised on its reading
    assert len([e for e in later if "type=silence" in e]) == 2  # pm25 and pm10, once each


def test_a_held_gap_lives_through_a_snapshot() -> None:
    records = _stream(60, swap=40)
    cut = next(i for i, rec in enumerate(records) if rec.offset == 42 and rec.topic.endswith("/data"))
    state = NodeState(HOUR_NS)
    assert not [e for e in _events(state, records[:cut + 1]) if "type=silence" in e]
    resumed: NodeState = pickle.loads(pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))
    assert not [e for e in _events(resumed, records[cut + 1:]) if "type=silence" in e]


def _swapped_pair(skip: tuple[int, ...] = (), ahead_from: int | None = None,
                  swap: bool = True) -> list[JournalRecord]:
    """As `_stream(60, swap=40)`: readings numbered in `skip` never taken (the sensor
    answered nothing), and the node's clock set forward by 600 s from reading `ahead_from`
    on (received at the true time)."""
    records: list[JournalRecord] = []
    for m in range(60):
        readings = [_reading(s) for s in range(m * PER_MESSAGE, (m + 1) * PER_MESSAGE)
                    if s not in skip]
        if ahead_from is not None:
            readings = [Reading(r.sensor, r.kind, r.ts_ns + 600 * 10**9 * (r.seq >= ahead_from),
                                r.seq, r.values) for r in readings]
        received = _reading((m + 1) * PER_MESSAGE - 1).ts_ns + 20_000_000
        if swap and m == 40:
            received = _reading(42 * PER_MESSAGE - 1).ts_ns + 20_000_000 + SKEW_NS
        records.append(JournalRecord("i0", m + 1, received, data_topic(SITE, NODE),
                                     encode_batch(SITE, NODE, readings)))
    records += [_heartbeat(t, 10_000 + i) for i, t in
                enumerate(range(T0_NS, _reading(60 * PER_MESSAGE).ts_ns, 30 * 10**9))]
    return sorted(records, key=lambda rec: rec.received_ns)


def _faults(records: list[JournalRecord]) -> list[str]:
    """The fault rules' event points (the late message's readings are not scored: the
    anomaly detector's own events differ, as docs/anomaly-detection.md says)."""
    return [e for e in _events(NodeState(HOUR_NS), records) if "type=anomaly" not in e]


def test_a_run_missing_within_the_late_message_is_the_silence_it_is_in_order() -> None:
    """Readings 403-405 never taken, and their message (400-409) swapped with the next one:
    the gap 399 -> 410 held is filled but for 403-405, which is the SILENCE the readings in
    order raise: on reading 406, from one interval after 402 (the same point), not on 410."""
    skip = (403, 404, 405)
    in_order = _faults(_swapped_pair(skip, swap=False))
    silences = [e for e in in_order if "type=silence" in e]
    assert len(silences) == 2, in_order
    assert all("seq=406i" in e for e in silences)
    assert all("3 readings missing (seq 402 -> 406)" in e and "delay_s=30.0" in e for e in silences)
    assert _faults(_swapped_pair(skip)) == in_order


def test_a_clock_set_forward_between_the_swapped_messages_is_still_a_clock_jump() -> None:
    """The node's clock set forward between readings 409 and 410, the message of 400-409
    swapped with the next one: 410 first shows a gap in the numbers (held), which 400-409
    then fill; 409 -> 410 is still the clock set forward that the readings in order raise."""
    in_order = _faults(_swapped_pair(ahead_from=410, swap=False))
    jumps = [e for e in in_order if "type=clock_jump" in e]
    # one event of the node for the jump (its two fields' folded: NodeClockJumps)
    assert len(jumps) == 1, in_order
    assert all("seq=410i" in e and "clock set forward" in e and "kind=node" in e for e in jumps)
    assert _faults(_swapped_pair(ahead_from=410)) == in_order
