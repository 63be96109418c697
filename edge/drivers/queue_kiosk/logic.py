"""Queue kiosk logic: ticket-issued and ticket-called pulses become numbered tickets.

A pulse carries no number, so the numbers are ours: the kiosk's "ticket printed" output
issues ticket `issued + 1`; a counter's "call next" button calls the oldest ticket not
yet called (`called + 1`), first in, first out across all counters. A call with nobody
waiting is ignored and counted. The two numbers are the whole state; the driver persists
them so that numbering continues across restarts and the cloud can pair each ticket's
issue with its call to compute the waiting time.

Pure: fed with raw edges (line, signal on?, monotonic time); line 0 is the issue signal,
line i >= 1 the call button of counters[i - 1].
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from edge.gpio.debounce import Debouncer, Edge

ISSUE = 0


@dataclass(frozen=True, slots=True)
class TicketState:
    issued: int = 0  # the last ticket number issued
    called: int = 0  # the last ticket number called

    @property
    def waiting(self) -> int:
        return self.issued - self.called


@dataclass(frozen=True, slots=True)
class QueueEvent:
    ticket: int
    called: bool
    counter: int | None
    t: float  # monotonic time of the pulse's leading edge

    def values(self) -> dict[str, float]:
        """The fields of a `hospital.queue` reading."""
        out: dict[str, float] = {"ticket": self.ticket, "called": int(self.called)}
        if self.counter is not None:
            out["counter"] = self.counter
        return out


class QueueKiosk:
    def __init__(self, *, counters: Sequence[int], bounce_s: float, levels: Sequence[bool],
                 t0: float, state: TicketState | None = None) -> None:
        if len(levels) != 1 + len(counters):
            raise ValueError(f"expected {1 + len(counters)} initial levels, got {len(levels)}")
        self.counters = tuple(counters)
        self.state = state or TicketState()
        if not 0 <= self.state.called <= self.state.issued:
            raise ValueError(f"inconsistent ticket state {self.state}")
        self._debouncers = [Debouncer(bounce_s, level, t0) for level in levels]
        self.empty_calls = 0

    def level(self, line: int) -> bool:
        """The debounced level of `line` (True: signal on)."""
        return self._debouncers[line].level

    @property
    def glitches(self) -> int:
        return sum(d.glitches for d in self._debouncers)

    def feed(self, line: int, level: bool, t: float) -> list[QueueEvent]:
        edges = [(e, line) for e in self._debouncers[line].feed(level, t)]
        return self._advance(edges, t)

    def poll(self, now: float) -> list[QueueEvent]:
        return self._advance([], now)

    def next_deadline(self) -> float | None:
        due = [d for d in (deb.deadline() for deb in self._debouncers) if d is not None]
        return min(due) if due else None

    def _advance(self, edges: list[tuple[Edge, int]], now: float) -> list[QueueEvent]:
        for line, debouncer in enumerate(self._debouncers):
            edges += [(e, line) for e in debouncer.poll(now)]
        events = []
        for edge, line in sorted(edges, key=lambda item: item[0].t):
            if not edge.level:
                continue
            event = self._pulse(line, edge.t)
            if event is not None:
                events.append(event)
        return events

    def _pulse(self, line: int, t: float) -> QueueEvent | None:
        issued, called = self.state.issued, self.state.called
        if line == ISSUE:
            self.state = TicketState(issued + 1, called)
            return QueueEvent(issued + 1, False, None, t)
        if called >= issued:
            self.empty_calls += 1
            return None
        self.state = TicketState(issued, called + 1)
        return QueueEvent(called + 1, True, self.counters[line - 1], t)
