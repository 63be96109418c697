"""Telling a warming-up sensor's zeros from clean air.

Dust and CO2 modules report zeros (or nonsense) for a while after power-up or wake:
about 30 s for the SDS011 and PMS5003, 3 minutes for the MH-Z19B (`ProtocolSpec.warmup_s`).
Decoders mark each measurement frame with `suspect_zero` (every measured value exactly
0). A driver keeps one tracker per sensor, calls `restart()` whenever the sensor was
powered up or woken (port opened, link reopened after an unplug, wake command sent),
and asks `warming_up(frame)` for each measurement."""

from __future__ import annotations

from typing import Protocol

from urbanpulse.clock import Clock


class Measurement(Protocol):
    @property
    def suspect_zero(self) -> bool: ...


class WarmupTracker:
    """A reading is flagged while the warm-up time since the last restart runs, and
    also later while it is an all-zero reading and no real reading has come since the
    restart (a sensor still starting up, or one whose fan has stopped)."""

    def __init__(self, warmup_s: float, clock: Clock) -> None:
        if warmup_s < 0:
            raise ValueError(f"warmup_s must be >= 0, got {warmup_s}")
        self.warmup_s = warmup_s
        self._clock = clock
        self._started = clock.monotonic()
        self._seen_real = False

    def restart(self) -> None:
        self._started = self._clock.monotonic()
        self._seen_real = False

    @property
    def in_window(self) -> bool:
        return self._clock.monotonic() - self._started < self.warmup_s

    def warming_up(self, frame: Measurement) -> bool:
        if self.in_window:
            return True
        if frame.suspect_zero:
            return not self._seen_real
        self._seen_real = True
        return False
