"""A replayed site-wide span whose hospital totals another ward writes again afterwards.

Two wards of one hospital come back from an outage as the edge does (their fresh reading
first, then the backlog oldest first): ward-a was offline 8 h, so its first 2 h are too
late for its live rollups and replayed; ward-b was offline 6 h (the horizon), so none of
its backlog is too late and it asks for no replay. ward-a's bed-2 reports at :30 only:
ward-a's live state for [UP - 6 h, UP - 5 h 30) lacks its reading of UP - 6 h 30 (too
late), and the replay corrects ward_occupancy and hospital_occupancy there. ward-b's
backlog, drained after that replay, makes the site step write those hospital windows
again from ward-a's live snapshot, which lacks the late reading; the node step's marks
(LateMarks) are ward-a's, touched by ward-a's readings only. The site step keeps the
site-wide hours replayed (SiteReplayed) and asks for them again when it writes a window
they reach (HospitalSite.take_late, cloud.logic.domain_replay.site_step)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from cloud.logic.records import NodeData
from tests.cloud.logic.domain_helpers import HOUR, MIN, T0
from tests.cloud.logic.test_domain_replay import STEP, domain_points, run
from urbanpulse.wire import Reading

UP, END = T0 + 10 * HOUR, T0 + 12 * HOUR
DOWN = {"ward-a": T0 + 2 * HOUR, "ward-b": UP - 6 * HOUR}


def _readings(node: str, t: int, seq: int) -> list[Reading]:
    out = [Reading("bed-1", "hospital.bed", t, seq, {"occupied": 1.0})]
    if node == "ward-a" and t % HOUR == 30 * MIN:  # occupied in the hour from T0 + 3 h 30 only
        out.append(Reading("bed-2", "hospital.bed", t, seq, {"occupied": float((t - T0) // HOUR == 3)}))
    return out


def _message(node: str, t: int, received: int) -> NodeData:
    return NodeData(f"bv/{node}", "bv", node, received, _readings(node, t, (t - T0) // STEP))


def _in_order() -> Iterator[NodeData]:
    for t in range(T0, END, STEP):
        for node in DOWN:
            yield _message(node, t, t)


def _back_from_outages() -> Iterator[NodeData]:
    for t in range(T0, END, STEP):
        for node, down in DOWN.items():
            if down <= t < UP:
                continue
            yield _message(node, t, t)
            if t == UP:
                for old in range(down, UP, STEP):
                    yield _message(node, old, t)


def test_hospital_totals_written_again_by_another_ward_end_as_in_order() -> None:
    expected = domain_points(run(_in_order(), replays=False))
    got = domain_points(run(_back_from_outages(), replays=True))
    differ: dict[Any, tuple[object, object]] = {
        k: (got.get(k), v) for k, v in expected.items() if got.get(k) != v}
    assert differ == {}
