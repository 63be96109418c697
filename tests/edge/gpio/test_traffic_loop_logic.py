"""Loop-detector logic with scripted edges on a FakeClock: counts, occupancy (also across
an interval boundary), relay bounce, pulse outputs, speed and length from a loop pair."""

import random

import pytest

from edge.drivers.traffic_loop.logic import LoopPair, TrafficLoopLogic
from urbanpulse.clock import FakeClock

# DESIGN.md's example: a 4.5 m car over a 2 m loop at 30 km/h is on for 0.78 s.
CAR_M, LOOP_M, KMH = 4.5, 2.0, 30.0
SPEED_MS = KMH / 3.6
ON_TIME = (CAR_M + LOOP_M) / SPEED_MS


def make(clock: FakeClock, **kw: object) -> TrafficLoopLogic:
    kw.setdefault("mode", "presence")
    kw.setdefault("bounce_s", 0.01)
    kw.setdefault("levels", [False])
    return TrafficLoopLogic(t0=clock.monotonic(), **kw)


def at(clock: FakeClock, t: float) -> float:
    """Monotonic time `t` seconds after the clock's start (the logic's t0)."""
    return 1000.0 + t


def test_on_time_example_matches_design() -> None:
    assert pytest.approx(0.78) == ON_TIME


def test_count_and_occupancy_over_one_interval() -> None:
    clock = FakeClock()
    logic = make(clock)
    for start in (5.0, 20.0, 41.0):
        logic.feed(0, True, at(clock, start))
        logic.feed(0, False, at(clock, start + ON_TIME))
    clock.advance(60.1)
    result = logic.close_interval(at(clock, 60.0), clock.monotonic())
    assert result.count == 3
    assert result.interval_s == pytest.approx(60.0)
    assert result.occupancy_pct == pytest.approx(100 * 3 * ON_TIME / 60)
    assert result.values() == {"count": 3, "interval_s": 60.0,
                               "occupancy_pct": round(100 * 3 * ON_TIME / 60, 2)}


def test_a_vehicle_straddling_the_boundary_is_split_between_intervals() -> None:
    clock = FakeClock()
    logic = make(clock)
    logic.feed(0, True, at(clock, 59.5))
    clock.advance(60.1)
    first = logic.close_interval(at(clock, 60.0), clock.monotonic())
    logic.feed(0, False, at(clock, 60.3))
    clock.advance(60.0)
    second = logic.close_interval(at(clock, 120.0), clock.monotonic())
    assert first.count == 1
    assert first.occupancy_pct == pytest.approx(100 * 0.5 / 60)
    assert second.count == 0
    assert second.occupancy_pct == pytest.approx(100 * 0.3 / 60)


def test_a_vehicle_standing_on_the_loop_for_intervals_gives_full_occupancy() -> None:
    clock = FakeClock()
    logic = make(clock)
    logic.feed(0, True, at(clock, 30.0))
    clock.advance(200)
    results = [logic.close_interval(at(clock, end), clock.monotonic()) for end in (60, 120, 180)]
    assert [r.count for r in results] == [1, 0, 0]
    assert [r.occupancy_pct for r in results] == pytest.approx([50.0, 100.0, 100.0])


def test_vehicle_present_at_start_adds_occupancy_but_no_count() -> None:
    clock = FakeClock()
    logic = make(clock, levels=[True])
    logic.feed(0, False, at(clock, 2.0))
    clock.advance(11)
    result = logic.close_interval(at(clock, 10.0), clock.monotonic())
    assert result.count == 0
    assert result.occupancy_pct == pytest.approx(20.0)


def test_relay_bounce_counts_once_and_times_from_the_first_contact() -> None:
    clock = FakeClock()
    logic = make(clock, bounce_s=0.01)
    start = 10.0
    for dt, level in ((0.0, True), (0.002, False), (0.003, True), (0.004, False), (0.0045, True)):
        logic.feed(0, level, at(clock, start + dt))
    end = start + ON_TIME
    for dt, level in ((0.0, False), (0.001, True), (0.003, False)):
        logic.feed(0, level, at(clock, end + dt))
    clock.advance(61)
    result = logic.close_interval(at(clock, 60.0), clock.monotonic())
    assert result.count == 1
    assert result.occupancy_pct == pytest.approx(100 * ON_TIME / 60)
    assert logic.glitches == 0


