"""Closed windows written once to the frozen store (cloud/frozen_store.py), the snapshots
holding their row ids: a run resumed from any earlier snapshot, after its windows were
thawed, changed and frozen again and with what was not flushed lost (a crash), writes the
points an uninterrupted rollup writes, from either process's file; rows let go are deleted
only once the node has moved on long enough, and one missing all the same turns its window
into rebuilds, never a wrong point; old snapshots (frozen bytes inline) load; a flush
survives a SIGKILL and what was not flushed is gone."""

from __future__ import annotations

import logging
import pickle
import signal
import sqlite3
import subprocess
import sys
import tempfile
from array import array
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.frozen_store import LOST_ROW, PART_SHIFT, FrozenStore, file_name, note_lost
from cloud.logic.node import FROZEN_GC_SNAPSHOTS, NodeState
from cloud.logic.rollup import HOUR_NS, MINUTE_NS, SensorRollup
from tests.cloud.logic.rollup_feed import NeverFrozen, feed, texts

T0 = 1_795_000_000_000_000_000
S = 10**9
NEVER = 10**18  # a GC delay no test reaches


def _snapshot(r: SensorRollup, store: FrozenStore, gone: array[int]) -> bytes:
    """As NodeLogic.snapshot does for a node (no row let go is deleted here)."""
    store.retire(gone)
    del gone[:]
    store.flush()
    return pickle.dumps(r, protocol=pickle.HIGHEST_PROTOCOL)


def _resumed(snapshot: bytes, store: FrozenStore, gone: array[int]) -> SensorRollup:
    r: SensorRollup = pickle.loads(snapshot)
    r.use_store(store, gone)
    return r


# (minutes the stream moves on if <= 0, else how many behind the newest a late reading is;
# mostly moving on by a minute or two, late readings mostly within the horizon, which thaw
# frozen windows), a value, a number
_STEP = st.tuples(st.one_of(st.integers(-2, 0), st.integers(-2, 0), st.integers(1, 40),
                            st.integers(-200, 150)),
                  st.sampled_from([0.0, -0.0, 1, 2.5, 1e-7, 7.25, 1e16]), st.integers(0, 3))


@settings(max_examples=30, deadline=None)
@given(st.lists(_STEP, min_size=60, max_size=150), st.sampled_from([MINUTE_NS, HOUR_NS]),
       st.sampled_from([30 * MINUTE_NS, 2 * HOUR_NS]), st.integers(3, 15), st.integers(0, 149),
       st.lists(st.integers(0, 10**6), min_size=1, max_size=4))
def test_a_resume_from_any_earlier_snapshot_writes_the_uninterrupted_points(
        steps: list[tuple[int, float, int]], width: int, horizon: int, every: int,
        horizon_at: int, picks: list[int]) -> None:
    """Readings moving on with late ones up to 200 minutes behind (thawing frozen windows,
    which freeze again into new rows), a snapshot every few readings, a new horizon; the run
    then crashes (its rows not flushed are lost). Snapshots picked at random, each resumed
    by a process of either id (the pick's parity) and run to the end again (taking its own
    snapshots, and crashing at the end), write for each reading the point a never-frozen
    rollup writes, and end with the same windows."""
    live = NeverFrozen(width, horizon)
    new_horizon = horizon // 2 if horizon > HOUR_NS else 3 * horizon

    def run(r: SensorRollup, store: FrozenStore, gone: array[int], first: int,
            snapshots: list[tuple[int, bytes]] | None) -> list[tuple[str | None, int]]:
        out = []
        newest = T0 + sum(-back * MINUTE_NS + 7 * S for back, _, _ in steps[:first] if back <= 0)
        for i, (back, v, seq) in enumerate(steps[first:], first):
            if i % every == 0 and i > first:
                snapshot = _snapshot(r, store, gone)
                if snapshots is not None:
                    snapshots.append((i, snapshot))
            if i == horizon_at:
                r.set_horizon(new_horizon)
            if back <= 0:
                newest += -back * MINUTE_NS + 7 * S
                ts = newest
            else:
                ts = newest - back * MINUTE_NS
            out.append((feed(r, ts, {"v": v, "w": float(i)}, seq), r.too_late))
        return out

    expected = run(live, FrozenStore(Path("/nonexistent"), 0, NEVER, writes=False), array("q"), 0, None)
    with tempfile.TemporaryDirectory() as d:
        directory = Path(d)
        store, gone = FrozenStore(directory, 0, NEVER), array("q")
        frozen = SensorRollup(width, horizon)
        frozen.use_store(store, gone)
        snapshots: list[tuple[int, bytes]] = []
        assert run(frozen, store, gone, 0, snapshots) == expected
        assert texts(frozen) == texts(live)
        store.close()  # a crash: what was not flushed is lost
        for pick in picks:
            i, snapshot = snapshots[pick % len(snapshots)]
            store, gone = FrozenStore(directory, pick % 2, NEVER), array("q")
            resumed = _resumed(snapshot, store, gone)
            assert run(resumed, store, gone, i, None) == expected[i:]
            assert texts(resumed) == texts(live)
            store.close()


