"""How far a value is from what the series does at the same phase of its period.

Everything here is counted in time slots, not in values, so that a sensor reporting
every 5 s and one reporting every 5 min cost the same and find the same daily period.
A slot lasts `slot_ns` (5 minutes), or, for a series whose typical interval (the median
of its first `HEAD` intervals) is longer, that interval rounded to a multiple of
`slot_ns` (an hourly series gets hourly slots: five-minute ones would be mostly empty).
Slots are aligned to the epoch: a slot boundary falls on every round 5 minutes.

Learning. For the first `learn` slots (600 five-minute slots: 50 hours, enough to see
a day twice) each slot keeps the mean of the values that fall in it and their count,
updated as they arrive: the memory is fixed, whatever the sampling rate. Then the
series' dominant period, in slots, comes from the autocorrelation of the slot means
(`dominant_period`; empty slots are filled in linearly, and a series that left more
than half of them empty gets no period): past the first lag at which the
autocorrelation turns negative, the shortest lag where it comes within 10 % of its
highest (a period's multiples correlate as well as the period does), if that highest
reaches `min_correlation`. A series with no such lag (noise, a trend, a random walk)
gets no period and the component stays silent for good; its learning slots are
dropped and nothing else is ever allocated.

Profile. With a period of P slots the period lasts P slots; one within 5 % of a day
is taken to be a day (the autocorrelation of a smooth daily wave peaks broadly, a few
slots either side of the true period, and a period a little off would drift through
the days), and is then cut into P phase slots of a day / P each. The phase of a value
comes from its timestamp, so a gap in the data does not shift the phases after it.
Each phase slot keeps an exponentially smoothed profile (`rate`) of the mean of the
values of each of its visits: the visit's mean goes into the profile when the next
visit begins, once per period however many values fell in it.

Residual. The first value of each visit is compared with its phase slot's profile, and
that distance is ranked against the last `history` such distances (`TailHistory`,
created only once a period is found): the surprise of a value the series has never
been so far from at its phase. One distance per visit keeps the ranked history a fixed
span of time (1,000 five-minute visits: three and a half days) at any sampling rate;
the other values of a visit get 0. A daily rise that does not come, or comes at the
wrong hour, has a distance larger than every earlier one, while its values and their
short contexts may all be familiar.
"""

from __future__ import annotations

import math
import statistics
from array import array
from itertools import pairwise
from typing import Any

import numpy as np
import numpy.typing as npt

from cloud.detect.compat import slot_state
from cloud.detect.tail import TailHistory

DAY_NS = 86_400 * 10**9
NEAR_TOP = 0.9
HEAD = 16  # intervals from which the slot width is chosen
MAX_COUNT = 65_535  # a learning slot's count saturates here (its mean becomes an average of the latest)


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


def slot_profile(means: Any, counts: Any) -> npt.NDArray[np.float64] | None:
    """Slot means with the empty slots filled in linearly, or None if over half are empty."""
    filled = np.flatnonzero(np.asarray(counts))
    if filled.size * 2 < len(counts):
        return None
    kept = np.asarray(means, dtype=np.float64)
    return np.interp(np.arange(len(counts)), filled, kept[filled])