def test_spikes_shorter_than_the_debounce_time_are_not_vehicles() -> None:
    clock = FakeClock()
    logic = make(clock, bounce_s=0.02)
    for t in (3.0, 9.0, 15.0):
        logic.feed(0, True, at(clock, t))
        logic.feed(0, False, at(clock, t + 0.005))
    clock.advance(61)
    result = logic.close_interval(at(clock, 60.0), clock.monotonic())
    assert result.count == 0
    assert result.occupancy_pct == 0.0
    assert logic.glitches == 3


def test_an_edge_begun_before_the_boundary_and_confirmed_after_counts_before_it() -> None:
    clock = FakeClock()
    logic = make(clock, bounce_s=0.02)
    logic.feed(0, True, at(clock, 59.99))
    logic.feed(0, False, at(clock, 59.995))
    logic.feed(0, True, at(clock, 59.999))   # bouncing until after the boundary
    clock.advance(60.0 + logic.settle_s)      # the driver closes the interval settle_s late
    first = logic.close_interval(at(clock, 60.0), clock.monotonic())
    assert first.count == 1
    assert first.occupancy_pct == pytest.approx(100 * 0.01 / 60)


def test_pulse_output_counts_pulses_and_reports_no_occupancy() -> None:
    clock = FakeClock()
    logic = make(clock, mode="pulse", bounce_s=0.005)
    for i in range(7):
        logic.feed(0, True, at(clock, 2.0 + i * 3))
        logic.feed(0, False, at(clock, 2.0 + i * 3 + 0.15))
    clock.advance(31)
    result = logic.close_interval(at(clock, 30.0), clock.monotonic())
    assert result.count == 7
    assert result.occupancy_pct is None
    assert "occupancy_pct" not in result.values()


def pair_logic(clock: FakeClock, **kw: object) -> TrafficLoopLogic:
    pair = LoopPair(distance_m=5.0, loop_length_m=LOOP_M)
    return make(clock, levels=[False, False], pair=pair, **kw)


def drive_car(logic: TrafficLoopLogic, t: float, *, car_m: float = CAR_M, kmh: float = KMH,
              distance_m: float = 5.0) -> None:
    """Edges of one car over two loops `distance_m` apart (leading edge to leading edge)."""
    v = kmh / 3.6
    on = (car_m + LOOP_M) / v
    lag = distance_m / v
    events = [(t, 0, True), (t + on, 0, False), (t + lag, 1, True), (t + lag + on, 1, False)]
    for when, line, level in sorted(events):
        logic.feed(line, level, 1000.0 + when)


def test_speed_and_length_from_a_loop_pair_match_hand_computed_values() -> None:
    # loop 1 on at 10.0, loop 2 on at 10.6 (5 m at 8.333 m/s), each on for 0.78 s:
    # speed = 5 / 0.6 = 8.333 m/s = 30 km/h; length = 8.333 * 0.78 - 2 = 4.5 m
    clock = FakeClock()
    logic = pair_logic(clock)
    logic.feed(0, True, at(clock, 10.0))
    logic.feed(1, True, at(clock, 10.6))
    logic.feed(0, False, at(clock, 10.78))
    logic.feed(1, False, at(clock, 11.38))
    clock.advance(61)
    result = logic.close_interval(at(clock, 60.0), clock.monotonic())
    assert result.count == 1
    assert result.speed_kmh == pytest.approx(30.0)
    assert result.length_m == pytest.approx(4.5)
    values = result.values()
    assert values["speed_kmh"] == 30.0
    assert values["length_m"] == 4.5


