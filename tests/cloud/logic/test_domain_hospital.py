"""Hospital rollups per node (ward, doors, queue) and per site, with hand-computed values."""

from __future__ import annotations

import pickle
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.logic.domain.door_roles import DoorRoles
from cloud.logic.domain.hospital import HospitalNodeRollup, SiteUpdate, WaitSamples
from cloud.logic.domain.hospital_site import HospitalSite
from tests.cloud.logic.domain_helpers import HOUR, MIN, T0, S, final, rd, select
from urbanpulse.wire import Reading

BED, DOOR, QUEUE = "hospital.bed", "hospital.door", "hospital.queue"
YESTERDAY = Path(__file__).parent / "fixtures" / "hospital_queue_beds_263783f.pickle"


def ward1() -> list[Reading]:
    return [
        rd("b1", BED, T0 + 10 * S, occupied=1),
        rd("b2", BED, T0 + 20 * S, occupied=0),
        rd("b3", BED, T0 + 30 * S, occupied=1, fault=1),  # cut cable: state unknown
        rd("b2", BED, T0 + MIN + 5 * S, occupied=1),
        rd("b1", BED, T0 + 2 * MIN + 5 * S, occupied=0),
        rd("b3", BED, T0 + 2 * MIN + 6 * S, occupied=0, fault=0),
    ]


def test_ward_occupancy_per_minute_and_hour() -> None:
    points, _ = HospitalNodeRollup(2 * HOUR).process("bvbm", "w1", ward1())
    rows = select(points, "agg_1m", "ward_occupancy", site="bvbm", node="w1")
    assert rows == {
        T0: {"beds": 3, "occupied": 1, "available": 1, "faulty": 1, "stale": 0, "occupancy_pct": 50.0},
        T0 + MIN: {"beds": 3, "occupied": 2, "available": 0, "faulty": 1, "stale": 0, "occupancy_pct": 100.0},
        T0 + 2 * MIN: {"beds": 3, "occupied": 1, "available": 2, "faulty": 0, "stale": 0,
                       "occupancy_pct": pytest.approx(100 / 3)},
    }
    # The hour's point is the state at its end.
    assert select(points, "agg_1h", "ward_occupancy", site="bvbm", node="w1")[T0] == rows[T0 + 2 * MIN]


def test_late_bed_reading_corrects_the_following_windows() -> None:
    readings = ward1()
    expected = final(HospitalNodeRollup(2 * HOUR).process("s", "w1", readings)[0])
    roll = HospitalNodeRollup(2 * HOUR)
    late = readings[3]  # b2 taken at minute 1 arrives after everything else
    points = roll.process("s", "w1", readings[:3] + readings[4:])[0]
    before = select(points, "agg_1m", "ward_occupancy", site="s", node="w1")
    assert before[T0 + 2 * MIN]["occupied"] == 0
    points += roll.process("s", "w1", [late])[0]
    assert final(points) == expected


def _random_ward(seed: int) -> list[Reading]:
    rng = random.Random(seed)
    return [rd(f"b{rng.randrange(6)}", BED, T0 + i * 13 * S + rng.randrange(S),
               occupied=rng.randrange(2), fault=int(rng.random() < 0.1)) for i in range(200)]


def test_shuffled_beds_give_the_in_order_result() -> None:
    readings = _random_ward(7)
    expected = final(HospitalNodeRollup(2 * HOUR).process("s", "w1", readings)[0])
    shuffled = readings[:]
    random.Random(8).shuffle(shuffled)
    roll = HospitalNodeRollup(2 * HOUR)
    points = [p for i in range(0, 200, 9) for p in roll.process("s", "w1", shuffled[i:i + 9])[0]]
    assert final(points) == expected


