"""The seasonal residual: a period found from the first two days of time slots, at the
city's sampling rates as at NAB's; phases from timestamps; a missing daily rise
reported although every value in it is familiar; nothing kept for a series without
a period."""

from __future__ import annotations

import math
import pickle
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from cloud.detect import AnomalyDetector, DetectError, DetectorSettings
from cloud.detect.seasonal import DAY_NS, SeasonalResidual, dominant_period

STEP_NS = 300 * 10**9
DAY = 288  # five-minute values
RISE = slice(108, 216)  # the daily high, from 09:00 to 18:00
T0_NS = 1_767_225_600 * 10**9  # 2026-01-01 00:00 UTC
CADENCES = [5, 60, 300]  # air sensors, traffic loops, NAB's files (seconds)


def _seasonal() -> SeasonalResidual:
    return SeasonalResidual(600, 300 * 10**9, 0.5, 0.2, 1000, 3.0, 150)


def _sampled(
    step_s: int, days: int, seed: int, missing_rise: int | None = None
) -> tuple[list[int], list[float]]:
    """A city-like day sampled every `step_s` seconds, stamps jittered by up to a fifth of
    a step: 20 at night, 80 by day, rising over 5 minutes from 09:02:30 (not on a slot
    boundary) and falling from 18:02:30, noise 2; `missing_rise`: a day that stays low."""
    rng = np.random.default_rng(seed)
    t = np.arange(0, days * 86_400, step_s, dtype=np.float64)
    t += rng.uniform(0, step_s / 5, t.size)
    of_day = t % 86_400
    up = np.clip((of_day - (9 * 3600 + 150)) / 300, 0, 1)
    down = np.clip(((18 * 3600 + 150) - of_day) / 300, 0, 1)
    high = up * down
    if missing_rise is not None:
        high[(t // 86_400).astype(int) == missing_rise] = 0.0
    values = 20.0 + 60.0 * high + rng.normal(0, 2, t.size)
    return [T0_NS + int(x * 1e9) for x in t], [float(v) for v in values]


def _hours(stamps: list[int]) -> np.ndarray:
    return (np.array(stamps, dtype=np.float64) - T0_NS) / 3.6e12


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


@pytest.mark.parametrize("step_s", CADENCES)
def test_a_daily_period_is_found_at_every_cadence(step_s: int) -> None:
    # Four days of a daily wave in noise: 600 values were minutes to 10 hours of a city
    # sensor, and the period searched in them was never a day (0 / 0 / 291 values).
    rng = np.random.default_rng(step_s)
    t = np.arange(0, 4 * 86_400, step_s)
    values = np.sin(t * 2 * math.pi / 86_400) * 10 + rng.normal(0, 3, t.size)
    seasonal = _seasonal()
    for k, v in zip(t, values, strict=True):
        seasonal.update(T0_NS + int(k) * 10**9, float(v))
    assert not seasonal.learning
    assert seasonal.period_ns == DAY_NS
    assert abs(seasonal.period - DAY) <= DAY // 20  # five-minute slots


def test_learning_keeps_the_same_memory_at_any_sampling_rate() -> None:
    sizes = {}
    for step_s in CADENCES:
        stamps, values = _sampled(step_s, days=2, seed=1)
        seasonal = _seasonal()
        hour = 3_600 // step_s
        sizes[step_s] = [
            len(pickle.dumps(seasonal))
            for k, (t, v) in enumerate(zip(stamps, values, strict=True))
            if seasonal.update(t, v) == 0.0 and k % hour == 0 and k >= 2 * hour
        ]
        assert seasonal.learning  # 48 hours: not yet the 600 slots (50 hours)
    assert len(set(sizes[5] + sizes[60] + sizes[300])) == 1


@pytest.mark.parametrize("step_s", CADENCES)
def test_a_missing_daily_rise_is_reported_at_every_cadence(step_s: int) -> None:
    stamps, values = _sampled(step_s, days=6, seed=1, missing_rise=4)
    with_season = np.array(_scores(DetectorSettings(), stamps, values))
    without = np.array(_scores(replace(DetectorSettings(), season_learn=0), stamps, values))
    threshold = DetectorSettings().threshold
    hours = _hours(stamps)
    rise = (hours >= 4 * 24 + 9) & (hours < 4 * 24 + 9.5)
    assert with_season[rise].max() >= threshold
    assert without[(hours >= 4 * 24) & (hours < 5 * 24)].max() < threshold
    # Everywhere else the seasonal part adds no alert to what the rest of the detector gives.
    added = (with_season >= threshold) & (without < threshold) & ~rise
    assert not added.any(), hours[added]


@pytest.mark.parametrize("step_s", CADENCES)
@pytest.mark.parametrize("shape", ["noise", "trend"])
def test_a_series_without_a_period_gets_nothing(step_s: int, shape: str) -> None:
    rng = np.random.default_rng(5)
    n = 3 * 86_400 // step_s
    values = rng.normal(0, 1, n) + (np.arange(n) * 1e-3 if shape == "trend" else 0.0)
    seasonal = _seasonal()
    surprises = [
        seasonal.update(T0_NS + k * step_s * 10**9, float(v)) for k, v in enumerate(values)
    ]
    assert not seasonal.learning
    assert seasonal.period == seasonal.period_ns == 0
    assert not any(surprises)
    # No profile and no ranked history: a few attributes only.
    assert seasonal._residuals is None
    assert len(seasonal._profile) == 0
    assert len(pickle.dumps(seasonal)) < 1024


def test_an_hourly_series_gets_hourly_slots() -> None:
    # Five-minute slots would leave eleven of twelve empty: the slot is the interval.
    rng = np.random.default_rng(7)
    hours = np.arange(30 * 24)
    values = np.sin(hours * 2 * math.pi / 24) * 10 + rng.normal(0, 2, hours.size)
    seasonal = _seasonal()
    for h, v in zip(hours, values, strict=True):
        seasonal.update(T0_NS + int(h) * 3_600 * 10**9, float(v))
    assert (seasonal.period, seasonal.period_ns) == (24, DAY_NS)


def test_learning_slots_mostly_empty_give_no_period() -> None:
    stamps, values = _sampled(300, days=4, seed=2)
    hours = _hours(stamps)
    kept = (hours < 10) | (hours >= 40)  # 30 of the 50 learning hours missing
    seasonal = _seasonal()
    for t, v, keep in zip(stamps, values, kept, strict=True):
        if keep:
            seasonal.update(t, v)
    assert not seasonal.learning
    assert seasonal.period == 0


def test_one_distance_per_slot_visit_is_ranked_whatever_the_rate() -> None:
    # The ranked history spans the same time (about 3.5 days of five-minute visits) at
    # 5 s as at 5 min, not 83 minutes of values.
    ranked = {}
    for step_s in (5, 300):
        stamps, values = _sampled(step_s, days=4, seed=3)
        seasonal = _seasonal()
        for t, v in zip(stamps, values, strict=True):
            seasonal.update(t, v)
        assert seasonal._residuals is not None
        ranked[step_s] = len(seasonal._residuals)
    assert 0 < ranked[300] < 1000
    assert abs(ranked[5] - ranked[300]) <= 2


def test_a_visits_readings_go_into_its_profile_as_their_mean() -> None:
    # At 60 s, a five-minute slot's five readings alternate 10 below and 10 above its
    # level: its profile is their mean, the level -2 or +2 (three of one sign, two of
    # the other), not the latest reading smoothed.
    seasonal = _seasonal()
    stamps = [T0_NS + k * 60 * 10**9 for k in range(5 * 24 * 60)]
    level = [40.0 * math.sin(2 * math.pi * (k // 5) / 288) for k in range(len(stamps))]
    values = [v + (10.0 if k % 2 else -10.0) for k, v in enumerate(level)]
    for t, v in zip(stamps, values, strict=True):
        seasonal.update(t, v)
    assert seasonal.period_ns == DAY_NS
    assert seasonal.period == DAY
    profile = np.array(seasonal._profile, dtype=np.float64)
    expected = [
        40.0 * math.sin(2 * math.pi * s / 288) + (-2.0 if s % 2 == 0 else 2.0) for s in range(288)
    ]
    assert np.allclose(profile, expected, atol=1e-3)


def test_a_period_near_a_day_is_a_day() -> None:
    rng = np.random.default_rng(8)
    i = np.arange(2 * DAY + 100)
    values = np.sin(i * 2 * math.pi / DAY) * 10 + rng.normal(0, 3, i.size)
    seasonal = _seasonal()
    for k, v in enumerate(values):
        seasonal.update(k * STEP_NS, float(v))
    assert abs(seasonal.period - DAY) <= DAY // 20
    assert seasonal.period_ns == 86_400 * 10**9
    hourly = _seasonal()
    for k, v in enumerate(np.sin(i * 2 * math.pi / 12) + rng.normal(0, 0.2, i.size)):
        hourly.update(k * STEP_NS, float(v))
    assert (hourly.period, hourly.period_ns) == (12, 12 * STEP_NS)


@pytest.mark.parametrize("step_s", [60, 300])
def test_a_pickled_seasonal_residual_resumes_exactly(step_s: int) -> None:
    stamps, values = _sampled(step_s, days=5, seed=6)
    straight = _seasonal()
    expected = [straight.update(t, v) for t, v in zip(stamps, values, strict=True)]
    for cut in (len(stamps) // 5, len(stamps) * 3 // 4 + 1):  # learning; mid-visit
        first = _seasonal()
        head = [first.update(t, v) for t, v in zip(stamps[:cut], values[:cut], strict=True)]
        resumed = pickle.loads(pickle.dumps(first))
        rest = [resumed.update(t, v) for t, v in zip(stamps[cut:], values[cut:], strict=True)]
        assert head + rest == expected
    assert straight.period_ns == DAY_NS
    assert max(expected) > 0.0


def test_state_of_the_previous_layout_loads() -> None:
    # The code before time slots kept the first 600 values; the dataflow drops such
    # state unread (another detector version), but loading it must not raise.
    old = SeasonalResidual.__new__(SeasonalResidual)
    old.__setstate__((None, {"_first": None, "period": 8, "learn": 600, "_origin_ns": 0}))
    assert old.period == 8


@pytest.mark.parametrize(
    "change",
    [
        {"season_learn": 5},
        {"season_slot_s": 0},
        {"season_min_correlation": 0.0},
        {"season_rate": 1.5},
        {"season_scale": 0.0},
    ],
)
def test_bad_seasonal_settings_are_refused(change: dict[str, Any]) -> None:
    with pytest.raises(DetectError, match=next(iter(change))):
        replace(DetectorSettings(), **change)
