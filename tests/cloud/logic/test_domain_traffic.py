"""Traffic per lane and per intersection, with hand-computed values."""

from __future__ import annotations

import pickle
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.logic.domain.traffic import Sample, TrafficRollup, _sums, _sums_text
from cloud.logic.lines import line
from tests.cloud.logic.domain_helpers import HOUR, MIN, T0, S, final, rd, select
from urbanpulse.wire import Reading

LOOP = "traffic.loop"


def minute_readings() -> list[Reading]:
    return [
        rd("lane-1", LOOP, T0 + 10 * S, count=5, occupancy_pct=10, interval_s=20, speed_kmh=30),
        rd("lane-1", LOOP, T0 + 30 * S, count=3, occupancy_pct=20, interval_s=20, speed_kmh=40),
        rd("lane-1", LOOP, T0 + 50 * S, count=0, occupancy_pct=0, interval_s=20),
        rd("lane-2", LOOP, T0 + 30 * S, count=6, occupancy_pct=30, interval_s=30, speed_kmh=20),
    ]


def test_lane_and_intersection_minute() -> None:
    points = TrafficRollup(2 * HOUR).process("hn", "x12", minute_readings())
    lane1 = select(points, "agg_1m", "traffic_lane", site="hn", node="x12", sensor="lane-1")[T0]
    # vehicles 5+3+0; 60 s covered; occupancy (10*20 + 20*20 + 0)/60; speed (5*30 + 3*40)/8
    assert lane1 == {"vehicles": 8.0, "interval_s": 60.0, "flow_vpm": 8.0, "occupancy_pct": 10.0,
                     "speed_kmh": 33.75}
    lane2 = select(points, "agg_1m", "traffic_lane", site="hn", node="x12", sensor="lane-2")[T0]
    # 6 vehicles in 30 s -> 12 per minute
    assert lane2 == {"vehicles": 6.0, "interval_s": 30.0, "flow_vpm": 12.0, "occupancy_pct": 30.0,
                     "speed_kmh": 20.0}
    both = select(points, "agg_1m", "traffic_intersection", site="hn", node="x12")[T0]
    assert both["vehicles"] == 14.0
    assert both["flow_vpm"] == 20.0  # 8 + 12
    assert both["occupancy_pct"] == pytest.approx(1500 / 90)  # (200+400+0+900)/90
    assert both["speed_kmh"] == pytest.approx(390 / 14)  # (150+120+120)/14
    assert (both["lanes"], both["speed_lanes"]) == (2, 2)
    hour = select(points, "agg_1h", "traffic_intersection", site="hn", node="x12")
    assert hour[T0] == both


def test_occupancy_only_from_the_readings_that_carry_it() -> None:
    """A pulse-output loop card sends no occupancy (the contract makes it optional): such a
    reading crashed the dataflow with a KeyError, and a crash replays it forever."""
    pulse = rd("lane-1", LOOP, T0 + 10 * S, count=5, interval_s=30)
    timed = rd("lane-1", LOOP, T0 + 40 * S, count=3, occupancy_pct=20, interval_s=30)
    only_pulse = TrafficRollup(HOUR).process("hn", "x1", [pulse])
    lane = select(only_pulse, "agg_1m", "traffic_lane", site="hn", node="x1", sensor="lane-1")[T0]
    assert lane == {"vehicles": 5.0, "interval_s": 30.0, "flow_vpm": 10.0}
    mixed = TrafficRollup(HOUR).process("hn", "x1", [pulse, timed])
    lane = select(mixed, "agg_1m", "traffic_lane", site="hn", node="x1", sensor="lane-1")[T0]
    assert lane["flow_vpm"] == 8.0  # 8 vehicles in 60 s
    assert lane["occupancy_pct"] == 20.0  # over the 30 s the timed reading covers


def test_no_speed_when_no_vehicle_carries_one() -> None:
    r = rd("lane-1", LOOP, T0 + 5 * S, count=0, occupancy_pct=0, interval_s=60, speed_kmh=0)
    points = TrafficRollup(HOUR).process("hn", "x1", [r])
    lane = select(points, "agg_1m", "traffic_lane", site="hn", node="x1", sensor="lane-1")[T0]
    assert "speed_kmh" not in lane
    assert lane["flow_vpm"] == 0.0