def test_door_flow_per_hour_with_roles() -> None:
    roles = DoorRoles({"staff-1": "ignore"})
    readings = [
        rd("er-main", DOOR, T0 + 10 * MIN, count=3, interval_s=60),
        rd("er-main", DOOR, T0 + 50 * MIN, count=2, interval_s=60),
        rd("gate-1", DOOR, T0 + 20 * MIN, count=10, interval_s=60),
        rd("staff-1", DOOR, T0 + 20 * MIN, count=7, interval_s=60),
        rd("er-main", DOOR, T0 + HOUR + 1, count=4, interval_s=60),
    ]
    points, updates = HospitalNodeRollup(2 * HOUR, roles).process("bvbm", "e1", readings)
    rows = select(points, "agg_1h", "door_flow", site="bvbm", node="e1")
    assert rows == {T0: {"er_arrivals": 5.0, "visits": 10.0, "faulty": 0},
                    T0 + HOUR: {"er_arrivals": 4.0, "visits": 0.0, "faulty": 0}}
    assert len(updates) == 2
    with pytest.raises(ValueError, match="door roles"):
        DoorRoles({"x": "vip"})


def test_two_counts_of_one_door_with_the_same_stamp_both_count() -> None:
    """A door counter may report twice in one microsecond (two intervals closed at once, a
    stamp its clock repeated): two readings, two sequence numbers, both counted."""
    readings = [rd("er-main", DOOR, T0 + 10 * MIN, count=3, interval_s=60),
                rd("er-main", DOOR, T0 + 10 * MIN, count=9, interval_s=60),
                rd("gate-1", DOOR, T0 + 20 * MIN, count=5, interval_s=60),
                rd("gate-1", DOOR, T0 + 20 * MIN, count=6, interval_s=60)]
    points, _ = HospitalNodeRollup(2 * HOUR).process("bvbm", "e1", readings)
    rows = select(points, "agg_1h", "door_flow", site="bvbm", node="e1")
    assert rows == {T0: {"er_arrivals": 12.0, "visits": 11.0, "faulty": 0}}


def queue_day() -> list[Reading]:
    return [
        rd("kiosk", QUEUE, T0, ticket=1, called=0),
        rd("kiosk", QUEUE, T0 + 5 * MIN, ticket=1, called=1, counter=2),  # 300 s
        rd("kiosk", QUEUE, T0 + 1 * MIN, ticket=2, called=0),
        rd("kiosk", QUEUE, T0 + 11 * MIN, ticket=2, called=1),  # 600 s
        rd("kiosk", QUEUE, T0 + 2 * MIN, ticket=3, called=0),
        rd("kiosk", QUEUE, T0 + 3 * MIN, ticket=3, called=1),  # 60 s
        rd("kiosk", QUEUE, T0 + 4 * MIN, ticket=3, called=1),  # called again: not a new wait
        rd("kiosk", QUEUE, T0 + 10 * MIN, ticket=4, called=0),
        rd("kiosk", QUEUE, T0 + HOUR + 10 * MIN, ticket=4, called=1),  # 3600 s, next hour
        rd("kiosk", QUEUE, T0 + 12 * MIN, ticket=5, called=0),  # never called
        # The number 1 comes round again (tickets restart): a new pair, 600 s.
        rd("kiosk", QUEUE, T0 + 30 * MIN, ticket=1, called=0),
        rd("kiosk", QUEUE, T0 + 40 * MIN, ticket=1, called=1),
    ]


def test_waiting_time_median_p90() -> None:
    points, _ = HospitalNodeRollup(3 * HOUR).process("bvbm", "q1", queue_day())
    rows = select(points, "agg_1h", "queue_wait", site="bvbm", node="q1")
    # hour 0: waits 60, 300, 600, 600; median (300+600)/2; p90 at h = 3*0.9 -> 600
    assert rows[T0] == {"n": 4, "median_s": 450.0, "p90_s": 600.0, "mean_s": 390.0}
    assert rows[T0 + HOUR] == {"n": 1, "median_s": 3600.0, "p90_s": 3600.0, "mean_s": 3600.0}


