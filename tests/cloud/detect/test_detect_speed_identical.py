"""The detector made cheaper per value (issues 6 and 7) gives what it gave before, bit for
bit: the tail ring's and the context memory's per-value steps of commit ee74ac2, kept here
as they were, against the ones the detector runs now, on random series of every shape
(ties, plateaus, steps, spikes, growing ranges, values past float32's range), with a
snapshot taken and loaded midway: the same scores, the same `lower`, the same pickled state.
All of NAB and a city workload are pinned in `test_detect_scores_pinned.py`."""

from __future__ import annotations

import math
import pickle
import random
from bisect import bisect_left, bisect_right
from math import log
from typing import Any

import pytest

from cloud.detect.detector import AnomalyDetector, DetectorSettings
from cloud.detect.novelty import _BITS, _MASK, _OFFSET, _ORDER_BITS, _ORDER_SHIFTS, ContextNovelty, _encode
from cloud.detect.profiles import ROAD_TRAFFIC
from cloud.detect.tail import TailHistory


class OldTail(TailHistory):
    """`TailHistory.surprise_push` as of commit ee74ac2."""

    __slots__ = ()

    def surprise_push(self, value: float) -> float:
        """Surprise of `value` (0 until `min_count` values are kept), which is then kept.
        A two-sided history leaves the surprise of -value in `lower`."""
        cast = self._cast
        cast[0] = value  # rounded as the ring keeps it (beyond float32's range: +-inf)
        v: float = cast[0]
        n = self._count
        ordered = self._sorted
        values = self._values
        full = n == self._size
        lo = bisect_left(ordered, v)  # kept values below v
        surprise = 0.0
        if n >= self.min_count:
            at_or_above = n - lo
            if not at_or_above:
                surprise = self._record(v, ordered[-1])
            elif full:
                surprise = self._neg_log[at_or_above]
            else:
                surprise = -log(at_or_above / (n + 1))
            if self.two_sided:
                at_or_below = lo if lo == n or ordered[lo] != v else bisect_right(ordered, v, lo)
                if not at_or_below:
                    self.lower = self._record(-v, -ordered[0])
                elif full:
                    self.lower = self._neg_log[at_or_below]
                else:
                    self.lower = -log(at_or_below / (n + 1))
        elif self.two_sided:
            self.lower = 0.0
        i = self._next
        if full:
            old = values[i]
            if old != v:  # an equal value would be taken out where it goes back in
                gone = bisect_left(ordered, old)
                del ordered[gone]
                if gone < lo:
                    lo -= 1
                ordered.insert(lo, v)
        else:
            self._count = n + 1
            ordered.insert(lo, v)
        values[i] = v
        i += 1
        self._next = 0 if i == self._size else i
        return surprise


