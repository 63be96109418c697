"""The fault rules on a bed mat's load and motion (cloud/detect/faults.py FAULT_SETTINGS,
edge/drivers/bed_mat): a frozen mat is stuck; a live one, breathing or empty, is not."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from cloud.detect import FaultType
from cloud.detect.faults import FaultMonitor

T0 = datetime(2026, 12, 1, tzinfo=UTC)
PERIOD = timedelta(minutes=5)


def _feed(field: str, values: list[float]) -> list[tuple[FaultType, int]]:
    monitor = FaultMonitor("hospital.bed", field, sensor="ward-a/bed-01")
    fired = []
    for i, v in enumerate(values):
        for e in monitor.update(T0 + i * PERIOD, v, seq=i):
            fired.append((e.fault, i))
    return fired


def test_motion_exactly_zero_for_three_readings_over_ten_minutes_is_stuck() -> None:
    rng = random.Random(1)
    live = [0.01 * (1 + 0.1 * rng.gauss(0, 1)) for _ in range(20)]
    assert _feed("motion", live + [0.0] * 5) == [(FaultType.STUCK, 22)]


def test_load_exactly_unchanged_for_six_readings_over_thirty_minutes_is_stuck() -> None:
    rng = random.Random(2)
    codes = [round((0.5 + 3e-5 * rng.gauss(0, 1)) * 3_069_000) / 3_069_000 for _ in range(20)]
    assert _feed("load", codes + [codes[-1]] * 8) == [(FaultType.STUCK, 25)]  # from index 19: 30 min


def test_a_live_mat_is_never_stuck_nor_a_spike_when_a_patient_gets_up() -> None:
    rng = random.Random(3)
    empty = [0.0005 * (0.8 + 0.4 * rng.random()) for _ in range(200)]
    assert _feed("motion", empty) == []
    # loaded, up for a few minutes (one reading of an empty bed), back
    loads = [0.55 + 3e-5 * rng.gauss(0, 1) for _ in range(200)]
    for i in range(20, 200, 30):
        loads[i] = 0.05 + 3e-5 * rng.gauss(0, 1)
    assert _feed("load", loads) == []


def test_a_supervised_mats_fault_is_a_cut_cable_at_its_first_reading() -> None:
    # the mat driver's readings while the bias is gone: fault 1 (its supervision), the
    # same rule as a supervised pad's `fault`
    assert _feed("fault", [0.0] * 10 + [1.0] * 5 + [0.0] * 3) == [(FaultType.CUT_CABLE, 10)]
