"""A loop pair in a jam: vehicles crawling at 2-4 km/h over 2 m loops 5 m apart take 4.5-9 s
from one loop to the next. With the old fixed 5 km/h floor (a 3.6 s wait at most) none of
them was paired: a lane at 60-90 % occupancy reported no speed and the intersection's
mean speed left it out. The pairing window now follows each vehicle's own on-time on the
upstream loop, down to `min_speed_kmh` (1 km/h by default, presence output)."""

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from edge.drivers.base import DriverContext, Sample
from edge.drivers.traffic_loop.driver import build, parse_params
from edge.drivers.traffic_loop.logic import (
    MIN_SPEED_KMH,
    LoopInterval,
    LoopPair,
    Mode,
    TrafficLoopLogic,
)
from urbanpulse.clock import FakeClock

LOOP_M, SPACING_M = 2.0, 5.0


def vehicle_edges(t: float, length_m: float, kmh: float) -> list[tuple[float, int, bool]]:
    """(time, loop, level) of one vehicle at a constant speed over the pair."""
    v = kmh / 3.6
    on, lag = (length_m + LOOP_M) / v, SPACING_M / v
    return [(t, 0, True), (t + on, 0, False), (t + lag, 1, True), (t + lag + on, 1, False)]


def run(edges: list[tuple[float, int, bool]], min_speed_kmh: float = MIN_SPEED_KMH["presence"],
        mode: Mode = "presence", end: float = 60.0) -> tuple[LoopInterval, TrafficLoopLogic]:
    pair = LoopPair(distance_m=SPACING_M, loop_length_m=LOOP_M if mode == "presence" else None,
                    min_speed_kmh=min_speed_kmh)
    logic = TrafficLoopLogic(mode=mode, bounce_s=0.02, levels=[False, False], t0=0.0,
                             pair=pair, min_pulse_s=0.1)
    for t, line, level in sorted(edges):
        logic.feed(line, level, t)
    return logic.close_interval(end, end + logic.settle_s), logic


def test_a_crawling_queue_is_measured_at_its_speed() -> None:
    # motorbikes and a car at 3 km/h, 12 s apart (the loop clears between them): each is
    # 4.7-7.8 s on a loop and 6 s from one loop to the next
    edges = [e for k, length in enumerate((1.9, 1.9, 4.5, 1.8))
             for e in vehicle_edges(1.0 + 12.0 * k, length, 3.0)]
    result, logic = run(edges)
    assert (result.count, result.vehicles_measured) == (4, 4)
    assert result.speed_kmh == pytest.approx(3.0)
    assert result.length_m == pytest.approx((1.9 + 1.9 + 4.5 + 1.8) / 4)
    on_s = sum((length + LOOP_M) / (3.0 / 3.6) for length in (1.9, 1.9, 4.5, 1.8))
    assert result.occupancy_pct == pytest.approx(100 * on_s / 60)  # 36 %
    assert (logic.totals.unmatched_upstream, logic.totals.unmatched_downstream) == (0, 0)
    assert result.values()["speed_kmh"] == 3.0


def test_the_old_5_kmh_floor_measured_no_crawling_vehicle() -> None:
    # what a lane configured with min_speed_kmh = 5 (the old default) still does
    edges = [e for k in range(4) for e in vehicle_edges(1.0 + 12.0 * k, 1.9, 3.0)]
    result, logic = run(edges, min_speed_kmh=5.0)
    assert (result.count, result.vehicles_measured, result.speed_kmh) == (4, 0, None)
    assert "speed_kmh" not in result.values()
    assert logic.totals.unmatched_downstream == 4


def test_a_vehicle_stopped_over_the_upstream_loop_is_waited_for_down_to_the_floor() -> None:
    # a car stands on loop 1 for 12 s, then moves on: 5 m in 15 s is 1.2 km/h
    edges = [(1.0, 0, True), (16.0, 1, True), (17.5, 0, False), (22.0, 1, False)]
    result, _ = run(edges)
    assert result.vehicles_measured == 1
    assert result.speed_kmh == pytest.approx(SPACING_M / 15.0 * 3.6)
    # below the floor (1 km/h: 18 s over 5 m) no speed is made up
    edges = [(1.0, 0, True), (20.0, 1, True), (21.5, 0, False), (26.0, 1, False)]
    result, logic = run(edges)
    assert (result.vehicles_measured, result.speed_kmh) == (0, None)
    assert logic.totals.unmatched_downstream == 1


