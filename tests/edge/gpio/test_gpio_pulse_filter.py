"""The minimum pulse length shared by the loop, door and pad drivers, on a FakeClock."""

import pytest

from edge.gpio.debounce import Debouncer, Edge
from edge.gpio.pulse_filter import PulseFilter
from urbanpulse.clock import FakeClock


def _filter(clock: FakeClock, min_pulse_s: float, active: bool = True) -> PulseFilter:
    return PulseFilter(Debouncer(0.0, not active, clock.monotonic()), min_pulse_s, active)


def test_a_pulse_shorter_than_the_minimum_is_dropped_and_counted() -> None:
    clock = FakeClock()
    pulses = _filter(clock, 0.1)
    clock.advance(1.0)
    assert pulses.feed(True, clock.monotonic()) == []
    assert pulses.level is False  # held back: not yet a pulse
    clock.advance(0.06)
    assert pulses.feed(False, clock.monotonic()) == []
    assert pulses.glitches == 1
    assert pulses.deadline() is None


def test_a_long_enough_pulse_is_released_with_its_own_start_time() -> None:
    clock = FakeClock()
    pulses = _filter(clock, 0.1)
    clock.advance(1.0)
    start = clock.monotonic()
    assert pulses.feed(True, start) == []
    assert pulses.deadline() == pytest.approx(start + 0.1)
    clock.advance(0.05)
    assert pulses.poll(clock.monotonic()) == []
    clock.advance(0.06)
    assert pulses.poll(clock.monotonic()) == [Edge(True, start)]
    assert pulses.level is True
    clock.advance(0.3)
    end = clock.monotonic()
    assert pulses.feed(False, end) == [Edge(False, end)]
    assert pulses.glitches == 0


def test_the_end_of_a_pulse_seen_before_its_deadline_releases_both_edges() -> None:
    clock = FakeClock()
    pulses = _filter(clock, 0.1)
    clock.advance(1.0)
    start = clock.monotonic()
    pulses.feed(True, start)
    clock.advance(0.4)  # nobody polled at the deadline
    end = clock.monotonic()
    assert pulses.feed(False, end) == [Edge(True, start), Edge(False, end)]


def test_active_low_filters_the_low_pulses() -> None:
    clock = FakeClock()
    pulses = _filter(clock, 0.5, active=False)
    clock.advance(1.0)
    assert pulses.feed(False, clock.monotonic()) == []
    clock.advance(0.2)
    assert pulses.feed(True, clock.monotonic()) == []
    assert pulses.glitches == 1
    assert pulses.level is True


def test_a_negative_minimum_is_refused() -> None:
    with pytest.raises(ValueError, match="min_pulse_s"):
        PulseFilter(Debouncer(0.0, False, 0.0), -0.1)
