"""NAB v1.1 scoring, as written down in shared/NAB_SCORING.md.

A file is prepared once (`FileLabels`: its length, window rows and, per profile, the
weight A(i) of every row); scores are then computed for any detector output and
threshold. `sweep` is NAB's exhaustive threshold search over the pooled corpus.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


class ScoringError(ValueError):
    """The labels, timestamps or scores do not fit NAB's rules."""


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    tp_weight: float
    fp_weight: float
    fn_weight: float


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile("standard", 1.0, 0.11, 1.0),
        Profile("reward_low_FP_rate", 1.0, 0.22, 1.0),
        Profile("reward_low_FN_rate", 1.0, 0.11, 2.0),
    )
}


def scaled_sigmoid(y: float) -> float:
    if y > 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * y)) - 1.0


MAX_TP = scaled_sigmoid(-1.0)


def probation_rows(n: int) -> int:
    return min(math.floor(0.15 * n), 750)


def window_rows(
    timestamps: Sequence[datetime], windows: Iterable[tuple[datetime, datetime]]
) -> list[tuple[int, int]]:
    """Row indices (inclusive) of each window; each end must be a row's timestamp, and a
    timestamp some rows share stands for the first of them (NAB's `timestamps.index`)."""
    index: dict[datetime, int] = {}
    for i, ts in enumerate(timestamps):
        index.setdefault(ts, i)
    rows: list[tuple[int, int]] = []
    for start, end in windows:
        if start not in index or end not in index:
            raise ScoringError(f"window [{start}, {end}] does not start and end on rows")
        left, right = index[start], index[end]
        if right < left or (rows and left <= rows[-1][1]):
            raise ScoringError(f"window [{start}, {end}] is reversed or overlaps the last one")
        rows.append((left, right))
    return rows


def row_weights(n: int, windows: Sequence[tuple[int, int]], profile: Profile) -> FloatArray:
    """A(i) for every row (probationary rows included), section 4."""
    weights = np.full(n, -profile.fp_weight)
    previous: tuple[int, int] | None = None
    next_window = 0
    i = 0
    while i < n:
        if next_window < len(windows) and i == windows[next_window][0]:
            left, right = windows[next_window]
            width = right - left + 1
            for j in range(left, right + 1):
                y = -(right - j + 1) / width
                weights[j] = profile.tp_weight * scaled_sigmoid(y) / MAX_TP
            previous = (left, right)
            next_window += 1
            i = right + 1
            continue
        if previous is not None:
            left, right = previous
            y = (i - right) / (right - left)
            weights[i] = profile.fp_weight * scaled_sigmoid(y)
        i += 1
    return weights


@dataclass(slots=True)
class FileLabels:
    """One file's labels, ready to score any detector output."""

    key: str
    n: int
    windows: list[tuple[int, int]]
    probation: int
    window_of_row: IntArray = field(repr=False)
    weights: dict[str, FloatArray] = field(repr=False)

    @classmethod
    def build(
        cls, key: str, timestamps: Sequence[datetime], windows: Iterable[tuple[datetime, datetime]]
    ) -> FileLabels:
        n = len(timestamps)
        rows = window_rows(timestamps, windows)
        probation = probation_rows(n)
        window_of_row = np.full(n, -1, dtype=np.int64)
        counted = [w for w in rows if w[1] >= probation]
        for k, (left, right) in enumerate(counted):
            window_of_row[left : right + 1] = k
        weights = {name: row_weights(n, rows, p) for name, p in PROFILES.items()}
        return cls(key, n, counted, probation, window_of_row, weights)


@dataclass(frozen=True, slots=True)
class FileScore:
    raw: float
    tp: int
    fp: int
    fn: int
    tn: int
    detected_windows: int


def score_file(
    labels: FileLabels, scores: npt.ArrayLike, threshold: float, profile: Profile
) -> FileScore:
    """Raw score of one file at a threshold (section 5): detections are a >= threshold."""
    a = _checked_scores(labels, scores)
    weights = labels.weights[profile.name]
    p = labels.probation
    detected = a[p:] >= threshold
    window = labels.window_of_row[p:]
    w = weights[p:]
    inside = window >= 0
    raw = 0.0
    hits = 0
    for k in range(len(labels.windows)):
        in_k = detected & (window == k)
        if in_k.any():
            raw += float(w[in_k].max())
            hits += 1
        else:
            raw -= profile.fn_weight
    raw += float(w[detected & ~inside].sum())
    return FileScore(
        raw=raw,
        tp=int((detected & inside).sum()),
        fp=int((detected & ~inside).sum()),
        fn=int((~detected & inside).sum()),
        tn=int((~detected & ~inside).sum()),
        detected_windows=hits,
    )


def _checked_scores(labels: FileLabels, scores: npt.ArrayLike) -> FloatArray:
    a = np.asarray(scores, dtype=np.float64)
    if a.shape != (labels.n,):
        raise ScoringError(f"{labels.key}: {a.shape} scores for {labels.n} rows")
    if not np.all((a >= 0.0) & (a <= 1.0)):
        raise ScoringError(f"{labels.key}: a score lies outside [0, 1]")
    return a


def sweep(
    files: Sequence[tuple[FileLabels, npt.ArrayLike]], profile: Profile
) -> tuple[float, float]:
    """NAB's threshold search (section 6): (best threshold, corpus raw score).

    Ties go to the highest threshold."""
    all_scores: list[FloatArray] = []
    all_weights: list[FloatArray] = []
    all_windows: list[IntArray] = []
    offset = 0
    for labels, scores in files:
        a = _checked_scores(labels, scores)
        p = labels.probation
        all_scores.append(a[p:])
        all_weights.append(labels.weights[profile.name][p:])
        win = labels.window_of_row[p:].copy()
        win[win >= 0] += offset
        all_windows.append(win)
        offset += len(labels.windows)
    a = np.concatenate(all_scores)
    w = np.concatenate(all_weights)
    win = np.concatenate(all_windows)
    order = np.argsort(-a, kind="stable")
    a, w, win = a[order], w[order], win[order]

    best = np.full(offset, -profile.fn_weight)
    score = -profile.fn_weight * offset
    best_threshold, best_score = 1.1, score
    i = 0
    total = len(a)
    while i < total:
        value = a[i]
        j = i
        while j < total and a[j] == value:
            k = int(win[j])
            if k < 0:
                score += float(w[j])
            elif w[j] > best[k]:
                score += float(w[j]) - best[k]
                best[k] = w[j]
            j += 1
        if score > best_score:
            best_threshold, best_score = float(value), score
        i = j
    return best_threshold, best_score


def normalised(raw: float, n_windows: int, profile: Profile) -> float:
    """NAB score (section 7) over a set of n_windows windows."""
    null = -profile.fn_weight * n_windows
    perfect = profile.tp_weight * n_windows
    return 100.0 * (raw - null) / (perfect - null)
