from __future__ import annotations

from firmware_bridge.protocols.sds011.frames import Sds011Measurement
from firmware_bridge.warmup import WarmupTracker
from urbanpulse.clock import FakeClock

ZERO = Sds011Measurement(0.0, 0.0, "a160")
REAL = Sds011Measurement(12.0, 20.0, "a160")


def test_everything_is_flagged_during_the_window_then_zeros_until_a_real_reading() -> None:
    clock = FakeClock()
    tracker = WarmupTracker(30.0, clock)
    assert tracker.warming_up(REAL)
    clock.advance(29.9)
    assert tracker.warming_up(ZERO)
    clock.advance(0.2)
    assert tracker.warming_up(ZERO)  # still no real reading since power-up
    assert not tracker.warming_up(REAL)
    assert not tracker.warming_up(ZERO)  # after real readings a zero is a zero


def test_restart_opens_a_new_window() -> None:
    clock = FakeClock()
    tracker = WarmupTracker(3.0, clock)
    clock.advance(5)
    assert not tracker.warming_up(REAL)
    tracker.restart()
    assert tracker.warming_up(REAL)
    clock.advance(3)
    assert tracker.warming_up(ZERO)
    assert not tracker.warming_up(REAL)