def test_each_kiosk_is_its_own_numbering() -> None:
    # Two kiosks of one hall both hand out ticket 1; each call pairs with its own kiosk's issue.
    readings = [
        rd("kiosk-insured", QUEUE, T0, ticket=1, called=0),
        rd("kiosk-service", QUEUE, T0 + 2 * MIN, ticket=1, called=0),
        rd("kiosk-service", QUEUE, T0 + 3 * MIN, ticket=1, called=1, counter=1),  # 60 s
        rd("kiosk-insured", QUEUE, T0 + 20 * MIN, ticket=1, called=1, counter=4),  # 1200 s
    ]
    points, _ = HospitalNodeRollup(3 * HOUR).process("bvbm", "opd-hall", readings)
    rows = select(points, "agg_1h", "queue_wait", site="bvbm", node="opd-hall")
    assert rows[T0] == {"n": 2, "median_s": 630.0, "p90_s": 1086.0, "mean_s": 630.0}


def test_waits_out_of_order_and_max_wait() -> None:
    readings = queue_day()
    expected = final(HospitalNodeRollup(3 * HOUR).process("s", "q1", readings)[0])
    for seed in range(5):
        shuffled = readings[:]
        random.Random(seed).shuffle(shuffled)
        roll = HospitalNodeRollup(3 * HOUR)
        points = [p for r in shuffled for p in roll.process("s", "q1", [r])[0]]
        assert final(points) == expected
    roll = HospitalNodeRollup(24 * HOUR, max_wait_ns=12 * HOUR)
    points, _ = roll.process("s", "q1", [rd("k", QUEUE, T0, ticket=9, called=0),
                                         rd("k", QUEUE, T0 + 13 * HOUR, ticket=9, called=1)])
    assert select(points, "agg_1h", "queue_wait", site="s", node="q1")[T0 + 13 * HOUR] == {"n": 0}


def test_a_wait_near_max_wait_survives_its_hour_rewritten_at_the_horizon() -> None:
    """An hour just inside the horizon (its start is up to an hour before the floor) may be
    rewritten by a reading taken late; its calls' issues lie up to max_wait before the hour's
    start. Issues were kept only from the floor minus max_wait: a 11 h 50 min wait called at
    12:10 lost its 00:20 issue once the newest reading was 18:30, and the 12:00 hour was
    rewritten at 12:40 with n = 1 (the 300 s wait alone)."""
    readings = [
        rd("k", QUEUE, T0 + 20 * MIN, ticket=7, called=0),
        rd("k", QUEUE, T0 + 12 * HOUR + 10 * MIN, ticket=7, called=1),  # 42600 s
        rd("k", QUEUE, T0 + 18 * HOUR + 30 * MIN, ticket=1, called=0),  # newest: floor 12:30
        rd("k", QUEUE, T0 + 12 * HOUR + 35 * MIN, ticket=8, called=0),  # 6 h late, in time
        rd("k", QUEUE, T0 + 12 * HOUR + 40 * MIN, ticket=8, called=1),  # 300 s
    ]
    roll = HospitalNodeRollup(6 * HOUR)
    points = [p for r in readings for p in roll.process("s", "q", [r])[0]]
    assert roll.too_late == 0
    # waits 300, 42600: median and mean 21450; p90 at h = 0.9: 300 + 0.9 * 42300
    assert select(points, "agg_1h", "queue_wait", site="s", node="q")[T0 + 12 * HOUR] == {
        "n": 2, "median_s": 21450.0, "p90_s": 38370.0, "mean_s": 21450.0}
    in_order = HospitalNodeRollup(6 * HOUR)
    assert final(points) == final(in_order.process("s", "q", sorted(readings, key=lambda r: r.ts_ns))[0])


