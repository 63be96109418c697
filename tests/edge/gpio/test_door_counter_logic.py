"""Door counter logic on a FakeClock: one beam, two beams for direction."""

import pytest

from edge.drivers.door_counter.logic import DoorCounter, DoorInterval
from urbanpulse.clock import FakeClock

OUT, IN = 0, 1
T0 = 1000.0  # FakeClock's monotonic origin


def script(counter: DoorCounter, events: list[tuple[float, int, bool]]) -> None:
    for t, line, broken in events:
        counter.feed(line, broken, T0 + t)


def close(counter: DoorCounter, clock: FakeClock, end: float) -> DoorInterval:
    clock.advance(T0 + end + counter.settle_s - clock.monotonic())
    return counter.close_interval(T0 + end, clock.monotonic())


def entry(t: float) -> list[tuple[float, int, bool]]:
    """Outer beam, both, inner beam, clear: 0.1 s per step."""
    return [(t, OUT, True), (t + 0.1, IN, True), (t + 0.2, OUT, False), (t + 0.3, IN, False)]


def exit_(t: float) -> list[tuple[float, int, bool]]:
    return [(t, IN, True), (t + 0.1, OUT, True), (t + 0.2, IN, False), (t + 0.3, OUT, False)]


def test_one_beam_counts_every_break_and_filters_bounce() -> None:
    clock = FakeClock()
    counter = DoorCounter(bounce_s=0.03, levels=[False], t0=clock.monotonic())
    script(counter, [(1.0, OUT, True), (1.4, OUT, False),
                     (5.0, OUT, True), (5.01, OUT, False), (5.02, OUT, True), (5.5, OUT, False),
                     (9.0, OUT, True), (9.005, OUT, False)])   # a 5 ms flicker: not a person
    result = close(counter, clock, 60.0)
    assert result == DoorInterval(count=2, interval_s=60.0, glitches=1)
    assert result.values() == {"count": 2, "interval_s": 60.0, "glitches": 1}
    assert counter.glitches == 1


def test_two_beams_count_entries_only() -> None:
    clock = FakeClock()
    counter = DoorCounter(bounce_s=0.01, levels=[False, False], t0=clock.monotonic())
    script(counter, entry(1.0) + entry(5.0) + exit_(9.0) + entry(20.0) + exit_(30.0))
    result = close(counter, clock, 60.0)
    assert (result.count, result.exits, result.turned_back) == (3, 2, 0)
    assert counter.totals == [3, 2, 0]


def test_someone_who_turns_back_is_neither() -> None:
    clock = FakeClock()
    counter = DoorCounter(bounce_s=0.01, levels=[False, False], t0=clock.monotonic())
    script(counter, [(1.0, OUT, True), (1.1, IN, True), (1.5, IN, False), (1.7, OUT, False)])
    result = close(counter, clock, 60.0)
    assert (result.count, result.exits, result.turned_back) == (0, 0, 1)


def test_hesitating_in_the_doorway_still_counts_once_by_first_and_last_beam() -> None:
    clock = FakeClock()
    counter = DoorCounter(bounce_s=0.01, levels=[False, False], t0=clock.monotonic())
    script(counter, [(1.0, OUT, True), (1.1, IN, True), (1.3, IN, False),   # step back
                     (1.8, IN, True), (2.2, OUT, False), (2.5, IN, False)])  # and in
    result = close(counter, clock, 60.0)
    assert (result.count, result.exits, result.turned_back) == (1, 0, 0)


def test_a_crossing_counts_in_the_interval_it_ends_in() -> None:
    clock = FakeClock()
    counter = DoorCounter(bounce_s=0.01, levels=[False, False], t0=clock.monotonic())
    script(counter, entry(59.9))
    first = close(counter, clock, 60.0)
    second = close(counter, clock, 120.0)
    assert (first.count, second.count) == (0, 1)


def test_a_crossing_under_way_at_start_up_is_not_counted() -> None:
    clock = FakeClock()
    counter = DoorCounter(bounce_s=0.01, levels=[False, True], t0=clock.monotonic())
    script(counter, [(0.5, IN, False), *entry(3.0)])
    result = close(counter, clock, 60.0)
    assert (result.count, result.exits, result.turned_back) == (1, 0, 0)


@pytest.mark.parametrize("supervised", [False, True])
def test_a_crossing_under_way_at_start_up_is_not_counted_with_supervision_too(
        supervised: bool) -> None:
    # Both beams broken at start-up (someone in the doorway), then they clear: not a
    # person turning back, whether or not a supervision line follows the beam lines.
    clock = FakeClock()
    levels = [True, True, True] if supervised else [True, True]
    counter = DoorCounter(bounce_s=0.01, levels=levels, t0=clock.monotonic(),
                          supervised=supervised, whole_level=True)
    script(counter, [(0.5, OUT, False), (0.6, IN, False), *entry(3.0)])
    result = close(counter, clock, 60.0)
    assert (result.count, result.exits, result.turned_back) == (1, 0, 0)


def test_three_beams_are_refused() -> None:
    with pytest.raises(ValueError, match="one or two"):
        DoorCounter(bounce_s=0, levels=[False] * 3, t0=0)


