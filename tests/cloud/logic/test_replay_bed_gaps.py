"""Late bed readings and the hours without one that a ward's pads leave between two hours
with one (087aa17, `hours_with_gaps`: pads at a 3600 s heartbeat stamped 00:59:59, then
02:00:00.3 leave 01:00 empty, yet its state at its end is known and written).

Whether such an hour is written depends on the hour after it (its first reading makes the
gap) and its row on the hour before it (the beds' state at its end): a late reading in hour
H decides the row of a gap at H + 1 h, written when a reading of H + 2 h comes, and the
existence of a gap at H - 1 h (H's first reading closes it). A replay of H that reads and
writes [H, H + 2 h) sees neither: the gap at H + 1 h, written live without the late reading,
stayed stale, and the gap at H - 1 h, or at H + 1 h when H + 2 h came only late as well,
was never written. Every arrival order must end as the in-order run (the node and site
steps wired as the dataflow wires them, the replays run as the sink runs them:
`tests/cloud/logic/test_domain_replay.py`'s `run`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from cloud.logic.domain.late import LateMarks
from cloud.logic.domain_replay import ReplaySpan, replay
from cloud.logic.records import RP_1H, RP_RAW, NodeData
from tests.cloud.logic.domain_helpers import HOUR, MIN, T0, S, final, select
from tests.cloud.logic.test_domain_replay import _as_points, _row, domain_points, run
from urbanpulse.wire import Reading

END = T0 + 12 * HOUR
LATE_S = 300_000_000  # 0.3 s: the heartbeat's reading a little after it is due


def _stamps() -> list[int]:
    """ward-a's pads (3600 s heartbeat): at :00:00.3 and :59:59 of the even hours, so every
    odd hour holds no reading and is a gap between two hours that do."""
    out = []
    for h in range(0, 12, 2):
        out += [T0 + h * HOUR + LATE_S, T0 + h * HOUR + 59 * MIN + 59 * S]
    return out


STAMPS = _stamps()


def _ward_a(bed: str, i: int) -> Reading:
    """The i-th reading of a bed: bed-1 occupied at its readings 0, 3, 4, 7, 8, ...; bed-2
    at 1, 2, 5, 6, ...: the ward's state changes at most readings."""
    occupied = (i % 4 in (0, 3)) == (bed == "bed-1")
    return Reading(bed, "hospital.bed", STAMPS[i], i, {"occupied": float(occupied)})


def _message(node: str, received: int, readings: list[Reading]) -> NodeData:
    return NodeData(f"bv/{node}", "bv", node, received, readings)


def _ward_b(t: int) -> NodeData:
    """ward-b, always on time: one of two beds occupied, every 10 min."""
    seq = (t - T0) // (10 * MIN)
    return _message("ward-b", t, [Reading("bed-1", "hospital.bed", t, seq, {"occupied": 1.0}),
                                  Reading("bed-2", "hospital.bed", t, seq, {"occupied": 0.0})])


def _arrivals(received: dict[tuple[str, int], int]) -> Iterator[NodeData]:
    """ward-a's readings (one message per bed and stamp) at their `received` time (default:
    on time), oldest first among those received together, and ward-b's every 10 min."""
    events: list[tuple[int, int, NodeData]] = []
    for i, ts in enumerate(STAMPS):
        for bed in ("bed-1", "bed-2"):
            at = received.get((bed, i), ts)
            events.append((at, ts, _message("ward-a", at, [_ward_a(bed, i)])))
    for t in range(T0, END, 10 * MIN):
        events.append((t, t, _ward_b(t)))
    for _, _, data in sorted(events, key=lambda e: (e[0], e[1], e[2].node, e[2].readings[0].sensor)):
        yield data


IN_ORDER: dict[tuple[str, int], int] = {}
# bed-2's reading at 02:59:59 delivered 7 h 30 min late, after 04:00:00.3 made 03:00 a gap written
# live (with bed-2's state of 02:00:00.3)
ONE_LATE = {("bed-2", 3): T0 + 10 * HOUR + 30 * MIN}
# the same reading delivered just before 04:00:00.3's readings (within the horizon: taken
# live), which then write the gap at 03:00 live, after the replay, without it
LATE_BEFORE_THE_GAP = {("bed-2", 3): T0 + 10 * HOUR + 30 * MIN,
                       ("bed-1", 4): T0 + 10 * HOUR + 31 * MIN, ("bed-2", 4): T0 + 10 * HOUR + 31 * MIN}