def _in_order(r: SensorRollup, minutes: int, start: int = 0) -> None:
    for i in range(start * 4, (start + minutes) * 4):  # a reading each 15 s
        feed(r, T0 + i * 15 * S, {"pm25": 3.0 + i % 5, "pm10": 9.5}, i)


def _rows(directory: Path, part: int = 0) -> set[int]:
    with sqlite3.connect(directory / file_name(part)) as conn:
        return {row[0] for row in conn.execute("SELECT id FROM frozen")}


def _referenced(state: NodeState) -> set[int]:
    return {ref for rs in (state.minute, state.hour) for r in rs.values()
            for ref in r.frozen.values() if type(ref) is int}


def _let_go(state: NodeState) -> set[int]:
    out: set[int] = set()
    for _, _, refs in state.frozen_gone:
        ids: array[int] = array("q")
        ids.frombytes(refs)
        out.update(ids)
    return out


def test_rows_let_go_are_deleted_after_the_delay_and_the_node_s_later_snapshots(
        tmp_path: Path) -> None:
    now = [T0]
    delay = 300 * S
    store = FrozenStore(tmp_path, 0, delay, clock=lambda: now[0])
    state = NodeState(30 * MINUTE_NS)
    r = state.minute["pm-1"] = SensorRollup(MINUTE_NS, 30 * MINUTE_NS)
    state.use_frozen_store(store)
    _in_order(r, 40)
    state.frozen_snapshot()
    first = _referenced(state)
    assert len(first) >= 25
    assert all(type(v) is int for v in r.frozen.values())
    assert _rows(tmp_path) == first  # every window frozen so far written once
    snapshot = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
    assert all(pickle.dumps(v) not in snapshot for v in r.windows)  # ids, not bytes
    _in_order(r, 20, 40)  # 20 minutes on: the oldest windows pass the horizon
    state.frozen_snapshot()
    dropped = first - _referenced(state)
    assert dropped
    assert _let_go(state) == dropped
    for _ in range(FROZEN_GC_SNAPSHOTS + 1):  # snapshots enough, but within the delay
        now[0] += delay // 10
        state.frozen_snapshot()
        store.flush(force_deletes=True)
        assert _rows(tmp_path) == _referenced(state) | dropped
    now[0] += delay
    state.frozen_snapshot()
    assert not state.frozen_gone  # due: discarded, deleted with the next rows written
    assert _rows(tmp_path) == _referenced(state) | dropped
    store.flush(force_deletes=True)  # (or DELETE_BATCH waiting, or DELETE_EVERY_S passed)
    assert _rows(tmp_path) == _referenced(state)  # deleted, the windows held kept
    assert not state.frozen_gone
    resumed: NodeState = pickle.loads(pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))
    assert resumed.snapshots == state.snapshots
    assert resumed.frozen_gone == []


def test_rows_let_go_wait_for_the_node_s_later_snapshots_whatever_the_clock(tmp_path: Path) -> None:
    now = [T0]
    store = FrozenStore(tmp_path, 0, 0, clock=lambda: now[0])
    state = NodeState(30 * MINUTE_NS)
    r = state.minute["pm-1"] = SensorRollup(MINUTE_NS, 30 * MINUTE_NS)
    state.use_frozen_store(store)
    _in_order(r, 40)
    state.frozen_snapshot()
    start = next(iter(r.frozen))
    ref = r.frozen[start]
    assert isinstance(ref, int)
    late = start + 5 * S
    assert feed(r, late, {"pm25": 1.0}) is not None  # thawed: its row let go
    state.frozen_snapshot()
    for _ in range(FROZEN_GC_SNAPSHOTS):
        assert ref in _rows(tmp_path)
        state.frozen_snapshot()
        store.flush(force_deletes=True)
    assert ref not in _rows(tmp_path)


def test_a_window_thawed_before_its_row_was_written_leaves_no_row(tmp_path: Path) -> None:
    store, gone = FrozenStore(tmp_path, 0, NEVER), array("q")
    r = SensorRollup(MINUTE_NS, HOUR_NS)
    r.use_store(store, gone)
    _in_order(r, 10)
    start = next(iter(r.frozen))
    feed(r, start + S, {"pm25": 1.0})  # thawed before any flush
    _in_order(r, 5, 10)  # and frozen again, into a new row
    _snapshot(r, store, gone)
    assert _rows(tmp_path) == {v for v in r.frozen.values() if type(v) is int}


def test_a_missing_row_makes_its_window_rebuilt_never_a_partial_point(tmp_path: Path) -> None:
    store, gone = FrozenStore(tmp_path, 0, NEVER), array("q")
    r = SensorRollup(MINUTE_NS, HOUR_NS)
    r.use_store(store, gone)
    _in_order(r, 30)
    _snapshot(r, store, gone)
    start = list(r.frozen)[5]
    ref = r.frozen[start]
    with sqlite3.connect(tmp_path / file_name(0)) as conn:
        conn.execute("DELETE FROM frozen WHERE id = ?", (ref,))
    assert r.window_at(start) is None
    too_late = r.too_late
    assert feed(r, start + S, {"pm25": 1.0}) is None  # rebuilt from the raw points
    assert r.frozen[start] == LOST_ROW
    assert r.too_late == too_late + 1
    assert feed(r, start + 2 * S, {"pm25": 2.0}) is None  # still: no window of it alone
    assert list(r.frozen) == sorted(r.frozen)


