"""The sensor-fault rules on hand-made series with known faults."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from cloud.detect import DetectError, FaultMonitor, FaultSettings, FaultType

T0 = datetime(2026, 3, 1, tzinfo=UTC)
STEP = timedelta(minutes=1)


def _feed(monitor: FaultMonitor, values: list[float]) -> list:  # type: ignore[type-arg]
    events = []
    for i, v in enumerate(values):
        events += monitor.update(T0 + i * STEP, v, seq=i)
    return events


def _wavy(n: int) -> list[float]:
    return [50 + 10 * math.sin(i / 5) + (i % 3) for i in range(n)]


def test_out_of_range_fires_once_per_excursion_without_delay() -> None:
    monitor = FaultMonitor("air.pm", "pm25", sensor="n1/pm")
    values = [20.0] * 5 + [-3.0, -4.0, 20.0, 1500.0]
    events = _feed(monitor, values)
    assert [e.fault for e in events] == [FaultType.OUT_OF_RANGE] * 2
    assert events[0].start == T0 + 5 * STEP
    assert events[1].value == 1500.0
    assert all(e.delay == timedelta(0) for e in events)


def test_stuck_value_fires_after_count_and_duration_from_the_run_start() -> None:
    settings = FaultSettings(stuck_count=10, stuck_min_s=600, spike_window=None)
    monitor = FaultMonitor("air.co2", "co2", settings=settings)
    values = _wavy(50) + [412.0] * 30
    events = _feed(monitor, values)
    assert [e.fault for e in events] == [FaultType.STUCK]
    assert events[0].start == T0 + 50 * STEP
    assert events[0].delay == 10 * STEP  # 11 readings span 10 minutes
    assert _feed(FaultMonitor("air.co2", "co2", settings=settings), _wavy(200)) == []


def test_booleans_are_never_stuck() -> None:
    monitor = FaultMonitor("hospital.bed", "occupied")
    assert _feed(monitor, [1.0] * 500) == []


def test_silence_is_seen_by_tick_with_a_learned_interval() -> None:
    monitor = FaultMonitor("traffic.loop", "occupancy_pct", settings=FaultSettings(spike_window=None))
    _feed(monitor, _wavy(20))
    last = T0 + 19 * STEP
    assert monitor.tick(last + 2 * STEP) == []
    events = monitor.tick(last + 3 * STEP)
    assert [e.fault for e in events] == [FaultType.SILENCE]
    assert events[0].start == last + STEP
    assert events[0].delay == 2 * STEP
    assert monitor.tick(last + 10 * STEP) == []  # reported once
    monitor.update(last + 11 * STEP, 50.0, seq=20)
    assert [e.fault for e in monitor.tick(last + 20 * STEP)] == [FaultType.SILENCE]


def test_heartbeats_keep_a_sensor_alive() -> None:
    monitor = FaultMonitor("hospital.door", "count", settings=FaultSettings(expected_interval_s=60))
    monitor.update(T0, 3.0, seq=0)
    for i in range(1, 10):
        monitor.heartbeat(T0 + i * STEP)
        assert monitor.tick(T0 + i * STEP + timedelta(seconds=30)) == []


def test_a_sequence_gap_reports_the_silence_when_data_returns() -> None:
    monitor = FaultMonitor("air.co2", "co2", settings=FaultSettings(expected_interval_s=60))
    for i in range(5):
        monitor.update(T0 + i * STEP, 400.0 + i, seq=i)
    events = monitor.update(T0 + 10 * STEP, 401.0, seq=10)
    assert [e.fault for e in events] == [FaultType.SILENCE]
    assert events[0].start == T0 + 5 * STEP
    assert "5 readings missing" in events[0].detail
    assert monitor.update(T0 + 11 * STEP, 402.0, seq=10) == []  # a duplicate


def test_a_single_spike_is_found_one_reading_later() -> None:
    monitor = FaultMonitor("air.pm", "pm25")
    values = _wavy(40)
    values[30] = 600.0
    events = _feed(monitor, values)
    assert [e.fault for e in events] == [FaultType.SPIKE]
    assert events[0].start == T0 + 30 * STEP
    assert events[0].delay == STEP
    assert events[0].value == 600.0


def test_a_level_change_is_not_a_spike() -> None:
    monitor = FaultMonitor("air.pm", "pm25")
    values = _wavy(40) + [v + 400 for v in _wavy(40)]
    assert [e for e in _feed(monitor, values) if e.fault is FaultType.SPIKE] == []


def test_bad_input_is_refused() -> None:
    with pytest.raises(DetectError, match="unknown kind"):
        FaultMonitor("air.pm", "ozone")
    monitor = FaultMonitor("air.pm", "pm25")
    with pytest.raises(DetectError, match="not finite"):
        monitor.update(T0, math.inf)
    with pytest.raises(DetectError):
        FaultSettings(silence_intervals=0)
