"""A rollup keeps its pickled state until it changes (`SensorRollup.pickled`): whatever
changed it since (readings in order and late ones thawing frozen windows, eviction,
freezing, dropping past the horizon, a new horizon, a store given, rows found missing), the
bytes it gives are those of its state pickled afresh; and a node's snapshot copies the
bytes of the rollups of sensors that sent nothing since the last one."""

from __future__ import annotations

import pickle
import tempfile
from array import array
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from bench.pipeline.node_state_size import node_stream, records
from cloud.flow import NodeLogic
from cloud.frozen_store import FrozenStore
from cloud.logic.node import NodeState
from cloud.logic.rollup import HOUR_NS, MINUTE_NS, SensorRollup, rollups_of

T0 = 1_795_000_000_000_000_000
S = 10**9
NEVER = 10**18


def _fresh(r: SensorRollup) -> bytes:
    return pickle.dumps(r.__getstate__(), protocol=pickle.HIGHEST_PROTOCOL)


# An operation: a reading (minutes back, or forward when <= 0; a value), an evict (as each
# message of the node ends with), a new horizon, the store given, a resume whose store lacks
# the rows, a read of a window; and whether to compare the bytes after it.
_OP = st.tuples(st.sampled_from(["read", "read", "read", "evict", "evict", "horizon", "store",
                                 "resume", "look"]),
                st.integers(-30, 200), st.sampled_from([0.0, 1, 2.5, 7.25]), st.booleans())


@settings(max_examples=150, deadline=None)
@given(st.lists(_OP, min_size=1, max_size=200), st.sampled_from([MINUTE_NS, HOUR_NS]),
       st.sampled_from([30 * MINUTE_NS, 3 * HOUR_NS]))
def test_the_bytes_kept_are_those_of_the_state_whatever_changed_it(
        ops: list[tuple[str, int, float, bool]], width: int, horizon: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        stores: list[FrozenStore] = []
        gone: array[int] = array("q")
        r = SensorRollup(width, horizon)
        newest = T0
        for i, (op, back, value, check) in enumerate(ops):
            if op == "read":
                if back <= 0:
                    newest += -back * MINUTE_NS + 7 * S
                    ts = newest
                else:
                    ts = newest - back * MINUTE_NS
                window = r.window(ts)
                if window is not None:  # as NodeState.process: hold a new window's first
                    if window.count == 0:
                        window.hold(ts, {"v": value, "w": float(i)}, i)
                    else:
                        window.add(ts, {"v": value, "w": float(i)}, i)
            elif op == "evict":
                r.evict()
            elif op == "horizon":
                r.set_horizon(max(MINUTE_NS, r.horizon_ns // 2 if back % 2 else r.horizon_ns * 2))
            elif op == "store":  # (the windows frozen inline go into it)
                stores.append(FrozenStore(Path(d) / str(len(stores)), 0, NEVER))
                r.use_store(stores[-1], gone)
            elif op == "resume":  # into a store without the rows: a thaw finds them lost
                r = rollups_of({"s": r.pickled()})["s"]
                stores.append(FrozenStore(Path(d) / str(len(stores)), 0, NEVER))
                r.use_store(stores[-1], gone)
            else:
                r.window_at(newest - back * MINUTE_NS)  # a read: changes nothing
            if check:
                assert r.pickled() == _fresh(r), op
        assert r.pickled() == _fresh(r)
        for store in stores:
            store.close()


def test_the_windows_frozen_without_a_store_moved_into_one_change_the_bytes() -> None:
    """A run without recovery freezes windows as bytes; given a store, they become its rows."""
    r = SensorRollup(MINUTE_NS, HOUR_NS)
    for i in range(60):
        ts = T0 + i * 20 * S
        window = r.window(ts)
        assert window is not None
        (window.hold if window.count == 0 else window.add)(ts, {"v": 1.0}, i)
        r.evict()
    before = r.pickled()
    assert r.frozen
    with tempfile.TemporaryDirectory() as d:
        store = FrozenStore(Path(d), 0, NEVER)
        r.use_store(store, array("q"))
        assert r.pickled() != before
        assert r.pickled() == _fresh(r)
        store.close()


def test_a_snapshot_copies_the_bytes_of_the_sensors_that_sent_nothing_since_the_last() -> None:
    """A ward's beds report every few minutes: in a 30-s epoch most send nothing, and the
    node's snapshot takes their rollups' bytes as kept (the same object), the others' anew;
    the snapshot resumes into the same rollups either way."""
    key = "bach-mai/ward-cardio"
    recs = list(records(key, node_stream(key, 1.0), 1.0))
    with tempfile.TemporaryDirectory() as d:
        store = FrozenStore(Path(d), 0, NEVER, detector_every=20)
        state = NodeState(6 * HOUR_NS)
        state.use_frozen_store(store)
        logic = NodeLogic(state, 1 << 16)
        held: dict[str, bytes] = {}
        kept = made = 0
        end = None
        for rec in recs:
            if end is not None and rec.received_ns >= end:
                end = None
                logic.snapshot()
                states = state.__getstate__()["minute"]
                assert isinstance(states, dict)
                for sensor, b in states.items():
                    assert b == _fresh(state.minute[sensor])
                    if held.get(sensor) is b:
                        kept += 1
                    else:
                        made += 1
                held = dict(states)
            if end is None:
                end = rec.received_ns - rec.received_ns % (30 * S) + 30 * S
            logic.on_batch([rec])
        store.close()
    assert kept > 3 * made  # (about 9 in 10 of a ward's sensors are quiet in an epoch)
