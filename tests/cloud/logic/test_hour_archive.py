"""A ward's bed readings, a node's door readings and its kiosks' tickets of closed hours
written once to the frozen store as rows (cloud/logic/domain/hour_archive.py), its snapshots
holding each bed's readings since its last one before the first hour not archived, and the
door hours and tickets from there: a node resumed from any of its snapshots, in a process of
either id, with what was not flushed lost, writes the points and site updates an
uninterrupted one writes and holds the same beds, doors and tickets; a late reading into an
archived hour makes the next snapshot hold them whole and the hour's row written again; rows
no snapshot needs are let go; a missing row makes the readings before the archive too late,
replayed from the raw points."""

from __future__ import annotations

import logging
import pickle
import sqlite3
from array import array
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from bench.pipeline.node_state_size import node_stream, records
from bench.pipeline.workload import numbering_of
from cloud.flow import NodeLogic, NodeOut
from cloud.frozen_store import FrozenStore, file_name
from cloud.journal import JournalRecord
from cloud.logic.domain import hour_archive
from cloud.logic.domain.common import HOUR_NS
from cloud.logic.domain.hospital import HospitalNodeRollup
from cloud.logic.node import NodeState
from urbanpulse.wire import Reading, data_topic, encode_batch

KEY = "bach-mai/ward-cardio"  # 30 beds
HOURS = 4.0
HORIZON_NS = 6 * 3600 * 10**9
MAX_DEAD_LETTER = 1 << 16
NEVER = 10**18  # a GC delay no test reaches
SNAPSHOT_RECORDS = 60  # a snapshot of the node every this many records (messages, heartbeats)
LATE_BED = "bed-07"
LATE_AT_NS = int(2.6 * HOUR_NS)  # when the held-back readings come, after the stream's start


DOORS = ("bach-mai/er-gate", "bach-mai/opd-hall")  # door counters (and kiosks, air)
LATE_DOOR = {"bach-mai/er-gate": "door-er", "bach-mai/opd-hall": "door-main",
             "bach-mai/laboratory": "kiosk-sampling"}
LAB = "bach-mai/laboratory"  # kiosks: the tickets called by hour (`called_in`)


@cache
def _records(late: bool = False, key: str = KEY) -> tuple[JournalRecord, ...]:
    """The node's 4 hours as its journal holds them; with `late`, every other reading of one
    bed (door) in its first hour held back and received together 2.6 hours in (hours already
    archived)."""
    readings = node_stream(key, HOURS)
    if not late:
        return tuple(records(key, readings, HOURS))
    start = readings[0].ts_ns
    sensor = LATE_BED if key == KEY else LATE_DOOR[key]
    first_hour = [r for r in readings if r.sensor == sensor and r.ts_ns < start + HOUR_NS]
    held = first_hour[1::2]  # every other one: its hour has readings, archived before these
    assert len(held) > 3
    kept = [r for r in readings if r not in held]
    timed = [(rec.received_ns, rec.topic, rec.payload) for rec in records(key, kept, HOURS)]
    site, node = key.split("/")
    timed.append((start + LATE_AT_NS + 1, data_topic(site, node),
                  encode_batch(site, node, held, numbering=numbering_of(site, node))))
    timed.sort(key=lambda t: t[0])
    return tuple(JournalRecord("p0", i, *t) for i, t in enumerate(timed))


def _late_index(key: str = KEY) -> int:
    """The index of the record bringing the held-back readings (`_records(late=True)`)."""
    at = node_stream(key, HOURS)[0].ts_ns + LATE_AT_NS + 1
    return next(i for i, rec in enumerate(_records(True, key)) if rec.received_ns == at)


def _run(logic: NodeLogic, first: int, snapshots: list[tuple[int, bytes]] | None = None,
         late: bool = False, key: str = KEY) -> list[list[NodeOut]]:
    """The node step from record `first` to the end, snapshotted every SNAPSHOT_RECORDS."""
    out = []
    for i, rec in enumerate(_records(late, key)[first:], first):
        if i % SNAPSHOT_RECORDS == 0 and i > first:
            snapshot = logic.snapshot()
            if snapshots is not None:
                snapshots.append((i, snapshot))
        out.append(logic.on_batch([rec])[0])
    return out