def test_a_speed_weighted_by_its_speed_count_counts_where_no_vehicle_was_counted() -> None:
    """A crawling vehicle is counted in one reading and its speed measured in the next (it
    reaches the downstream loop seconds later): the reading that counted none carries the
    speed with speed_count 2, and the lane's speed takes it, weighted 2."""
    readings = [
        rd("lane-1", LOOP, T0 + 10 * S, count=3, occupancy_pct=90, interval_s=10, speed_kmh=4,
           speed_count=1),
        rd("lane-1", LOOP, T0 + 20 * S, count=0, occupancy_pct=95, interval_s=10, speed_kmh=2.5,
           speed_count=2),
        rd("lane-1", LOOP, T0 + 30 * S, count=0, occupancy_pct=100, interval_s=10, speed_count=0),
        rd("lane-2", LOOP, T0 + 30 * S, count=6, occupancy_pct=30, interval_s=30, speed_kmh=20,
           speed_count=4),
    ]
    points = TrafficRollup(HOUR).process("hn", "x1", readings)
    lane1 = select(points, "agg_1m", "traffic_lane", site="hn", node="x1", sensor="lane-1")[T0]
    # (4 * 1 + 2.5 * 2) / (1 + 2) = 3; by count it would be 4 (the 2.5 of count 0 left out)
    assert lane1 == {"vehicles": 3.0, "interval_s": 30.0, "flow_vpm": 6.0, "occupancy_pct": 95.0,
                     "speed_kmh": 3.0}
    lane2 = select(points, "agg_1m", "traffic_lane", site="hn", node="x1", sensor="lane-2")[T0]
    assert lane2["speed_kmh"] == 20.0
    both = select(points, "agg_1m", "traffic_intersection", site="hn", node="x1")[T0]
    assert both["speed_kmh"] == (4 + 5 + 80) / 7  # weights 1 + 2 + 4
    assert both["vehicles"] == 9.0
    assert (both["lanes"], both["speed_lanes"]) == (2, 2)


def test_speed_lanes_counts_the_lanes_that_gave_a_speed() -> None:
    """One lane blocked, a queue standing over its loop (no onset, no speed), the others
    flowing: the intersection's speed is theirs, and speed_lanes says 2 of 3 lanes gave it."""
    readings = [
        rd("lane-1", LOOP, T0 + MIN, count=20, occupancy_pct=12, interval_s=60, speed_kmh=31,
           speed_count=19),
        rd("lane-2", LOOP, T0 + MIN, count=0, occupancy_pct=100, interval_s=60, speed_count=0),
        rd("lane-3", LOOP, T0 + MIN, count=15, occupancy_pct=9, interval_s=60, speed_kmh=35),
        rd("lane-3", LOOP, T0 + MIN + 30 * S, count=0, occupancy_pct=0, interval_s=30,
           speed_kmh=40),  # next minute: count 0, no speed_count: no speed, as before
    ]
    points = TrafficRollup(HOUR).process("hn", "x1", readings)
    minutes = select(points, "agg_1m", "traffic_intersection", site="hn", node="x1")
    assert (minutes[T0]["lanes"], minutes[T0]["speed_lanes"]) == (3, 2)
    assert minutes[T0]["speed_kmh"] == (31 * 19 + 35 * 15) / 34
    assert (minutes[T0 + MIN]["lanes"], minutes[T0 + MIN]["speed_lanes"]) == (1, 0)
    assert "speed_kmh" not in minutes[T0 + MIN]
    hour = select(points, "agg_1h", "traffic_intersection", site="hn", node="x1")[T0]
    assert (hour["lanes"], hour["speed_lanes"]) == (3, 2)


def test_without_speed_count_the_speed_is_weighted_by_count_as_before() -> None:
    """Agents before session 16 send no speed_count: their points are those of the releases
    before, the same text; a speed_count equal to the count changes nothing either."""
    old = minute_readings()
    with_count = [Reading(r.sensor, r.kind, r.ts_ns, r.seq, {**r.values, "speed_count": r.values["count"]},
                          r.flags) if "speed_kmh" in r.values else r for r in old]
    points = TrafficRollup(2 * HOUR).process("hn", "x12", old)
    assert TrafficRollup(2 * HOUR).process("hn", "x12", with_count) == points
    lane1 = select(points, "agg_1m", "traffic_lane", site="hn", node="x12", sensor="lane-1")[T0]
    assert lane1["speed_kmh"] == 33.75  # (5*30 + 3*40)/8, by count
    lone = rd("lane-1", LOOP, T0 + 5 * S, count=0, occupancy_pct=0, interval_s=60, speed_kmh=7)
    lane = select(TrafficRollup(HOUR).process("hn", "x1", [lone]), "agg_1m", "traffic_lane",
                  site="hn", node="x1", sensor="lane-1")[T0]
    assert "speed_kmh" not in lane  # count 0 and no speed_count: left out, as before


