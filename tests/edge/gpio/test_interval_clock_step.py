"""Interval drivers after a wall-clock step (NTP correcting a Pi that has no RTC, after the
agent has started): the interval under way at the step closes as it would anyway, and
the intervals after it end on wall-clock boundaries again, with every count kept.

The cloud puts an interval reading in the window its interval ends in (ts - 1 ns): a
schedule left on the pre-step phase would stamp every later reading at :37 instead of
:00, each interval's vehicles landing up to a window off.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from edge.drivers.base import DriverContext, Sample
from edge.drivers.door_counter.driver import build as build_door
from edge.drivers.door_counter.driver import parse_params as door_params
from edge.drivers.traffic_loop.driver import build as build_loop
from edge.drivers.traffic_loop.driver import parse_params as loop_params
from edge.gpio.intervals import IntervalReactor
from edge.gpio.timing import MAX_INTERVAL_S, IntervalSchedule
from urbanpulse.clock import FakeClock

START = datetime(2026, 3, 1, 8, 0, 25, tzinfo=UTC)  # pulses at :25, :45 and :05


def on_boundary(ts: datetime, interval_s: float) -> bool:
    return ts.timestamp() % interval_s == 0 and ts.microsecond == 0


def build_driver(kind: str, gpio: Any, clock: FakeClock) -> tuple[Any, Callable[[], bool]]:
    """A traffic loop or a one-beam door counter on MockFactory pin 17, on `clock`, and
    whether its input is on (vehicle present, beam broken)."""
    raw = {"pin": 17, "interval_s": 60, "debounce_s": 0.002, "min_pulse_s": 0.01}
    ctx = DriverContext(clock=clock, pin_factory=gpio.provider)
    if kind == "loop":
        loop = build_loop("loop-n1", loop_params(raw, "sensors[0]"), ctx)
        return loop, lambda: bool(loop.describe().get("on"))
    door = build_door("door-1", door_params(raw, "sensors[0]"), ctx)
    return door, lambda: door.describe().get("broken") == [True]


@pytest.mark.parametrize("kind", ["loop", "door"])
@pytest.mark.parametrize("step_s", [23.4, -23.4, 57.0, 3600.0, 5 * 86400 + 1234.5])
def test_intervals_end_on_boundaries_again_after_a_wall_clock_step(
        gpio: Any, kind: str, step_s: float) -> None:
    clock = FakeClock(START)
    driver, on = build_driver(kind, gpio, clock)
    pin = gpio.factory.pin(17)
    t0 = clock.monotonic()

    async def pulse() -> None:
        # pull-up, active low; each edge wakes the driver, which closes what is due first
        await gpio.in_thread(pin.drive_low)
        clock.advance(0.3)
        await gpio.wait_until(on, "input on")
        await gpio.in_thread(pin.drive_high)
        clock.advance(0.3)
        await gpio.wait_until(lambda: not on(), "input off")

    async def scenario() -> tuple[list[Sample], int]:
        pulses = 0
        async with gpio.running(driver) as samples:
            for minute in range(8):
                for _ in range(3):
                    await pulse()
                    pulses += 1
                    clock.advance(19.4)
                if minute == 2:  # at 08:03:25, 08:03:00's interval closed (the last edge)
                    clock.jump(step_s)
        return samples, pulses

    samples, pulses = asyncio.run(scenario())
    elapsed = clock.monotonic() - t0
    assert sum(s.values["count"] for s in samples) == pulses
    # no gap, no overlap: the intervals' lengths add up to the run's
    assert sum(s.values["interval_s"] for s in samples) == pytest.approx(elapsed, abs=0.01)
    assert all(0 < s.values["interval_s"] <= 60 * 1.1 + 1e-6 for s in samples)
    stamps = [s.ts for s in samples]
    minute = timedelta(minutes=1)
    # before the step: on the minute; the interval under way at the step ends when it would
    # anyway, stamped by the corrected clock; every one after it is on the minute again;
    # then the stop's partial interval
    assert stamps[:3] == [START.replace(second=0) + k * minute for k in (1, 2, 3)], stamps
    assert stamps[3] == START.replace(second=0) + 4 * minute + timedelta(seconds=step_s)
    assert stamps[-1] == clock.now()
    after = stamps[4:-1]
    assert len(after) >= 4, stamps
    assert all(on_boundary(ts, 60) for ts in after), stamps
    assert after[0] - stamps[3] >= timedelta(seconds=6)  # a short first one is merged
    assert after == sorted(after)
    assert stamps[-1] > after[-1]
    gpio.assert_contract(samples)


def reactor_on(clock: FakeClock, interval_s: float) -> tuple[IntervalReactor, list[Sample]]:
    from edge.drivers.door_counter.logic import DoorCounter

    samples: list[Sample] = []
    logic = DoorCounter(bounce_s=0.03, levels=[False], t0=clock.monotonic())
    reactor = IntervalReactor(logic, sensor_id="door-1", kind="hospital.door",
                              interval_s=interval_s, clock=clock, now=clock.monotonic(),
                              emit=samples.append)
    return reactor, samples


def run_until(reactor: IntervalReactor, clock: FakeClock, samples: list[Sample], n: int) -> None:
    while len(samples) < n:
        clock.advance(reactor.schedule.close_at - clock.monotonic())
        asyncio.run(reactor.on_time(clock.monotonic()))


def test_a_short_first_interval_after_a_step_is_merged_into_the_next() -> None:
    clock = FakeClock(datetime(2026, 3, 1, 8, 0, 0, tzinfo=UTC))
    reactor, samples = reactor_on(clock, 60.0)
    clock.advance(30)
    clock.jump(57.0)  # the interval under way ends at 08:01:57 by the corrected clock
    run_until(reactor, clock, samples, 3)
    assert [(s.ts.strftime("%H:%M:%S"), s.values["interval_s"]) for s in samples] == [
        ("08:01:57", 60.0), ("08:03:00", 63.0), ("08:04:00", 60.0)]


@pytest.mark.parametrize("interval_s", [3600.0, 3300.0])
def test_after_a_step_no_interval_passes_the_contracts_hour(interval_s: float) -> None:
    boundary = (1_772_000_000 // interval_s + 1) * interval_s
    clock = FakeClock(datetime.fromtimestamp(boundary, UTC))
    reactor, samples = reactor_on(clock, interval_s)
    clock.advance(10)
    clock.jump(interval_s - 20)  # the interval under way ends 10 s before a boundary
    run_until(reactor, clock, samples, 3)
    lengths = [s.values["interval_s"] for s in samples]
    assert all(0 < length <= MAX_INTERVAL_S for length in lengths), lengths
    assert lengths[0] == interval_s
    assert all(on_boundary(s.ts, interval_s) for s in samples[1:]), samples
    assert lengths[2] == interval_s


def test_a_small_clock_correction_keeps_the_schedule_and_its_stamps() -> None:
    """A change under the step threshold (a read racing the clock, a small correction)
    neither moves the intervals nor their stamps off the boundaries they were aimed at."""
    clock = FakeClock(datetime(2026, 3, 1, 8, 0, 0, tzinfo=UTC))
    reactor, samples = reactor_on(clock, 60.0)
    clock.advance(30)
    clock.jump(0.5)
    run_until(reactor, clock, samples, 3)
    assert [s.ts.strftime("%H:%M:%S.%f") for s in samples] == [
        "08:01:00.000000", "08:02:00.000000", "08:03:00.000000"]
    assert [s.values["interval_s"] for s in samples] == [60.0] * 3


def test_the_schedule_without_a_clock_runs_on_as_before() -> None:
    schedule = IntervalSchedule(60.0, datetime(2026, 3, 1, 8, 0, 42, tzinfo=UTC), 500.0)
    schedule.advance()
    assert (schedule.start, schedule.end) == pytest.approx((518.0, 578.0))