def _store(directory: Path, part: int = 0, writes: bool = True) -> FrozenStore:
    return FrozenStore(directory, part, NEVER, writes=writes)


def _logic(store: FrozenStore | None) -> NodeLogic:
    state = NodeState(HORIZON_NS)
    state.use_frozen_store(store)
    return NodeLogic(state, MAX_DEAD_LETTER)


def _resumed(snapshot: bytes, store: FrozenStore) -> NodeLogic:
    state: NodeState = pickle.loads(snapshot)
    state.use_frozen_store(store)
    return NodeLogic(state, MAX_DEAD_LETTER)


def _ward(logic: NodeLogic) -> HospitalNodeRollup:
    return logic.state.domain.hospital


@cache
def _uninterrupted(late: bool = False, key: str = KEY
                   ) -> tuple[list[list[NodeOut]], dict[str, list[tuple[int, ...]]]]:
    logic = _logic(None)
    return _run(logic, 0, late=late, key=key), _ward(logic).beds


def _doors(logic: NodeLogic) -> tuple[dict[int, Any], ...]:
    """The node's door hours, its kiosks' calls by hour and their issues and calls."""
    node = _ward(logic)
    return (dict(sorted(node.doors.items())), dict(sorted(node.called_in.items())),
            node.issues, node.calls)


def _rows(directory: Path, part: int = 0) -> set[int]:
    with sqlite3.connect(directory / file_name(part)) as conn:
        return {row[0] for row in conn.execute("SELECT id FROM frozen")}


def _held_beds(snapshot: bytes) -> int:
    """Bed readings a snapshot holds itself (the rest are in rows)."""
    ward: HospitalNodeRollup = pickle.loads(snapshot).domain.hospital
    return sum(len(bed.stamps) for bed in ward.bed_readings.values())


def test_a_ward_resumed_from_any_snapshot_writes_what_an_uninterrupted_one_writes(
        tmp_path: Path) -> None:
    expected, beds = _uninterrupted()
    store = _store(tmp_path)
    logic = _logic(store)
    snapshots: list[tuple[int, bytes]] = []
    assert _run(logic, 0, snapshots) == expected
    ward = _ward(logic)
    assert ward.beds == beds
    # Three closed hours archived, their readings out of the later snapshots.
    assert ward._bed_hours.to is not None
    assert len(ward._bed_hours.rows) >= 3
    assert set(ward._bed_hours.rows.values()) <= _rows(tmp_path) | set(store._pending)
    inline: list[tuple[int, bytes]] = []  # a store that does not write: the beds whole
    _run(_logic(_store(tmp_path / "inline", writes=False)), 0, inline)
    whole = _held_beds(inline[-1][1])
    assert whole > 0.95 * sum(len(b) for b in beds.values())
    assert _held_beds(snapshots[-1][1]) < 0.4 * whole
    assert len(snapshots[-1][1]) < 0.8 * len(inline[-1][1])
    store.close()  # a crash: what was not flushed is lost
    for n, (i, snapshot) in enumerate(snapshots):
        store = _store(tmp_path, part=n % 2)
        resumed = _resumed(snapshot, store)
        assert _run(resumed, i) == expected[i:], f"resumed at record {i}"
        assert _ward(resumed).beds == beds, f"resumed at record {i}"
        store.close()


