"""Minimum pulse length, after the debounce: an active pulse shorter than `min_pulse_s`
is a glitch (a false pulse picked up by the cable), not a vehicle, person or patient.

Shared by the loop, door and bed-pad drivers. The rising edge of an active pulse is held
until the pulse has lasted `min_pulse_s` (it is then released with its own time, so
on-times are not shortened) or until it ends sooner (both edges are dropped and
`glitches` counts one). A burst the debouncer drops (it settled back on the old level)
is counted too: `glitches` is every pulse too short to be real.
"""

from __future__ import annotations

from edge.gpio.debounce import Debouncer, Edge


class PulseFilter:
    def __init__(self, debouncer: Debouncer, min_pulse_s: float, active: bool = True) -> None:
        if min_pulse_s < 0:
            raise ValueError("min_pulse_s must be >= 0")
        self.debouncer = debouncer
        self.min_pulse_s = min_pulse_s
        self.active = active
        self.short = 0
        self._held: Edge | None = None

    @property
    def glitches(self) -> int:
        """Pulses too short to be real since start-up (the debouncer's included)."""
        return self.short + self.debouncer.glitches

    @property
    def level(self) -> bool:
        """The level as the filter has let it through."""
        if self._held is not None:
            return not self._held.level
        return self.debouncer.level

    def feed(self, level: bool, t: float) -> list[Edge]:
        return self._pass(self.debouncer.feed(level, t), t)

    def poll(self, now: float) -> list[Edge]:
        return self._pass(self.debouncer.poll(now), now)

    def deadline(self) -> float | None:
        due = self.debouncer.deadline()
        if due is None and self._held is not None:
            return self._held.t + self.min_pulse_s
        return due  # a pending burst is settled first, then the held edge decided

    def _pass(self, edges: list[Edge], now: float) -> list[Edge]:
        out: list[Edge] = []
        for edge in edges:
            held = self._held
            if held is not None:
                self._held = None
                if edge.level != self.active and edge.t - held.t < self.min_pulse_s:
                    self.short += 1
                    continue
                out.append(held)
            if edge.level == self.active and self.min_pulse_s > 0:
                self._held = edge
            else:
                out.append(edge)
        held = self._held
        # Released once it has lasted long enough and no end is pending in the debouncer
        # (a burst under way may still turn out to have begun before the minimum).
        if (held is not None and now >= held.t + self.min_pulse_s
                and self.debouncer.deadline() is None):
            self._held = None
            out.append(held)
        return out
