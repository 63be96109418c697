"""A node's detectors kept in the frozen store as checkpoints and logs of the values they
took (cloud/logic/detector_book.py): the snapshots hold the rows' ids, not the detectors; a
node resumed from any of its snapshots, in a process of either id, with what was not flushed
lost, writes the points and alerts an uninterrupted node step writes and ends with the same
detectors, bit for bit; a missing row costs the detectors what they learnt, nothing else;
rows a checkpoint supersedes are deleted as the frozen windows' are; each node's checkpoints
fall at epochs of its own."""

from __future__ import annotations

import itertools
import logging
import pickle
import sqlite3
from functools import cache
from pathlib import Path

import pytest

from bench.pipeline.node_state_size import node_stream, records
from cloud.flow import NodeLogic, NodeOut
from cloud.frozen_store import FrozenStore, FrozenStoreError, file_name
from cloud.journal import JournalRecord
from cloud.logic.detector_book import detectors_of
from cloud.logic.node import FROZEN_GC_SNAPSHOTS, NodeState

KEY = "nga-tu-so/cabinet"  # loop detectors: several scored fields, 10 anomalies in 3 hours
HOURS = 3.0
HORIZON_NS = 6 * 3600 * 10**9
MAX_DEAD_LETTER = 1 << 16
NEVER = 10**18  # a GC delay no test reaches
EVERY = 4  # a checkpoint at every 4th snapshot of the node
SNAPSHOT_RECORDS = 40  # a snapshot of the node every this many records (messages, heartbeats)


LATE_SENSOR = "lang-in"  # (`_records(late=True)`: its first reading 50 minutes in)


@cache
def _records(late: bool = False) -> tuple[JournalRecord, ...]:
    readings = node_stream(KEY, HOURS)
    if late:
        start = readings[0].ts_ns + 50 * 60 * 10**9
        readings = [r for r in readings if r.sensor != LATE_SENSOR or r.ts_ns >= start]
    return tuple(records(KEY, readings, HOURS))


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


def _crashed_run(directory: Path, expected: list[list[NodeOut]] | None = None,
                 late: bool = False) -> list[tuple[int, bytes]]:
    """The node's snapshots through the whole run (its outputs those `expected`, if given),
    then a crash: what was not flushed is lost."""
    store = _store(directory)
    snapshots: list[tuple[int, bytes]] = []
    out = _run(_logic(store), 0, snapshots, late=late)
    if expected is not None:
        assert out == expected
    store.close()
    return snapshots


def _store(directory: Path, part: int = 0, every: int = EVERY, delay: int = NEVER) -> FrozenStore:
    return FrozenStore(directory, part, delay, detector_every=every)


def _logic(store: FrozenStore | None) -> NodeLogic:
    state = NodeState(HORIZON_NS)
    state.use_frozen_store(store)
    return NodeLogic(state, MAX_DEAD_LETTER)


def _resumed(snapshot: bytes, store: FrozenStore) -> NodeLogic:
    state: NodeState = pickle.loads(snapshot)
    state.use_frozen_store(store)
    return NodeLogic(state, MAX_DEAD_LETTER)


def _detectors(logic: NodeLogic) -> dict[tuple[str, str], bytes]:
    """Each detector pickled (one pickle of them all also says which share objects, the
    settings of one profile, as a fresh node's do and a resumed node's need not)."""
    return {place: pickle.dumps(d, protocol=pickle.HIGHEST_PROTOCOL)
            for place, d in detectors_of(logic.state.watch).items()}


@cache
def _uninterrupted(late: bool = False) -> tuple[list[list[NodeOut]], dict[tuple[str, str], bytes]]:
    logic = _logic(None)
    return _run(logic, 0, late=late), _detectors(logic)


def _rows(directory: Path, part: int = 0) -> set[int]:
    with sqlite3.connect(directory / file_name(part)) as conn:
        return {row[0] for row in conn.execute("SELECT id FROM frozen")}