def test_a_quick_vehicle_that_left_the_lane_is_not_paired_with_the_next_one() -> None:
    # A motorbike at 30 km/h is on loop 1 for 0.47 s and changes lanes before loop 2; the
    # next one follows 1.5 s behind. Its on-time says it would have reached loop 2 within
    # 1.5 x 5 x 0.47 / (1 + 2) = 1.2 s: its onset is dropped, not paired with the next
    # motorbike's (a 1.5 + 0.6 s "transit": 8.6 km/h instead of 30). The old fixed window
    # (3.6 s at 5 km/h) made that pair.
    first = [e for e in vehicle_edges(1.0, 1.9, 30.0) if e[1] == 0]
    edges = first + vehicle_edges(2.5, 1.9, 30.0)
    result, logic = run(edges)
    assert (result.count, result.vehicles_measured) == (2, 1)
    assert result.speed_kmh == pytest.approx(30.0)
    assert logic.totals.unmatched_upstream == 1


def test_a_vehicle_braking_between_the_loops_is_still_paired() -> None:
    # a motorbike over loop 1 at 30 km/h (0.47 s), then braking: 5 m in 1.0 s (18 km/h)
    # instead of 0.6 s; the window for it is 1.5 x 5 x 0.47 / 3 = 1.17 s
    on = (1.9 + LOOP_M) / (30 / 3.6)
    edges = [(1.0, 0, True), (1.0 + on, 0, False), (2.0, 1, True), (2.0 + 0.8, 1, False)]
    result, _ = run(edges)
    assert result.vehicles_measured == 1
    assert result.speed_kmh == pytest.approx(18.0)


def test_pulse_outputs_keep_the_5_kmh_floor() -> None:
    # a pulse carries no on-time: nothing tells a crawling vehicle from a stale onset
    params = parse_params({"pin": 4, "downstream_pin": 5, "output": "pulse",
                           "loop_distance_m": 5, "debounce_s": 0.01, "min_pulse_s": 0.05},
                          "s")
    assert params.pair is not None
    assert params.pair.min_speed_kmh == 5.0
    presence = parse_params({"pin": 4, "downstream_pin": 5, "loop_distance_m": 5}, "s")
    assert presence.pair is not None
    assert presence.pair.min_speed_kmh == 1.0
    pulses = [(0.0, 0, True), (0.15, 0, False), (6.0, 1, True), (6.15, 1, False)]
    result, _ = run(pulses, min_speed_kmh=5.0, mode="pulse")
    assert result.speed_kmh is None


def test_the_driver_on_mock_pins_reports_a_crawl(gpio: Any) -> None:
    """Crawling vehicles over MockFactory pins, the edges stamped on a FakeClock moved to
    each edge's time (the real geometry: 2 m loops 5 m apart, the driver's defaults)."""
    clock = FakeClock(datetime(2026, 3, 2, 1, 0, 5, tzinfo=UTC))
    params = parse_params({"pin": 17, "downstream_pin": 27, "loop_distance_m": SPACING_M,
                           "loop_length_m": LOOP_M, "interval_s": 60}, "sensors[0]")
    driver = build("nguyen-trai-in", params, DriverContext(clock=clock, pin_factory=gpio.provider))
    pins = [gpio.factory.pin(17), gpio.factory.pin(27)]
    edges = sorted(e for k, (length, kmh) in enumerate(((1.9, 3.0), (4.5, 2.5), (1.8, 3.5)))
                   for e in vehicle_edges(12.0 * k, length, kmh))

    async def scenario() -> list[Sample]:
        start = clock.monotonic()
        async with gpio.running(driver) as samples:
            for t, line, level in edges:
                clock.advance(start + 1.0 + t - clock.monotonic())
                # pull-up, active low: the card's opto pulls the pin low for a vehicle
                await gpio.in_thread(pins[line].drive_low if level else pins[line].drive_high)
                clock.advance(0.2)  # past the debounce and min_pulse_s: the change is decided
                await gpio.wait_until(
                    lambda line=line, level=level: driver.describe()["levels"][line] is level,
                    f"loop {line} {'on' if level else 'off'}")
            clock.advance(1.0)
        return samples

    samples = asyncio.run(scenario())
    assert [s.values["count"] for s in samples] == [3]  # the stop's partial interval
    values = samples[0].values
    assert values["speed_kmh"] == pytest.approx((3.0 + 2.5 + 3.5) / 3, abs=0.05)
    assert values["length_m"] == pytest.approx((1.9 + 4.5 + 1.8) / 3, abs=0.05)
    assert values["occupancy_pct"] > 50
    described = driver.describe()
    assert (described["measured"], described["unmatched_upstream"],
            described["unmatched_downstream"]) == (3, 0, 0)
    gpio.assert_contract(samples)


