"""A station's closed air hours and an intersection's closed hour windows written once to
the frozen store (cloud/frozen_store.py), the rollups holding the rows' ids: the same points
as rollups that hold every value, for live, late and resumed input, from either process's
file; rows of hours opened again or past the horizon let go; a row missing makes its hour's
late readings too late, and the node asks for that hour's rebuild from the raw points."""

from __future__ import annotations

import logging
import pickle
import sqlite3
from array import array
from pathlib import Path

import pytest

from cloud.frozen_store import FrozenStore, file_name
from cloud.logic.domain.air import AirRollup
from cloud.logic.domain.common import WIDTHS
from cloud.logic.domain.node import DomainNode
from cloud.logic.domain.traffic import TrafficRollup
from tests.cloud.logic.domain_helpers import HOUR, MIN, T0, S, rd
from tests.cloud.logic.test_air_incremental import _Reference
from tests.cloud.logic.test_domain_closed_windows import _air, _loop, _minutes
from tests.cloud.logic.test_traffic_incremental import _Reference as _TrafficReference

NEVER = 10**18


def _rows(directory: Path, part: int = 0) -> set[int]:
    with sqlite3.connect(directory / file_name(part)) as conn:
        return {row[0] for row in conn.execute("SELECT id FROM frozen")}


def _delete_row(directory: Path, ref: int) -> None:
    """A row gone from process 0's file (a copy of the recovery store without it, say)."""
    with sqlite3.connect(directory / file_name(0)) as conn:
        conn.execute("DELETE FROM frozen WHERE id = ?", (ref,))


def _refs(rollup: AirRollup) -> set[int]:
    return {held[0] for held in rollup.open.values()
            if isinstance(held, tuple) and type(held[0]) is int}


def test_closed_hours_are_rows_and_the_points_are_those_of_every_value_held(
        tmp_path: Path) -> None:
    store, gone = FrozenStore(tmp_path, 0, NEVER), array("q")
    new, ref = AirRollup(6 * HOUR), _Reference(6 * HOUR)
    new.use_store(store, gone)
    messages = [_air(m) for m in range(0, 14 * 60, 5)]
    for msg in messages[:8 * 12]:  # 8 hours
        assert new.process("hn", "st1", msg) == ref.process("hn", "st1", msg)
    store.flush()
    held = _refs(new)
    assert len(held) == len(new.open) - 1  # every closed hour a row (the newest is open)
    assert _rows(tmp_path) <= held | set(gone)
    snapshot = pickle.dumps(new, protocol=pickle.HIGHEST_PROTOCOL)
    assert len(snapshot) < 2_000  # ids and means, not the hours' values
    # A late reading into a closed hour: thawed from its row, which is let go.
    late_hour = T0 + 5 * HOUR
    closed = new.open[late_hour]
    assert isinstance(closed, tuple)
    target = closed[0]
    assert target in held
    within = [rd("pm-1", "air.pm", late_hour + 31 * MIN, pm25=80.0, pm10=90.0)]
    assert new.process("hn", "st1", within) == ref.process("hn", "st1", within)
    assert target in gone
    assert new.held_open() == ref.open
    for msg in messages[8 * 12:]:
        assert new.process("hn", "st1", msg) == ref.process("hn", "st1", msg)
    assert new.held_open() == ref.open
    assert new.closed == ref.closed
    # past the horizon: hours dropped, their rows let go
    assert held - _refs(new) <= set(gone)
    store.flush()
    # Resumed from the snapshot by another process (its own file), with what followed it
    # fed again: the same points as the rollup that held every value.
    again = _Reference(6 * HOUR)
    for msg in messages[:8 * 12]:
        again.process("hn", "st1", msg)
    other = FrozenStore(tmp_path, 1, NEVER)
    resumed: AirRollup = pickle.loads(snapshot)
    resumed.use_store(other, array("q"))
    for msg in [within, *messages[8 * 12:]]:
        assert resumed.process("hn", "st1", msg) == again.process("hn", "st1", msg)
    assert resumed.held_open() == again.open
    store.close()
    other.close()