def test_site_totals_from_several_nodes() -> None:
    updates: list[SiteUpdate] = []
    w1 = HospitalNodeRollup(2 * HOUR)
    updates += w1.process("bvbm", "w1", ward1())[1]
    w2 = HospitalNodeRollup(2 * HOUR)
    updates += w2.process("bvbm", "w2", [rd("b1", BED, T0 + 40 * S, occupied=1)])[1]
    q1 = HospitalNodeRollup(2 * HOUR)
    updates += q1.process("bvbm", "q1", queue_day())[1]
    q2 = HospitalNodeRollup(2 * HOUR)
    updates += q2.process("bvbm", "q2", [rd("k", QUEUE, T0 + 20 * MIN, ticket=1, called=0),
                                         rd("k", QUEUE, T0 + 22 * MIN, ticket=1, called=1)])[1]
    e1 = HospitalNodeRollup(2 * HOUR)
    updates += e1.process("bvbm", "e1", [rd("er-1", DOOR, T0 + MIN, count=5, interval_s=60),
                                         rd("gate", DOOR, T0 + MIN, count=10, interval_s=60)])[1]
    e2 = HospitalNodeRollup(2 * HOUR)
    updates += e2.process("bvbm", "e2", [rd("er-2", DOOR, T0 + MIN, count=1, interval_s=60),
                                         rd("gate", DOOR, T0 + MIN, count=2, interval_s=60)])[1]
    site = HospitalSite(2 * HOUR)
    points = site.process("bvbm", updates)
    occ = select(points, "agg_1m", "hospital_occupancy", site="bvbm")
    # w2 sent nothing after minute 0: its minute-0 state still counts at minutes 1 and 2.
    assert occ[T0] == {"beds": 4, "occupied": 2, "available": 1, "faulty": 1, "stale": 0,
                       "occupancy_pct": pytest.approx(200 / 3)}
    assert occ[T0 + MIN] == {"beds": 4, "occupied": 3, "available": 0, "faulty": 1, "stale": 0,
                             "occupancy_pct": 100.0}
    assert occ[T0 + 2 * MIN] == {"beds": 4, "occupied": 2, "available": 2, "faulty": 0, "stale": 0,
                                 "occupancy_pct": 50.0}
    assert select(points, "agg_1h", "hospital_flow", site="bvbm")[T0] == {
        "er_arrivals": 6.0, "visits": 12.0, "faulty": 0}
    # waits 60, 120, 300, 600, 600: median 300; p90 at h = 4*0.9 = 3.6 -> 600; mean 1680/5
    assert select(points, "agg_1h", "hospital_wait", site="bvbm")[T0] == {
        "n": 5, "median_s": 300.0, "p90_s": 600.0, "mean_s": 336.0}
    # A corrected ward snapshot replaces the old one: same result when replayed in reverse.
    again = HospitalSite(2 * HOUR)
    assert final(again.process("bvbm", updates[::-1])) == final(points)


def test_state_pickles_and_continues_identically() -> None:
    readings = _random_ward(11) + queue_day()
    node = HospitalNodeRollup(2 * HOUR)
    site = HospitalSite(2 * HOUR)
    site.process("s", node.process("s", "w1", readings[:100])[1])
    node2, site2 = pickle.loads(pickle.dumps((node, site)))
    p1, u1 = node.process("s", "w1", readings[100:])
    p2, u2 = node2.process("s", "w1", readings[100:])
    assert p1 == p2
    assert u1 == u2
    assert site.process("s", u1) == site2.process("s", u2)


def test_too_late_readings_are_counted_and_history_bounded() -> None:
    roll = HospitalNodeRollup(10 * MIN)
    roll.process("s", "w1", [rd("b1", BED, T0 + i * MIN, occupied=i % 2) for i in range(120)])
    assert len(roll.beds["b1"]) <= 12
    assert roll.process("s", "w1", [rd("b1", BED, T0, occupied=1)]) == ([], [])
    assert roll.too_late == 1
    # The state before the horizon is kept as the bed's baseline.
    assert roll.ward_at(T0 + 200 * MIN) == (1, 1, 0, 0, 0)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["b1", "b2", "b3", "b4"]), st.integers(0, 40),
                          st.integers(0, 1), st.integers(0, 1)), max_size=60),
       st.lists(st.integers(-2, 45), min_size=1, max_size=12))
def test_wards_at_many_ends_match_ward_at_one_by_one(
        beds: list[tuple[str, int, int, int]], ends: list[int]) -> None:
    """The sweep over many windows' ends gives what a search per bed and end gives."""
    rollup = HospitalNodeRollup(100 * HOUR)
    rollup.process("hn", "w1", [rd(b, BED, T0 + t * MIN, occupied=o, fault=f) for b, t, o, f in beds])
    ordered = sorted({T0 + e * MIN for e in ends})
    assert rollup.wards_at(ordered) == [rollup.ward_at(end) for end in ordered]


