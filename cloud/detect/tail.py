"""How surprising a value is against the recent history of the same statistic.

`TailHistory` keeps the last `size` values of one statistic in a ring (float32:
half the memory, and ranks do not need more). The surprise
of a new value v is -log of its empirical upper-tail probability, (count of kept
values >= v) / (n + 1): a value never exceeded in the kept history gets
log(n + 1), plus how far it beats the record in standard deviations of the history
(times `record_weight`, capped), so that records are ranked by how far they go.

Beside the ring, the same values are kept sorted, so that the count of values >= v
is a binary search instead of a pass over the ring. The sorted copy is not pickled
(it would double the state); it is rebuilt from the ring when a snapshot is loaded.
A value equal to the one it replaces in a full ring leaves the sorted copy as it is,
and a full ring's surprises, -log(k / (n + 1)) with n fixed, come from a table.

A `two_sided` history also gives, in `lower`, the surprise of -v against the
negated history, i.e. the lower tail, from the same ring: float32 rounding is
symmetric, so it is exactly what a second history fed the negated statistic gives.
"""

from __future__ import annotations

import math
import struct
from array import array
from bisect import bisect_left, bisect_right
from math import log
from typing import Any

import numpy as np
import numpy.typing as npt

from cloud.detect.compat import slot_state

RECORD_CAP = 20.0
_DERIVED = ("_cast", "_neg_log", "_size", "_sorted")  # made from the rest, not pickled

_F32 = struct.Struct("f")

# -log(k / (n + 1)) for k = 0 .. n (k = 0 unused), per ring size n: a full ring's ranks.
_NEG_LOGS: dict[int, list[float]] = {}


def _neg_logs(n: int) -> list[float]:
    table = _NEG_LOGS.get(n)
    if table is None:
        table = _NEG_LOGS[n] = [0.0] + [-math.log(k / (n + 1)) for k in range(1, n + 1)]
    return table


def as_float32(value: float) -> float:
    """`value` rounded to float32, as a Python float (exact)."""
    try:
        return float(_F32.unpack(_F32.pack(value))[0])
    except OverflowError:  # beyond float32's range: numpy's cast gives +-inf (and warns)
        return float(np.float32(value))


def _std(kept: npt.NDArray[np.float32]) -> float:
    """`float(kept.std(dtype=np.float64))`, the same steps without numpy's Python wrapper."""
    n = kept.size
    # The mean divided in Python: the same double division as numpy's, one call fewer.
    mean = float(np.add.reduce(kept, dtype=np.float64)) / n
    deviations = np.subtract(kept, mean, dtype=np.float64)
    np.square(deviations, out=deviations)
    return math.sqrt(float(np.add.reduce(deviations, dtype=np.float64)) / n)


