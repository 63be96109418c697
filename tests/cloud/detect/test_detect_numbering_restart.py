"""A sensor's numbering starting again (an agent reinstalled, the node's state lost) says
nothing of the air it measures: its anomaly detector keeps what it learnt (ranges,
contexts, daily profile), where it used to start afresh with the fault rules (which judge
gaps and order by the numbers): no score for its next 150 readings, none of the seasonal
part for 50 hours."""

from __future__ import annotations

import math

from cloud.logic.node import NodeState
from cloud.logic.records import NodeData
from cloud.logic.rollup import HOUR_NS
from urbanpulse.wire import Reading

S = 10**9
T0 = 1_795_000_000_000_000_000 - 1_795_000_000_000_000_000 % HOUR_NS
STEP = 60 * S  # a CO2 module read every minute
DAY = 86_400 * S


def _co2(seq: int, ts: int, value: float | None = None) -> Reading:
    if value is None:
        hour = (ts - T0) / S / 3600
        value = float(round(600 + 200 * math.sin(2 * math.pi * hour / 24) + (seq * 7919) % 11))
    return Reading("co2-1", "air.co2", ts, seq, {"co2": value})


def _anomalies(state: NodeState, r: Reading, numbering: str | None = None) -> list[str]:
    points = state.process(NodeData("hn/n1", "hn", "n1", r.ts_ns + S // 50, [r], None, numbering))
    return [text for _, text in points if text.startswith("events,") and "type=anomaly" in text]


def _watched(days: float) -> tuple[NodeState, int, int]:
    state = NodeState(6 * HOUR_NS, detect=True)
    n = int(days * DAY / STEP)
    for i in range(n):
        _anomalies(state, _co2(i, T0 + i * STEP))
    return state, n, T0 + n * STEP


def _spike_after(state: NodeState, seq: int, ts: int, numbering: str | None = None) -> list[str]:
    """A few ordinary readings numbered from `seq`, then CO2 at 5,000 ppm."""
    for i in range(5):
        assert _anomalies(state, _co2(seq + i, ts + i * STEP), numbering) == []
    return _anomalies(state, _co2(seq + 5, ts + 5 * STEP, 5000.0), numbering)


def test_a_spike_is_scored_as_before_without_a_restart() -> None:
    state, n, end = _watched(3)
    assert len(_spike_after(state, n, end)) == 1


def test_the_detector_outlives_a_numbering_started_again() -> None:
    """Numbers from 0 again, stamped after everything taken (`NodeState._restarted`): the
    same spike is raised. Before, the fresh detector scored nothing for a day."""
    state, _, end = _watched(3)
    learnt = state.watch["co2-1"].fields["co2"]
    assert learnt is not None
    assert learnt.detector is not None
    count = learnt.detector.count
    raised = _spike_after(state, 0, end)
    watch = state.watch["co2-1"].fields["co2"]
    assert watch is not None
    assert watch.detector is not None
    assert watch.detector.count == count + 6
    assert watch.faults is not learnt.faults  # fresh rules, as before
    assert len(raised) == 1, raised


def test_the_detector_outlives_a_numbering_named_anew() -> None:
    state, n, end = _watched(3)
    for i in range(3):
        _anomalies(state, _co2(n + i, end + i * STEP), "0123456789abcdef")
    assert len(_spike_after(state, 0, end + 3 * STEP, "fedcba9876543210")) == 1


def test_a_value_stamped_before_the_detector_s_last_is_not_taken() -> None:
    """A numbering named anew may be stamped before the last reading scored (the rules
    start afresh and judge it); the detector takes its series in time order only: such a
    value is neither scored nor learnt."""
    state, _, end = _watched(3)
    learnt = state.watch["co2-1"].fields["co2"]
    assert learnt is not None
    assert learnt.detector is not None
    count = learnt.detector.count
    early = end - 30 * STEP
    assert _anomalies(state, _co2(0, early, 5000.0), "fedcba9876543210") == []
    watch = state.watch["co2-1"].fields["co2"]
    assert watch is not None
    assert watch.detector is not None
    assert watch.detector.count == count
