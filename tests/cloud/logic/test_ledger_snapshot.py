"""A node's snapshot holds its ledger hours as their values' tuples (since session 27: as
slotted objects each cost pickle a reduce and a dict of its slots' names); a snapshot of
the layout before (the objects) resumes the same ledger, which goes on the same."""

from __future__ import annotations

import pickle

from bench.pipeline.node_state_size import node_stream, records
from cloud.logic.node import LedgerHour, NodeState
from cloud.logic.records import NodeData, decode_record
from cloud.logic.rollup import HOUR_NS


def _data(key: str, hours: float) -> list[NodeData]:
    out = []
    for rec in records(key, node_stream(key, hours), hours):
        data, _ = decode_record(rec, 1 << 16)
        if data is not None:
            out.append(data)
    return out


def test_the_ledger_pickles_as_tuples_and_the_objects_before_load_the_same() -> None:
    stream = _data("bach-mai/ward-cardio", 3.0)
    half = len(stream) // 2
    state = NodeState(6 * HOUR_NS)
    for data in stream[:half]:
        state.process(data)
    held = state.__getstate__()["ledger"]
    assert isinstance(held, dict)
    assert len(held) >= 2
    assert all(type(hour) is tuple for hour in held.values())
    before = {**state.__getstate__(), "ledger": dict(state.ledger)}  # the objects, as pickled before
    resumed = []
    for snapshot in (pickle.dumps(state.__getstate__(), protocol=pickle.HIGHEST_PROTOCOL),
                     pickle.dumps(before, protocol=pickle.HIGHEST_PROTOCOL)):
        loaded = NodeState.__new__(NodeState)
        loaded.__setstate__(pickle.loads(snapshot))
        assert all(type(hour) is LedgerHour for hour in loaded.ledger.values())
        assert loaded.ledger == state.ledger
        resumed.append(loaded)
    expected = [state.process(data) for data in stream[half:]]
    for loaded in resumed:
        assert [loaded.process(data) for data in stream[half:]] == expected
        assert loaded.ledger == state.ledger