def test_a_missing_row_makes_its_late_readings_a_replay_of_their_hour(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store, gone = FrozenStore(tmp_path, 0, NEVER), array("q")
    node = DomainNode(6 * HOUR)
    node.use_store(store, gone)
    for m in range(0, 8 * 60, 5):
        node.process("hn", "st1", _air(m))
    store.flush()
    node.take_late()
    hour = T0 + 4 * HOUR
    held = node.air.open[hour]
    assert isinstance(held, tuple)
    assert type(held[0]) is int
    _delete_row(tmp_path, held[0])
    store.close()
    store = FrozenStore(tmp_path, 0, NEVER)
    node.use_store(store, gone)
    too_late = node.air.too_late
    late = [rd("pm-1", "air.pm", hour + 10 * MIN, pm25=70.0, pm10=75.0)]
    with caplog.at_level(logging.WARNING, logger="urbanpulse.cloud.frozen_store"):
        points, _ = node.process("hn", "st1", late)
    assert "not found in the frozen store" in caplog.text
    assert points == []  # nothing written from what the rollup no longer holds
    assert node.air.too_late == too_late + 1
    assert node.take_late() == [("air", hour)]
    assert node.air.lost_hours() == {hour}
    # and so for every later reading of that hour, with the hour's mean kept for the NowCast
    assert node.process("hn", "st1", [rd("co2-1", "air.co2", hour + 20 * MIN, co2=500.0)])[0] == []
    assert node.take_late() == [("air", hour)]
    assert node.air.mean(hour, "pm25") is not None
    store.close()


def test_without_a_store_the_hours_are_bytes_and_a_store_given_later_takes_them(
        tmp_path: Path) -> None:
    """No store (flow.recovery off): the hours are bytes in the state, as before; such a
    state given a store later (recovery switched on, or an older snapshot) writes them into
    it at once, rows from then on (before, they stayed bytes in every snapshot until they
    aged out), and freezes new hours into rows."""
    inline, ref = AirRollup(6 * HOUR), _Reference(6 * HOUR)
    for m in range(0, 6 * 60, 5):
        assert inline.process("hn", "st1", _air(m)) == ref.process("hn", "st1", _air(m))
    held = {h: v[0] for h, v in inline.open.items() if isinstance(v, tuple)}
    assert held
    assert all(type(v) is bytes for v in held.values())
    store = FrozenStore(tmp_path, 0, NEVER)
    snapshot = pickle.dumps(inline, protocol=pickle.HIGHEST_PROTOCOL)
    resumed: AirRollup = pickle.loads(snapshot)
    resumed.use_store(store, array("q"))
    now = {h: v[0] for h, v in resumed.open.items() if isinstance(v, tuple)}
    assert now.keys() == held.keys()
    assert all(type(v) is int for v in now.values())
    assert {h: store.get(int(v)) for h, v in now.items()} == held
    assert len(pickle.dumps(resumed, protocol=pickle.HIGHEST_PROTOCOL)) < len(snapshot) / 2
    late = [rd("pm-1", "air.pm", T0 + 2 * HOUR + 7 * MIN, pm25=44.0, pm10=50.0)]
    assert resumed.process("hn", "st1", late) == ref.process("hn", "st1", late)
    for m in range(6 * 60, 9 * 60, 5):
        assert resumed.process("hn", "st1", _air(m)) == ref.process("hn", "st1", _air(m))
    assert _refs(resumed)  # the hours closed since are rows
    assert resumed.held_open() == ref.open
    store.close()


_, _HOUR = WIDTHS


def _hour_refs(rollup: TrafficRollup) -> set[int]:
    return {ref for ref in rollup.windows[_HOUR].values() if type(ref) is int}


def test_closed_traffic_hours_are_rows_and_the_points_are_those_of_every_sample_held(
        tmp_path: Path) -> None:
    store, gone = FrozenStore(tmp_path, 0, NEVER), array("q")
    new, ref = TrafficRollup(6 * HOUR), _TrafficReference(6 * HOUR)
    new.use_store(store, gone)
    messages = _minutes(1, 3 * 60 + 1)
    late = messages.pop(30)  # the minute 00:29-00:30, held back
    for msg in messages:
        assert new.process("hn", "x1", msg) == ref.process("hn", "x1", msg)
    store.flush()
    assert [type(w) for _, w in sorted(new.windows[_HOUR].items())] == [int, int, dict]
    held = _hour_refs(new)
    assert _rows(tmp_path) == held
    snapshot = pickle.dumps(new, protocol=pickle.HIGHEST_PROTOCOL)
    assert new.held_windows() == ref.windows
    # late by 2.5 hours: its hour opened again from its row (let go), the same points
    assert new.process("hn", "x1", late) == ref.process("hn", "x1", late)
    assert held - _hour_refs(new) == set(gone)
    on = _minutes(181, 182)[0]
    assert new.process("hn", "x1", on) == ref.process("hn", "x1", on)
    assert type(new.windows[_HOUR][T0]) is int  # closed again, into a new row
    assert new.held_windows() == ref.windows
    # Resumed from the snapshot by another process, what followed fed again.
    again = _TrafficReference(6 * HOUR)
    for msg in messages:
        again.process("hn", "x1", msg)
    other = FrozenStore(tmp_path, 1, NEVER)
    resumed: TrafficRollup = pickle.loads(snapshot)
    resumed.use_store(other, array("q"))
    tail = [late, on, [_loop("loop-1", T0 + 40 * MIN + 7 * S, 3)], *_minutes(182, 8 * 60)]
    for msg in tail:
        assert resumed.process("hn", "x1", msg) == again.process("hn", "x1", msg)
    assert resumed.held_windows() == again.windows
    store.close()
    other.close()


def test_traffic_hours_closed_without_a_store_go_into_one_given_later(tmp_path: Path) -> None:
    inline, ref = TrafficRollup(6 * HOUR), _TrafficReference(6 * HOUR)
    messages = _minutes(1, 3 * 60 + 1)
    for msg in messages:
        assert inline.process("hn", "x1", msg) == ref.process("hn", "x1", msg)
    held = {s: w for s, w in inline.windows[_HOUR].items() if type(w) is bytes}
    assert len(held) == 2
    store = FrozenStore(tmp_path, 0, NEVER)
    resumed: TrafficRollup = pickle.loads(pickle.dumps(inline, protocol=pickle.HIGHEST_PROTOCOL))
    resumed.use_store(store, array("q"))
    rows = {s: resumed.windows[_HOUR][s] for s in held}
    assert all(type(v) is int for v in rows.values())
    assert {s: store.get(int(v)) for s, v in rows.items()} == held
    late = [_loop("loop-1", T0 + 40 * MIN + 7 * S, 3)]
    for msg in [late, *_minutes(181, 5 * 60)]:
        assert resumed.process("hn", "x1", msg) == ref.process("hn", "x1", msg)
    assert resumed.held_windows() == ref.windows
    store.close()


def test_a_missing_traffic_row_makes_its_late_readings_a_replay_of_their_hour(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store, gone = FrozenStore(tmp_path, 0, NEVER), array("q")
    node = DomainNode(6 * HOUR)
    node.use_store(store, gone)
    for msg in _minutes(1, 3 * 60 + 1):
        node.process("hn", "x1", msg)
    store.flush()
    node.take_late()
    ref = node.traffic.windows[_HOUR][T0 + HOUR]
    assert type(ref) is int
    _delete_row(tmp_path, ref)
    too_late = node.traffic.too_late
    late = [_loop("loop-2", T0 + HOUR + 20 * MIN, 4)]
    with caplog.at_level(logging.WARNING, logger="urbanpulse.cloud.frozen_store"):
        points, _ = node.process("hn", "x1", late)
    assert "not found in the frozen store" in caplog.text
    assert points == []
    assert node.traffic.too_late == too_late + 1
    assert node.take_late() == [("traffic", T0 + HOUR)]
    assert node.traffic.lost_hours() == {T0 + HOUR}
    store.close()
