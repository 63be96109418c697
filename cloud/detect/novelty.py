"""Novelty of short contexts of quantised values.

Values are put into bins of one width, anchored at the smallest of the first
`learn` values, with the width chosen so that those values span `levels` bins. Bins
beyond that range simply get further indices, so a context learned before stays
valid when the series leaves its first range. When the values seen span more than
`levels * coarsen` bins, the width doubles and every stored context is mapped to
the coarser bins (floor division by two is exact on this grid).

A context of order k is the tuple of the last k bin indices. The novelty of a
value is the share of its contexts (orders given by `orders`) never seen before;
every context is then remembered. The memory keeps at most `capacity` contexts and
forgets the least recently seen first; it is pickled as one array of 8-byte keys
(a detector may hold two of these memories and must stay under 64 KB).

A level equal to the last `max(orders)` levels has the contexts of the value before it,
which were just remembered in the same order: its novelty is 0 and the memory is left
as it is (when the memory holds at least one context per order).

With orders 1, 2, .. k (the default), the last k levels are also kept packed as a key
codes them (`_packed`, newest in the highest bits; made from them again on loading, not
pickled): one shift and one or per value keep it, and the key of each order is a shift
of it, instead of coding every level again for every order.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from itertools import pairwise
from typing import Any

import numpy as np

from cloud.detect.compat import slot_state

_BITS = 8
_MASK = (1 << _BITS) - 1
_OFFSET = 1 << (_BITS - 1)
_ORDER_BITS = 4
assert (_BITS, _OFFSET, _MASK, _ORDER_BITS) == (8, 128, 255, 4)  # written out in update
_DERIVED = ("_body",)  # made from `_recent`, not pickled

# (order k, right shift of the packed levels giving the k newest), for 1 .. n levels kept.
_ORDER_SHIFTS = [tuple((k, _BITS * (n - k)) for k in range(1, n + 1)) for n in range(16)]


def _encode(levels: list[int]) -> int:
    key = len(levels)
    for i, level in enumerate(levels):
        key |= ((level + _OFFSET) & _MASK) << (_ORDER_BITS + _BITS * i)
    return key


def _decode(key: int) -> list[int]:
    order = key & ((1 << _ORDER_BITS) - 1)
    return [((key >> (_ORDER_BITS + _BITS * i)) & _MASK) - _OFFSET for i in range(order)]


def _packed(recent: list[int]) -> int:
    """The levels of `recent` coded as in a key (see _encode), the newest in the highest bits:
    shifted right by `_BITS * j`, the body of the key of the `len(recent) - j` newest."""
    body = 0
    for level in reversed(recent):
        body = (body << _BITS) | ((level + _OFFSET) & _MASK)
    return body


def _coarser(keys: Iterable[int], longest: int) -> list[int]:
    """Each key with its levels halved (floored), in the same order:
    `_encode([level // 2 for level in _decode(key)])`, done on all keys at once."""
    if _ORDER_BITS + _BITS * longest >= 63:
        return [_encode([level // 2 for level in _decode(key)]) for key in keys]
    old = np.fromiter(keys, dtype=np.int64)
    orders = old & ((1 << _ORDER_BITS) - 1)
    new = orders.copy()
    for i in range(longest):
        shift = _ORDER_BITS + _BITS * i
        level = ((old >> shift) & _MASK) - _OFFSET
        coded = ((level // 2) + _OFFSET) & _MASK
        new |= np.where(i < orders, coded, 0) << shift
    return [int(key) for key in new.tolist()]


class ContextNovelty:
    __slots__ = (
        "_anchor",
        "_ascending",
        "_body",
        "_consecutive",
        "_first",
        "_high",
        "_longest",
        "_low",
        "_memory",
        "_recent",
        "_run",
        "_span_checked",
        "_width",
        "capacity",
        "coarsen",
        "learn",
        "levels",
        "orders",
    )

    def __init__(
        self, levels: int, orders: tuple[int, ...], learn: int, coarsen: float, capacity: int
    ) -> None:
        if max(orders) >= 1 << _ORDER_BITS:
            raise ValueError(f"context orders must be below {1 << _ORDER_BITS}")
        self.levels = levels
        self.orders = orders
        self.learn = learn
        self.coarsen = coarsen
        self.capacity = capacity
        self._longest = max(orders)
        self._ascending = all(a < b for a, b in pairwise(orders))
        # Orders 1, 2, .. k: a key per kept level, newest first.
        self._consecutive = orders == tuple(range(1, self._longest + 1))
        self._run = 0  # the last level's repeats in a row (itself included) since a coarsening
        self._span_checked = math.nan  # the range (high - low) last found fine for the bins
        self._first: list[float] | None = []
        self._anchor = 0.0
        self._width = 0.0
        self._low = math.inf
        self._high = -math.inf
        self._recent: list[int] = []
        self._body = 0  # `_recent` packed (`_packed`), for the keys of consecutive orders
        # Insertion-ordered set of context keys, least recently seen first (values all 0).
        self._memory: dict[int, int] = {}

    def __getstate__(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            name: getattr(self, name) for name in self.__slots__ if name not in _DERIVED
        }
        state["_memory"] = np.fromiter(self._memory, dtype=np.int64).tobytes()
        return state

    def __setstate__(self, state: Any) -> None:
        self._run, self._consecutive, self._span_checked = 0, False, math.nan  # older layouts
        fields = slot_state(state)
        for name, value in fields.items():
            setattr(self, name, value)
        memory = fields.get("_memory")
        if isinstance(memory, bytes):
            keys = np.frombuffer(memory, dtype=np.int64)
            self._memory = dict.fromkeys((int(key) for key in keys), 0)
        elif not isinstance(memory, dict):
            self._memory = {}  # an older layout: dropped by its owner (see tail.py)
        recent = fields.get("_recent")
        self._body = _packed(recent) if isinstance(recent, list) else 0

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
        level = math.floor((value - self._anchor) / width)
        recent = self._recent
        if len(recent) == 5 and self._longest == 5 and self._consecutive:
            # `_observe` for the default orders 1 .. 5 with 5 levels kept (every value
            # but the first four), its loop unrolled, its constants written out (_BITS 8,
            # _OFFSET 128, _MASK 255, _ORDER_BITS 4).
            if recent[-1] == level:
                run = self._run = self._run + 1
                if run > 5 and self.capacity >= 5:
                    return 0.0  # the same contexts as the value before (see the module)
            else:
                self._run = 1
            del recent[0]
            recent.append(level)
            self._body = body = (self._body >> 8) | (((level + 128) & 255) << 32)
            memory = self._memory
            pop = memory.pop
            key = 1 | ((body >> 32) << 4)
            novel = pop(key, 1)
            memory[key] = 0
            key = 2 | ((body >> 24) << 4)
            novel += pop(key, 1)
            memory[key] = 0
            key = 3 | ((body >> 16) << 4)
            novel += pop(key, 1)
            memory[key] = 0
            key = 4 | ((body >> 8) << 4)
            novel += pop(key, 1)
            memory[key] = 0
            key = 5 | (body << 4)
            novel += pop(key, 1)
            memory[key] = 0
            if novel:
                capacity = self.capacity
                while len(memory) > capacity:
                    del memory[next(iter(memory))]
            return novel / 5
        return self._observe(level)

    def _level(self, value: float) -> int:
        return math.floor((value - self._anchor) / self._width)

    def _coarsen(self) -> None:
        self._width *= 2.0
        self._memory = dict.fromkeys(_coarser(self._memory, self._longest), 0)
        self._recent = [level // 2 for level in self._recent]
        self._body = _packed(self._recent)
        self._run = 0  # the memory's order changed

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