def test_a_late_reading_into_an_archived_hour_writes_its_row_again(tmp_path: Path) -> None:
    expected, beds = _uninterrupted(late=True)
    store = _store(tmp_path)
    logic = _logic(store)
    snapshots: list[tuple[int, bytes]] = []
    late_index = _late_index()
    out = []
    rows_before: dict[int, int] = {}
    for i, rec in enumerate(_records(late=True)):
        if i % SNAPSHOT_RECORDS == 0 and i > 0:
            snapshots.append((i, logic.snapshot()))
        if i == late_index:
            rows_before = dict(_ward(logic)._bed_hours.rows)
        out.append(logic.on_batch([rec])[0])
        if i == late_index:
            ward = _ward(logic)
            assert ward._bed_hours.dirty, "the late readings' hour is archived: out of date"
            dirty = set(ward._bed_hours.dirty)
            # a snapshot now holds the beds whole, the dirty hour's row still referenced
            whole = logic.snapshot()
            assert _held_beds(whole) == sum(len(b.stamps) for b in ward.bed_readings.values())
            snapshots.append((i + 1, whole))
    assert out == expected
    ward = _ward(logic)
    assert ward.beds == beds
    for hour in dirty:  # written again at the record after that snapshot, the old row let go
        assert ward._bed_hours.rows[hour] != rows_before[hour]
    store.close()
    for n, (i, snapshot) in enumerate(snapshots):
        store = _store(tmp_path, part=n % 2)
        resumed = _resumed(snapshot, store)
        assert _run(resumed, i, late=True) == expected[i:], f"resumed at record {i}"
        assert _ward(resumed).beds == beds, f"resumed at record {i}"
        store.close()


def test_rows_of_hours_no_bed_needs_are_let_go(tmp_path: Path) -> None:
    store = _store(tmp_path)
    state = NodeState(HOUR_NS)  # a 1 h horizon: the 4 hours' first ones leave
    state.use_frozen_store(store)
    logic = NodeLogic(state, MAX_DEAD_LETTER)
    made: set[int] = set()
    for i, rec in enumerate(_records()):
        if i % SNAPSHOT_RECORDS == 0 and i > 0:
            logic.snapshot()
        logic.on_batch([rec])
        made |= set(_ward(logic)._bed_hours.rows.values())
    ward = _ward(logic)
    held = set(ward._bed_hours.rows.values())
    assert made - held, "rows of hours past the horizon were let go"
    let_go = set(state._gone) | {ref for _, _, refs in state.frozen_gone
                                 for ref in _ids(refs)} | _dropped(store, made)
    assert made - held <= let_go
    floor_hour = ward.floor_ns() - ward.floor_ns() % HOUR_NS
    assert min(ward._bed_hours.rows) >= floor_hour - HOUR_NS  # (a bed's state before the floor)


def _ids(refs: bytes) -> list[int]:
    ids: array[int] = array("q")
    ids.frombytes(refs)
    return list(ids)


def _dropped(store: FrozenStore, made: set[int]) -> set[int]:
    """Rows let go before they were written (dropped at the snapshot: `FrozenStore.retire`)."""
    store.flush()
    return {ref for ref in made if store.get(ref) is None}