class SeasonalResidual:
    __slots__ = (
        "_counts",
        "_first_slot",
        "_head",
        "_means",
        "_profile",
        "_residuals",
        "_span_ns",
        "_visit",
        "_visit_count",
        "_visit_sum",
        "_width_ns",
        "history",
        "learn",
        "min_correlation",
        "min_count",
        "period",
        "rate",
        "record_weight",
        "slot_ns",
    )

    def __init__(
        self,
        learn: int,
        slot_ns: int,
        min_correlation: float,
        rate: float,
        history: int,
        record_weight: float,
        min_count: int,
    ) -> None:
        self.learn = learn
        self.slot_ns = slot_ns
        self.min_correlation = min_correlation
        self.rate = rate
        self.history = history
        self.record_weight = record_weight
        self.min_count = min_count
        self.period = 0  # phase slots per period (0: none, or not known yet)
        # Until the slot width is chosen: the first stamps and values.
        self._head: list[tuple[int, float]] | None = []
        # While learning: per slot of `_width_ns` from `_first_slot`, the mean and count.
        self._width_ns = 0
        self._first_slot = 0
        self._means: array[float] | None = None
        self._counts: array[int] | None = None
        # Once a period is found.
        self._span_ns = 0  # how long one period lasts
        self._profile = array("f")
        self._residuals: TailHistory | None = None
        self._visit = 0  # the slot being visited, counted from the epoch
        self._visit_sum = 0.0
        self._visit_count = 0

    def __getstate__(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}

    def __setstate__(self, state: Any) -> None:
        for name, value in slot_state(state).items():
            if name in self.__slots__:  # an older layout's other names are left out
                setattr(self, name, value)
        profile = getattr(self, "_profile", None)
        if isinstance(profile, array):  # a copy allocated to its size, as made (pickle's: 1/16 more)
            self._profile = array(profile.typecode, profile)

    def narrow(self, history: int) -> None:
        """Rank against the last `history` distances (at most as many as now), the newest
        kept (where the ring held them is not known: one distance per visit)."""
        self.history = history
        if self._residuals is not None:
            self._residuals.keep_newest(history)

    @property
    def period_ns(self) -> int:
        """How long the period lasts (0: no period, or not known yet)."""
        return self._span_ns

    @property
    def learning(self) -> bool:
        return self._head is not None or self._means is not None

    def update(self, ts_ns: int, value: float) -> float:
        """Surprise of `value`'s distance from its phase's profile (0 while none is known,
        and for every value of a slot's visit but the first)."""
        if self.period:
            return self._residual(ts_ns, value)
        head = self._head
        if head is not None:
            head.append((ts_ns, value))
            if len(head) > HEAD:
                self._choose_width(head)
            return 0.0
        means, counts = self._means, self._counts
        if means is None or counts is None:
            return 0.0
        index = ts_ns // self._width_ns - self._first_slot
        if index < self.learn:
            if index >= 0:  # not before the first value (out of order): not learned from
                n = counts[index]
                if n < MAX_COUNT:
                    counts[index] = n = n + 1
                means[index] += (value - means[index]) / n
            return 0.0
        self._end_learning(means, counts)
        return self._residual(ts_ns, value) if self.period else 0.0

    def _choose_width(self, head: list[tuple[int, float]]) -> None:
        self._head = None
        interval = statistics.median(b[0] - a[0] for a, b in pairwise(head))
        self._width_ns = width = self.slot_ns * max(1, round(interval / self.slot_ns))
        self._first_slot = head[0][0] // width
        self._means = array("f", bytes(4 * self.learn))
        self._counts = array("H", bytes(2 * self.learn))
        for ts, value in head:
            self.update(ts, value)

    def _end_learning(self, means: array[float], counts: array[int]) -> None:
        self._means = self._counts = None
        filled = slot_profile(means, counts)
        if filled is None:
            return
        period = dominant_period(filled, self.min_correlation)
        span = period * self._width_ns
        if span <= 0:
            return
        if abs(span - DAY_NS) <= DAY_NS // 20:
            span = DAY_NS
            period = round(DAY_NS / self._width_ns)
        self.period = period
        self._span_ns = span
        self._profile = array("f", [math.nan]) * period
        self._residuals = TailHistory(self.history, self.record_weight, min_count=self.min_count)
        self._visit = -1

    def _residual(self, ts_ns: int, value: float) -> float:
        period = self.period
        visit = ts_ns * period // self._span_ns
        if visit == self._visit:
            self._visit_sum += value
            self._visit_count += 1
            return 0.0
        profile = self._profile
        if self._visit_count:
            slot = self._visit % period
            mean = self._visit_sum / self._visit_count
            before = profile[slot]
            profile[slot] = mean if math.isnan(before) else before + self.rate * (mean - before)
        self._visit = visit
        self._visit_sum = value
        self._visit_count = 1
        expected = profile[visit % period]
        if math.isnan(expected):
            return 0.0
        residuals = self._residuals
        return residuals.surprise_push(abs(value - expected)) if residuals is not None else 0.0
