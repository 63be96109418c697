"""The seasonal residual: a period found from the first values, phases from timestamps,
and a missing daily rise reported although every value in it is familiar."""

from __future__ import annotations

import math
import pickle
from dataclasses import replace

import numpy as np
import pytest

from cloud.detect import AnomalyDetector, DetectError, DetectorSettings
from cloud.detect.seasonal import SeasonalResidual, dominant_period

STEP_NS = 300 * 10**9
DAY = 288  # five-minute values
RISE = slice(108, 216)  # the daily high, from 09:00 to 18:00


def _days(days: int, seed: int, missing_rise: int | None = None) -> list[float]:
    """Low at night, high by day, noise on both; `missing_rise`: a day that stays low."""
    rng = np.random.default_rng(seed)
    phase = np.arange(days * DAY) % DAY
    values = np.where((phase >= RISE.start) & (phase < RISE.stop), 80.0, 20.0)
    if missing_rise is not None:
        values[missing_rise * DAY + RISE.start : missing_rise * DAY + RISE.stop] = 20.0
    return list(values + rng.normal(0, 2, values.size))


def _scores(settings: DetectorSettings, stamps: list[int], values: list[float]) -> list[float]:
    detector = AnomalyDetector(settings)
    return [detector.update(t, v) for t, v in zip(stamps, values, strict=True)]


def test_the_period_is_found_where_the_series_repeats_and_nowhere_else() -> None:
    rng = np.random.default_rng(3)
    i = np.arange(600)
    # A smooth wave's autocorrelation peaks broadly: a few values either side.
    wave = dominant_period(np.sin(i * 2 * math.pi / 288) + rng.normal(0, 0.3, i.size), 0.5)
    assert abs(wave - 288) <= 288 // 20
    assert dominant_period(_days(3, seed=3)[:600], 0.5) == 288
    assert dominant_period(np.sin(i * 2 * math.pi / 24) + rng.normal(0, 0.3, i.size), 0.5) == 24
    assert dominant_period(rng.normal(0, 1, i.size), 0.5) == 0
    assert dominant_period(np.cumsum(rng.normal(0, 1, i.size)) + i, 0.5) == 0  # a trend
    assert dominant_period(np.full(600, 4.0), 0.5) == 0
    assert dominant_period([1.0, math.inf] * 300, 0.5) == 0


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_missing_daily_rise_is_reported_where_the_rise_should_come(seed: int) -> None:
    values = _days(14, seed, missing_rise=10)
    stamps = [k * STEP_NS for k in range(len(values))]
    with_season = _scores(DetectorSettings(), stamps, values)
    without = _scores(replace(DetectorSettings(), season_learn=0), stamps, values)
    threshold = DetectorSettings().threshold
    rise = 10 * DAY + RISE.start
    assert max(with_season[rise : rise + 12]) >= threshold
    assert max(without[10 * DAY : 11 * DAY]) < threshold
    # Ordinary days after the period is learned raise nothing new.
    quiet = with_season[3 * DAY : 10 * DAY] + with_season[11 * DAY + RISE.stop :]
    assert max(quiet) < threshold


def test_phases_come_from_timestamps_so_a_gap_does_not_shift_them() -> None:
    values = _days(10, seed=4)
    gap = 5 * DAY + 230  # drop 50 night values: the levels before and after are the same
    kept = values[:gap] + values[gap + 50 :]
    true_stamps = [k * STEP_NS for k in range(gap)] + [
        k * STEP_NS for k in range(gap + 50, len(values))
    ]
    # Stamps without the gap stand for phases counted in values, which the gap shifts.
    counted = [k * STEP_NS for k in range(len(kept))]
    threshold = DetectorSettings().threshold
    assert max(_scores(DetectorSettings(), true_stamps, kept)[gap:]) < threshold
    assert max(_scores(DetectorSettings(), counted, kept)[gap:]) >= threshold


def test_a_series_without_a_period_keeps_no_profile() -> None:
    rng = np.random.default_rng(5)
    seasonal = SeasonalResidual(600, 0.5, 0.2, 1000, 3.0, 150)
    fresh = len(pickle.dumps(seasonal))
    surprises = [seasonal.update(k * STEP_NS, float(v)) for k, v in enumerate(rng.normal(0, 1, 2000))]
    assert seasonal.period == seasonal.period_ns == 0
    assert surprises == [0.0] * 2000
    assert len(pickle.dumps(seasonal)) <= fresh  # the first values are dropped


def test_a_period_near_a_day_is_a_day() -> None:
    rng = np.random.default_rng(8)
    i = np.arange(2 * DAY + 100)
    values = np.sin(i * 2 * math.pi / DAY) * 10 + rng.normal(0, 3, i.size)
    seasonal = SeasonalResidual(600, 0.5, 0.2, 1000, 3.0, 150)
    for k, v in enumerate(values):
        seasonal.update(k * STEP_NS, float(v))
    assert abs(seasonal.period - DAY) <= DAY // 20
    assert seasonal.period_ns == 86_400 * 10**9
    hourly = SeasonalResidual(600, 0.5, 0.2, 1000, 3.0, 150)
    for k, v in enumerate(np.sin(i * 2 * math.pi / 12) + rng.normal(0, 0.2, i.size)):
        hourly.update(k * STEP_NS, float(v))
    assert (hourly.period, hourly.period_ns) == (12, 12 * STEP_NS)


def test_a_pickled_seasonal_residual_resumes_exactly() -> None:
    values = _days(6, seed=6)
    straight = SeasonalResidual(600, 0.5, 0.2, 1000, 3.0, 150)
    expected = [straight.update(k * STEP_NS, v) for k, v in enumerate(values)]
    first = SeasonalResidual(600, 0.5, 0.2, 1000, 3.0, 150)
    head = [first.update(k * STEP_NS, v) for k, v in enumerate(values[:1000])]
    resumed = pickle.loads(pickle.dumps(first))
    tail = [resumed.update((1000 + k) * STEP_NS, v) for k, v in enumerate(values[1000:])]
    assert resumed.period == DAY
    assert head + tail == expected
    assert max(expected) > 0.0


@pytest.mark.parametrize(
    "change",
    [
        {"season_learn": 5},
        {"season_min_correlation": 0.0},
        {"season_rate": 1.5},
        {"season_scale": 0.0},
    ],
)
def test_bad_seasonal_settings_are_refused(change: dict[str, float]) -> None:
    with pytest.raises(DetectError, match=next(iter(change))):
        replace(DetectorSettings(), **change)
