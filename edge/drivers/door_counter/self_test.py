"""A door beam's self-test, and a beam held broken: the two ways a beam stops counting
that neither its counts nor its cable show.

A receiver stuck "clear" (a dead output stage, sunlight flooding it, a reflector taped
over) reads like an empty doorway. Through-beam and retro-reflective sensors have a test
input that switches their emitter off; wired to an output of the node, the driver
blanks the emitters now and then (every `every_s`, only while every beam reads clear)
for `test_s` and expects every receiver to read "broken" meanwhile. One that does not
has failed the test. The receivers get as long again to see the light come back; what
they read during the whole window is not people, and a beam still broken when it ends
(someone stepped in) is a break starting then.

A beam held broken for `blocked_after_s` (longer than anyone takes through a doorway:
a receiver stuck "broken", a trolley parked in the beam) is reported as blocked.

Pure: fed with raw edges and monotonic times; `blank(on)` switches the emitters (the
driver's test output).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

OK, FAILED = "ok", "failed"
FIRST_TEST_S = 10.0  # the first test after start-up, at the latest
RETRY_S = 1.0  # a test due while a beam is broken is tried again this much later


class BeamSelfTest:
    def __init__(self, *, beams: int, t0: float, every_s: float, test_s: float,
                 blank: Callable[[bool], None]) -> None:
        if beams not in (1, 2):
            raise ValueError("a door counter has one or two beams")
        if every_s <= 0 or test_s <= 0 or 2 * test_s >= every_s:
            raise ValueError("the self-test needs 0 < 2 x test_s < every_s")
        self.every_s = every_s
        self.test_s = test_s
        self._blank = blank
        self.next_due = t0 + min(every_s, FIRST_TEST_S)
        self.result: str | None = None  # of the last test; None before the first
        self.tests = 0
        self.failures = 0
        self.failed_beams: tuple[int, ...] = ()  # of the last test
        self._started: float | None = None  # the window under way (emitters blanked)
        self._lit: float | None = None  # when the emitters were switched on again
        self._responded = [False] * beams
        self._raw = [False] * beams
        self._spoilt = False  # the window under way says nothing about the receivers

    @property
    def active(self) -> bool:
        """A test window is under way: the beams' edges are the test's, not people."""
        return self._started is not None

    def deadline(self) -> float:
        if self._started is None:
            return self.next_due
        if self._lit is None:
            return self._started + self.test_s
        return self._lit + self.test_s

    def start(self, now: float) -> None:
        """Blank the emitters; every beam reads clear (the caller checked)."""
        self._started = now
        self._lit = None
        self._responded = [False] * len(self._responded)
        self._raw = [False] * len(self._raw)
        self._spoilt = False
        self._blank(True)

    def spoil(self) -> None:
        """Something other than the receivers decided what they read during this window
        (a cut cable reads clear): when it closes, it leaves the last result as it was and
        the test is tried again RETRY_S later."""
        self._spoilt = True

    def postpone(self, now: float) -> None:
        self.next_due = now + RETRY_S

    def feed(self, line: int, broken: bool, t: float) -> None:
        """A raw edge of beam `line` during the window."""
        self._raw[line] = broken
        if broken and (self._lit is None or t <= self._lit):
            self._responded[line] = True

    def step(self, now: float) -> list[bool] | None:
        """Advance the window to `now`; when it closes, the beams' raw levels then (the
        caller's filters take them up from there), else None."""
        if self._started is None:
            return None
        if self._lit is None:
            if now < self._started + self.test_s:
                return None
            self._blank(False)
            self._lit = now
        if now < self._lit + self.test_s:
            return None
        if self._spoilt:
            self.next_due = now + RETRY_S
        else:
            self.tests += 1
            self.failed_beams = tuple(i for i, r in enumerate(self._responded) if not r)
            self.result = FAILED if self.failed_beams else OK
            self.failures += bool(self.failed_beams)
            self.next_due = self._started + self.every_s
        self._started = self._lit = None
        return list(self._raw)


class BlockedBeams:
    """Since when each beam has been (filtered) broken; blocked once that lasts
    `after_s`."""

    def __init__(self, *, levels: Sequence[bool], t0: float, after_s: float) -> None:
        if after_s <= 0:
            raise ValueError("blocked_after_s must be > 0")
        self.after_s = after_s
        self._since: list[float | None] = [t0 if level else None for level in levels]

    def edge(self, line: int, broken: bool, t: float) -> None:
        self._since[line] = t if broken else None

    def blocked(self, now: float) -> bool:
        return any(s is not None and now - s >= self.after_s for s in self._since)
