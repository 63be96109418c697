"""Debounce for one digital input, on explicit monotonic timestamps.

A level counts once the raw input has stayed unchanged for `bounce_s`. The confirmed edge
carries the time the burst *began* (the first raw change after a quiet period), so relay
bounce delays the decision by a few milliseconds but does not shift the timing that
occupancy and speed are computed from. A burst that settles back on the old level is a
glitch and is dropped (counted in `glitches`).

Nothing here reads a clock: the caller passes the time of each raw change and calls
`poll(now)` at `deadline()` to confirm a level that has gone quiet.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Edge:
    """A debounced change to `level` at monotonic time `t`."""

    level: bool
    t: float


class Debouncer:
    def __init__(self, bounce_s: float, level: bool, t: float) -> None:
        if bounce_s < 0:
            raise ValueError("bounce_s must be >= 0")
        self.bounce_s = bounce_s
        self.level = level
        self.raw = level
        self.glitches = 0
        self._last_change = t
        self._burst_start: float | None = None

    def feed(self, level: bool, t: float) -> list[Edge]:
        """A raw reading `level` at time `t`; returns the edges confirmed by it (a previous
        burst that went quiet before `t`, and with bounce_s == 0 this change itself)."""
        t = max(t, self._last_change)
        edges = self._confirm(t)
        if level != self.raw:
            self.raw = level
            self._last_change = t
            if self._burst_start is None:
                self._burst_start = t
            if self.bounce_s == 0:
                edges += self._confirm(t)
        return edges

    def poll(self, now: float) -> list[Edge]:
        """Confirm the pending level if the input has been quiet for bounce_s at `now`."""
        return self._confirm(now)

    def deadline(self) -> float | None:
        """When poll() can next confirm something; None when nothing is pending."""
        if self._burst_start is None:
            return None
        return self._last_change + self.bounce_s

    def _confirm(self, now: float) -> list[Edge]:
        if self._burst_start is None or now < self._last_change + self.bounce_s:
            return []
        start, self._burst_start = self._burst_start, None
        if self.raw == self.level:
            self.glitches += 1
            return []
        self.level = self.raw
        return [Edge(self.level, start)]
