"""The door beams' self-test and the blocked-beam report, on a FakeClock: the counter is
run as the driver's reactor runs it (edges in time order, `poll` at its deadlines), and
the receivers answer the test output as working or stuck receivers would."""

from __future__ import annotations

import heapq

import pytest

from edge.drivers.door_counter.logic import DoorCounter
from edge.drivers.door_counter.self_test import FAILED, FIRST_TEST_S, OK, BeamSelfTest
from urbanpulse.clock import FakeClock

RESPONSE_S = 0.004  # a receiver's response time to its emitter going dark or lit


class Bench:
    """A door counter, its receivers and the clock; `stuck` beams ignore the emitter."""

    def __init__(self, beams: int = 1, *, stuck: tuple[int, ...] = (), supervised: bool = False,
                 every_s: float = 300.0, test_s: float = 0.2, blocked_after_s: float = 60.0,
                 cable_whole: bool = True) -> None:
        self.clock = FakeClock()
        self.t0 = self.clock.monotonic()
        self.stuck = stuck
        self.blanks: list[tuple[float, bool]] = []
        # (time, order, line, what, on): what = "body" (someone in the beam) or "dark"
        self._queue: list[tuple[float, int, int, str, bool]] = []
        self._n = 0
        self.beams = beams
        self._body = [False] * beams
        self._dark = [False] * beams
        levels = [False] * beams + ([not cable_whole] if supervised else [])
        self.counter = DoorCounter(
            bounce_s=0.01, levels=levels, t0=self.t0, min_pulse_s=0.1, supervised=supervised,
            whole_level=False, blocked_after_s=blocked_after_s,
            self_test=lambda n, t0: BeamSelfTest(beams=n, t0=t0, every_s=every_s,
                                                 test_s=test_s, blank=self._blank))

    def _blank(self, dark: bool) -> None:
        now = self.clock.monotonic()
        self.blanks.append((now - self.t0, dark))
        for line in range(self.beams):
            if line not in self.stuck:
                self._push(now - self.t0 + RESPONSE_S, line, "dark", dark)

    def _push(self, at: float, line: int, what: str, on: bool) -> None:
        heapq.heappush(self._queue, (self.t0 + at, self._n, line, what, on))
        self._n += 1

    def edge(self, at: float, line: int, broken: bool) -> None:
        """Someone (or something) enters or leaves beam `line` at `at`."""
        self._push(at, line, "body", broken)

    def _receiver(self, t: float, line: int, what: str, on: bool) -> None:
        """A receiver reads broken while its light is cut, by a body or the emitter off."""
        before = self._body[line] or self._dark[line]
        (self._body if what == "body" else self._dark)[line] = on
        after = self._body[line] or self._dark[line]
        if after != before:
            self.counter.feed(line, after, t)

    def person(self, at: float, line: int = 0, for_s: float = 0.4) -> None:
        self.edge(at, line, True)
        self.edge(at + for_s, line, False)

    def run_until(self, until: float) -> None:
        end = self.t0 + until
        while True:
            due = self.counter.next_deadline()
            nxt = self._queue[0][0] if self._queue else None
            if nxt is not None and nxt <= end and (due is None or nxt < due):
                t, _, line, what, on = heapq.heappop(self._queue)
                self.clock.advance(t - self.clock.monotonic())
                self._receiver(t, line, what, on)
            elif due is not None and due <= end:
                self.clock.advance(max(0.0, due - self.clock.monotonic()))
                self.counter.poll(due)
            else:
                break
        self.clock.advance(end - self.clock.monotonic())

    def close(self, end: float) -> int:
        """Close the interval ending at `end`; its count."""
        self.run_until(end + self.counter.settle_s)
        return self.counter.close_interval(self.t0 + end, self.clock.monotonic()).count

    @property
    def test(self) -> BeamSelfTest:
        assert self.counter.self_test is not None
        return self.counter.self_test


def test_a_working_receiver_passes_and_the_test_counts_nobody() -> None:
    bench = Bench()
    bench.person(3.0)
    assert bench.close(60.0) == 1
    assert bench.test.result == OK
    assert bench.test.tests == 1
    # dark at the first test, lit again test_s later
    assert bench.blanks == [(pytest.approx(FIRST_TEST_S), True),
                            (pytest.approx(FIRST_TEST_S + 0.2), False)]
    assert bench.counter.glitches == 0
    assert bench.counter.totals == [1, 0, 0]