def test_a_node_resumed_from_any_snapshot_writes_what_an_uninterrupted_one_writes(
        tmp_path: Path) -> None:
    expected, detectors = _uninterrupted()
    anomalies = sum(1 for outs in expected for points, _, _, _ in outs for _, text in points
                    if text.startswith("events,") and "type=anomaly" in text)
    assert anomalies, "the hour raises anomalies: the detectors' scores are compared"
    store = _store(tmp_path)
    logic = _logic(store)
    snapshots: list[tuple[int, bytes]] = []
    assert _run(logic, 0, snapshots) == expected
    assert _detectors(logic) == detectors
    # The snapshots hold the book, not the detectors: the checkpoints and the logs were
    # written, and a snapshot is a fraction of the same state pickled whole.
    books = [pickle.loads(s).detector_book for _, s in snapshots]
    assert books[0] is None  # the first snapshot pickles them, and a checkpoint is due
    assert all(book is not None for book in books[1:])
    lengths = {len(book.logs) for book in books if book}
    assert max(lengths) <= EVERY
    assert len(lengths) > 2
    inline: list[tuple[int, bytes]] = []
    _run(_logic(_store(tmp_path / "inline", every=0)), 0, inline)
    assert pickle.loads(inline[-1][1]).detector_book is None
    assert len(snapshots[-1][1]) < 0.6 * len(inline[-1][1])
    store.close()  # a crash: what was not flushed is lost
    for n, (i, snapshot) in enumerate(snapshots):
        store = _store(tmp_path, part=n % 2)
        resumed = _resumed(snapshot, store)
        assert _run(resumed, i) == expected[i:], f"resumed at record {i}"
        assert _detectors(resumed) == detectors, f"resumed at record {i}"
        store.close()


def test_a_sensor_s_first_detectors_after_a_checkpoint_make_another(tmp_path: Path) -> None:
    """A sensor heard first 50 minutes in: its detectors are in a checkpoint written
    at that snapshot, out of turn, and every snapshot resumes to the uninterrupted run."""
    expected, detectors = _uninterrupted(late=True)
    assert any(place[0] == LATE_SENSOR for place in detectors)
    snapshots = _crashed_run(tmp_path, expected, late=True)
    for n, (i, snapshot) in enumerate(snapshots):
        store = _store(tmp_path, part=n % 2)
        resumed = _resumed(snapshot, store)
        assert _run(resumed, i, late=True) == expected[i:], f"resumed at record {i}"
        assert _detectors(resumed) == detectors, f"resumed at record {i}"
        store.close()
    # At the first snapshot with the sensor, its detectors are pickled whole, beside the
    # book of the others; the next snapshot's book has a checkpoint of its own, out of turn.
    states: list[NodeState] = [pickle.loads(s) for _, s in snapshots]
    first_with = next(n for n, state in enumerate(states) if LATE_SENSOR in state.watch)
    book, before = states[first_with].detector_book, states[first_with - 1].detector_book
    assert book is not None
    assert before is not None
    assert book.checkpoint == before.checkpoint
    late = [d for (sensor, _), d in detectors_of(states[first_with].watch).items()
            if sensor == LATE_SENSOR]
    assert late
    assert all(d.count > 0 for d in late)
    others = detectors_of(states[first_with].watch)
    assert all(sensor == LATE_SENSOR for sensor, _ in others)  # the rest are in the book
    after = states[first_with + 1].detector_book
    assert after is not None
    assert after.checkpoint != book.checkpoint
    assert len(after.logs) == 1
    assert len(book.logs) < EVERY  # not due by the cycle (at EVERY logs)


def test_a_resume_goes_on_with_its_book_and_a_second_resume_of_it_makes_the_same(
        tmp_path: Path) -> None:
    """A resumed node's next snapshots extend the book it resumed (no checkpoint at once:
    after a restart every node would write one at the same epoch end); the process then
    crashes, those snapshots never committed, and the snapshot resumed again by the other
    process still makes the detectors of the uninterrupted run."""
    expected, detectors = _uninterrupted()
    snapshots = _crashed_run(tmp_path)
    i, snapshot = next((i, s) for i, s in snapshots
                       if (b := pickle.loads(s).detector_book) is not None and len(b.logs) == 1)
    store = _store(tmp_path)
    first = _resumed(snapshot, store)
    book = first.state.detector_book
    assert book is not None
    checkpoint, logs = book.checkpoint, list(book.logs)  # (the book goes on in place)
    after: list[tuple[int, bytes]] = []
    _run(first, i, after)  # its snapshots write rows, never committed
    went_on = pickle.loads(after[0][1]).detector_book
    assert went_on is not None
    assert went_on.checkpoint == checkpoint
    assert went_on.logs[:-1] == logs
    assert len(went_on.logs) == 2
    store.close()
    store = _store(tmp_path, part=1)
    again = _resumed(snapshot, store)
    assert _run(again, i) == expected[i:]
    assert _detectors(again) == detectors


