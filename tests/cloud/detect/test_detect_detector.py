"""The streaming detector: its contract with the dataflow, and that it finds the obvious."""

from __future__ import annotations

import itertools
import math
import pickle
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.detect import AnomalyDetector, DetectError, DetectorSettings, make_detector
from cloud.detect.profiles import ROAD_TRAFFIC, detector_by_name, scored
from urbanpulse.wire.kinds import KINDS

T0 = datetime(2026, 1, 1, tzinfo=UTC)
STEP_NS = 300 * 10**9


def _series(n: int, seed: int = 1) -> list[float]:
    rng = np.random.default_rng(seed)
    day = np.sin(np.arange(n) * 2 * math.pi / 288) * 20 + 50
    return list(day + rng.normal(0, 2, n))


def _scores(detector: AnomalyDetector, values: list[float]) -> list[float]:
    return [detector.update(i * STEP_NS, v) for i, v in enumerate(values)]


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(-1e9, 1e9, allow_nan=False), min_size=1, max_size=400))
def test_scores_stay_in_the_unit_interval(values: list[float]) -> None:
    scores = _scores(AnomalyDetector(), values)
    assert all(0.0 <= s <= 1.0 for s in scores)


def test_no_look_ahead_a_score_depends_only_on_the_past() -> None:
    values = _series(1500)
    full = _scores(AnomalyDetector(), values)
    changed = values[:1000] + [v * 3 + 100 for v in values[1000:]]
    altered = _scores(AnomalyDetector(), changed)
    assert full[:1000] == altered[:1000]
    assert full[1000:] != altered[1000:]


def test_same_input_same_scores() -> None:
    values = _series(1200, seed=7)
    assert _scores(AnomalyDetector(), values) == _scores(AnomalyDetector(), values)


@pytest.mark.parametrize("profile", [DetectorSettings(), ROAD_TRAFFIC], ids=["default", "traffic"])
def test_a_pickled_detector_resumes_exactly(profile: DetectorSettings) -> None:
    values = _series(1600, seed=3)
    straight = _scores(AnomalyDetector(profile), values)
    first = AnomalyDetector(profile)
    head = [first.update(i * STEP_NS, v) for i, v in enumerate(values[:800])]
    resumed = pickle.loads(pickle.dumps(first))
    tail = [resumed.update((800 + i) * STEP_NS, v) for i, v in enumerate(values[800:])]
    assert head + tail == straight


@pytest.mark.parametrize("profile", [DetectorSettings(), ROAD_TRAFFIC], ids=["default", "traffic"])
@pytest.mark.parametrize("shape", ["random_walk", "noise", "gaussian", "daily", "growing"])
def test_state_stays_under_64_kb(shape: str, profile: DetectorSettings) -> None:
    rng = np.random.default_rng(11)
    n = 20_000
    if shape == "random_walk":
        values = np.cumsum(rng.normal(0, 1, n))
    elif shape == "noise":
        values = rng.standard_cauchy(n)
    elif shape == "gaussian":  # fills both context memories to capacity
        values = rng.normal(0, 1, n)
    elif shape == "daily":  # the same with a daily wave: the seasonal profile is kept too
        values = np.sin(np.arange(n) * 2 * math.pi / 288) * 2 + rng.normal(0, 1, n)
    else:
        values = np.arange(n) * (1 + rng.random(n))
    detector = AnomalyDetector(profile)
    sizes = []
    for i, v in enumerate(values):
        detector.update(i * STEP_NS, float(v))
        if i % 2500 == 0:
            sizes.append(len(pickle.dumps(detector)))
    sizes.append(len(pickle.dumps(detector)))
    assert max(sizes) < 64 * 1024
    season = detector._season
    assert season is not None
    assert (season.period > 0) == (shape == "daily")
    # Without a period the seasonal part keeps no profile and no ranked history (they
    # were 4.3 KB per field before, for every field).
    assert (season._residuals is None) == (shape != "daily")
    if shape != "daily":
        assert len(pickle.dumps(season)) < 1024


