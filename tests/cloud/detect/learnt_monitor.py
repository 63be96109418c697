"""A PM sensor's fault monitor that has learnt its 10 s cadence, for the tests of what the
monitor holds and is told (sequence gaps held, readings not judged)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cloud.detect import FaultMonitor
from urbanpulse.clock import to_epoch_ns

T0 = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
STEP = 10.0  # s between readings
LEARNT = 40  # readings judged before the test's own


def at(seq: int) -> datetime:
    """When reading `seq` is stamped (and, unless a test says otherwise, received)."""
    return T0 + timedelta(seconds=STEP * seq)


def learnt() -> FaultMonitor:
    m = FaultMonitor("air.pm", "pm25", "pm-1")
    for i in range(LEARNT):
        assert m.update(to_epoch_ns(at(i)), 10.0 + i % 3, i, received=to_epoch_ns(at(i))) == []
    return m