def test_a_node_moved_to_another_process_reads_its_windows_from_the_first_s_file(
        tmp_path: Path) -> None:
    store0, gone = FrozenStore(tmp_path, 0, NEVER), array("q")
    r = SensorRollup(MINUTE_NS, HOUR_NS)
    r.use_store(store0, gone)
    live = NeverFrozen(MINUTE_NS, HOUR_NS)
    _in_order(r, 30)
    _in_order(live, 30)
    snapshot = _snapshot(r, store0, gone)
    store1, gone1 = FrozenStore(tmp_path, 1, NEVER), array("q")
    moved = _resumed(snapshot, store1, gone1)
    start = list(moved.frozen)[3]
    assert feed(moved, start + S, {"pm25": 1.0}) == feed(live, start + S, {"pm25": 1.0})
    _in_order(moved, 5, 30)
    _in_order(live, 5, 30)
    _snapshot(moved, store1, gone1)
    new = {v for v in moved.frozen.values() if type(v) is int and v >> PART_SHIFT == 1}
    assert new
    assert new == _rows(tmp_path, 1)
    assert texts(moved) == texts(live)


def test_a_snapshot_with_frozen_bytes_inline_loads_and_freezes_into_the_store(tmp_path: Path) -> None:
    """Windows frozen without a store (a run without recovery, or a snapshot from before
    the store) go into the store as soon as one is given: rows from then on, as if frozen
    with it (before, they stayed inline bytes in every snapshot until they aged out)."""
    old = SensorRollup(MINUTE_NS, HOUR_NS)
    live = NeverFrozen(MINUTE_NS, HOUR_NS)
    _in_order(old, 30)
    _in_order(live, 30)
    snapshot = pickle.dumps(old, protocol=pickle.HIGHEST_PROTOCOL)  # bytes inline
    inline = dict(old.frozen.items())
    assert inline
    assert all(type(v) is bytes for v in inline.values())
    store, gone = FrozenStore(tmp_path, 0, NEVER), array("q")
    r = _resumed(snapshot, store, gone)
    assert all(type(v) is int for v in r.frozen.values())
    assert {s: store.get(int(v)) for s, v in r.frozen.items()} == inline
    smaller = _snapshot(r, store, gone)
    assert len(smaller) < len(snapshot) / 2
    assert _rows(tmp_path) == {int(v) for v in r.frozen.values()}
    start = next(iter(r.frozen))
    row = r.frozen[start]
    assert feed(r, start + S, {"pm25": 1.0}) == feed(live, start + S, {"pm25": 1.0})
    assert list(gone) == [row]  # thawed: its row let go
    _in_order(r, 70, 30)  # on past the horizon: the first ones dropped, new ones in rows
    _in_order(live, 70, 30)
    _snapshot(r, store, gone)
    assert all(type(v) is int for v in r.frozen.values())
    assert texts(r) == texts(live)


_CRASHING = """
import os, sys
from pathlib import Path
from cloud.frozen_store import FrozenStore
store = FrozenStore(Path(sys.argv[1]), 0, 0)
kept = [store.put(bytes([i]) * 40) for i in range(50)]
store.flush()
lost = [store.put(b"lost") for i in range(50)]
print(kept[0], kept[-1], lost[0], flush=True)
sys.stdin.read()
"""


def test_flushed_rows_survive_a_sigkill_and_rows_not_flushed_are_gone(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", _CRASHING, str(tmp_path)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    first, last, lost = map(int, child.stdout.readline().split())
    child.send_signal(signal.SIGKILL)
    child.wait(30)
    child.stdout.close()
    assert child.stdin is not None
    child.stdin.close()
    store = FrozenStore(tmp_path, 0, 0)
    assert _rows(tmp_path) == set(range(first, last + 1))
    assert store.get(first) == bytes([0]) * 40
    assert store.get(lost) is None
    assert store.put(b"next") > last  # never an id a snapshot may hold
    store.close()


def test_rows_found_missing_are_logged_one_by_one_then_at_powers_of_two(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A recovery store copied without its frozen files: every node's detectors and every
    window a late reading reaches miss their rows. Five lines, then one at each power of two
    with the count, not a line each."""
    store = FrozenStore(tmp_path, 0, NEVER)
    with caplog.at_level(logging.WARNING, logger="urbanpulse.cloud.frozen_store"):
        for n in range(100):
            note_lost(store, f"window {n}", "rebuilt")
    lines = [r.getMessage() for r in caplog.records]
    assert [line.split(" not found")[0] for line in lines] == [
        "window 0", "window 1", "window 2", "window 3", "window 4", "window 7", "window 15",
        "window 31", "window 63"]
    assert lines[4].endswith("5 rows missing in this process so far, further ones logged at "
                             "each power of two")
    assert lines[-1].endswith("; 64 rows missing in this process so far")
    assert store.lost == 100
