"""The node-state size benchmark on the real node step and simulated city: a short stream of
two nodes, so the assertions are on what must hold whatever the numbers: every reading
reaches the state, the parts account for the whole state, minute windows grow with the
hours, a ward has no detectors and an air station has, and bad input is refused."""

from __future__ import annotations

import gc
import pickle

import pytest

from bench.pipeline.errors import PipelineBenchError
from bench.pipeline.node_state_size import PARTS, breakdown, deep_size, main, measure
from cloud.logic.node import NodeState
from cloud.logic.rollup import HOUR_NS


def test_deep_size_counts_what_an_object_reaches_once() -> None:
    inner = [1.5, 2.5]
    assert deep_size([inner, inner]) < deep_size([inner, list(inner)])
    assert deep_size({"a": inner}) > deep_size(inner)


def test_an_air_station_holds_detectors_and_growing_windows() -> None:
    rows, state = measure("lang-ha/aq-1", 0.5, horizon_s=3600)
    assert [r[0] for r in rows] == [0.5]
    _, readings, sensors, parts = rows[0]
    assert readings > 0
    assert sensors == 1
    assert sum(len(s.ranges) for s in state.seqs.values()) >= 1
    assert parts["detectors"][0] > 0
    assert set(parts) == {*PARTS, "total"}
    # pickled apart, the parts hold what the whole state pickles (a few bytes of framing each)
    whole = parts["total"][0]
    assert whole == len(pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))
    assert 0.9 * whole < sum(parts[p][0] for p in PARTS) < 1.2 * whole
    later = breakdown(state)
    assert later["total"] == parts["total"]  # measuring changes nothing
    assert isinstance(state, NodeState)
    assert state.horizon_ns == HOUR_NS


def test_a_ward_has_no_detectors_and_its_windows_grow_by_the_hour() -> None:
    rows, _ = measure("saint-paul/ward-peds", 2.0)
    assert [r[0] for r in rows] == [1.0, 2.0]
    first, second = rows[0][3], rows[1][3]
    assert first["detectors"][0] < 100 < first["fault_monitors"][0]
    assert second["windows_minute"][0] > 1.5 * first["windows_minute"][0]
    assert rows[1][1] > rows[0][1] > 0


def test_bad_input_is_refused() -> None:
    with pytest.raises(PipelineBenchError, match="no node"):
        measure("nowhere/none", 0.1)
    with pytest.raises(PipelineBenchError, match="--hours"):
        main(["--hours", "0"])


def test_the_sum_of_several_nodes_is_printed(capsys: pytest.CaptureFixture[str]) -> None:
    main(["--hours", "0.2", "--nodes", "lang-ha/aq-1,bach-mai/er-gate", "--detail"])
    # The bench measures without the collector, and gives it back: this worker's later
    # tests (test_gc_policy's) failed without it.
    assert gc.isenabled()
    out = capsys.readouterr().out
    assert "lang-ha/aq-1:" in out
    assert "bach-mai/er-gate:" in out
    assert "detector._novelty" in out
    total = [ln for ln in out.splitlines() if ln.strip().startswith("total")]
    assert len(total) == 1
    assert float(total[0].split()[1]) > 0
