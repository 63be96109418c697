"""How surprising a value is against the recent history of the same statistic.

`TailHistory` keeps the last `size` values of one statistic in a ring (float32:
half the memory, and ranks do not need more). The surprise
of a new value v is -log of its empirical upper-tail probability, (count of kept
values >= v) / (n + 1): a value never exceeded in the kept history gets
log(n + 1), plus how far it beats the record in standard deviations of the history
(times `record_weight`, capped), so that records are ranked by how far they go.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

RECORD_CAP = 20.0


class TailHistory:
    __slots__ = ("_count", "_next", "_values", "min_count", "record_weight")

    def __init__(self, size: int, record_weight: float, min_count: int = 30) -> None:
        self._values: npt.NDArray[np.float32] = np.zeros(size, dtype=np.float32)
        self._count = 0
        self._next = 0
        self.record_weight = record_weight
        self.min_count = min_count

    def __len__(self) -> int:
        return self._count

    def surprise(self, value: float) -> float:
        """Surprise of `value`; 0 until `min_count` values are kept. Does not store it."""
        n = self._count
        if n < self.min_count:
            return 0.0
        kept = self._values if n == len(self._values) else self._values[:n]
        value = float(np.float32(value))
        at_or_above = int(np.count_nonzero(kept >= value))
        if at_or_above:
            return -math.log(at_or_above / (n + 1))
        spread = float(kept.std(dtype=np.float64)) + 1e-12
        beyond = min((value - float(kept.max())) / spread, RECORD_CAP)
        return math.log(n + 1) + self.record_weight * beyond

    def push(self, value: float) -> None:
        self._values[self._next] = value
        self._next = (self._next + 1) % len(self._values)
        self._count = min(self._count + 1, len(self._values))