def test_interval_means_over_several_vehicles() -> None:
    clock = FakeClock()
    logic = pair_logic(clock)
    drive_car(logic, 5.0, car_m=4.5, kmh=30.0)
    drive_car(logic, 20.0, car_m=12.0, kmh=50.0)   # a bus
    drive_car(logic, 35.0, car_m=2.0, kmh=40.0)    # a motorbike
    clock.advance(61)
    result = logic.close_interval(at(clock, 60.0), clock.monotonic())
    assert result.count == 3
    assert result.vehicles_measured == 3
    assert result.speed_kmh == pytest.approx((30 + 50 + 40) / 3)
    assert result.length_m == pytest.approx((4.5 + 12.0 + 2.0) / 3)


def test_upstream_onset_without_a_downstream_one_is_dropped_after_the_max_transit() -> None:
    clock = FakeClock()
    logic = pair_logic(clock)
    # a car changes lanes after loop 1: nothing downstream
    logic.feed(0, True, at(clock, 1.0))
    logic.feed(0, False, at(clock, 1.5))
    # the next car, 20 s later, must not be paired with the first one's onset
    drive_car(logic, 21.0, kmh=36.0)
    clock.advance(61)
    result = logic.close_interval(at(clock, 60.0), clock.monotonic())
    assert result.count == 2
    assert result.vehicles_measured == 1
    assert result.speed_kmh == pytest.approx(36.0)
    assert logic.totals.unmatched_upstream == 1


def test_downstream_onset_with_no_plausible_upstream_one_is_not_a_speed() -> None:
    clock = FakeClock()
    logic = pair_logic(clock)
    # a car joins the lane between the loops
    logic.feed(1, True, at(clock, 4.0))
    logic.feed(1, False, at(clock, 4.7))
    clock.advance(61)
    result = logic.close_interval(at(clock, 60.0), clock.monotonic())
    assert result.count == 0
    assert result.speed_kmh is None
    assert "speed_kmh" not in result.values()
    assert logic.totals.unmatched_downstream == 1


def test_speed_measured_over_a_boundary_belongs_to_the_interval_it_completes_in() -> None:
    clock = FakeClock()
    logic = pair_logic(clock)
    drive_car(logic, 59.5)   # loop 2 leaves at 59.5 + 0.6 + 0.78 = 60.88
    clock.advance(60.1)
    first = logic.close_interval(at(clock, 60.0), clock.monotonic())
    clock.advance(60)
    second = logic.close_interval(at(clock, 120.0), clock.monotonic())
    assert (first.count, first.speed_kmh) == (1, None)
    assert second.count == 0
    assert second.speed_kmh == pytest.approx(30.0)
    assert second.length_m == pytest.approx(4.5)


def test_implausible_length_is_left_out_but_speed_kept() -> None:
    clock = FakeClock()
    logic = pair_logic(clock)
    # detector holds on far too long (a stuck relay for 20 s) -> length far beyond 50 m
    logic.feed(0, True, at(clock, 1.0))
    logic.feed(1, True, at(clock, 1.6))
    logic.feed(0, False, at(clock, 21.0))
    logic.feed(1, False, at(clock, 21.6))
    clock.advance(61)
    result = logic.close_interval(at(clock, 60.0), clock.monotonic())
    assert result.speed_kmh == pytest.approx(30.0)
    assert result.length_m is None
    assert logic.totals.implausible_length == 1


def test_pulse_output_pair_gives_speed_but_no_length() -> None:
    clock = FakeClock()
    logic = make(clock, mode="pulse", bounce_s=0.005, levels=[False, False],
                 pair=LoopPair(distance_m=5.0))
    logic.feed(0, True, at(clock, 3.0))
    logic.feed(0, False, at(clock, 3.15))
    logic.feed(1, True, at(clock, 3.5))
    logic.feed(1, False, at(clock, 3.65))
    clock.advance(61)
    result = logic.close_interval(at(clock, 60.0), clock.monotonic())
    assert result.count == 1
    assert result.speed_kmh == pytest.approx(36.0)
    assert result.length_m is None