def test_an_obvious_spike_scores_above_the_threshold_and_normal_data_does_not() -> None:
    values = _series(2000, seed=5)
    values[1500] += 200.0
    scores = _scores(AnomalyDetector(), values)
    detector = AnomalyDetector()
    assert scores[1500] >= detector.threshold
    assert sum(s >= detector.threshold for s in scores[1000:1500]) <= 1


def test_a_lasting_anomaly_is_reported_at_its_start_not_on_every_value() -> None:
    values = _series(2000, seed=9)
    shifted = values[:1500] + [v + 150 for v in values[1500:]]
    scores = _scores(AnomalyDetector(), shifted)
    threshold = AnomalyDetector().threshold
    assert scores[1500] >= threshold
    assert sum(s >= threshold for s in scores[1500:1600]) < 10


def test_the_traffic_profile_sees_a_change_of_pace_the_values_do_not_show() -> None:
    # A daily wave that starts running twice as fast passes through the same values
    # (familiar value contexts) in steps twice as large (never-seen differences).
    # The seasonal residual is off in both: it sees the change too (below).
    phase = np.cumsum(np.where(np.arange(2000) < 1500, 1.0, 2.0))
    values = list(np.sin(phase * 2 * math.pi / 288) * 20 + 50)
    plain = _scores(AnomalyDetector(replace(DetectorSettings(), season_learn=0)), values)
    traffic = _scores(AnomalyDetector(replace(ROAD_TRAFFIC, season_learn=0)), values)
    assert max(traffic[1500:1550]) >= ROAD_TRAFFIC.threshold
    assert max(plain[1500:1550]) < ROAD_TRAFFIC.threshold
    assert max(traffic[300:1500]) < ROAD_TRAFFIC.threshold
    # The wave leaves its daily profile at once: the default settings see it by that.
    seasonal = _scores(AnomalyDetector(), values)
    assert seasonal[1500] >= DetectorSettings().threshold
    assert max(seasonal[300:1500]) < DetectorSettings().threshold


def test_road_loops_get_the_traffic_profile() -> None:
    speed = make_detector("traffic.loop", "speed_kmh")
    count = make_detector("traffic.loop", "count")
    assert speed.settings.difference_novelty > 0
    assert count.settings.difference_novelty > 0
    assert count.settings.warmup == 288
    assert speed.settings.hold < make_detector("air.pm", "pm25").settings.hold
    assert make_detector("air.pm", "pm25").settings.difference_novelty == 0


def test_an_alert_stays_open_for_hold_values_then_new_alerts_may_come() -> None:
    hold = DetectorSettings().hold
    values = _series(2000, seed=5)
    values[1500] += 15.0
    values[1504] += 400.0  # within the hold of the first alert
    values[1500 + hold + 20] += 1500.0  # after it
    held = _scores(AnomalyDetector(), values)
    unheld = _scores(AnomalyDetector(DetectorSettings(hold=0)), values)
    threshold = DetectorSettings().threshold
    assert held[1500] >= threshold
    assert unheld[1504] >= threshold
    assert held[1501 : 1501 + hold] == [0.0] * hold
    assert held[1500 + hold + 20] >= threshold


def test_timestamps_may_be_aware_datetimes() -> None:
    values = _series(400)
    by_ns = _scores(AnomalyDetector(), values)
    detector = AnomalyDetector()
    by_dt = [detector.update(T0 + timedelta(minutes=5 * i), v) for i, v in enumerate(values)]
    assert by_ns == by_dt


def test_bad_inputs_are_refused_and_change_nothing() -> None:
    detector = AnomalyDetector()
    for i in range(200):
        detector.update(i * STEP_NS, float(i % 7))
    before = pickle.dumps(detector)
    with pytest.raises(DetectError, match="not finite"):
        detector.update(201 * STEP_NS, math.nan)
    with pytest.raises(DetectError, match="time zone"):
        detector.update(datetime(2026, 1, 1), 1.0)
    assert pickle.dumps(detector) == before