def test_a_missing_row_makes_the_readings_before_the_archive_too_late(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = _store(tmp_path)
    logic = _logic(store)
    snapshots: list[tuple[int, bytes]] = []
    _run(logic, 0, snapshots)
    store.close()
    i, snapshot = snapshots[-1]
    ward: HospitalNodeRollup = pickle.loads(snapshot).domain.hospital
    to = ward._bed_hours.to
    assert to is not None
    assert ward._bed_hours.rows
    with sqlite3.connect(tmp_path / file_name(0)) as conn:
        conn.execute("DELETE FROM frozen WHERE id = ?", (min(ward._bed_hours.rows.values()),))
    store = _store(tmp_path, part=1)
    with caplog.at_level(logging.WARNING, logger="urbanpulse.cloud.frozen_store"):
        resumed = _resumed(snapshot, store)
    assert "bed readings" in caplog.text
    assert "too late" in caplog.text
    restored = _ward(resumed)
    assert restored.floor_ns() >= to
    assert not restored._bed_hours.rows
    # each bed keeps its state at the archive's end: the live windows are still right
    expected, beds = _uninterrupted()
    assert _run(resumed, i) == expected[i:]
    # a late reading before it: too late, and its hour asked for from the raw points
    site, node = KEY.split("/")
    bed = next(iter(beds))
    old = Reading(sensor=bed, kind="hospital.bed", ts_ns=to - HOUR_NS // 2, seq=10**6,
                  values={"occupied": 1, "fault": 0})
    late = JournalRecord("p0", 10**6, _records()[-1].received_ns + 1, data_topic(site, node),
                         encode_batch(site, node, [old], numbering=numbering_of(site, node)))
    before = resumed.state.domain.too_late
    resumed.on_batch([late])
    assert resumed.state.domain.too_late == before + 1
    store.close()


@pytest.mark.parametrize("key", [*DOORS, LAB])
@pytest.mark.parametrize("late", [False, True])
def test_a_node_s_door_and_call_hours_are_rows_and_it_resumes_from_any_snapshot(
        tmp_path: Path, key: str, late: bool) -> None:
    expected, _ = _uninterrupted(late, key)
    reference = _logic(None)
    _run(reference, 0, late=late, key=key)
    store = _store(tmp_path)
    logic = _logic(store)
    snapshots: list[tuple[int, bytes]] = []
    assert _run(logic, 0, snapshots, late=late, key=key) == expected
    node = _ward(logic)
    assert _doors(logic) == _doors(reference)
    name, archive = ("called_in", node._call_hours) if key == LAB else ("doors", node._door_hours)
    assert len(archive.rows) >= 2  # closed hours archived
    held: HospitalNodeRollup = pickle.loads(snapshots[-1][1]).domain.hospital
    assert (held._call_hours if key == LAB else held._door_hours).out
    # the snapshot holds the hours since only
    assert len(getattr(held, name)) < len(getattr(node, name))
    if key == LAB:  # and the tickets issued and called since
        assert len(node._ticket_hours.rows) >= 2
        assert held._ticket_hours.out
        assert _pairs(held) < 0.5 * _pairs(node)
    store.close()  # a crash: what was not flushed is lost
    for n, (i, snapshot) in enumerate(snapshots):
        store = _store(tmp_path, part=n % 2)
        resumed = _resumed(snapshot, store)
        assert _run(resumed, i, late=late, key=key) == expected[i:], f"resumed at record {i}"
        assert _doors(resumed) == _doors(reference), f"resumed at record {i}"
        store.close()


# what a snapshot holding a node's readings whole holds of them, by archive
_WHOLE = {"_door_hours": lambda node: set(node.doors), "_ticket_hours": lambda node: _pairs(node)}


@pytest.mark.parametrize(("key", "archive"), [(DOORS[0], "_door_hours"), (LAB, "_ticket_hours")])
def test_a_late_reading_makes_its_archived_hour_dirty(tmp_path: Path, key: str, archive: str
                                                      ) -> None:
    late_index = _late_index(key)
    logic = _logic(_store(tmp_path))
    for i, rec in enumerate(_records(True, key)):
        if i % SNAPSHOT_RECORDS == 0 and i > 0:
            logic.snapshot()
        if i == late_index:
            rows = dict(getattr(_ward(logic), archive).rows)
        logic.on_batch([rec])
        if i == late_index:
            dirty = set(getattr(_ward(logic), archive).dirty)
            assert dirty, "the late readings' hours were archived"
            assert dirty <= set(rows)
            whole: HospitalNodeRollup = pickle.loads(logic.snapshot()).domain.hospital
            assert not getattr(whole, archive).out
            assert _WHOLE[archive](whole) == _WHOLE[archive](_ward(logic))
    held = getattr(_ward(logic), archive)
    assert not held.dirty
    for hour in dirty:  # written again at its next message after that snapshot
        assert held.rows[hour] != rows[hour]
        assert rows[hour] in logic.state._gone or any(
            rows[hour] in _ids(refs) for _, _, refs in logic.state.frozen_gone)


def _resumed_without_a_row(tmp_path: Path, caplog: pytest.LogCaptureFixture, key: str,
                           archive: str, what: str) -> tuple[NodeLogic, int]:
    """The node resumed from its last snapshot with the first row of `archive` deleted:
    logged (`what`), its rows let go, its floor at the archive's end (returned)."""
    store = _store(tmp_path)
    snapshots: list[tuple[int, bytes]] = []
    _run(_logic(store), 0, snapshots, key=key)
    store.close()
    _, snapshot = snapshots[-1]
    rows: hour_archive.HourRows = getattr(pickle.loads(snapshot).domain.hospital, archive)
    to = rows.to
    assert to is not None
    with sqlite3.connect(tmp_path / file_name(0)) as conn:
        conn.execute("DELETE FROM frozen WHERE id = ?", (min(rows.rows.values()),))
    with caplog.at_level(logging.WARNING, logger="urbanpulse.cloud.frozen_store"):
        resumed = _resumed(snapshot, _store(tmp_path, part=1))
    assert what in caplog.text
    assert _ward(resumed).floor_ns() >= to
    assert not getattr(_ward(resumed), archive).rows
    return resumed, to


def test_a_missing_door_row_makes_the_hours_before_the_archive_too_late(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    key = DOORS[0]
    resumed, to = _resumed_without_a_row(tmp_path, caplog, key, "_door_hours", "door hours")
    restored = _ward(resumed)
    assert min(restored.doors) >= to
    site, name = key.split("/")
    old = Reading(sensor=LATE_DOOR[key], kind="hospital.door", ts_ns=to - HOUR_NS // 2, seq=10**6,
                  values={"count": 3.0, "interval_s": 60.0})
    late = JournalRecord("p0", 10**6, _records(False, key)[-1].received_ns + 1,
                         data_topic(site, name),
                         encode_batch(site, name, [old], numbering=numbering_of(site, name)))
    before = resumed.state.domain.too_late
    resumed.on_batch([late])
    assert resumed.state.domain.too_late == before + 1


def test_door_rows_of_hours_past_the_horizon_are_let_go(tmp_path: Path) -> None:
    store = _store(tmp_path)
    state = NodeState(HOUR_NS)  # a 1 h horizon: the 4 hours' first ones leave
    state.use_frozen_store(store)
    logic = NodeLogic(state, MAX_DEAD_LETTER)
    made: set[int] = set()
    for i, rec in enumerate(_records(False, DOORS[0])):
        if i % SNAPSHOT_RECORDS == 0 and i > 0:
            logic.snapshot()
        logic.on_batch([rec])
        node = _ward(logic)
        assert set(node._door_hours.rows) <= set(node.doors)  # a snapshot restores no hour let go
        made |= set(node._door_hours.rows.values())
    held = set(_ward(logic)._door_hours.rows.values())
    assert made - held, "rows of hours past the horizon were let go"
    let_go = set(state._gone) | {ref for _, _, refs in state.frozen_gone for ref in _ids(refs)}
    assert made - held <= let_go


def _pairs(node: HospitalNodeRollup) -> int:
    """The kiosks' issues and calls a node holds."""
    return sum(len(c.stamps) for held in (node.issued, node.called) for c in held.values())


def _short_queue(store: FrozenStore | None, horizon_ns: int, max_wait_ns: int) -> NodeLogic:
    """A laboratory with a short horizon and calls answering issues of a short while before:
    tickets leave the queue mid-hour, so a row holds some let go since (and with a horizon
    under an hour, some of the hour a snapshot holds)."""
    state = NodeState(horizon_ns)
    state.domain.hospital.max_wait_ns = max_wait_ns
    state.use_frozen_store(store)
    return NodeLogic(state, MAX_DEAD_LETTER)


def _since(tickets: dict[Any, list[int]], to: int) -> dict[Any, list[int]]:
    """The tickets' stamps from `to` on."""
    out = {t: [ts for ts in stamps if ts >= to] for t, stamps in tickets.items()}
    return {t: stamps for t, stamps in out.items() if stamps}


@pytest.mark.parametrize("queue", [(HOUR_NS, HOUR_NS // 2), (HOUR_NS // 2, 0)])
@pytest.mark.parametrize("late", [False, True])
def test_a_laboratory_resumed_holds_the_tickets_it_held(
        tmp_path: Path, late: bool, queue: tuple[int, int]) -> None:
    reference = _short_queue(None, *queue)
    expected = _run(reference, 0, late=late, key=LAB)
    store = _store(tmp_path)
    logic = _short_queue(store, *queue)
    taken: list[tuple[int, bytes, tuple[dict[Any, Any], ...]]] = []
    made: set[int] = set()
    for i, rec in enumerate(_records(late, LAB)):
        if i % SNAPSHOT_RECORDS == 0 and i > 0:
            node = _ward(logic)
            taken.append((i, logic.snapshot(), (node.issues, node.calls)))
            held: HospitalNodeRollup = pickle.loads(taken[-1][1]).domain.hospital
            if held._ticket_hours.out:  # the tickets since the archive's end, every kiosk
                to = held._ticket_hours.to
                assert to is not None
                assert (held.issues, held.calls) == (_since(node.issues, to),
                                                     _since(node.calls, to))
                assert list(held.issued) == list(node.issued)
        logic.on_batch([rec])
        made |= set(_ward(logic)._ticket_hours.rows.values())
    node = _ward(logic)
    assert (node.issues, node.calls) == (_ward(reference).issues, _ward(reference).calls)
    assert all(hour >= node._queue_floor() - HOUR_NS for hour in node._ticket_hours.rows)
    assert made - set(node._ticket_hours.rows.values()), "rows of tickets let go were let go"
    store.close()
    out = [pickle.loads(snapshot).domain.hospital._ticket_hours.out for _, snapshot, _ in taken]
    assert sum(out) >= 3, "snapshots held the tickets since the archive's end only"
    for n, (i, snapshot, tickets) in enumerate(taken):
        store = _store(tmp_path, part=n % 2)
        resumed = _resumed(snapshot, store)
        restored = _ward(resumed)
        assert (restored.issues, restored.calls) == tickets, f"resumed at record {i}"
        assert _run(resumed, i, late=late, key=LAB) == expected[i:], f"resumed at record {i}"
        store.close()


def test_a_late_issue_alone_makes_its_ticket_hour_dirty(tmp_path: Path) -> None:
    records_ = _records(False, LAB)
    store = _store(tmp_path)
    logic = _logic(store)
    _run(logic, 0, key=LAB)
    logic.snapshot()  # the rows due at the next message: to its newest hour
    node = _ward(logic)
    to = node.newest_ns - node.newest_ns % HOUR_NS
    site, name = LAB.split("/")
    issue = Reading(sensor=LATE_DOOR[LAB], kind="hospital.queue", ts_ns=to - HOUR_NS // 2,
                    seq=10**6, values={"ticket": 9999.0, "called": 0.0})
    logic.on_batch([JournalRecord("p0", 10**6, records_[-1].received_ns + 1,
                                  data_topic(site, name),
                                  encode_batch(site, name, [issue],
                                               numbering=numbering_of(site, name)))])
    assert node._ticket_hours.to == to
    assert node._ticket_hours.dirty == {to - HOUR_NS}
    snapshot = logic.snapshot()
    issues = node.issues
    assert (LATE_DOOR[LAB], 9999) in issues
    store.close()
    resumed = _ward(_resumed(snapshot, _store(tmp_path, part=1)))
    assert resumed.issues == issues


def test_a_missing_ticket_row_makes_the_readings_before_the_archive_too_late(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    resumed, to = _resumed_without_a_row(tmp_path, caplog, LAB, "_ticket_hours", "kiosk tickets")
    restored = _ward(resumed)
    stamps = [ts for held in (restored.issued, restored.called) for c in held.values()
              for ts in c.stamps]
    assert stamps
    assert min(stamps) >= to
    assert all(c.stamps for held in (restored.issued, restored.called) for c in held.values())
