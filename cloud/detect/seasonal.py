"""How far a value is from what the series does at the same phase of its period.

`SeasonalResidual` first keeps the series' first `learn` values and finds its dominant
period there, from their autocorrelation (`dominant_period`): past the first lag at
which the autocorrelation turns negative, the shortest lag where it comes within 10 %
of its highest (a period's multiples correlate as well as the period does), if that
highest reaches `min_correlation`. A series with no such lag (noise, a trend, a random
walk) gets no period and the component stays silent for good; the first values are
then dropped.

With a period of P values, the phase of a value comes from its timestamp: the period
lasts P mean intervals of the learning values, cut into P slots, so a gap in the data
does not shift the phases after it. A period within 5 % of a day is taken to be a day:
the autocorrelation of a smooth daily wave peaks broadly, a few values either side of
the true period, and a period a little off would drift through the days. Each slot
keeps an exponentially smoothed profile of the values seen in it (`rate`); the
residual of a value is its distance from its slot's profile, before the value updates
it. The residual is ranked against the last `history` residuals (`TailHistory`): the
surprise of a value the series has never been so far from at its phase. A daily rise
that does not come, or comes at the wrong hour, has a residual larger than every
earlier one, while its values and their short contexts may all be familiar.
"""

from __future__ import annotations

import math
from array import array
from typing import Any

import numpy as np

from cloud.detect.compat import slot_state
from cloud.detect.tail import TailHistory

DAY_NS = 86_400 * 10**9
NEAR_TOP = 0.9


def dominant_period(values: Any, min_correlation: float) -> int:
    """The dominant period of `values` in values, or 0 if they show none (see the module)."""
    x = np.asarray(values, dtype=np.float64)
    n = x.size
    if n < 8 or not np.isfinite(x).all():
        return 0
    x = x - x.mean()
    energy = float(np.dot(x, x))
    if energy <= 0.0 or not math.isfinite(energy):
        return 0
    lags = np.arange(n // 2 + 1)
    # Autocorrelation per lag, each sum scaled to the n terms a full overlap would have.
    corr = np.correlate(x, x, "full")[n - 1 : n - 1 + lags.size] / energy * n / (n - lags)
    negative = np.flatnonzero(corr[1:] < 0.0)
    if negative.size == 0:
        return 0
    start = int(negative[0]) + 2
    if start > n // 2:
        return 0
    top = float(corr[start:].max())
    if top < min_correlation:
        return 0
    # The shortest lag near the top: a period's multiples correlate as well as it does.
    inner = corr[start:-1]
    peaks = (inner >= corr[start - 1 : -2]) & (inner >= corr[start + 1 :]) & (inner >= NEAR_TOP * top)
    found = np.flatnonzero(peaks)
    return start + int(found[0]) if found.size else start + int(np.argmax(corr[start:]))


class SeasonalResidual:
    __slots__ = (
        "_first",
        "_first_ns",
        "_last_ns",
        "_origin_ns",
        "_profile",
        "_residuals",
        "_span_ns",
        "learn",
        "min_correlation",
        "period",
        "rate",
    )

    def __init__(
        self,
        learn: int,
        min_correlation: float,
        rate: float,
        history: int,
        record_weight: float,
        min_count: int,
    ) -> None:
        self.learn = learn
        self.min_correlation = min_correlation
        self.rate = rate
        self.period = 0
        self._first: array[float] | None = array("f")
        self._first_ns = 0
        self._last_ns = 0
        self._origin_ns = 0
        self._span_ns = 0  # how long one period lasts
        self._profile = array("f")
        self._residuals = TailHistory(history, record_weight, min_count=min_count)

    def __getstate__(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}

    def __setstate__(self, state: Any) -> None:
        for name, value in slot_state(state).items():
            setattr(self, name, value)

    @property
    def period_ns(self) -> int:
        """How long the period lasts (0: no period, or not known yet)."""
        return self._span_ns

    def update(self, ts_ns: int, value: float) -> float:
        """Surprise of `value`'s distance from its phase's profile (0 while none is known)."""
        first = self._first
        if first is not None:
            if not first:
                self._first_ns = ts_ns
            self._last_ns = ts_ns
            first.append(value)
            if len(first) >= self.learn:
                self._start(first)
            return 0.0
        period = self.period
        if not period:
            return 0.0
        span = self._span_ns
        slot = (ts_ns - self._origin_ns) % span * period // span
        profile = self._profile
        expected = profile[slot]
        if math.isnan(expected):
            profile[slot] = value
            return 0.0
        profile[slot] = expected + self.rate * (value - expected)
        return self._residuals.surprise_push(abs(value - expected))

    def _start(self, first: array[float]) -> None:
        self._first = None
        interval = (self._last_ns - self._first_ns) / (len(first) - 1)
        period = dominant_period(first, self.min_correlation)
        span = round(period * interval)
        if span <= 0:
            return
        if abs(span - DAY_NS) <= DAY_NS // 20:
            span = DAY_NS
        self.period = period
        self._span_ns = span
        self._origin_ns = self._last_ns
        self._profile = array("f", [math.nan]) * period
