"""A bed pad not heard for longer than `STALE_NS` (twice the longest heartbeat a pad may
have, 3600 s, plus 10 min) is no bed its ward can count: at a window's end it counts in
none of occupied, available and faulty (nor in `beds`), but in `stale`
(docs/domain-rollups.md, "A bed that stops reporting"). Before, a pad removed from its bed,
or lost by its node without a fault, counted with its last state for as long as the node
ran. The rule holds per window end, in the sweep over many ends too, live, in a replay from
the raw points and after a resume from a snapshot; a silent ward's last snapshot in its
hospital's totals goes stale as a whole once the limit has passed since it."""

from __future__ import annotations

import pickle
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.logic.domain.hospital import STALE_NS, HospitalNodeRollup
from cloud.logic.domain.hospital_site import HospitalSite
from cloud.logic.records import RP_1H, RP_1M
from tests.cloud.logic.domain_helpers import HOUR, MIN, T0, rd, select
from tests.cloud.logic.test_domain_replay import _readings as _city
from tests.cloud.logic.test_domain_replay import backlog_after_fresh, domain_points, in_order, run
from urbanpulse.wire import Reading

BED = "hospital.bed"
LAST = T0 + 50 * MIN  # bed-2's last reading (occupied)
YESTERDAY = Path(__file__).parent / "fixtures" / "hospital_queue_beds_263783f.pickle"


def test_the_limit_is_two_of_the_longest_heartbeats_and_a_margin() -> None:
    assert STALE_NS == 2 * HOUR + 10 * MIN


def _ward_readings() -> list[Reading]:
    """bed-1 (free) and bed-3 (occupied) every 10 min for 8 h; bed-2 (occupied) every 10 min
    until 00:50, then never again (taken out of its bed without a fault)."""
    out = []
    for t in range(T0, T0 + 8 * HOUR, 10 * MIN):
        out += [rd("bed-1", BED, t, occupied=0), rd("bed-3", BED, t, occupied=1)]
        if t <= LAST:
            out.append(rd("bed-2", BED, t, occupied=1))
    return out


def _ward_points(per_message: bool) -> list[tuple[str, str]]:
    roll = HospitalNodeRollup(6 * HOUR)
    readings = _ward_readings()
    if not per_message:
        return roll.process("bv", "ward-a", readings)[0]
    return [p for r in readings for p in roll.process("bv", "ward-a", [r])[0]]


COUNTED = {"beds": 3, "occupied": 2, "available": 1, "faulty": 0, "stale": 0,
           "occupancy_pct": 200 / 3}
STALE = {"beds": 2, "occupied": 1, "available": 1, "faulty": 0, "stale": 1, "occupancy_pct": 50.0}


def test_a_pad_silent_beyond_the_limit_counts_as_stale_not_occupied() -> None:
    for per_message in (True, False):  # live (a window per message) and the sweep of a replay
        points = _ward_points(per_message)
        hours = select(points, RP_1H, "ward_occupancy", site="bv", node="ward-a")
        minutes = select(points, RP_1M, "ward_occupancy", site="bv", node="ward-a")
        # Within the limit nothing changes: 01:00-02:00 and 02:00-03:00 end 1 h 10 min and
        # 2 h 10 min (the limit itself) after bed-2's last reading.
        assert hours[T0 + HOUR] == hours[T0 + 2 * HOUR] == COUNTED
        assert minutes[T0 + 2 * HOUR + 50 * MIN] == COUNTED
        # Past it: bed-2 is in none of beds, occupied, available, faulty.
        assert LAST + STALE_NS == T0 + 3 * HOUR
        assert minutes[T0 + 3 * HOUR] == STALE  # ends 03:01
        assert hours[T0 + 3 * HOUR] == hours[T0 + 7 * HOUR] == STALE


def test_the_sweep_gives_the_staleness_of_each_end() -> None:
    roll = HospitalNodeRollup(6 * HOUR)
    roll.process("bv", "ward-a", _ward_readings())
    ends = [T0 + 2 * HOUR, LAST + STALE_NS, LAST + STALE_NS + 1, T0 + 4 * HOUR, T0 + 11 * HOUR]
    assert roll.wards_at(ends) == [roll.ward_at(e) for e in ends] == [
        (3, 2, 1, 0, 0), (3, 2, 1, 0, 0), (2, 1, 1, 0, 1), (2, 1, 1, 0, 1), (0, 0, 0, 0, 3)]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["b1", "b2", "b3", "b4"]), st.integers(0, 60),
                          st.integers(0, 1), st.integers(0, 1)), max_size=40),
       st.lists(st.integers(-2, 70), min_size=1, max_size=12))
def test_wards_at_matches_ward_at_across_the_limit(
        beds: list[tuple[str, int, int, int]], ends: list[int]) -> None:
    """Readings and ends 10 min apart over 11 h: gaps shorter and longer than the limit,
    ends on it and next to it."""
    roll = HospitalNodeRollup(100 * HOUR)
    roll.process("hn", "w1", [rd(b, BED, T0 + t * 10 * MIN, occupied=o, fault=f)
                              for b, t, o, f in beds])
    ordered = sorted({T0 + e * 10 * MIN + d for e in ends for d in (0, 1)})
    assert roll.wards_at(ordered) == [roll.ward_at(end) for end in ordered]