def test_a_pad_at_a_3600_s_heartbeat_leaves_no_hour_without_its_ward_row() -> None:
    """A pad sends its unchanged state once its heartbeat is due (`heartbeat_s` at most
    3600 s), a little after it: a bed_pad driver's timer fires late, an upfw board's state
    comes when the board next reports. Two readings 3600.3 s apart, the first at 00:59:59,
    leave the 01:00 hour without a reading: it had no agg_1h row (nor a hospital one),
    though the ward's state at its end is known (the 00:59:59 reading: 1 occupied)."""
    readings = [rd("b1", BED, T0 + 59 * MIN + 59 * S, occupied=1),
                rd("b2", BED, T0 + 59 * MIN + 59 * S, occupied=0),
                rd("b1", BED, T0 + 2 * HOUR + 300_000_000, occupied=0),
                rd("b2", BED, T0 + 2 * HOUR + 300_000_000, occupied=0)]
    ward = {"beds": 2, "available": 1, "occupied": 1, "faulty": 0, "stale": 0, "occupancy_pct": 50.0}
    expected = {T0: ward, T0 + HOUR: ward,
                T0 + 2 * HOUR: {"beds": 2, "available": 2, "occupied": 0, "faulty": 0, "stale": 0,
                                "occupancy_pct": 0.0}}
    roll = HospitalNodeRollup(6 * HOUR)
    site = HospitalSite(6 * HOUR)
    points: list[tuple[str, str]] = []
    for r in readings:  # one message each, as the node sends them
        p, updates = roll.process("bvbm", "w1", [r])
        points += p + site.process("bvbm", updates)
    assert select(points, "agg_1h", "ward_occupancy", site="bvbm", node="w1") == expected
    assert select(points, "agg_1h", "hospital_occupancy", site="bvbm") == expected
    # The same hour, with the readings in any order (the 02:00 reading first).
    for order in ([2, 3, 0, 1], [0, 2, 1, 3]):
        roll = HospitalNodeRollup(6 * HOUR)
        points = [p for i in order for p in roll.process("bvbm", "w1", [readings[i]])[0]]
        assert select(points, "agg_1h", "ward_occupancy", site="bvbm", node="w1") == expected


def test_two_readings_of_one_pad_with_the_same_stamp_give_one_ward_in_any_order() -> None:
    """A pad may send two readings stamped in one microsecond (an exit decided as the
    heartbeat fell due): the later one by number is its state, as a replay from the raw
    points takes it (by stamp, then number). The ward took the one that came last, so
    the same readings gave occupied 1 after a redelivery put them the other way round."""
    b1_on = Reading("b1", BED, T0 + 10 * S, 41, {"occupied": 1.0}, ())
    b1_off = Reading("b1", BED, T0 + 10 * S, 42, {"occupied": 0.0}, ())
    b2 = Reading("b2", BED, T0 + 20 * S, 7, {"occupied": 1.0}, ())
    free = {"beds": 2, "occupied": 1, "available": 1, "faulty": 0, "stale": 0, "occupancy_pct": 50.0}
    for order in ([b1_on, b1_off, b2], [b1_off, b1_on, b2], [b2, b1_off, b1_on]):
        for batches in ([order], [[r] for r in order]):
            roll = HospitalNodeRollup(2 * HOUR)
            points = [p for batch in batches for p in roll.process("s", "w1", batch)[0]]
            assert select(points, "agg_1m", "ward_occupancy", site="s", node="w1") == {T0: free}
            assert select(points, "agg_1h", "ward_occupancy", site="s", node="w1") == {T0: free}


