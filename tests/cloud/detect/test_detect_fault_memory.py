"""A fault monitor holds about as much in memory as it pickles (slots, arrays, no containers
for rules its settings leave off, the largest of its last 240 gaps kept without them all):
before session 19 it held 5-10 times more (docs/anomaly-detection.md, "Memory");
`python -m bench.faults.state_size` measures it."""

from __future__ import annotations

import pickle
import sys

import pytest

from bench.faults import state_size
from bench.pipeline.node_state_size import deep_size, measure
from cloud.detect import FaultMonitor
from cloud.logic.node import NodeState


def test_a_ward_s_monitors_are_small_in_memory_and_pickled() -> None:
    _, state = measure("bach-mai/ward-cardio", 6.0)  # 30 beds, 6 h: 160 gaps each
    resumed: NodeState = pickle.loads(pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))
    for fed in (state, resumed):
        monitors = state_size.monitors(fed)
        assert len(monitors) == 30
        assert not any(hasattr(m, "__dict__") for m in monitors)
        pickled = len(pickle.dumps(monitors, protocol=pickle.HIGHEST_PROTOCOL))
        # The bytes a monitor keeps for the node's snapshots (`snapshot_parts`, since session
        # 27) apart: at most its pickled state, a bytes object's header more.
        kept = [m._cold for m in monitors if m._cold is not None]
        memory = deep_size(monitors) - sum(map(sys.getsizeof, kept))
        # 326 KB in memory, 36.6 KB pickled before session 19; 54.7 and 30.1 while they
        # kept their last 240 gaps, not only the 15 newest and the largest, and pickled a
        # dict each (names and values, not values)
        assert memory / len(monitors) < 1700, memory
        assert pickled / len(monitors) < 550, pickled
        assert all(len(b) < 550 for b in kept)
        fresh = FaultMonitor(monitors[0].kind, monitors[0].field)
        assert all(m.settings is fresh.settings and m.spec is fresh.spec for m in monitors)
        # the containers of rules a bed's settings leave off: none
        assert all(m._window is None and m._pair is None and m._glitches is None
                   for m in monitors)


def test_the_bench_prints_each_node_and_each_attribute(capsys: pytest.CaptureFixture[str]) -> None:
    assert state_size.main(["--hours", "0.5", "--nodes", "hoan-kiem-lake/aq-1"]) == 0
    out = capsys.readouterr().out
    assert "hoan-kiem-lake/aq-1      live" in out
    assert "hoan-kiem-lake/aq-1      resumed" in out
    assert "_last_gaps" in out
    assert "(instance)" in out