def test_a_receiver_stuck_clear_fails_and_is_retested() -> None:
    bench = Bench(stuck=(0,))
    bench.run_until(FIRST_TEST_S + 1.0)
    assert (bench.test.result, bench.test.failures, bench.test.failed_beams) == (FAILED, 1, (0,))
    bench.stuck = ()  # repaired: the next test, every_s after the first, passes
    bench.run_until(FIRST_TEST_S + 299.0)
    assert bench.test.tests == 1
    bench.run_until(FIRST_TEST_S + 301.0)
    assert (bench.test.result, bench.test.tests, bench.test.failures) == (OK, 2, 1)
    assert bench.close(600.0) == 0


def test_two_beams_name_the_one_stuck() -> None:
    bench = Bench(beams=2, stuck=(1,))
    bench.run_until(FIRST_TEST_S + 1.0)
    assert (bench.test.result, bench.test.failed_beams) == (FAILED, (1,))
    assert bench.close(60.0) == 0
    assert bench.counter.totals == [0, 0, 0]  # the working beam's darkness was no crossing


def test_no_test_while_someone_is_in_the_beam() -> None:
    bench = Bench()
    bench.person(FIRST_TEST_S - 0.5, for_s=3.0)  # in the beam from 9.5 s to 12.5 s
    bench.run_until(12.0)
    assert bench.blanks == []
    assert not bench.test.active
    bench.run_until(15.0)
    start = bench.blanks[0][0]
    assert 12.5 < start <= 14.0  # tried again every second once clear
    assert bench.test.result == OK
    assert bench.close(60.0) == 1


def test_someone_stepping_in_during_a_test_counts_once() -> None:
    bench = Bench()
    bench.person(FIRST_TEST_S + 0.1, for_s=0.6)  # arrives while the emitter is dark
    assert bench.close(60.0) == 1
    assert bench.test.result == OK
    assert bench.counter.glitches == 0


def test_a_break_shorter_than_the_window_during_a_test_is_lost() -> None:
    # the price of testing: 0.4 s of blindness every 5 minutes
    bench = Bench()
    bench.person(FIRST_TEST_S + 0.05, for_s=0.25)
    assert bench.close(60.0) == 0
    assert bench.test.result == OK


def test_no_test_while_the_cable_shows_a_fault() -> None:
    bench = Bench(supervised=True, stuck=(0,), cable_whole=False)
    bench.run_until(100.0)
    assert bench.blanks == []
    assert bench.test.result is None


def test_a_cable_cut_during_a_test_leaves_no_result_and_the_test_is_tried_again() -> None:
    """A cut cable reads clear, as a receiver stuck clear does: a test it overlaps says
    nothing (before, it failed, and the heartbeat reported a stuck beam after the mend)."""
    bench = Bench(supervised=True, stuck=(0,))  # through a cut, the receiver never answers
    bench.run_until(FIRST_TEST_S + 0.1)
    assert bench.test.active
    bench.counter.feed(bench.beams, True, bench.clock.monotonic())  # the loopback opens
    bench.run_until(FIRST_TEST_S + 30.0)
    assert (bench.test.result, bench.test.tests, bench.test.failures) == (None, 0, 0)
    assert len(bench.blanks) == 2  # that window's dark and lit only: none while cut
    bench.stuck = ()  # mended: the receiver answers again
    bench.counter.feed(bench.beams, False, bench.clock.monotonic())
    bench.run_until(FIRST_TEST_S + 40.0)
    assert (bench.test.result, bench.test.tests, bench.test.failures) == (OK, 1, 0)


def test_a_beam_held_broken_is_blocked() -> None:
    bench = Bench(blocked_after_s=60.0)
    bench.edge(20.0, 0, True)
    bench.run_until(79.0)
    assert not bench.counter.blocked(bench.clock.monotonic())
    bench.run_until(81.0)
    assert bench.counter.blocked(bench.clock.monotonic())
    bench.edge(200.0, 0, False)
    bench.run_until(201.0)
    assert not bench.counter.blocked(bench.clock.monotonic())
    assert bench.close(300.0) == 1


def test_a_beam_broken_at_start_up_counts_from_start_up() -> None:
    clock = FakeClock()
    t0 = clock.monotonic()
    counter = DoorCounter(bounce_s=0.01, levels=[True], t0=t0, blocked_after_s=30.0)
    assert not counter.blocked(t0 + 29.0)
    assert counter.blocked(t0 + 30.0)
    assert counter.self_test is None


def test_the_test_window_must_fit_in_its_period() -> None:
    with pytest.raises(ValueError, match="every_s"):
        BeamSelfTest(beams=1, t0=0.0, every_s=0.3, test_s=0.2, blank=lambda _: None)