def test_make_detector_covers_every_kind_and_field() -> None:
    for kind, spec in KINDS.items():
        for field in spec.fields:
            detector = make_detector(kind, field, name=f"n1/{kind}/{field}")
            assert 0.0 < detector.threshold <= 1.0
            assert detector.name == f"n1/{kind}/{field}"
            assert detector.update(0, 1.0) == 0.0
    assert make_detector("hospital.bed", "occupied").threshold > make_detector(
        "air.pm", "pm25"
    ).threshold


def test_only_measurements_are_scored_and_the_rest_keep_their_fault_rules() -> None:
    from cloud.logic.events import SensorWatch
    from urbanpulse.wire import Reading

    assert scored("air.pm", "pm25")
    assert scored("traffic.loop", "speed_kmh")
    assert scored("hospital.door", "count")
    for kind, field in (("hospital.queue", "ticket"), ("hospital.queue", "counter"),
                        ("hospital.bed", "occupied"), ("traffic.loop", "interval_s"),
                        ("hospital.door", "fault"), ("traffic.loop", "glitches")):
        assert not scored(kind, field), (kind, field)
    watch = SensorWatch()
    out = watch.check("hn", "n1", Reading("kiosk-1", "hospital.queue", 10**18, 1,
                                          {"ticket": 1.0, "called": 0.0}))
    assert out == []
    ticket = watch.fields["ticket"]
    assert ticket is not None
    assert ticket.detector is None
    assert ticket.faults is not None
    bed = SensorWatch()
    points = bed.check("hn", "n1", Reading("bed-1", "hospital.bed", 10**18, 1,
                                           {"occupied": 0.0, "fault": 1.0}))
    assert any("type=cut_cable" in p[1] for p in points), "the fault rules still run"


def test_unknown_kinds_fields_and_names_are_errors() -> None:
    with pytest.raises(DetectError, match="unknown sensor kind"):
        make_detector("air.ozone", "o3")
    with pytest.raises(DetectError, match="no field"):
        make_detector("air.pm", "pm4")
    with pytest.raises(DetectError, match="unknown detector"):
        detector_by_name("magic")
    assert detector_by_name("traffic.loop:occupancy_pct").name == "traffic.loop/occupancy_pct"


def test_a_second_alert_soon_after_the_first_is_damped() -> None:
    values = _series(2000, seed=5)
    values[1500] += 200.0
    values[1560] += 200.0
    damped = _scores(AnomalyDetector(), values)
    plain = _scores(AnomalyDetector(replace(DetectorSettings(), damp_factor=1.0)), values)
    settings_ = DetectorSettings()
    assert max(damped[1350:1500]) < settings_.damp_level
    assert damped[1500] == plain[1500] >= settings_.damp_level
    assert plain[1560] >= settings_.damp_level
    assert damped[1560] == pytest.approx(plain[1560] * settings_.damp_factor)
    later = [*values[:1500], *values[1500:1560], values[1560], *values[1561:]]
    later[1560] -= 200.0
    later[1800] += 400.0
    far = _scores(AnomalyDetector(), later)
    far_plain = _scores(AnomalyDetector(replace(DetectorSettings(), damp_factor=1.0)), later)
    assert far[1800] == far_plain[1800] >= settings_.damp_level


def test_a_jump_larger_than_any_before_counts_as_novel() -> None:
    # A repeated ramp down from 60 to 40 and back up in one step: its largest jump
    # (against the median of the 5 values before) is 15. Then the series rests at 40,
    # long enough for the scores of the rest's start to leave the refractory window,
    # and steps to 60: a jump of 20, larger than any before, to a value and short
    # contexts (40, 40, 60) already seen; only the contexts of orders 4 and 5 are new.
    motif = [60.0, 55.0, 50.0, 45.0, 40.0, 40.0]
    values = motif * 200 + [40.0] * 60 + [60.0]
    jump_at = len(values) - 1
    with_record = _scores(AnomalyDetector(), values)
    plain = AnomalyDetector(replace(DetectorSettings(), record_jump_novelty=0.0))
    without = _scores(plain, values)
    assert with_record[:jump_at] == without[:jump_at]
    assert with_record[jump_at] > without[jump_at]
    assert with_record[jump_at] >= DetectorSettings().novelty_weight * 0.7