def test_windows_split_by_event_time_and_warmup_left_out() -> None:
    readings = [
        rd("lane-1", LOOP, T0 + 59 * S, count=2, occupancy_pct=5, interval_s=60),
        rd("lane-1", LOOP, T0 + MIN, count=4, occupancy_pct=7, interval_s=60),
        rd("lane-1", LOOP, T0 + MIN + 1, ("warmup",), count=99, occupancy_pct=99, interval_s=60),
        rd("lane-1", LOOP, T0 + 2 * MIN, count=3, occupancy_pct=7, interval_s=60),
    ]
    points = TrafficRollup(HOUR).process("hn", "x1", readings)
    lane = select(points, "agg_1m", "traffic_lane", site="hn", node="x1", sensor="lane-1")
    # the interval ending at T0 + MIN (stamped so) is the first minute's
    assert lane[T0]["vehicles"] == 6.0
    assert lane[T0 + MIN]["vehicles"] == 3.0
    assert select(points, "agg_1h", "traffic_lane", site="hn", node="x1",
                  sensor="lane-1")[T0]["vehicles"] == 9.0


def _stream(seed: int) -> list[Reading]:
    rng = random.Random(seed)
    out = []
    for i in range(300):
        out.append(rd(f"lane-{i % 4}", LOOP, T0 + i * 7 * S + rng.randrange(S),
                      count=rng.randrange(0, 9), occupancy_pct=rng.uniform(0, 60),
                      interval_s=rng.choice([20.0, 30.0]), speed_kmh=rng.uniform(5, 70)))
    return out


def test_late_and_shuffled_input_gives_the_in_order_result() -> None:
    readings = _stream(1)
    in_order = TrafficRollup(2 * HOUR)
    expected = final(in_order.process("hn", "x1", readings))
    shuffled = readings[:]
    random.Random(2).shuffle(shuffled)
    late = TrafficRollup(2 * HOUR)
    points = []
    for i in range(0, len(shuffled), 17):
        points += late.process("hn", "x1", shuffled[i:i + 17])
    assert final(points) == expected
    assert late.too_late == 0


def test_too_late_is_counted_and_windows_evicted() -> None:
    roll = TrafficRollup(10 * MIN)
    roll.process("hn", "x1", [rd("l", LOOP, T0 + HOUR, count=1, occupancy_pct=1, interval_s=60)])
    assert roll.process("hn", "x1", [rd("l", LOOP, T0, count=1, occupancy_pct=1, interval_s=60)]) == []
    assert roll.too_late == 1
    roll.process("hn", "x1", [rd("l", LOOP, T0 + 3 * HOUR, count=1, occupancy_pct=1, interval_s=60)])
    assert sorted(roll.windows[("agg_1m", MIN)]) == [T0 + 3 * HOUR - MIN]  # its interval's minute


def test_pickle_round_trip_continues_identically() -> None:
    readings = _stream(3)
    a = TrafficRollup(2 * HOUR)
    a.process("hn", "x1", readings[:150])
    b = pickle.loads(pickle.dumps(a))
    assert b.process("hn", "x1", readings[150:]) == a.process("hn", "x1", readings[150:])


_FLOATS = st.floats(min_value=-0.0, max_value=1e6, allow_nan=False) | st.sampled_from([0.0, -0.0, 1.0])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_FLOATS, st.none() | _FLOATS, st.floats(min_value=1.0, max_value=3600.0),
                          st.none() | _FLOATS), min_size=1, max_size=6),
       st.none() | st.floats(min_value=0.0, max_value=1e4))
def test_the_written_sums_are_those_of_the_definition(samples: list[Sample], flow: float | None
                                                      ) -> None:
    """The hot path writes a lane's and an intersection's fields directly (`_sums_text`,
    fsum([x]) as x + 0.0 for one sample): the same text as `line` makes of `_sums`."""
    expected = _sums(samples)
    if flow is not None:
        expected["flow_vpm"] = flow
    text, lane_flow = _sums_text(samples, flow)
    assert text == line("m", {}, expected, 0)[2:-2]
    assert lane_flow == _sums(samples)["flow_vpm"]