class OldNovelty(ContextNovelty):
    """`ContextNovelty.update` and `_observe` as of commit ee74ac2."""

    __slots__ = ()

    def update(self, value: float) -> float:
        """Novelty in [0, 1] of `value` in its contexts; 0 while the bins are being learned."""
        low, high = self._low, self._high
        if value < low:
            self._low = low = value
        if value > high:
            self._high = high = value
        if self._first is not None:
            self._first.append(value)
            if len(self._first) > self.learn:
                del self._first[0]  # a flat start: wait for the first change
            if len(self._first) >= self.learn and self._high > self._low:
                self._anchor = self._low
                self._width = (self._high - self._low) / self.levels
                first, self._first = self._first, None
                for v in first:
                    self._observe(self._level(v))
            return 0.0
        width = self._width
        span = high - low
        if span != self._span_checked:  # only another range can call for coarser bins
            while span / width > self.levels * self.coarsen:
                self._coarsen()
                width = self._width
            self._span_checked = span
        return self._observe(math.floor((value - self._anchor) / width))

    def _observe(self, level: int) -> float:
        recent = self._recent
        longest = self._longest
        if recent and recent[-1] == level:
            run = self._run = self._run + 1
            if run > longest and self.capacity >= len(self.orders):
                return 0.0  # the same contexts as the value before (see the module)
        else:
            self._run = 1
        recent.append(level)
        n = len(recent)
        novel = 0
        memory = self._memory
        pop = memory.pop
        if self._consecutive:
            # The levels packed once (see _packed); the key of order k is its body shifted.
            coded = (level + _OFFSET) & _MASK
            if n > longest:
                del recent[0]
                n -= 1
                body = (self._body >> _BITS) | (coded << (_BITS * (n - 1)))
            else:
                body = self._body | (coded << (_BITS * (n - 1)))
            self._body = body
            for order, shift in _ORDER_SHIFTS[n]:
                key = order | ((body >> shift) << _ORDER_BITS)
                novel += pop(key, 1)  # 1 if new; a key seen before moves to the end
                memory[key] = 0
            seen = n
        else:
            if n > longest:
                del recent[0]
                n -= 1
            seen = 0
            ascending = self._ascending
            body = 0
            k = 0
            for order in self.orders:
                if n < order:
                    continue
                if ascending:
                    while k < order:
                        k += 1
                        body = (body << _BITS) | ((recent[-k] + _OFFSET) & _MASK)
                    key = order | (body << _ORDER_BITS)
                else:
                    key = _encode(recent[-order:])
                novel += pop(key, 1)
                seen += 1
                memory[key] = 0
        if novel:
            capacity = self.capacity
            while len(memory) > capacity:
                del memory[next(iter(memory))]
        return novel / seen if seen else 0.0


