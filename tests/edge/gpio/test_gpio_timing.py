"""Interval boundaries on wall-clock multiples, and wall times of monotonic instants."""

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from edge.gpio.timing import IntervalSchedule, wall_time_at
from urbanpulse.clock import FakeClock


def test_first_interval_ends_on_the_next_wall_clock_multiple() -> None:
    wall = datetime(2026, 3, 1, 8, 0, 42, tzinfo=UTC)
    schedule = IntervalSchedule(60.0, wall, 500.0, settle_s=0.1)
    assert schedule.start == 500.0
    assert schedule.end == pytest.approx(518.0)           # 08:01:00
    assert schedule.close_at == pytest.approx(518.1)
    schedule.advance()
    assert (schedule.start, schedule.end) == pytest.approx((518.0, 578.0))


def test_a_first_interval_shorter_than_a_tenth_is_merged_into_the_next() -> None:
    wall = datetime(2026, 3, 1, 8, 0, 57, tzinfo=UTC)     # 3 s before the minute
    schedule = IntervalSchedule(60.0, wall, 0.0)
    assert schedule.end == pytest.approx(63.0)             # 08:02:00


def test_non_positive_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="interval_s"):
        IntervalSchedule(0.0, datetime(2026, 1, 1, tzinfo=UTC), 0.0)


def test_wall_time_of_a_past_monotonic_instant() -> None:
    clock = FakeClock(datetime(2026, 3, 1, 8, 0, tzinfo=UTC))
    then = clock.monotonic()
    clock.advance(2.5)
    assert wall_time_at(clock, then) == datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
    assert wall_time_at(clock, clock.monotonic()) == clock.now()
    # an instant "in the future" (a timestamp racing the clock read) is now, never later
    assert wall_time_at(clock, clock.monotonic() + 1) == clock.now()
    assert wall_time_at(clock, then).tzinfo is UTC
    assert clock.now() - wall_time_at(clock, then) == timedelta(seconds=2.5)


@pytest.mark.parametrize("interval_s", [3600.0, 3500.0, 3300.0])
def test_a_merged_first_interval_stays_within_the_contracts_hour(interval_s: float) -> None:
    """A first interval merged into the next must not pass the contract's 3600 s bound on
    interval_s: the reading would be out of range, its count left out of every rollup and
    an out_of_range fault raised, at each start of a node reporting hourly."""
    from edge.drivers.door_counter.logic import DoorCounter
    from edge.gpio.intervals import IntervalReactor
    from edge.gpio.timing import MAX_INTERVAL_S
    from urbanpulse.wire.kinds import KINDS, outside_range

    assert {KINDS[k].fields["interval_s"].high for k in ("traffic.loop", "hospital.door")} == {
        MAX_INTERVAL_S}

    boundary = (1_772_000_000 // interval_s + 1) * interval_s  # a wall-clock multiple, 2026
    for before in (1.0, interval_s / 20, interval_s / 10 - 1):  # started that long before it
        clock = FakeClock(datetime.fromtimestamp(boundary - before, UTC))
        samples: list = []
        logic = DoorCounter(bounce_s=0.03, levels=[False], t0=clock.monotonic())
        reactor = IntervalReactor(logic, sensor_id="door-1", kind="hospital.door",
                                  interval_s=interval_s, clock=clock, now=clock.monotonic(),
                                  emit=samples.append)
        while len(samples) < 2:
            clock.advance(reactor.schedule.close_at - clock.monotonic())
            asyncio.run(reactor.on_time(clock.monotonic()))
        for s in samples:
            assert 0 < s.values["interval_s"] <= 3600
            assert outside_range(s.kind, s.values) is None, (before, s.values)
        assert samples[1].values["interval_s"] == interval_s