def test_breaks_shorter_than_the_minimum_pulse_are_glitches_not_people() -> None:
    clock = FakeClock()
    counter = DoorCounter(bounce_s=0.01, levels=[False], t0=clock.monotonic(), min_pulse_s=0.1)
    script(counter, [(5.0, 0, True), (5.06, 0, False),     # a false pulse, 60 ms
                     (9.0, 0, True), (9.3, 0, False),      # a person, 0.3 s
                     (59.97, 0, True), (60.04, 0, False)])  # a glitch across the boundary
    first = close(counter, clock, 60.0)
    assert (first.count, first.glitches) == (1, 2)
    assert first.values() == {"count": 1, "interval_s": 60.0, "glitches": 2}
    second = close(counter, clock, 120.0)
    assert (second.count, second.glitches) == (0, 0)
    assert "glitches" not in second.values()


def test_two_beams_with_a_minimum_pulse_still_tell_entries_from_exits() -> None:
    clock = FakeClock()
    counter = DoorCounter(bounce_s=0.01, levels=[False, False], t0=clock.monotonic(),
                          min_pulse_s=0.1)
    script(counter, entry(2.0) + exit_(10.0) + entry(20.0) + [(30.0, OUT, True), (30.05, OUT, False)])
    result = close(counter, clock, 60.0)
    assert (result.count, result.exits, result.glitches) == (2, 1, 1)


SUP = 1  # the supervision line of a one-beam door


def supervised(clock: FakeClock, *, whole: bool = True, delay: float = 1.0) -> DoorCounter:
    return DoorCounter(bounce_s=0.01, levels=[False, whole], t0=clock.monotonic(),
                       min_pulse_s=0.1, supervised=True, whole_level=True, fault_delay_s=delay)


def test_supervised_door_reports_fault_0_while_the_cable_is_whole() -> None:
    clock = FakeClock()
    counter = supervised(clock)
    script(counter, [(1.0, OUT, True), (1.4, OUT, False)])
    result = close(counter, clock, 60.0)
    assert result.values() == {"count": 1, "interval_s": 60.0, "fault": 0}
    assert counter.cable_whole is True


def test_a_cut_cable_reports_fault_in_every_interval_it_touches() -> None:
    clock = FakeClock()
    counter = supervised(clock)
    # cut at 50 s (the beam line then reads clear), repaired at 150 s
    script(counter, [(50.0, SUP, False)])
    first = close(counter, clock, 60.0)
    assert first.fault is True
    assert counter.cable_whole is False
    assert close(counter, clock, 120.0).fault is True
    script(counter, [(150.0, SUP, True), (170.0, OUT, True), (170.5, OUT, False)])
    third = close(counter, clock, 180.0)
    assert (third.fault, third.count) == (True, 1)   # the fault held part of it
    assert close(counter, clock, 240.0).fault is False
    assert counter.faults == 1


def test_a_fault_shorter_than_the_delay_is_not_one() -> None:
    clock = FakeClock()
    counter = supervised(clock, delay=1.0)
    script(counter, [(10.0, SUP, False), (10.5, SUP, True)])   # a connector wiggled
    assert close(counter, clock, 60.0).fault is False
    assert counter.faults == 0


def test_a_fault_declared_just_before_the_interval_ends() -> None:
    clock = FakeClock()
    counter = supervised(clock, delay=1.0)
    script(counter, [(58.5, SUP, False)])
    assert close(counter, clock, 60.0).fault is True   # declared at 59.5 s
    clock = FakeClock()
    counter = supervised(clock, delay=1.0)
    script(counter, [(59.5, SUP, False)])
    assert close(counter, clock, 60.0).fault is False  # not yet: declared at 60.5 s
    assert close(counter, clock, 120.0).fault is True
    assert counter.faults == 1


def test_a_cable_cut_at_start_up_is_a_fault_at_once() -> None:
    clock = FakeClock()
    counter = supervised(clock, whole=False)
    assert close(counter, clock, 60.0).fault is True


def test_two_beams_and_supervision_count_entries_on_the_beam_lines() -> None:
    clock = FakeClock()
    counter = DoorCounter(bounce_s=0.01, levels=[False, False, True], t0=clock.monotonic(),
                          supervised=True, whole_level=True)
    script(counter, entry(1.0) + exit_(5.0))
    result = close(counter, clock, 60.0)
    assert (result.count, result.exits, result.fault) == (1, 1, False)


def test_supervised_needs_a_supervision_level() -> None:
    with pytest.raises(ValueError, match="one or two beams"):
        DoorCounter(bounce_s=0.01, levels=[True], t0=0.0, supervised=True)


def test_an_exit_across_an_interval_end_the_loop_polled_late_is_still_an_exit() -> None:
    # The event loop held up around the interval's end (no poll at the deadlines): the
    # inner beam's break is still held back (min_pulse_s) when the interval closes, its end
    # being debounced. The outer beam's later break was applied without it, and the
    # crossing was counted as someone turning back.
    clock = FakeClock()
    counter = DoorCounter(bounce_s=0.03, levels=[False, False], t0=clock.monotonic(),
                          min_pulse_s=0.1)
    script(counter, [(59.659, IN, True), (59.801, OUT, True), (60.183, IN, False)])
    first = close(counter, clock, 60.0)
    script(counter, [(60.325, OUT, False)])
    second = close(counter, clock, 70.0)
    assert (first.count, first.exits, first.turned_back) == (0, 0, 0)
    assert (second.count, second.exits, second.turned_back) == (0, 1, 0)
    assert counter.totals == [0, 1, 0]