def _series(shape: str, n: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    out: list[float] = []
    x = 0.0
    for i in range(n):
        if shape == "gauss":
            x = rng.gauss(10.0, 2.0)
        elif shape == "ties":  # few distinct values: equal ones replaced and ranked
            x = float(rng.randint(0, 4))
        elif shape == "walk":
            x += rng.gauss(0.0, 1.0)
        elif shape == "plateaus":  # runs of one level, steps between
            if rng.random() < 0.05:
                x = float(rng.randint(-3, 3)) * 7.5
        elif shape == "spikes":
            x = 1e6 * rng.random() if rng.random() < 0.01 else rng.gauss(0.0, 0.1)
        elif shape == "growing":  # the bins coarsen again and again
            x = i * rng.random() * (1 + i // 500)
        elif shape == "huge":  # past float32's range: +-inf in the rings
            x = rng.choice([-1.0, 1.0]) * 10.0 ** rng.uniform(37.0, 40.0)
        elif shape == "daily":
            x = 20.0 + 5.0 * math.sin(2 * math.pi * i / 288) + rng.gauss(0.0, 0.5)
        else:
            raise AssertionError(shape)
        out.append(x)
    return out


SHAPES = ["gauss", "ties", "walk", "plateaus", "spikes", "growing", "huge", "daily"]


def _pickled(obj: Any, base: type) -> bytes:
    """The pickle of an old-code object under the class the detector uses."""
    cls, obj.__class__ = obj.__class__, base
    try:
        return pickle.dumps(obj)
    finally:
        obj.__class__ = cls


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(("size", "min_count", "two_sided"),
                         [(50, 30, True), (50, 30, False), (200, 150, True), (1000, 30, True)])
def test_the_tail_ring_ranks_as_before(shape: str, size: int, min_count: int,
                                       two_sided: bool) -> None:
    old = OldTail(size, 3.0, min_count, two_sided)
    new = TailHistory(size, 3.0, min_count, two_sided)
    values = _series(shape, 3 * size + 77, seed=size + min_count)
    for i, value in enumerate(values):
        if i == len(values) // 2:  # a snapshot
            old = pickle.loads(_pickled(old, TailHistory))
            old.__class__ = OldTail
            new = pickle.loads(pickle.dumps(new))
        expected, got = old.surprise_push(value), new.surprise_push(value)
        assert (got, new.lower) == (expected, old.lower) or (
            math.isnan(got) and math.isnan(expected)), (i, value)
    assert pickle.dumps(new) == _pickled(old, TailHistory)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(("orders", "capacity"),
                         [((1, 2, 3, 4, 5), 2500), ((1, 2, 3, 4, 5), 40), ((1, 2, 3), 30),
                          ((1, 3, 5), 30), ((2, 1), 3)])
def test_the_context_memory_learns_as_before(shape: str, orders: tuple[int, ...],
                                             capacity: int) -> None:
    old = OldNovelty(8, orders, 30, 2.5, capacity)
    new = ContextNovelty(8, orders, 30, 2.5, capacity)
    values = _series(shape, 2500, seed=capacity)
    for i, value in enumerate(values):
        if i == 1234:  # a snapshot
            old = pickle.loads(_pickled(old, ContextNovelty))
            old.__class__ = OldNovelty
            new = pickle.loads(pickle.dumps(new))
        assert new.update(value) == old.update(value), (i, value)
        assert new._recent == old._recent
        assert new._body == old._body
    assert list(new._memory) == list(old._memory)
    assert pickle.dumps(new) == _pickled(old, ContextNovelty)


SMALL = DetectorSettings(history=60, warmup=40, learn=20, memory_capacity=40, refractory=5,
                         damp_span=30, hold=8, season_learn=40)


def _old_parts(detector: AnomalyDetector) -> list[tuple[Any, type]]:
    parts: list[tuple[Any, type]] = []
    for tail in (detector._value_tail, detector._jump_tail, detector._mean_tail):
        parts.append((tail, TailHistory))
    for novelty in (detector._novelty, detector._differences):
        if novelty is not None:
            parts.append((novelty, ContextNovelty))
    return parts


def _detector_pickle(detector: AnomalyDetector, parts: list[tuple[Any, type]]) -> bytes:
    old_classes = [(part, part.__class__) for part, _ in parts]
    for part, base in parts:
        part.__class__ = base
    try:
        return pickle.dumps(detector)
    finally:
        for part, cls in old_classes:
            part.__class__ = cls


# A record against a ring that holds +-inf (values past float32's range) has no spread
# (inf - inf): numpy says so, in the old code as in the new one.
@pytest.mark.filterwarnings("ignore:invalid value encountered in subtract:RuntimeWarning")
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("settings", [DetectorSettings(), ROAD_TRAFFIC, SMALL],
                         ids=["default", "road", "small"])
def test_the_detector_scores_as_before(shape: str, settings: DetectorSettings) -> None:
    """Old parts (the seasonal residual's ring too, once it has one) against new ones, on
    stamps 5 minutes apart with gaps, and some 5 s apart."""
    old, new = AnomalyDetector(settings), AnomalyDetector(settings)
    parts = _old_parts(old)
    for part, base in parts:
        part.__class__ = OldTail if base is TailHistory else OldNovelty
    values = _series(shape, 2600, seed=len(shape))
    rng = random.Random(7)
    ts = 1_700_000_000 * 10**9
    for i, value in enumerate(values):
        ts += (5 if rng.random() < 0.1 else 300 * rng.choice([1, 1, 1, 2])) * 10**9
        if i == 1500:  # a snapshot
            old = pickle.loads(_detector_pickle(old, parts))
            new = pickle.loads(pickle.dumps(new))
            parts = _old_parts(old)
            for part, base in parts:
                part.__class__ = OldTail if base is TailHistory else OldNovelty
        season = old._season
        residuals = None if season is None else season._residuals
        if residuals is not None and type(residuals) is TailHistory:
            residuals.__class__ = OldTail
            parts.append((residuals, TailHistory))
        assert new.update(ts, value) == old.update(ts, value), (i, value)
    assert pickle.dumps(new) == _detector_pickle(old, parts)