def test_a_ward_snapshot_from_before_the_bed_numbers_were_kept_resumes() -> None:
    """Snapshots of yesterday's processor hold a bed's readings as (ts, occupied, fault):
    they resume with their number unknown, so that a reading stamped alike replaces one, as
    it did then, and the ward goes on as if it had never stopped."""
    readings = _random_ward(5)
    expected = final(HospitalNodeRollup(2 * HOUR).process("s", "w1", readings)[0])
    roll = HospitalNodeRollup(2 * HOUR)
    points = roll.process("s", "w1", readings[:120])[0]
    state = roll.__dict__.copy()
    state["beds"] = {sensor: [(ts, occ, fault) for ts, occ, fault, _ in history]
                     for sensor, history in roll.beds.items()}
    old = HospitalNodeRollup.__new__(HospitalNodeRollup)
    old.__setstate__(pickle.loads(pickle.dumps(state)))
    assert all(len(e) == 4 and e[3] == -1 for history in old.beds.values() for e in history)
    other = pickle.loads(pickle.dumps(old))
    points += old.process("s", "w1", readings[120:])[0]
    assert final(points) == expected
    again = Reading("b1", BED, other.beds["b1"][-1][0], 0, {"occupied": 1.0, "fault": 1.0}, ())
    other.process("s", "w1", [again])
    assert other.beds["b1"][-1] == (again.ts_ns, 1, 1, 0)
    # That release's own pickle (fixtures/README.md: ward `w`, b1 occupied, b2 free).
    ward = pickle.loads(YESTERDAY.read_bytes())["w"]
    assert ward.beds == {"b1": [(T0 + 18 * HOUR + 10 * S, 1, 0, -1)],
                         "b2": [(T0 + 18 * HOUR + 20 * S, 0, 0, -1)]}
    points = ward.process("s", "w", [rd("b2", BED, T0 + 18 * HOUR + 20 * S, occupied=1)])[0]
    assert select(points, "agg_1m", "ward_occupancy", site="s", node="w")[T0 + 18 * HOUR] == {
        "beds": 2, "occupied": 2, "available": 0, "faulty": 0, "stale": 0, "occupancy_pct": 100.0}


def test_a_queue_resumed_from_yesterdays_snapshot_asks_for_the_hour_it_cannot_write_whole() -> None:
    """Yesterday's processor (263783f, before 9199e63) let a ticket's issue go at the floor
    minus max_wait; today's keeps it from the floor's hour minus max_wait, since a reading at
    the floor rewrites its whole hour. Resumed from yesterday's snapshot, the 12:00 hour
    rewritten at 12:40 (a reading 6 h late, not too late) lost the 11 h 50 min wait (n = 1,
    300 s; hospital_wait the same) and nothing asked for it back: the hour lacked it for
    good. It is still written from what the node holds, and the site asks for its replay
    from the raw points (which hold the issue: 2 waits, as in order).

    The fixture is that release's own pickle (fixtures/README.md): node `q` took ticket 7
    issued at 00:20 and called at 12:10 (42600 s), then ticket 1 issued at 18:30 (newest:
    floor 12:30), 6 h horizon; its site."""
    state = pickle.loads(YESTERDAY.read_bytes())
    resumed, site = state["q"], state["site"]
    assert ("k", 7) not in resumed.issues  # let go by yesterday's rule
    late = [rd("k", QUEUE, T0 + 12 * HOUR + 35 * MIN, ticket=8, called=0),
            rd("k", QUEUE, T0 + 12 * HOUR + 40 * MIN, ticket=8, called=1)]  # 300 s
    points, updates = resumed.process("bv", "q", late)
    points += site.process("bv", updates)
    assert resumed.too_late == 0
    # The live rows lack the wait the snapshot let go ...
    assert select(points, "agg_1h", "queue_wait", site="bv", node="q")[T0 + 12 * HOUR]["n"] == 1
    assert select(points, "agg_1h", "hospital_wait", site="bv")[T0 + 12 * HOUR]["n"] == 1
    # ... and the site-wide replay of the hour is asked for, once per write of it.
    assert site.take_late() == [("queue", T0 + 12 * HOUR)]
    assert site.take_late() == []
    site.process("bv", resumed.process("bv", "q", [
        rd("k", QUEUE, T0 + 12 * HOUR + 50 * MIN, ticket=9, called=0)])[1])
    assert site.take_late() == []  # the hour not written again
    site.process("bv", resumed.process("bv", "q", [
        rd("k", QUEUE, T0 + 12 * HOUR + 55 * MIN, ticket=9, called=1)])[1])
    assert site.take_late() == [("queue", T0 + 12 * HOUR)]
    # Today's processor over the same readings holds the issue: the hour whole, no replay.
    today, today_site = HospitalNodeRollup(6 * HOUR), HospitalSite(6 * HOUR)
    for r in [rd("k", QUEUE, T0 + 20 * MIN, ticket=7, called=0),
              rd("k", QUEUE, T0 + 12 * HOUR + 10 * MIN, ticket=7, called=1),
              rd("k", QUEUE, T0 + 18 * HOUR + 30 * MIN, ticket=1, called=0), *late]:
        points, updates = today.process("bv", "q", [r])
        today_site.process("bv", updates)
        assert not any(u.partial for u in updates if isinstance(u, WaitSamples))
    assert select(points, "agg_1h", "queue_wait", site="bv", node="q")[T0 + 12 * HOUR]["n"] == 2
    assert today_site.take_late() == []
    # Once the floor's hour has passed what yesterday's rule let go, the state is whole again.
    resumed.process("bv", "q", [rd("k", QUEUE, T0 + 19 * HOUR + 31 * MIN, ticket=2, called=0)])
    assert resumed.queue_kept_from is None