def test_detections_shorter_than_the_minimum_pulse_are_glitches_not_vehicles() -> None:
    clock = FakeClock()
    logic = make(clock, bounce_s=0.01, min_pulse_s=0.1)
    for t in (3.0, 9.0, 15.0):  # false pulses of 50-90 ms
        logic.feed(0, True, at(clock, t))
        logic.feed(0, False, at(clock, t + 0.05 + (t - 3.0) / 300))
    logic.feed(0, True, at(clock, 30.0))  # a motorbike, 0.2 s
    logic.feed(0, False, at(clock, 30.2))
    clock.advance(60.0 + logic.settle_s)
    result = logic.close_interval(at(clock, 60.0), clock.monotonic())
    assert result.count == 1
    assert result.occupancy_pct == pytest.approx(100 * 0.2 / 60)  # timed from its onset
    assert result.glitches == 3
    assert result.values()["glitches"] == 3
    clock.advance(60.0)
    quiet = logic.close_interval(at(clock, 120.0), clock.monotonic())
    assert quiet.glitches == 0
    assert "glitches" not in quiet.values()  # sent only when not 0


def test_a_held_onset_before_the_boundary_counts_in_its_own_interval() -> None:
    clock = FakeClock()
    logic = make(clock, bounce_s=0.01, min_pulse_s=0.1)
    logic.feed(0, True, at(clock, 59.95))  # lasts past the boundary and the minimum
    clock.advance(60.0 + logic.settle_s)
    logic.poll(clock.monotonic())
    first = logic.close_interval(at(clock, 60.0), clock.monotonic())
    assert (first.count, first.glitches) == (1, 0)
    assert first.occupancy_pct == pytest.approx(100 * 0.05 / 60)
    assert logic.level(0) is True


def test_a_random_two_loop_walk_without_deadline_polls_measures_every_vehicle() -> None:
    # A busy node: no poll at the filters' deadlines, only the raw edges and the closes at
    # end + settle_s. Each vehicle's edges on the two loops are taken in the order they
    # happened, whichever interval they are decided in: every one is counted once, paired
    # and measured at its own speed (a downstream onset applied before its upstream one
    # left both unmatched).
    rng = random.Random(20261129)
    clock = FakeClock()
    pair = LoopPair(distance_m=3.0, loop_length_m=LOOP_M)
    logic = make(clock, levels=[False, False], pair=pair, bounce_s=0.03, min_pulse_s=0.1)
    interval_s, events, speeds = 2.0, [], []
    t = 0.5
    for _ in range(400):
        kmh, car_m = rng.uniform(20.0, 120.0), rng.uniform(3.0, 12.0)
        v = kmh / 3.6
        on, lag = (car_m + LOOP_M) / v, pair.distance_m / v
        events += [(t, 0, True), (t + on, 0, False), (t + lag, 1, True), (t + lag + on, 1, False)]
        speeds.append(kmh)
        t += lag + on + pair.max_transit_s + rng.uniform(0.05, 3.0)
    events.sort()
    results, end, i = [], interval_s, 0
    while i < len(events) or end < t + interval_s:
        close_at = end + logic.settle_s
        while i < len(events) and events[i][0] <= close_at:
            when, line, level = events[i]
            logic.feed(line, level, at(clock, when))
            i += 1
        clock.advance(at(clock, close_at) - clock.monotonic())
        results.append(logic.close_interval(at(clock, end), clock.monotonic()))
        end += interval_s
    assert sum(r.count for r in results) == len(speeds)
    assert (logic.totals.vehicles, logic.totals.measured) == (len(speeds), len(speeds))
    assert (logic.totals.unmatched_upstream, logic.totals.unmatched_downstream) == (0, 0)
    assert logic.totals.implausible_length == 0
    assert sum(r.vehicles_measured for r in results) == len(speeds)
    mean_speed = sum(speeds) / len(speeds)
    measured = sum((r.speed_kmh or 0.0) * r.vehicles_measured for r in results) / len(speeds)
    assert measured == pytest.approx(mean_speed, rel=1e-6)
