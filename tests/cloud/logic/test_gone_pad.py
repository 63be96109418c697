"""A bed pad not heard for over `GONE_NS` (a week) counts nowhere, not even `stale`: a pad
taken out for good. Before, it counted stale for as long as the processor ran (its last
reading is the bed's state, kept across restarts), so "Bed pads stale" fired for the ward for
ever and nothing could say the pad was removed. The rule is one of the window's end, as the
stale rule: live, in the sweep over many ends, in the processor's memory (the bed let go once
gone at the floor) and in the hospital's totals (a ward silent for a week)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.logic.domain.hospital import GONE_NS, STALE_NS, HospitalNodeRollup
from cloud.logic.domain.hospital_site import HospitalSite
from cloud.logic.records import RP_1H, RP_1M
from tests.cloud.logic.domain_helpers import HOUR, MIN, T0, rd, select

BED = "hospital.bed"
DAY = 24 * HOUR
LAST = T0 + 50 * MIN  # bed-2's last reading (occupied)


def test_a_week() -> None:
    assert GONE_NS == 7 * DAY


def _week_readings(days: int = 8) -> list:  # type: ignore[type-arg]
    """bed-1 (free) every 30 min for `days` days; bed-2 (occupied) until 00:50 of day 0."""
    out = []
    for t in range(T0, T0 + days * DAY, 30 * MIN):
        out.append(rd("bed-1", BED, t, occupied=0))
        if t <= LAST:
            out.append(rd("bed-2", BED, t + MIN, occupied=1))
    return out


def test_a_pad_silent_for_a_week_counts_nowhere_and_is_let_go() -> None:
    roll = HospitalNodeRollup(6 * HOUR)
    points = []
    for r in _week_readings():
        points += roll.process("bv", "ward-a", [r])[0]
    hours = select(points, RP_1H, "ward_occupancy", site="bv", node="ward-a")
    minutes = select(points, RP_1M, "ward_occupancy", site="bv", node="ward-a")
    stale = {"beds": 1, "occupied": 0, "available": 1, "faulty": 0, "stale": 1, "occupancy_pct": 0.0}
    gone = {**stale, "stale": 0}
    bed_2_last = LAST + MIN
    assert hours[T0 + 5 * HOUR] == stale
    # a week after bed-2's last reading (00:51 of day 7) it is gone: windows ending by
    # then count it stale, those ending after it nowhere
    assert bed_2_last + GONE_NS == T0 + 7 * DAY + 51 * MIN
    assert hours[T0 + 7 * DAY - HOUR] == stale
    assert minutes[T0 + 7 * DAY + 30 * MIN] == stale  # ends 00:31
    assert minutes[T0 + 7 * DAY + 60 * MIN] == gone  # ends 01:01
    assert hours[T0 + 7 * DAY] == gone  # ends 01:00, past 00:51
    assert hours[T0 + 7 * DAY + 2 * HOUR] == gone
    # let go of once gone at the floor (newest - horizon); bed-1 goes on
    assert "bed-2" not in roll.beds
    assert roll.ward_at(T0 + 8 * DAY) == (1, 0, 1, 0, 0)


def test_a_pad_heard_again_after_a_week_counts_again() -> None:
    roll = HospitalNodeRollup(6 * HOUR)
    for r in _week_readings():
        roll.process("bv", "ward-a", [r])
    back = T0 + 8 * DAY + 5 * MIN
    points, _ = roll.process("bv", "ward-a", [rd("bed-2", BED, back, occupied=1)])
    minutes = select(points, RP_1M, "ward_occupancy", site="bv", node="ward-a")
    assert minutes[back - back % MIN] == {"beds": 2, "occupied": 1, "available": 1, "faulty": 0,
                                          "stale": 0, "occupancy_pct": 50.0}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["b1", "b2", "b3"]), st.integers(0, 20),
                          st.integers(0, 1), st.integers(0, 1)), max_size=30),
       st.lists(st.integers(-2, 24), min_size=1, max_size=12))
def test_wards_at_matches_ward_at_across_the_week(
        beds: list[tuple[str, int, int, int]], ends: list[int]) -> None:
    """Readings and ends half a day apart over 10 days: gaps shorter and longer than the
    week, ends on it and next to it; the sweep (4 ends or more) as the search per end."""
    roll = HospitalNodeRollup(100 * DAY)
    half = DAY // 2
    roll.process("hn", "w1", [rd(b, BED, T0 + t * half, occupied=o, fault=f) for b, t, o, f in beds])
    ordered = sorted({T0 + e * half + d for e in ends for d in (0, 1)}
                     | {T0 + t * half + lim + d for _, t, _, _ in beds[:2]
                        for lim in (STALE_NS, GONE_NS) for d in (0, 1)})
    assert roll.wards_at(ordered) == [roll.ward_at(end) for end in ordered]
    for end in ordered:  # against the rule itself
        lasts = [max((t for b2, t, _, _ in beds if b2 == b and T0 + t * half < end), default=None)
                 for b in ("b1", "b2", "b3")]
        gone = sum(1 for t in lasts if t is not None and T0 + t * half < end - GONE_NS)
        stale = sum(1 for t in lasts if t is not None and end - GONE_NS <= T0 + t * half < end - STALE_NS)
        counted = sum(1 for t in lasts if t is not None and T0 + t * half >= end - STALE_NS)
        assert (roll.ward_at(end)[0], roll.ward_at(end)[4]) == (counted, stale), gone


def test_a_ward_silent_for_a_week_leaves_its_hospitals_totals() -> None:
    """ward-b (one bed, occupied) is heard at 00:10 only; ward-a goes on: ward-b's bed is
    stale in the hospital's totals from 02:20, and counts nowhere a week after 00:10."""
    roll, other, site = HospitalNodeRollup(6 * HOUR), HospitalNodeRollup(6 * HOUR), HospitalSite(6 * HOUR)
    points = site.process("bv", other.process("bv", "ward-b", [rd("bed-1", BED, T0 + 10 * MIN,
                                                                  occupied=1)])[1])
    for r in _week_readings():
        if r.sensor == "bed-1":
            p, u = roll.process("bv", "ward-a", [r])
            points += p + site.process("bv", u)
    hours = select(points, RP_1H, "hospital_occupancy", site="bv")
    free_one = {"beds": 1, "occupied": 0, "available": 1, "faulty": 0, "occupancy_pct": 0.0}
    assert hours[T0 + 3 * HOUR] == {**free_one, "stale": 1}
    assert hours[T0 + 7 * DAY - HOUR] == {**free_one, "stale": 1}
    assert hours[T0 + 7 * DAY + HOUR] == {**free_one, "stale": 0}