def test_record_jump_novelty_is_checked() -> None:
    with pytest.raises(DetectError, match="record_jump_novelty"):
        DetectorSettings(record_jump_novelty=1.5)


def test_the_differences_memory_settings_are_checked_and_default_to_the_values() -> None:
    with pytest.raises(DetectError, match="difference_orders"):
        DetectorSettings(difference_orders=())
    with pytest.raises(DetectError, match="difference_orders"):
        DetectorSettings(difference_orders=(0, 1))
    with pytest.raises(DetectError, match="difference_capacity"):
        DetectorSettings(difference_capacity=0)
    same = AnomalyDetector(replace(DetectorSettings(), difference_novelty=1.0))._differences
    assert same is not None
    assert (same.orders, same.capacity) == ((1, 2, 3, 4, 5), 2500)
    road = AnomalyDetector(ROAD_TRAFFIC)._differences
    assert road is not None
    assert (road.orders, road.capacity) == ((1, 2, 3), 500)


def _new_co2_station(hours: float, seed: int = 1) -> list[tuple[int, float]]:
    """A CO2 module read every 5 s (the MH-Z19B driver's default) on a freshly installed
    station: 450 ppm rising to 1,400 over its first 4 hours, whole ppm with some noise."""
    rng = np.random.default_rng(seed)
    t0 = 1_709_532_000 * 10**9  # 06:00 UTC on a Monday
    out = []
    for i in range(int(hours * 3600 / 5)):
        h = i * 5 / 3600
        out.append((t0 + i * 5 * 10**9, float(round(450 + 950 * min(h / 4, 1) + rng.normal(0, 8)))))
    return out


def test_a_new_series_rising_through_its_first_hours_raises_no_alert_storm() -> None:
    """The hold of an alert was 40 values: 200 min of NAB's 5-minute rows, 200 s of a module
    read every 5 s, and a series rising past anything it had seen alerted every 5-15 min (29
    alerts in its first 4.4 h). It is now held for 40 five-minute rows of its stamps too."""
    detector = make_detector("air.co2", "co2")
    readings = _new_co2_station(8)
    alerts = [ts for ts, v in readings if detector.update(ts, v) >= detector.threshold]
    assert 1 <= len(alerts) <= 2, len(alerts)
    assert all(b - a >= 40 * 300 * 10**9 for a, b in itertools.pairwise(alerts))


def test_an_alert_is_held_as_long_in_time_at_any_rate() -> None:
    """The same spikes on a daily wave at 5 min and at 5 s a row: at 5 min the value hold
    and the time hold are one; at 5 s the second spike, 60 values (300 s) after the first,
    is within the first's 200 min and held."""
    values = _series(4000, seed=5)
    values[3500] += 200.0
    values[3560] += 1500.0
    for step in (STEP_NS, 5 * 10**9):
        detector = AnomalyDetector()
        scores = [detector.update(i * step, v) for i, v in enumerate(values)]
        assert scores[3500] >= detector.threshold
        assert (scores[3560] >= detector.threshold) == (step == STEP_NS)


def test_a_detector_pickled_before_the_time_hold_loads_with_none_open() -> None:
    values = _series(2000, seed=5)
    values[1500] += 200.0
    detector = AnomalyDetector()
    before = _scores(detector, values[:1500])
    detector.__dict__.pop("_held_until", None)  # the layout before it
    resumed = pickle.loads(pickle.dumps(detector))
    assert resumed.update(1500 * STEP_NS, values[1500]) >= resumed.threshold
    assert before == _scores(AnomalyDetector(), values[:1500])