# ward-a offline from 02:00 to 10:00: its fresh readings first, then its backlog, whose
# readings before 04:00:00.3 (the horizon's floor) are too late: 02:00 (closing the gap at
# 01:00) and 02:59:59 (the gap at 03:00's state) among them
OUTAGE = {(bed, i): T0 + 10 * HOUR + LATE_S + 1
          for i, ts in enumerate(STAMPS) if T0 + 2 * HOUR <= ts < T0 + 10 * HOUR
          for bed in ("bed-1", "bed-2")}


def _ward(occupied: int) -> dict[str, object]:
    return {"beds": 2, "occupied": occupied, "available": 2 - occupied, "faulty": 0, "stale": 0,
            "occupancy_pct": 50.0 * occupied}


@pytest.fixture(scope="module")
def expected() -> dict[Any, dict[str, object]]:
    return domain_points(run(_arrivals(IN_ORDER), replays=False))


def test_the_in_order_rows_of_the_gaps_hand_checked(expected: dict[Any, dict[str, object]]) -> None:
    """At each of ward-a's readings one bed of two is occupied (bed-1 at its readings 0, 3,
    4, 7, ..., bed-2 at 1, 2, 5, 6, ...): every hour, the gaps too, ends with 1 occupied.
    A row mixing two readings' states is not: at 03:00's end bed-1 holds reading 3
    (occupied) and bed-2 reading 3 (free); with bed-2's reading 2 instead, 2 occupied."""
    points = _as_points(expected)
    ward = select(points, RP_1H, "ward_occupancy", site="bv", node="ward-a")
    # the odd hours are gaps, but 11:00 (no 12:00 reading yet)
    assert ward == {T0 + h * HOUR: _ward(1) for h in range(11)}
    assert [_ward_a(bed, i).values["occupied"] for bed in ("bed-1", "bed-2") for i in (2, 3)] == [
        0.0, 1.0, 1.0, 0.0]
    hospital = select(points, RP_1H, "hospital_occupancy", site="bv")
    assert hospital[T0 + 3 * HOUR] == {"beds": 4, "occupied": 2, "available": 2, "faulty": 0, "stale": 0,
                                       "occupancy_pct": 50.0}


@pytest.mark.parametrize("received", [ONE_LATE, LATE_BEFORE_THE_GAP, OUTAGE],
                         ids=["one-late", "late-before-the-gap", "outage"])
def test_late_bed_readings_end_with_the_gap_rows_of_in_order(
        received: dict[tuple[str, int], int], expected: dict[Any, dict[str, object]]) -> None:
    got = domain_points(run(_arrivals(received), replays=True))
    differ = {k: (got.get(k), v) for k, v in expected.items() if got.get(k) != v}
    differ.update({k: (v, None) for k, v in got.items() if k not in expected})
    assert differ == {}
    ward = select(_as_points(got), RP_1H, "ward_occupancy", site="bv", node="ward-a")
    assert ward[T0 + 3 * HOUR] == _ward(1)  # not 2: bed-2's 02:59:59 reading (free) in it
    assert ward[T0 + HOUR] == _ward(1)


def test_a_bed_reading_touches_the_marks_of_the_gap_before_its_hour() -> None:
    """A bed reading of hour X may write the hour before it (a gap it closes), so it touches
    a mark whose span holds X - 1 h; other scopes' readings write from their own windows."""
    marks = LateMarks()
    marks.add([("beds", T0), ("traffic", T0)])
    bed_end = marks.ends[("beds", T0)]
    bed = Reading("bed-1", "hospital.bed", bed_end + 5 * MIN, 1, {"occupied": 1.0})
    assert marks.touched([bed]) == [("beds", T0)]
    loop = Reading("lane-1", "traffic.loop", marks.ends[("traffic", T0)] + HOUR, 1,
                   {"count": 1.0, "interval_s": 60.0})
    assert marks.touched([loop]) == []


def test_a_long_replay_read_in_pieces_writes_the_gap_at_each_pieces_end() -> None:
    """The sink reads a beds span 6 h at a time (`ReplaySpan.chunks`): the gap at 05:00 is
    the first piece's last hour and its row needs 06:00's readings (the lookahead), the
    gap at 07:00 the second piece's first hour (its state from the last states before)."""
    points = run(_arrivals(IN_ORDER), replays=False)
    rows = [_row(p) for rp, p in points if rp == RP_RAW]
    span = ReplaySpan("beds", "bv", "", T0, T0 + 11 * HOUR)
    pieces = [p for chunk in span.chunks(6) for p in replay(chunk, rows)]
    assert final(pieces) == final(replay(span, rows))
    ward = select(pieces, RP_1H, "ward_occupancy", site="bv", node="ward-a")
    assert ward == {T0 + h * HOUR: _ward(1) for h in range(11)}
