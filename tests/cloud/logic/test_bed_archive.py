"""A ward's bed readings of closed hours written once to the frozen store as rows
(cloud/logic/domain/bed_archive.py), its snapshots holding each bed's readings since its last
one before the first hour not archived: a ward resumed from any of its snapshots, in a
process of either id, with what was not flushed lost, writes the points and site updates an
uninterrupted one writes and holds the same beds; a late reading into an archived hour makes
the next snapshot hold the beds whole and its row written again; rows no snapshot needs are
let go; a missing row makes the readings before the archive too late, replayed from the raw
points."""

from __future__ import annotations

import logging
import pickle
import sqlite3
from array import array
from functools import cache
from pathlib import Path

import pytest

from bench.pipeline.node_state_size import node_stream, records
from bench.pipeline.workload import numbering_of
from cloud.flow import NodeLogic, NodeOut
from cloud.frozen_store import FrozenStore, file_name
from cloud.journal import JournalRecord
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


@cache
def _records(late: bool = False) -> tuple[JournalRecord, ...]:
    """The ward's 4 hours as its journal holds them; with `late`, one bed's readings of its
    first hour held back and received together 2.6 hours in (hours already archived)."""
    readings = node_stream(KEY, HOURS)
    if not late:
        return tuple(records(KEY, readings, HOURS))
    start = readings[0].ts_ns
    held = [r for r in readings if r.sensor == LATE_BED and r.ts_ns < start + HOUR_NS]
    assert len(held) > 3
    kept = [r for r in readings if not (r.sensor == LATE_BED and r.ts_ns < start + HOUR_NS)]
    timed = [(rec.received_ns, rec.topic, rec.payload) for rec in records(KEY, kept, HOURS)]
    site, node = KEY.split("/")
    timed.append((start + LATE_AT_NS + 1, data_topic(site, node),
                  encode_batch(site, node, held, numbering=numbering_of(site, node))))
    timed.sort(key=lambda t: t[0])
    return tuple(JournalRecord("p0", i, *t) for i, t in enumerate(timed))


def _run(logic: NodeLogic, first: int, snapshots: list[tuple[int, bytes]] | None = None,
         late: bool = False) -> list[list[NodeOut]]:
    """The node step from record `first` to the end, snapshotted every SNAPSHOT_RECORDS."""
    out = []
    for i, rec in enumerate(_records(late)[first:], first):
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
def _uninterrupted(late: bool = False) -> tuple[list[list[NodeOut]], dict[str, list[tuple[int, ...]]]]:
    logic = _logic(None)
    return _run(logic, 0, late=late), _ward(logic).beds


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
    assert ward._beds_to is not None
    assert len(ward._bed_rows) >= 3
    assert set(ward._bed_rows.values()) <= _rows(tmp_path) | set(store._pending)
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
    late_index = next(i for i, rec in enumerate(_records(late=True))
                      if rec.received_ns > _records(late=True)[0].received_ns + LATE_AT_NS) - 1
    out = []
    rows_before: dict[int, int] = {}
    for i, rec in enumerate(_records(late=True)):
        if i % SNAPSHOT_RECORDS == 0 and i > 0:
            snapshots.append((i, logic.snapshot()))
        if i == late_index:
            rows_before = dict(_ward(logic)._bed_rows)
        out.append(logic.on_batch([rec])[0])
        if i == late_index:
            ward = _ward(logic)
            assert ward._beds_dirty, "the late readings' hour is archived: out of date"
            dirty = set(ward._beds_dirty)
            # a snapshot now holds the beds whole, the dirty hour's row still referenced
            whole = logic.snapshot()
            assert _held_beds(whole) == sum(len(b.stamps) for b in ward.bed_readings.values())
            snapshots.append((i + 1, whole))
    assert out == expected
    ward = _ward(logic)
    assert ward.beds == beds
    for hour in dirty:  # written again at the record after that snapshot, the old row let go
        assert ward._bed_rows[hour] != rows_before[hour]
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
        made |= set(_ward(logic)._bed_rows.values())
    ward = _ward(logic)
    held = set(ward._bed_rows.values())
    assert made - held, "rows of hours past the horizon were let go"
    let_go = set(state._gone) | {ref for _, _, refs in state.frozen_gone
                                 for ref in _ids(refs)} | _dropped(store, made)
    assert made - held <= let_go
    floor_hour = ward.floor_ns() - ward.floor_ns() % HOUR_NS
    assert min(ward._bed_rows) >= floor_hour - HOUR_NS  # (a bed's state before the floor)


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
    to = ward._beds_to
    assert to is not None
    assert ward._bed_rows
    with sqlite3.connect(tmp_path / file_name(0)) as conn:
        conn.execute("DELETE FROM frozen WHERE id = ?", (min(ward._bed_rows.values()),))
    store = _store(tmp_path, part=1)
    with caplog.at_level(logging.WARNING, logger="urbanpulse.cloud.frozen_store"):
        resumed = _resumed(snapshot, store)
    assert "bed readings" in caplog.text
    assert "too late" in caplog.text
    restored = _ward(resumed)
    assert restored.floor_ns() >= to
    assert not restored._bed_rows
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