def test_an_epoch_s_checkpoints_are_written_in_one_transaction(tmp_path: Path) -> None:
    """Two nodes of one process, each snapshotted at each epoch's end: the checkpoints due
    are written at the nodes' next records, and go to disk with the epoch's first snapshot,
    so an epoch costs the store at most one transaction, not one per node."""
    store = _store(tmp_path, every=2)
    keys = ("nga-tu-so/cabinet", "kim-lien/cabinet")
    streams = [list(records(key, node_stream(key, 1.0), 1.0)) for key in keys]
    nodes = [_logic(store) for _ in keys]
    for epoch in range(12):
        for logic, recs in zip(nodes, streams, strict=True):
            for rec in recs[epoch * 10:(epoch + 1) * 10]:
                logic.on_batch([rec])
        before = store.commits
        for logic in nodes:
            logic.snapshot()
        assert store.commits - before <= 1, epoch
    assert all(logic.state.detector_book is not None for logic in nodes)
    assert store.rows_written > 2 * 5  # a checkpoint every other snapshot, and windows


def test_the_nodes_checkpoints_fall_at_epochs_of_their_own(tmp_path: Path) -> None:
    """Each node's regular checkpoints come EVERY snapshots apart, at a place in that cycle
    that depends on the node: a process's nodes, all touched at every epoch, do not write
    theirs at the same epoch end."""
    places = set()
    for key in ("nga-tu-so/cabinet", "kim-lien/cabinet", "cau-giay/cabinet", "trang-thi/cabinet"):
        store = _store(tmp_path / key.replace("/", "-"), every=EVERY)
        store.directory.mkdir()
        logic = _logic(store)
        at = []
        last = None
        for n, rec in enumerate(records(key, node_stream(key, 1.0), 1.0)):
            if n and n % 10 == 0:
                logic.snapshot()
                book = logic.state.detector_book
                if book is not None and last is not None and book.checkpoint != last:
                    at.append(logic.state.snapshots)
                last = None if book is None else book.checkpoint
            logic.on_batch([rec])
        store.close()
        assert len(at) >= 3, key
        assert {b - a for a, b in itertools.pairwise(at)} == {EVERY}, (key, at)
        places.add(at[0] % EVERY)
    assert len(places) > 1