def test_a_resumed_ward_goes_stale_as_one_that_never_stopped() -> None:
    readings = _ward_readings()
    expected = HospitalNodeRollup(6 * HOUR).process("bv", "ward-a", readings)[0]
    roll = HospitalNodeRollup(6 * HOUR)
    points = []
    for i in range(0, len(readings), 7):
        points += roll.process("bv", "ward-a", readings[i:i + 7])[0]
        roll = pickle.loads(pickle.dumps(roll))
    for rp in (RP_1M, RP_1H):
        assert (select(points, rp, "ward_occupancy", site="bv", node="ward-a")
                == select(expected, rp, "ward_occupancy", site="bv", node="ward-a"))


def test_a_silent_wards_last_snapshot_goes_stale_in_its_hospitals_totals() -> None:
    """ward-b (one bed, occupied) is heard at 00:10 only; ward-a goes on. The hospital's
    totals counted ward-b's bed as occupied for ever; from 02:20 (the limit after its last
    minute) it is stale there."""
    roll, other, site = HospitalNodeRollup(6 * HOUR), HospitalNodeRollup(6 * HOUR), HospitalSite(6 * HOUR)
    points = site.process("bv", other.process("bv", "ward-b", [rd("bed-1", BED, T0 + 10 * MIN,
                                                                  occupied=1)])[1])
    for r in _ward_readings():
        p, u = roll.process("bv", "ward-a", [r])
        points += p + site.process("bv", u)
    minutes = select(points, RP_1M, "hospital_occupancy", site="bv")
    hours = select(points, RP_1H, "hospital_occupancy", site="bv")
    assert minutes[T0 + 2 * HOUR + 10 * MIN] == {"beds": 4, "occupied": 3, "available": 1,
                                                 "faulty": 0, "stale": 0, "occupancy_pct": 75.0}
    # 02:20: ward-b silent for the limit; 03:00: bed-2 of ward-a too
    assert minutes[T0 + 2 * HOUR + 20 * MIN] == {"beds": 3, "occupied": 2, "available": 1,
                                                 "faulty": 0, "stale": 1, "occupancy_pct": 200 / 3}
    assert minutes[T0 + 3 * HOUR] == hours[T0 + 3 * HOUR] == {
        "beds": 2, "occupied": 1, "available": 1, "faulty": 0, "stale": 2, "occupancy_pct": 50.0}
    # ward-b's hour 00:00: its hospital rows of 01:00 and 02:00 (within 2 h 10 min of it) keep it
    assert hours[T0 + 2 * HOUR]["beds"] == 4


def _readings_with_a_lost_pad(site: str, node: str, t: int, seq: int) -> list[Reading]:
    """test_domain_replay's city, with a third pad in ward-a (occupied) lost by its node at
    01:00, before the node's 8 h outage."""
    out = _city(site, node, t, seq)
    if node == "ward-a" and t <= T0 + HOUR:
        out.append(Reading("bed-3", BED, t, seq, {"occupied": 1.0}))
    return out


def test_a_replay_from_the_raw_points_counts_the_lost_pad_stale_as_live() -> None:
    expected = domain_points(run(in_order(_readings_with_a_lost_pad), replays=False))
    late = domain_points(run(backlog_after_fresh(_readings_with_a_lost_pad), replays=True))
    assert late == expected
    ward = {k[3]: v for k, v in expected.items() if k[0] == RP_1H and k[1] == "ward_occupancy"
            and dict(k[2])["node"] == "ward-a"}
    assert (ward[T0 + 2 * HOUR]["beds"], ward[T0 + 2 * HOUR]["stale"]) == (3, 0)
    assert (ward[T0 + 3 * HOUR]["beds"], ward[T0 + 3 * HOUR]["stale"]) == (2, 1)


def test_a_site_snapshot_from_before_stale_was_kept_resumes() -> None:
    """Yesterday's site held a ward's snapshots as (beds, occupied, available, faulty): they
    resume with 0 stale, and go stale as a whole once the limit has passed."""
    state = pickle.loads(YESTERDAY.read_bytes())
    site, ward = state["site"], state["w"]
    assert all(len(v) == 5 and v[4] == 0 for nodes in site.wards.values()
               for snaps in nodes.values() for v in snaps.values())
    later = T0 + 18 * HOUR + 5 * MIN
    points = site.process("bv", ward.process("bv", "w", [rd("b1", BED, later, occupied=1)])[1])
    assert select(points, RP_1M, "hospital_occupancy", site="bv")[later] == {
        "beds": 2, "occupied": 1, "available": 1, "faulty": 0, "stale": 0, "occupancy_pct": 50.0}
    # b2 silent since 18:00:20: stale at 20:11; the site resumed too
    again = pickle.loads(pickle.dumps((ward, site)))
    for w, s in ((ward, site), again):
        points = s.process("bv", w.process("bv", "w", [rd("b1", BED, T0 + 20 * HOUR + 11 * MIN,
                                                          occupied=1)])[1])
        assert select(points, RP_1M, "hospital_occupancy", site="bv")[T0 + 20 * HOUR + 11 * MIN] == {
            "beds": 1, "occupied": 1, "available": 0, "faulty": 0, "stale": 1, "occupancy_pct": 100.0}
