"""Door counter logic: people entering per interval, from one or two light beams.

Pure: fed with raw edges (line, beam broken?, monotonic time), closed per interval.

- One beam: every (debounced) break of the beam is a person; both directions count.
- Two beams a few centimetres apart across the doorway, line 0 outside, line 1 inside:
  a crossing is everything between two moments when both beams are clear. It is an
  entry when the first beam broken was the outer one and the last one still broken was
  the inner one; an exit the other way round; anything else (a person who stepped in and
  turned back) counts as neither. A crossing counts in the interval in which it ends (in
  the next one if a beam change before the end is still undecided when the interval
  closes: the beams' changes are taken in the order they happened).
- A break shorter than `min_pulse_s` is nobody (see edge/gpio/pulse_filter.py): it is
  counted in the interval's `glitches` instead.
- Supervision (`supervised`, the last line): a cut beam cable reads exactly like a clear
  beam, i.e. like nobody coming. A second pair in each beam's cable is shorted at the
  receiver (both receivers' pairs in series with two beams); the line reads `whole_level`
  while every cable is whole and plugged in. Any other level that lasts `fault_delay_s`
  is a fault, and an interval in which a fault was declared at any moment reports
  `fault` = 1 (its count then means nothing).
- Self-test (`self_test`, see self_test.py): while a test window is under way the beams'
  raw edges go to the test, not to the counting; when it ends, the counting takes the
  beams up at their levels then. No test starts while a beam is (or may be about to
  read) broken, or while the supervision line shows a fault (a cut cable fails it); a
  test during which the line leaves its whole level leaves no result and is tried again.
- A beam held broken for `blocked_after_s` is blocked (`blocked(now)`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from edge.drivers.door_counter.self_test import BeamSelfTest, BlockedBeams
from edge.gpio.debounce import Debouncer, Edge
from edge.gpio.pulse_filter import PulseFilter

OUTER, INNER = 0, 1
_CLEAR = (False, False)
_OUTER_ONLY = (True, False)
_INNER_ONLY = (False, True)


@dataclass(frozen=True, slots=True)
class DoorInterval:
    count: int             # people entering (one beam: every break of the beam)
    interval_s: float
    exits: int = 0         # two beams only
    turned_back: int = 0   # two beams only
    glitches: int = 0      # breaks too short to be a person
    fault: bool | None = None  # None: unsupervised, a cut cable cannot be seen

    def values(self) -> dict[str, float]:
        """The fields of a `hospital.door` reading."""
        out: dict[str, float] = {"count": self.count, "interval_s": round(self.interval_s, 3)}
        if self.glitches:
            out["glitches"] = self.glitches
        if self.fault is not None:
            out["fault"] = int(self.fault)
        return out


class DoorCounter:
    def __init__(self, *, bounce_s: float, levels: Sequence[bool], t0: float,
                 min_pulse_s: float = 0.0, supervised: bool = False,
                 whole_level: bool = True, fault_delay_s: float = 1.0,
                 blocked_after_s: float = 60.0,
                 self_test: Callable[[int, float], BeamSelfTest] | None = None) -> None:
        """`self_test(beams, t0)` builds the beams' self-test (None: no test output)."""
        beams = len(levels) - supervised
        if beams not in (1, 2):
            raise ValueError("a door counter has one or two beams (and a supervision line "
                             "when supervised)")
        if fault_delay_s < 0:
            raise ValueError("fault_delay_s must be >= 0")
        self.bounce_s = bounce_s
        self.min_pulse_s = min_pulse_s
        self.supervised = supervised
        self.whole_level = whole_level
        self.fault_delay_s = fault_delay_s
        self._filters = [PulseFilter(Debouncer(bounce_s, level, t0), min_pulse_s)
                         for level in levels[:beams]]
        self._supervision = Debouncer(bounce_s, levels[-1], t0) if supervised else None
        self._supervision_edges: list[Edge] = []
        # since when the supervision line has shown a fault; None while the cable is whole
        self._fault_since: float | None = (
            t0 if supervised and levels[-1] != whole_level else None)
        self.faults = 0  # faults declared since start-up
        self._glitches_reported = 0
        self._broken = list(levels)
        self._blocked = BlockedBeams(levels=levels[:beams], t0=t0, after_s=blocked_after_s)
        self.self_test = None if self_test is None else self_test(beams, t0)
        self._edges: list[tuple[float, int, bool]] = []
        self._start = t0
        # first and last non-clear state of the crossing under way; None before the
        # first moment both beams are clear (a crossing already under way at start-up)
        self._first: tuple[bool, bool] | None = None
        self._last: tuple[bool, bool] | None = None
        self._tracking = tuple(levels[:beams]) == _CLEAR if beams == 2 else True
        # per beam, since when its filter has had a change undecided (being debounced, or
        # a break held back for min_pulse_s); None while nothing is pending
        self._pending_since: list[float | None] = [None] * beams
        self._counts = [0, 0, 0]  # entries, exits, turned back, in the current interval
        self.totals = [0, 0, 0]   # the same since start-up

    @property
    def directional(self) -> bool:
        return len(self._filters) == 2

    @property
    def settle_s(self) -> float:
        """How long after an interval's end to close it (see TrafficLoopLogic.settle_s)."""
        return 2 * self.bounce_s + self.min_pulse_s + 0.05

    @property
    def glitches(self) -> int:
        """Breaks too short to be a person since start-up, every beam."""
        return sum(f.glitches for f in self._filters)

    def broken(self, line: int) -> bool:
        return self._filters[line].level

    @property
    def cable_whole(self) -> bool | None:
        """The debounced supervision line says every cable is whole (None: unsupervised)."""
        if self._supervision is None:
            return None
        return self._supervision.level == self.whole_level

    def blocked(self, now: float) -> bool:
        """A beam has been broken for blocked_after_s at `now`."""
        return self._blocked.blocked(now)

    def feed(self, line: int, broken: bool, t: float) -> None:
        if line == len(self._filters) and self._supervision is not None:
            self._supervision_edges += self._supervision.feed(broken, t)
            test = self.self_test
            if test is not None and test.active and broken != self.whole_level:
                test.spoil()  # a cut cable reads clear: the receivers' answer means nothing
            return
        test = self.self_test
        if test is not None:
            self._test_step(test, t)
            if test.active:
                test.feed(line, broken, t)
                return
        self._feed_beam(line, broken, t)

    def _feed_beam(self, line: int, broken: bool, t: float) -> None:
        pulses = self._filters[line]
        self._take(line, pulses.poll(t))  # what was due by t, first
        if pulses.deadline() is None:
            self._pending_since[line] = None
        if self._pending_since[line] is None:
            self._pending_since[line] = t
        self._take(line, pulses.feed(broken, t))
        if pulses.deadline() is None:
            self._pending_since[line] = None

    def _take(self, line: int, edges: list[Edge]) -> None:
        for edge in edges:
            self._edges.append((edge.t, line, edge.level))
            self._blocked.edge(line, edge.level, edge.t)

    def poll(self, now: float) -> None:
        for line, pulses in enumerate(self._filters):
            self._take(line, pulses.poll(now))
            if pulses.deadline() is None:
                self._pending_since[line] = None
        if self._supervision is not None:
            self._supervision_edges += self._supervision.poll(now)
        test = self.self_test
        if test is None:
            return
        self._test_step(test, now)
        if not test.active and now >= test.next_due:
            if self._may_test():
                test.start(now)
            else:
                test.postpone(now)

    def _test_step(self, test: BeamSelfTest, now: float) -> None:
        levels = test.step(now)
        if levels is not None:  # the window closed: the beams as they read now
            for line, broken in enumerate(levels):
                self._feed_beam(line, broken, now)

    def _may_test(self) -> bool:
        """Every beam clear with nothing pending, and no cable fault showing."""
        for f in self._filters:
            if f.level or f.debouncer.raw or f.deadline() is not None:
                return False
        return self._supervision is None or (
            self._supervision.raw == self.whole_level and self._supervision.deadline() is None)

    def settling(self) -> float | None:
        """When the beams' changes under way are decided (not the supervision line's, nor
        the self-test's next run)."""
        due = [d for d in (f.deadline() for f in self._filters) if d is not None]
        return min(due) if due else None

    def next_deadline(self) -> float | None:
        due = [d for d in (f.deadline() for f in self._filters) if d is not None]
        if self._supervision is not None and (d := self._supervision.deadline()) is not None:
            due.append(d)
        if self.self_test is not None:
            due.append(self.self_test.deadline())
        return min(due) if due else None

    def close_interval(self, end: float, now: float) -> DoorInterval:
        self.poll(now)
        self._edges.sort()
        # A beam change from before `end` still undecided (the loop polled late: a break
        # held back for min_pulse_s while its end is debounced) comes later with its own
        # time: the edges after it wait for it, or a crossing would see its beams out of
        # order (an exit taken for someone turning back).
        cutoff = min([end, *(t for t in self._pending_since if t is not None)])
        ready = [e for e in self._edges if e[0] < cutoff]
        self._edges = [e for e in self._edges if e[0] >= cutoff]
        for _, line, broken in ready:
            self._apply(line, broken)
        entries, exits, turned_back = self._counts
        self._counts = [0, 0, 0]
        glitches = self.glitches - self._glitches_reported
        self._glitches_reported += glitches
        fault = self._close_supervision(end) if self.supervised else None
        result = DoorInterval(entries, end - self._start, exits, turned_back, glitches, fault)
        self._start = end
        return result

    def _close_supervision(self, end: float) -> bool:
        """Whether a fault was declared (had lasted fault_delay_s) at any moment of
        [start, end); consumes the supervision edges before `end`."""
        ready = [e for e in self._supervision_edges if e.t < end]
        self._supervision_edges = [e for e in self._supervision_edges if e.t >= end]
        fault = False
        for edge in ready:
            if edge.level != self.whole_level:
                if self._fault_since is None:
                    self._fault_since = edge.t
                continue
            if self._fault_since is not None:
                fault |= self._declared(self._fault_since, edge.t)
                self._fault_since = None
        if self._fault_since is not None:
            fault |= self._declared(self._fault_since, end)
        return fault

    def _declared(self, since: float, until: float) -> bool:
        """A fault condition over [since, until) was declared within this interval;
        counted once, in the interval where it is first declared."""
        declared_at = since + self.fault_delay_s
        if declared_at >= until:
            return False
        if declared_at >= self._start:
            self.faults += 1
        return True

    def _apply(self, line: int, broken: bool) -> None:
        self._broken[line] = broken
        if not self.directional:
            if broken:
                self._count(0)
            return
        state = (self._broken[OUTER], self._broken[INNER])
        if state != _CLEAR:
            if self._first is None:
                self._first = state
            self._last = state
            return
        first, last = self._first, self._last
        self._first = self._last = None
        if not self._tracking:
            self._tracking = True
            return
        if first == _OUTER_ONLY and last == _INNER_ONLY:
            self._count(0)
        elif first == _INNER_ONLY and last == _OUTER_ONLY:
            self._count(1)
        elif first is not None:
            self._count(2)

    def _count(self, which: int) -> None:
        self._counts[which] += 1
        self.totals[which] += 1
