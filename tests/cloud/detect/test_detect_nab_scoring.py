"""The NAB scorer against NAB's own unit-test example and ARTime's golden vectors."""

from __future__ import annotations

import csv
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from bench.nab.corpus import load_corpus
from bench.nab.scoring import (
    MAX_TP,
    PROFILES,
    FileLabels,
    Profile,
    ScoringError,
    normalised,
    probation_rows,
    row_weights,
    scaled_sigmoid,
    score_file,
    sweep,
    window_rows,
)

UNIT = Profile("unit", 1.0, 1.0, 1.0)


def test_scaled_sigmoid_reference_values() -> None:
    assert MAX_TP == 0.9866142981514305
    assert scaled_sigmoid(-0.5) == pytest.approx(0.8482836399575131, abs=1e-15)
    assert scaled_sigmoid(0.0) == 0.0
    assert scaled_sigmoid(1.0) == pytest.approx(-0.9866142981514303, abs=1e-15)
    assert scaled_sigmoid(3.0) == pytest.approx(-0.99999939, abs=1e-8)
    assert scaled_sigmoid(3.0001) == -1.0


def test_probation_is_fifteen_percent_capped_at_750() -> None:
    assert probation_rows(1000) == 150
    assert probation_rows(1127) == 169
    assert probation_rows(15902) == 750


def test_row_weights_of_nabs_example() -> None:
    a = row_weights(100, [(30, 34), (65, 69)], UNIT)
    assert a[30:35] == pytest.approx([1.0, 0.97711, 0.91743, 0.77193, 0.46839], abs=1e-5)
    assert a[35:39] == pytest.approx([-0.5546, -0.84828, -0.95405, -0.98661], abs=1e-5)
    assert a[0] == -1.0


def _labels(n: int, windows: list[tuple[int, int]], probation: int) -> FileLabels:
    window_of_row = np.full(n, -1, dtype=np.int64)
    for k, (left, right) in enumerate(windows):
        window_of_row[left : right + 1] = k
    weights = {"unit": row_weights(n, windows, UNIT)}
    return FileLabels("example.csv", n, windows, probation, window_of_row, weights)


def test_file_score_of_nabs_example() -> None:
    labels = _labels(100, [(30, 34), (65, 69)], probation=0)
    scores = np.zeros(100)
    scores[[30, 31, 37]] = 1.0
    result = score_file(labels, scores, 0.5, UNIT)
    assert result.raw == pytest.approx(-0.95405, abs=1e-5)
    assert (result.tp, result.fp, result.detected_windows) == (2, 1, 1)


def test_probationary_rows_never_count() -> None:
    labels = _labels(100, [(30, 34)], probation=20)
    scores = np.zeros(100)
    scores[:20] = 1.0
    assert score_file(labels, scores, 0.5, UNIT).raw == -1.0


def test_sweep_takes_the_highest_threshold_on_a_tie() -> None:
    labels = _labels(100, [(30, 34)], probation=0)
    scores = np.zeros(100)
    scores[30] = 0.9
    scores[31] = 0.8  # detecting it too changes nothing: same score, lower threshold
    threshold, raw = sweep([(labels, scores)], UNIT)
    assert (threshold, raw) == (0.9, 1.0)


def test_scores_outside_unit_interval_are_rejected() -> None:
    labels = _labels(10, [], probation=0)
    with pytest.raises(ScoringError):
        score_file(labels, np.full(10, 1.5), 0.5, UNIT)


def _golden(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_row_weights_match_artime_golden_vectors(nab_root: Path) -> None:
    for f in load_corpus(nab_root, {"realTraffic"}):
        rows = _golden(nab_root / "golden" / "ARTime" / "realTraffic" / f"ARTime_{Path(f.key).name}")
        assert len(rows) == f.labels.n
        for name in PROFILES:
            expected = np.array([float(r[f"S(t)_{name}"]) for r in rows])
            np.testing.assert_allclose(f.labels.weights[name], expected, rtol=0, atol=1e-12)


def test_artime_realtraffic_scores_match_published(nab_root: Path) -> None:
    published = {"standard": 86.9, "reward_low_FP_rate": 81.5, "reward_low_FN_rate": 91.2}
    thresholds = {"standard": 0.317486, "reward_low_FP_rate": 0.317585, "reward_low_FN_rate": 0.317486}
    corpus = load_corpus(nab_root, {"realTraffic"})
    outputs = []
    for f in corpus:
        rows = _golden(nab_root / "golden" / "ARTime" / "realTraffic" / f"ARTime_{Path(f.key).name}")
        outputs.append(np.array([float(r["anomaly_score"]) for r in rows]))
    for name, profile in PROFILES.items():
        raw = sum(
            score_file(f.labels, a, thresholds[name], profile).raw
            for f, a in zip(corpus, outputs, strict=True)
        )
        assert round(normalised(raw, 14, profile), 1) == published[name]


def test_a_window_end_on_a_repeated_timestamp_is_its_first_row_as_in_nab() -> None:
    # Some NAB files repeat a timestamp (exchange-2_cpc_results, speed_t4013, ...). NAB's
    # sweeper enters a window at the first row stamped with its start and takes the end's
    # row as timestamps.index(end): the first such row. The last one was taken here.
    t0 = datetime(2015, 1, 1)
    stamps = [t0 + timedelta(minutes=5 * i) for i in range(20)]
    stamps[11] = stamps[10]  # rows 10 and 11 share a stamp, and rows 15 and 16
    stamps[16] = stamps[15]
    assert window_rows(stamps, [(stamps[10], stamps[15])]) == [(10, 15)]
