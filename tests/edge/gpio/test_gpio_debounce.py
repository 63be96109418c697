"""Our own debounce (gpiozero's MockFactory ignores bounce_time), on a FakeClock."""

import pytest

from edge.gpio.debounce import Debouncer, Edge
from urbanpulse.clock import FakeClock


def test_relay_bounce_gives_one_edge_stamped_at_the_first_contact() -> None:
    clock = FakeClock()
    t0 = clock.monotonic()
    deb = Debouncer(0.010, False, t0)
    clock.advance(1.0)
    first = clock.monotonic()
    edges: list[Edge] = []
    # contact closes, bounces open/closed within 3 ms, then stays closed
    for dt, level in ((0.0, True), (0.001, False), (0.001, True), (0.001, False), (0.0005, True)):
        clock.advance(dt)
        edges += deb.feed(level, clock.monotonic())
    assert edges == []
    assert deb.deadline() == pytest.approx(first + 0.0035 + 0.010)
    clock.advance(0.009)
    assert deb.poll(clock.monotonic()) == []
    clock.advance(0.002)
    assert deb.poll(clock.monotonic()) == [Edge(True, first)]
    assert deb.level is True
    assert deb.deadline() is None


def test_a_glitch_shorter_than_the_bounce_time_is_dropped_and_counted() -> None:
    clock = FakeClock()
    deb = Debouncer(0.020, False, clock.monotonic())
    clock.advance(5.0)
    assert deb.feed(True, clock.monotonic()) == []
    clock.advance(0.005)
    assert deb.feed(False, clock.monotonic()) == []
    clock.advance(0.5)
    assert deb.poll(clock.monotonic()) == []
    assert deb.level is False
    assert deb.glitches == 1


def test_a_new_change_after_a_quiet_period_confirms_the_previous_level_first() -> None:
    clock = FakeClock()
    deb = Debouncer(0.020, False, clock.monotonic())
    on = clock.monotonic() + 1
    clock.advance(1)
    assert deb.feed(True, on) == []
    clock.advance(0.1)
    off = clock.monotonic()
    # no poll in between: the falling edge itself confirms the rising one
    assert deb.feed(False, off) == [Edge(True, on)]
    clock.advance(0.02)
    assert deb.poll(clock.monotonic()) == [Edge(False, off)]


def test_the_deadline_itself_confirms_despite_float_rounding() -> None:
    deb = Debouncer(0.02, False, 1000.0)
    deb.feed(True, 1000.1)
    due = deb.deadline()
    assert due is not None
    assert deb.poll(due) == [Edge(True, 1000.1)]


def test_zero_bounce_time_passes_every_change_through() -> None:
    deb = Debouncer(0.0, False, 0.0)
    assert deb.feed(True, 1.0) == [Edge(True, 1.0)]
    assert deb.feed(True, 1.5) == []
    assert deb.feed(False, 2.0) == [Edge(False, 2.0)]


def test_repeated_level_reports_do_not_restart_the_bounce_window() -> None:
    deb = Debouncer(0.02, False, 0.0)
    deb.feed(True, 1.0)
    deb.feed(True, 1.015)
    assert deb.poll(1.02) == [Edge(True, 1.0)]


def test_a_timestamp_earlier_than_the_last_change_is_clamped() -> None:
    deb = Debouncer(0.02, False, 0.0)
    deb.feed(True, 1.0)
    deb.feed(False, 0.5)  # out of order: treated as happening at 1.0
    assert deb.poll(2.0) == []
    assert deb.glitches == 1


def test_negative_bounce_time_is_refused() -> None:
    with pytest.raises(ValueError, match="bounce_s"):
        Debouncer(-0.1, False, 0.0)
