"""A sensor whose numbering starts again gets fresh fault rules (they judge gaps and order by
the numbers), but what the old ones held is not lost: a sequence gap held in case its
readings were only late is raised (they are of the numbering before, which the rules no
longer take, so none can fill it), as the readings in order raise it; a forward clock jump
held until a heartbeat can tell it from a restart is carried over, and a later reading or
heartbeat decides it as before. Before, both were dropped with the old rules."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta

from cloud.detect.faults import Heartbeat
from cloud.logic.node import NodeState
from cloud.logic.records import NodeData
from cloud.logic.rollup import HOUR_NS
from urbanpulse.wire import Reading

S = 10**9
T0 = 1_795_000_000_000_000_000 - 1_795_000_000_000_000_000 % HOUR_NS
OLD, NEW = "0123456789abcdef", "fedcba9876543210"  # the numberings' names
LEARNT = 40  # readings every 10 s before the fault


def _pm(seq: int, ts: int) -> Reading:
    return Reading("pm-1", "air.pm", ts, seq, {"pm25": 12.0 + seq % 5, "pm10": 20.0 + seq % 7})


def _send(state: NodeState, r: Reading, numbering: str, received: int | None = None) -> list[str]:
    """`r` in a message of its own, received 20 ms after its stamp (unless `received`)."""
    got = r.ts_ns + S // 50 if received is None else received
    points = state.process(NodeData("hn/n1", "hn", "n1", got, [r], None, numbering))
    return [text for _, text in points if text.startswith("events,") and "type=anomaly" not in text]


def _beat(state: NodeState, ts: int, uptime: float, run: str = "r1") -> list[str]:
    at = datetime.fromtimestamp(ts / S, UTC)
    hb = Heartbeat(at, uptime, 0, None, run, at + timedelta(milliseconds=20), None, True)
    points = state.process(NodeData("hn/n1", "hn", "n1", ts + S // 50, [], hb))
    return [text for _, text in points if text.startswith("events,") and "kind=node" not in text]


def _learnt() -> NodeState:
    state = NodeState(6 * HOUR_NS)
    assert _beat(state, T0, 100.0) == []
    for i in range(LEARNT):
        assert _send(state, _pm(i, T0 + i * 10 * S), OLD) == []
    return state


def test_a_gap_held_when_the_numbering_restarts_is_raised_as_in_order() -> None:
    """Readings 40-49 never sent, 50 received: a silence held 10 s. The numbering starts
    again 2 s later (the node's state lost): the silence is raised then, the point the gap
    raises without the restart once its grace is over."""
    after = _pm(50, T0 + 50 * 10 * S)
    in_order = _learnt()
    assert _send(in_order, after, OLD) == []  # held
    expected = _send(in_order, _pm(51, after.ts_ns + 10 * S), OLD)
    assert len(expected) == 2  # pm25 and pm10
    assert all('detail="10 readings missing (seq 39 -> 50)"' in e for e in expected)
    restarted = _learnt()
    assert _send(restarted, after, OLD) == []
    assert _send(restarted, _pm(0, after.ts_ns + 2 * S), NEW) == expected
    assert _send(restarted, _pm(1, after.ts_ns + 12 * S), NEW) == []  # once


def test_a_clock_jump_held_when_the_numbering_restarts_is_let_go_by_a_later_reading() -> None:
    """Reading 40 stamped 2 min after 39 (a clock set forward), received as stamped, so
    held until a heartbeat or a reading 10 s later; the numbering starts again meanwhile."""
    state = _learnt()
    jumped = _pm(LEARNT, T0 + (LEARNT - 1) * 10 * S + 120 * S)
    assert _send(state, jumped, OLD) == []  # held
    assert _send(state, _pm(0, jumped.ts_ns + 2 * S), NEW) == []  # restart: still held
    resumed: NodeState = pickle.loads(pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))
    for s in (state, resumed):
        events = _send(s, _pm(1, jumped.ts_ns + 12 * S), NEW)
        assert len(events) == 1  # the node's, its two fields' folded (NodeClockJumps)
        assert all("type=clock_jump" in e and "seq=40i" in e for e in events)
        # stamped when the cloud received the jumped reading (20 ms after its stamp): a node's
        # clock jump is not stamped by the clock that jumped (cloud/logic/events.py)
        assert all(e.endswith(f" {jumped.ts_ns + S // 50 + i}") for i, e in enumerate(events))


def test_a_clock_jump_held_when_the_numbering_restarts_is_dropped_by_the_heartbeat_of_a_restart() -> None:
    """The same gap is the agent's absence: the new run's first heartbeat, dating its start
    within the gap, comes after the first readings of the new numbering."""
    state = _learnt()
    jumped = _pm(LEARNT, T0 + (LEARNT - 1) * 10 * S + 120 * S)
    assert _send(state, jumped, OLD) == []
    assert _send(state, _pm(0, jumped.ts_ns + 2 * S), NEW) == []
    assert _beat(state, jumped.ts_ns + 3 * S, 30.0, run="r2") == []  # started 27 s before 40
    assert _send(state, _pm(1, jumped.ts_ns + 12 * S), NEW) == []
    assert _beat(state, jumped.ts_ns + 33 * S, 60.0, run="r2") == []
