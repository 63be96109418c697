"""A hospital node whose readings come in order but hours behind the site's other nodes.

A node back from an outage longer than the horizon with no reading of its last
`live_window_s` to send first (a queue hall at night, a ward whose pads report hourly)
sends its backlog oldest first (edge/publisher.py: 2 batches at once, then 20 a second).
Those readings are not late for the node (its newest is from before the outage), so its
rollups take them and hand the site their windows; but the site step let go of
the other nodes' windows of those hours long ago (its horizon counts from the site's
newest). The hospital totals of those hours were written from the lagging node alone
(a ward of 2 beds as the whole hospital, one gate's visits as all of them), and nothing
asked for a replay. The site now writes no total it cannot make whole and asks for the
site-wide replay of those hours instead."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from cloud.logic.records import RP_1H, RP_1M, NodeData
from tests.cloud.logic.domain_helpers import HOUR, MIN, T0, select
from tests.cloud.logic.test_domain_replay import _as_points, domain_points, run
from urbanpulse.wire import Reading

STEP = 10 * MIN
END = T0 + 12 * HOUR
DOWN, UP = T0 + 2 * HOUR, T0 + 10 * HOUR  # the "-b" nodes' outage
NODES = ("ward-a", "ward-b", "gate-a", "gate-b", "hall-a", "hall-b")


def _readings(node: str, t: int, seq: int) -> list[Reading]:
    k = (t - T0) // STEP
    if node.startswith("ward"):
        return [Reading("bed-1", "hospital.bed", t, seq, {"occupied": 1.0}),
                Reading("bed-2", "hospital.bed", t, seq, {"occupied": float(k % 3 == 0)})]
    if node.startswith("gate"):  # gate-a: 2 ER arrivals and 5 visits each 10 min, gate-b 3 and 7
        er, visits = (2.0, 5.0) if node == "gate-a" else (3.0, 7.0)
        return [Reading("er-1", "hospital.door", t, seq, {"count": er, "interval_s": 600.0}),
                Reading("main-1", "hospital.door", t, seq, {"count": visits, "interval_s": 600.0})]
    # a kiosk: ticket k issued, called 5 min later (the wait is 300 s, or 420 s in hall-b)
    wait = 420 * 10**9 if node == "hall-b" else 5 * MIN
    return [Reading("kiosk-1", "hospital.queue", t, 2 * seq, {"ticket": float(k), "called": 0.0}),
            Reading("kiosk-1", "hospital.queue", t + wait, 2 * seq + 1,
                    {"ticket": float(k), "called": 1.0})]


def _message(node: str, t: int, received: int) -> NodeData:
    return NodeData(f"bv/{node}", "bv", node, received, _readings(node, t, (t - T0) // STEP))


def _in_order() -> Iterator[NodeData]:
    for t in range(T0, END, STEP):
        for node in NODES:
            yield _message(node, t, t)


def _backlog_first() -> Iterator[NodeData]:
    for t in range(T0, END, STEP):
        for node in NODES:
            offline = node.endswith("-b")
            if offline and DOWN <= t < UP:
                continue
            if offline and t == UP:  # the backlog, oldest first, then the fresh reading
                for old in range(DOWN, UP, STEP):
                    yield _message(node, old, t)
            yield _message(node, t, t)


def test_a_node_hours_behind_the_site_leaves_the_hospital_totals_whole() -> None:
    expected = domain_points(run(_in_order(), replays=False))
    got = domain_points(run(_backlog_first(), replays=True))
    assert {k: (got.get(k), v) for k, v in expected.items() if got.get(k) != v} == {}
    points = _as_points(got)
    # hand-checked, an hour of the outage the site had let go: both gates, both wards, both halls
    flow = select(points, RP_1H, "hospital_flow", site="bv")
    assert flow[DOWN] == {"er_arrivals": 30.0, "visits": 72.0, "faulty": 0}
    occupancy = select(points, RP_1M, "hospital_occupancy", site="bv")
    assert occupancy[DOWN + 30 * MIN] == {"beds": 4, "occupied": 4, "available": 0, "faulty": 0, "stale": 0,
                                          "occupancy_pct": 100.0}
    waits = select(points, RP_1H, "hospital_wait", site="bv")
    assert (waits[DOWN]["n"], waits[DOWN]["mean_s"]) == (12, 360.0)


def test_without_the_replay_no_total_is_written_from_the_lagging_node_alone() -> None:
    """Without the sink's replay (no reader credentials) the totals of those hours stay as
    they were written when the site had every node's windows, not the lagging node's alone."""
    got: dict[Any, dict[str, object]] = domain_points(run(_backlog_first(), replays=False))
    flow = select(_as_points(got), RP_1H, "hospital_flow", site="bv")
    assert flow[DOWN] == {"er_arrivals": 12.0, "visits": 30.0, "faulty": 0}  # gate-a's, as written live
    waits = select(_as_points(got), RP_1H, "hospital_wait", site="bv")
    assert (waits[DOWN]["n"], waits[DOWN]["mean_s"]) == (6, 300.0)  # hall-a's