def test_the_er_door_of_the_simulated_city_and_of_the_drivers_sample_counts_er_arrivals() -> None:
    """The door_counter sample config and the simulated city (every hospital's ER entrance,
    node er-gate) name the ER door `door-er`; ER doors were only ids starting `er-`, so
    every ER arrival of the simulated city (the demo's, the benches') and of a door set up
    from the sample was counted a visit: hospital_flow said 0 ER arrivals all day (Bach Mai
    over the workload's first 20,000 readings: 0 and 938 visits, of which 87 came by the ER
    door). A door is an ER door when "er" is a word of its id (between -, _ or .)."""
    roles = DoorRoles()
    er_doors = ("door-er", "er-main", "er-door-1", "door_er_2", "er.1", "er")
    assert [roles.role(s) for s in er_doors] == ["er"] * 6
    visit_doors = ("door-main", "gate-1", "verandah", "door-ers", "erdoor", "ward-a")
    assert [roles.role(s) for s in visit_doors] == ["visit"] * 6
    assert DoorRoles({"door-er": "ignore"}).role("door-er") == "ignore"
    er = HospitalNodeRollup(2 * HOUR)
    opd = HospitalNodeRollup(2 * HOUR)
    updates = er.process("bach-mai", "er-gate", [rd("door-er", DOOR, T0 + m * MIN, count=2, interval_s=60)
                                                 for m in range(1, 4)])[1]
    updates += opd.process("bach-mai", "opd-hall",
                           [rd("door-main", DOOR, T0 + MIN, count=9, interval_s=60)])[1]
    points = HospitalSite(2 * HOUR).process("bach-mai", updates)
    assert select(points, "agg_1h", "hospital_flow", site="bach-mai") == {
        T0: {"er_arrivals": 6.0, "visits": 9.0, "faulty": 0}}


def test_door_hours_resumed_from_a_snapshot_take_the_er_door_again() -> None:
    """A snapshot from before holds the hour's `door-er` readings as visits (the role
    taken at each reading): resumed, the hour written again counts them as ER arrivals."""
    roll = HospitalNodeRollup(2 * HOUR)
    roll.process("bv", "er-gate", [rd("door-er", DOOR, T0 + m * MIN, count=2, interval_s=60)
                                   for m in range(1, 4)])
    state = roll.__dict__.copy()
    state["doors"] = {h: {k: ("visit", c, f) for k, (_, c, f) in e.items()} for h, e in roll.doors.items()}
    resumed = HospitalNodeRollup.__new__(HospitalNodeRollup)
    resumed.__setstate__(pickle.loads(pickle.dumps(state)))
    points = resumed.process("bv", "er-gate", [rd("door-er", DOOR, T0 + 4 * MIN, count=1, interval_s=60)])[0]
    assert select(points, "agg_1h", "door_flow", site="bv", node="er-gate") == {
        T0: {"er_arrivals": 7.0, "visits": 0.0, "faulty": 0}}