def test_a_speed_measured_in_the_interval_after_the_count_says_its_vehicles(gpio: Any) -> None:
    """The demo's live lanes report every 10 s: a motorbike crawling at 3 km/h is counted as
    it reaches loop 1 (01:00:06) and measured as it reaches loop 2, 6 s later, in the next
    interval. That reading counts no vehicle, and says its speed is the mean of one
    (speed_count 1): the cloud weights the speed by it, not by the count (0)."""
    clock = FakeClock(datetime(2026, 3, 2, 1, 0, 5, tzinfo=UTC))
    params = parse_params({"pin": 17, "downstream_pin": 27, "loop_distance_m": SPACING_M,
                           "loop_length_m": LOOP_M, "interval_s": 10}, "sensors[0]")
    driver = build("nguyen-trai-in", params, DriverContext(clock=clock, pin_factory=gpio.provider))
    pins = [gpio.factory.pin(17), gpio.factory.pin(27)]

    async def scenario() -> list[Sample]:
        start = clock.monotonic()
        async with gpio.running(driver) as samples:
            for t, line, level in vehicle_edges(1.0, 1.9, 3.0):
                clock.advance(start + t - clock.monotonic())
                await gpio.in_thread(pins[line].drive_low if level else pins[line].drive_high)
                clock.advance(0.2)
                await gpio.wait_until(
                    lambda line=line, level=level: driver.describe()["levels"][line] is level,
                    f"loop {line} {'on' if level else 'off'}")
            clock.advance(start + 15.5 - clock.monotonic())  # 01:00:20.5: both intervals due
        return samples

    samples = asyncio.run(scenario())
    by_end = {s.ts.strftime("%H:%M:%S.%f"): s.values for s in samples}
    assert list(by_end) == ["01:00:10.000000", "01:00:20.000000", "01:00:20.500000"]
    counted, measured = by_end["01:00:10.000000"], by_end["01:00:20.000000"]
    assert (counted["count"], counted["speed_count"], counted.get("speed_kmh")) == (1, 0, None)
    assert (measured["count"], measured["speed_count"], measured["speed_kmh"]) == (0, 1, 3.0)
    assert all("speed_count" in s.values for s in samples)  # the stop's partial interval too
    gpio.assert_contract(samples)


def test_a_single_loop_sends_no_speed_count() -> None:
    """Without a downstream loop no speed is ever measured: no speed_count (a constant 0
    would be a series of nothing, and the cloud's result is the same without it)."""
    logic = TrafficLoopLogic(mode="presence", bounce_s=0.02, levels=[False], t0=0.0,
                             min_pulse_s=0.1)
    logic.feed(0, True, 1.0)
    logic.feed(0, False, 2.0)
    values = logic.close_interval(60.0, 60.5).values()
    assert values == {"count": 1, "interval_s": 60.0, "occupancy_pct": 1.67}
    paired, _ = run(vehicle_edges(1.0, 1.9, 3.0))
    assert paired.values()["speed_count"] == 1
    empty, _ = run([])
    assert empty.values() == {"count": 0, "interval_s": 60.0, "occupancy_pct": 0.0,
                              "speed_count": 0}