class TailHistory:
    __slots__ = (
        "_cast",
        "_count",
        "_neg_log",
        "_next",
        "_size",
        "_sorted",
        "_values",
        "lower",
        "min_count",
        "record_weight",
        "two_sided",
    )

    def __init__(
        self, size: int, record_weight: float, min_count: int = 30, two_sided: bool = False
    ) -> None:
        self._values = array("f", [0.0]) * size  # allocated to its size (from bytes: 1/16 more)
        self._sorted = array("f")
        self._cast = array("f", b"\0\0\0\0")  # rounds a value to float32 (not pickled)
        self._neg_log = _neg_logs(size)  # (not pickled)
        self._size = size  # len(self._values) (not pickled)
        self._count = 0
        self._next = 0
        self.record_weight = record_weight
        self.min_count = min_count
        self.two_sided = two_sided
        self.lower = 0.0  # the lower-tail surprise of the last value (two-sided only)

    def __len__(self) -> int:
        return self._count

    def __getstate__(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__ if name not in _DERIVED}

    def __setstate__(self, state: Any) -> None:
        for name, value in slot_state(state).items():
            if name not in _DERIVED:
                setattr(self, name, value)
        self._cast = array("f", b"\0\0\0\0")
        try:
            self._values = array("f", self._values)  # a copy allocated to its size
            self._size = len(self._values)
            self._neg_log = _neg_logs(self._size)
        except (AttributeError, TypeError):
            self._size = -1
            self._neg_log = []
        lower = getattr(self, "lower", None)
        if (type(lower) is float and math.isfinite(lower) and math.copysign(1.0, lower) > 0.0
                and self._neg_log):
            # None yet (0.0) or a full ring's rank, as the table's own float (shared, as a
            # fresh history's), not pickle's copy.
            k = round((self._size + 1) * math.exp(-lower)) if lower else 0
            for j in (k, k - 1, k + 1):
                if 0 <= j < len(self._neg_log) and self._neg_log[j] == lower:
                    self.lower = self._neg_log[j]
                    break
        try:
            self._sorted = array("f", sorted(self._values[: self._count]))
        except (AttributeError, TypeError):
            # A snapshot of an older layout: it loads, and the owner of the detector
            # (cloud.logic.node.NodeState) drops it, its code version being another.
            self._sorted = array("f")

    def keep_newest(self, size: int, pushed: int | None = None) -> None:
        """Keep the `size` newest values only (`size` at most the ring's), in a ring of
        `size`: what a history of `size` pushed the same values holds. Where each sits in
        the ring (which a record's spread sums in its order) is that history's too when
        `pushed`, how many values were pushed in all, is known (a full ring's next slot is
        then `pushed` modulo its size); without it the oldest kept sits first."""
        if not 0 < size <= self._size:
            raise ValueError(f"a history of {self._size} values cannot keep {size}")
        n, ring = self._count, self._values
        if n < self._size:
            pushed = n
            ordered = ring[:n]
        else:
            if pushed is None or pushed < n or pushed % n != self._next:
                pushed = None
            ordered = ring[self._next :] + ring[: self._next]
        kept = ordered[-size:]
        count = len(kept)
        if count < size:
            self._values = kept + array("f", [0.0]) * (size - count)
            self._next = count
        else:
            start = 0 if pushed is None else pushed % size  # where the oldest kept value goes
            self._values = kept[size - start :] + kept[: size - start]
            self._next = start
        self._count = count
        self._size = size
        self._neg_log = _neg_logs(size)
        self._sorted = array("f", sorted(kept))

    def surprise_push(self, value: float) -> float:
        """Surprise of `value` (0 until `min_count` values are kept), which is then kept.
        A two-sided history leaves the surprise of -value in `lower`."""
        cast = self._cast
        cast[0] = value  # rounded as the ring keeps it (beyond float32's range: +-inf)
        v: float = cast[0]
        n = self._count
        ordered = self._sorted
        size = self._size
        lo = bisect_left(ordered, v)  # kept values below v
        if n >= self.min_count:
            at_or_above = n - lo
            if not at_or_above:
                surprise = self._record(v, ordered[-1])
            elif n == size:
                surprise = self._neg_log[at_or_above]
            else:
                surprise = -log(at_or_above / (n + 1))
            if self.two_sided:
                at_or_below = lo if lo == n or ordered[lo] != v else bisect_right(ordered, v, lo)
                if not at_or_below:
                    self.lower = self._record(-v, -ordered[0])
                elif n == size:
                    self.lower = self._neg_log[at_or_below]
                else:
                    self.lower = -log(at_or_below / (n + 1))
        else:
            surprise = 0.0
            if self.two_sided:
                self.lower = 0.0
        values = self._values
        i = self._next
        if n == size:
            # The value replaced leaves the sorted copy: it is found on its side of v's
            # place only (the kept values are never NaN), and an equal value would be
            # taken out where it goes back in.
            old = values[i]
            if old < v:
                del ordered[bisect_left(ordered, old, 0, lo)]
                ordered.insert(lo - 1, v)
            elif old > v:
                del ordered[bisect_left(ordered, old, lo)]
                ordered.insert(lo, v)
        else:
            self._count = n + 1
            ordered.insert(lo, v)
            if n + 1 == size:  # full: copied to its size (inserts left room), then kept so
                self._sorted = array("f", ordered)
        values[i] = v
        i += 1
        self._next = 0 if i == size else i
        return surprise

    def _record(self, v: float, top: float) -> float:
        """Surprise of a value above everything kept (`top` the largest); rare enough
        that a pass over the ring costs nothing overall."""
        n = self._count
        ring = np.frombuffer(self._values, dtype=np.float32)
        kept = ring if n == len(ring) else ring[:n]
        # The spread of the negated values is the same, bit for bit: rounding is
        # symmetric, so negating every term negates every partial sum.
        spread = _std(kept) + 1e-12
        beyond = min((v - top) / spread, RECORD_CAP)
        return math.log(n + 1) + self.record_weight * beyond