@pytest.mark.parametrize(("harm", "said"), [
    ("DELETE FROM frozen WHERE id = ?", "not found in the frozen store"),
    ("UPDATE frozen SET state = x'80059500' WHERE id = ?", "could not be made from their rows"),
])
def test_a_missing_or_damaged_row_restarts_the_detectors_and_nothing_else(
        harm: str, said: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    expected, _ = _uninterrupted()
    snapshots = _crashed_run(tmp_path)
    i, snapshot = snapshots[len(snapshots) // 2]
    book = pickle.loads(snapshot).detector_book
    assert book is not None
    with sqlite3.connect(tmp_path / file_name(0)) as conn:
        conn.execute(harm, (book.checkpoint,))
    store = _store(tmp_path)
    with caplog.at_level(logging.WARNING, logger="urbanpulse.cloud.node"):
        resumed = _resumed(snapshot, store)
    assert said in caplog.text
    assert "they start again fresh" in caplog.text
    assert resumed.state.detector_book is None
    fresh = detectors_of(resumed.state.watch)
    assert fresh
    assert all(d.count == 0 for d in fresh.values())

    def no_events(outs: list[list[NodeOut]]) -> list[list[str]]:
        return [[text for points, _, _, _ in out for _, text in points
                 if not text.startswith("events,")] for out in outs]

    assert no_events(_run(resumed, i)) == no_events(expected[i:])


def _window_rows(state: NodeState) -> set[int]:
    """The rows of the node's closed windows: its sensors', its traffic and air hours'."""
    refs = {ref for rs in (state.minute, state.hour) for r in rs.values()
            for ref in r.frozen.values() if type(ref) is int}
    refs |= {ref for windows in state.domain.traffic.windows.values()
             for ref in windows.values() if type(ref) is int}
    return refs | {held[0] for held in state.domain.air.open.values()
                   if isinstance(held, tuple) and type(held[0]) is int}


def test_rows_a_checkpoint_supersedes_are_deleted_after_the_node_s_later_snapshots(
        tmp_path: Path) -> None:
    store = _store(tmp_path, every=2, delay=0)
    logic = _logic(store)
    recs = _records()
    referenced: list[set[int]] = []
    for n in range(12):
        for rec in recs[n * SNAPSHOT_RECORDS:(n + 1) * SNAPSHOT_RECORDS]:
            logic.on_batch([rec])
        logic.snapshot()
        store.flush(force_deletes=True)
        book = logic.state.detector_book
        if n == 0:
            assert book is None  # the first snapshot pickles them; a checkpoint is due
            continue
        assert book is not None
        referenced.append({book.checkpoint})
        held = _rows(tmp_path) - _window_rows(logic.state)
        # the book's rows, and those of the books of the last FROZEN_GC_SNAPSHOTS snapshots
        assert referenced[-1] <= held
        assert held <= set().union(*referenced[-FROZEN_GC_SNAPSHOTS - 2:])
    assert len(set().union(*referenced)) > len(held)  # rows were deleted


def test_without_the_book_the_detectors_stay_in_the_snapshots(tmp_path: Path) -> None:
    """detector_checkpoint_every = 0; and a snapshot with a book resumed by such a process
    has its detectors, which then go back into its snapshots, the rows let go."""
    expected, detectors = _uninterrupted()
    snapshots = _crashed_run(tmp_path)
    i, snapshot = snapshots[len(snapshots) // 3]
    store = _store(tmp_path, part=1, every=0)
    resumed = _resumed(snapshot, store)
    after: list[tuple[int, bytes]] = []
    assert _run(resumed, i, after) == expected[i:]
    assert _detectors(resumed) == detectors
    last: NodeState = pickle.loads(after[-1][1])
    assert last.detector_book is None
    assert sum(d.count for d in detectors_of(last.watch).values()) > 0  # pickled inline


def test_an_unreadable_store_stops_the_resume_instead_of_forgetting_the_detectors(
        tmp_path: Path) -> None:
    """A store that cannot be read (here its file overwritten) is no missing row: the
    resume raises, as a frozen window's read does, and a restart reads again; the node's
    detectors are not started fresh nor their checkpoint let go."""
    snapshots = _crashed_run(tmp_path)
    (tmp_path / file_name(0)).write_bytes(b"not a database" * 100)
    with pytest.raises(FrozenStoreError, match="not a database"):
        _resumed(snapshots[-1][1], _store(tmp_path))


def test_a_node_whose_detectors_take_nothing_writes_no_checkpoint_on_its_turn(
        tmp_path: Path) -> None:
    """Its heartbeats only, for more than a cycle of snapshots: its checkpoint is still the
    detectors as they are, so none is written again."""
    store = _store(tmp_path)
    logic = _logic(store)
    recs = _records()
    for rec in recs[:200]:
        logic.on_batch([rec])
    heartbeats = [rec for rec in recs[200:] if "/status" in rec.topic][: 4 * EVERY]
    assert len(heartbeats) == 4 * EVERY
    # A cycle and more: the values logged before go into a checkpoint on the node's turn.
    for rec in heartbeats[: EVERY + 2]:
        logic.snapshot()
        logic.on_batch([rec])
    book = logic.state.detector_book
    assert book is not None
    assert book.logs == []
    written = store.rows_written
    for rec in heartbeats[EVERY + 2:]:  # two cycles more: nothing to write
        logic.snapshot()
        logic.on_batch([rec])
    assert logic.state.detector_book is book
    assert store.rows_written == written
