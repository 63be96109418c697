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

In memory the contexts are kept in arrays, not a dict of int objects (`_Contexts`: about
11 bytes a context, against about 90): each key once in an array of 64-bit words, the
key (44 bits for orders up to 5) below its stamp, the step at which it was last seen; a
key is found through an open-addressed table of node numbers, and the least recent keys
are found by their stamps, a hundred or so at a time. The order is the dict's exactly (a
key seen again moves to the end, the first one is forgotten), so the novelty and the
pickled keys are those of the dict this replaced. Keys too wide to leave a word room for
their stamps (orders beyond 5 with the default memory) keep the dict.

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
from array import array
from collections.abc import Iterable, Iterator, Mapping
from itertools import pairwise
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from cloud.detect.compat import slot_state

_BITS = 8
_MASK = (1 << _BITS) - 1
_OFFSET = 1 << (_BITS - 1)
_ORDER_BITS = 4
assert (_BITS, _OFFSET, _MASK, _ORDER_BITS) == (8, 128, 255, 4)  # written out in update
_T = TypeVar("_T")
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


_MIX = 0x9E3779B97F4A7C15  # Fibonacci hashing: a key's slot is the top bits of key * _MIX mod 2**64
_WORD = 64  # bits of a node's word: its stamp above its key
_START = 64  # the keys a new context memory has room for (doubled as it fills)
_QUEUE = 128  # the least recent nodes found at once, for forgetting
_LOAD_NUM, _LOAD_DEN = 3, 4  # the index's most keys per slot


def _grown_room(keys: int, room: int) -> int:
    """The keys a memory of at most `room` has room for when it holds `keys`, as it grows
    (`_reserve`): `_START`, doubled as it fills, at most `room` (the least of these that
    holds them; `keys` if none does). A memory built from keys (`_Contexts.of`: loaded,
    coarsened, narrowed) is given no more room than one that was fed them."""
    grown = min(room, _START)
    while grown < keys and grown < room:
        grown = min(2 * grown, room)
    return max(grown, keys)


def _key_bits(longest: int) -> int:
    """The bits of the keys of orders up to `longest` (see _encode)."""
    return _ORDER_BITS + _BITS * max(longest, 1)


def _fits(longest: int, room: int) -> bool:
    """Whether `_Contexts` holds `room` keys of orders up to `longest`: a key and its stamp
    in a word, with stamps enough that they are numbered again at most every `room` steps."""
    return (1 << (_WORD - _key_bits(longest))) - 1 > 2 * room + 1


class _Contexts:
    """An insertion-ordered set of context keys (non-negative, below 2**key_bits), least
    recently seen first, in arrays: the dict of the same keys, with its order, in about an
    eighth of its memory.

    Each key has a node (1 ..; 0 is "none") and `_words[node]` is one 64-bit word: the key in
    its low `_kbits` bits, its stamp above them. A key seen (or added) takes the stamp
    `_clock` and the clock moves on: the least recent key is the one of the smallest
    stamp. A forgotten node's stamp is `_gone` (all ones), larger than any clock; its node
    is reused (`_free`). `_index` is an open-addressed table (linear probing, deletion by
    backward shift, no tombstones) from a key's slot to its node. The least recent nodes
    are found `_QUEUE` at a time with numpy (`_queue`, the oldest last, with `_queue_top`
    the newest stamp among them): one of them is still the least recent as long as its
    stamp is not above `_queue_top` (a key seen since has a larger stamp). When the clock
    reaches `_gone`, the stamps are numbered again from 0, in their order. `see` is the
    detector's step; `pop`, item assignment and deletion, `len` and iteration in order
    behave as the dict's.
    """

    __slots__ = ("_clock", "_free", "_gone", "_index", "_kbits", "_kmask", "_mask", "_queue",
                 "_queue_top", "_room", "_shift", "_size", "_slots", "_top", "_unit", "_words")

    def __init__(self, room: int = 0, longest: int = 5) -> None:
        self._room = max(room, 8)  # the most keys it is to hold (it grows up to it)
        self._kbits = kbits = _key_bits(longest)
        if not _fits(longest, self._room):
            raise ValueError(f"keys of {kbits} bits and room for {room} do not fit a word")
        self._kmask = (1 << kbits) - 1
        self._unit = 1 << kbits  # one step of the clock, in a word
        self._gone = (1 << (_WORD - kbits)) - 1
        self._build(min(self._room, _START))

    @classmethod
    def of(cls, keys: npt.NDArray[np.int64], room: int, longest: int = 5) -> _Contexts:
        """The keys in their order (the first of equal ones kept, as `dict.fromkeys`), with
        room for `room` keys; built with numpy, not key by key."""
        memory = cls(room, longest)
        if keys.size and (keys.min() < 0 or int(keys.max()) > memory._kmask):
            raise ValueError(f"context keys are non-negative and below 2**{memory._kbits}")
        _, first = np.unique(keys, return_index=True)
        if first.size < keys.size:
            keys = keys[np.sort(first)]
        if keys.size > len(memory._words) - 1:
            memory._build(_grown_room(keys.size, memory._room))
        memory._fill(keys)
        return memory

    def _fill(self, keys: npt.NDArray[np.int64]) -> None:
        """Distinct `keys`, in their order, into the arrays just built (with room for them)."""
        n = keys.size
        memory = self
        dtype = np.uint16 if memory._index.itemsize == 2 else np.uint32
        nodes = np.arange(1, n + 1, dtype=dtype)
        words = np.frombuffer(memory._words, dtype=np.uint64)
        words[1 : n + 1] = keys.view(np.uint64) | (
            np.arange(n, dtype=np.uint64) << np.uint64(memory._kbits))
        del words
        memory._top = memory._size = memory._clock = n
        # Linear probing, the keys placed in the order of their slots: each at its slot or
        # just after the one before, whichever is later. Those past the table's end go
        # round, key by key; any placement where nothing empty lies between a key's slot
        # and where it is is a table linear probing reads.
        home = (((keys.view(np.uint64) * np.uint64(_MIX)) >> np.uint64(memory._shift))
                % np.uint64(memory._slots))
        by_slot = np.argsort(home, kind="stable")
        step = np.arange(n, dtype=np.int64)
        at = np.maximum.accumulate(home[by_slot].astype(np.int64) - step) + step
        inside = at < memory._slots
        index = np.frombuffer(memory._index, dtype=dtype)
        index[at[inside]] = nodes[by_slot[inside]]
        del index
        for node in (by_slot[~inside] + 1).tolist():
            slot, _ = memory._slot(int(keys[node - 1]))
            memory._index[slot] = node

    def _build(self, room: int) -> None:
        """Empty arrays for `room` keys."""
        code = "H" if room < 0xFFFF else "I"
        # A load factor of at most 3/4; a key's slot is its hash (bits 40 to 63 of
        # key * _MIX mod 2**64) modulo the slots.
        self._slots = slots = max(8, room * _LOAD_DEN // _LOAD_NUM + 1)
        self._shift = 40
        self._mask = (1 << 24) - 1
        self._index = array(code, [0]) * slots
        self._words = array("Q", [0]) * (room + 1)
        self._queue = array(code)
        self._queue_top = -1
        self._free = array(code)  # nodes forgotten, to be used again
        self._top = 0  # nodes 1 .. _top have been used
        self._size = 0
        self._clock = 0

    def _reserve(self, n: int) -> None:
        """Room for `n` more keys, and stamps for `n` more steps."""
        room = len(self._words) - 1
        if self._size + n > room:
            keys = np.frombuffer(self.to_bytes(), dtype=np.int64)
            grown = 2 * room if self._size + n > self._room else min(2 * room, self._room)
            self._build(max(grown, self._size + n))
            self._fill(keys)
        if self._clock + n >= self._gone:
            self._fill_stamps()

    def _stamps(self) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.bool_]]:
        """The stamps of nodes 1 .. _top, and which of them hold a key."""
        words = np.frombuffer(self._words, dtype=np.uint64)[1 : self._top + 1]
        stamps = words >> np.uint64(self._kbits)
        return stamps, stamps != self._gone

    def _fill_stamps(self) -> None:
        """The stamps numbered again from 0, in their order (the clock is near its end)."""
        stamps, held = self._stamps()
        nodes = np.flatnonzero(held)
        ranks = np.empty(nodes.size, dtype=np.uint64)
        ranks[np.argsort(stamps[nodes], kind="stable")] = np.arange(nodes.size, dtype=np.uint64)
        words = np.frombuffer(self._words, dtype=np.uint64)
        words[nodes + 1] = (words[nodes + 1] & np.uint64(self._kmask)) | (
            ranks << np.uint64(self._kbits))
        del words
        self._clock = nodes.size
        self._queue = array(self._queue.typecode)
        self._queue_top = -1

    def _fill_queue(self) -> None:
        """The `_QUEUE` least recent nodes (or all), the oldest last."""
        stamps, _ = self._stamps()
        k = min(_QUEUE, self._size)
        oldest = np.argpartition(stamps, k - 1)[:k] if k < stamps.size else np.arange(stamps.size)
        oldest = oldest[np.argsort(stamps[oldest])]
        self._queue_top = int(stamps[oldest[-1]])
        self._queue = array(self._queue.typecode, (oldest[::-1] + 1).tolist())

    def _slot(self, key: int) -> tuple[int, int]:
        """The slot of `key` in the index, or of the empty one where it would go, and its
        node (0 if absent)."""
        index, words, slots, kmask = self._index, self._words, self._slots, self._kmask
        slot = (key * _MIX >> self._shift & self._mask) % slots
        node = index[slot]
        while node and words[node] & kmask != key:
            slot = (slot + 1) % slots
            node = index[slot]
        return slot, node

    def _add(self, key: int) -> None:
        """`key`, absent, as the most recent one (room reserved)."""
        slot, _ = self._slot(key)
        if self._free:
            node = self._free.pop()
        else:
            node = self._top = self._top + 1
        self._index[slot] = node
        self._words[node] = (self._clock << self._kbits) | key
        self._clock += 1
        self._size += 1

    def _remove(self, slot: int, node: int) -> None:
        """The key of `node`, in the index at `slot`, forgotten."""
        index, words, kmask = self._index, self._words, self._kmask
        slots, mask, shift = self._slots, self._mask, self._shift
        words[node] = self._gone << self._kbits
        self._free.append(node)
        self._size -= 1
        j = slot
        while True:  # backward shift: the keys after the hole that may fill it move up
            j = (j + 1) % slots
            other = index[j]
            if not other:
                break
            home = ((words[other] & kmask) * _MIX >> shift & mask) % slots
            if (j - home) % slots >= (j - slot) % slots:
                index[slot] = other
                slot = j
        index[slot] = 0

    def see(self, keys: tuple[int, ...] | list[int], capacity: int) -> int:
        """Each key moved to the end, or added there (`dict.pop(key, 1)`, then
        `dict[key] = 0`), in order; if any was new, the least recent forgotten down to
        `capacity`. The number of new keys."""
        n = len(keys)
        if self._size + n >= len(self._words) or self._clock + n >= self._gone:
            self._reserve(n)
        index, words, kmask = self._index, self._words, self._kmask
        shift, mask, slots, unit = self._shift, self._mask, self._slots, self._unit
        stamp = self._clock << self._kbits
        novel = 0
        for key in keys:
            slot = (key * _MIX >> shift & mask) % slots
            node = index[slot]
            while node:
                if words[node] & kmask == key:
                    break
                slot = (slot + 1) % slots
                node = index[slot]
            else:
                free = self._free
                if free:
                    node = free.pop()
                else:
                    node = self._top = self._top + 1
                index[slot] = node
                novel += 1
            words[node] = stamp | key
            stamp += unit
        self._clock += n
        if novel:
            self._size += novel
            if self._size > capacity:
                self._forget(capacity)
        return novel

    def _forget(self, capacity: int) -> None:
        """The least recent keys forgotten down to `capacity`."""
        words, kbits, kmask = self._words, self._kbits, self._kmask
        queue, top = self._queue, self._queue_top
        while self._size > capacity:
            if not queue:
                self._fill_queue()
                queue, top = self._queue, self._queue_top
            node = queue.pop()
            word = words[node]
            if word >> kbits > top:
                continue  # seen again since the queue was filled, or forgotten
            slot, _ = self._slot(word & kmask)
            self._remove(slot, node)

    def to_bytes(self) -> bytes:
        """The keys as 8-byte integers, least recent first (as `np.fromiter(dict)`)."""
        stamps, held = self._stamps()
        nodes = np.flatnonzero(held)
        nodes = nodes[np.argsort(stamps[nodes])]
        words = np.frombuffer(self._words, dtype=np.uint64)
        keys: bytes = (words[nodes + 1] & np.uint64(self._kmask)).astype(np.int64).tobytes()
        return keys

    # The dict's own ways, for whatever treats the memory as the dict it was.

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[int]:
        return iter(np.frombuffer(self.to_bytes(), dtype=np.int64).tolist())

    def __contains__(self, key: object) -> bool:
        return type(key) is int and 0 <= key <= self._kmask and self._slot(key)[1] != 0

    def pop(self, key: int, default: int) -> int:
        if key not in self:
            return default
        self._remove(*self._slot(key))
        return 0

    def __setitem__(self, key: int, value: int) -> None:
        if value != 0:
            raise ValueError("the context memory holds keys only (values 0)")
        if type(key) is not int or not 0 <= key <= self._kmask:
            raise ValueError(f"context keys are non-negative and below 2**{self._kbits}")
        if key not in self:
            self._reserve(1)
            self._add(key)

    def __delitem__(self, key: int) -> None:
        if key not in self:
            raise KeyError(key)
        self._remove(*self._slot(key))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, _Contexts):
            return list(self) == list(other)
        if isinstance(other, Mapping):
            return len(self) == len(other) and all(other.get(key, None) == 0 for key in self)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]


class _WideContexts(dict[int, int]):
    """The dict, for keys too wide for `_Contexts` (see `_fits`: orders beyond 5 levels
    with the default memory)."""

    def see(self, keys: tuple[int, ...] | list[int], capacity: int) -> int:
        pop = self.pop
        novel = 0
        for key in keys:
            novel += pop(key, 1)
            self[key] = 0
        if novel:
            while len(self) > capacity:
                del self[next(iter(self))]
        return novel

    def to_bytes(self) -> bytes:
        return np.fromiter(self, dtype=np.int64).tobytes()


def _memory(keys: Iterable[int], longest: int, capacity: int, orders: int) -> _Contexts | _WideContexts:
    """A context memory holding `keys` in their order (the first of equal ones), with room
    for `capacity` keys and the `orders` keys a value adds before the oldest are forgotten."""
    if not _fits(longest, capacity + orders):
        return _WideContexts(dict.fromkeys(keys, 0))
    return _Contexts.of(np.fromiter(keys, dtype=np.int64), capacity + orders, longest)


def _appended(items: list[_T]) -> list[_T]:
    """`items` in a list grown by appends, as a fresh memory's last levels and first values
    are: pickle and slicing make one with other room (the next append may grow it past)."""
    grown: list[_T] = []
    for item in items:
        grown.append(item)
    return grown


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
        # Insertion-ordered set of context keys, least recently seen first.
        self._memory = _memory((), self._longest, capacity, len(orders))

    def __getstate__(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            name: getattr(self, name) for name in self.__slots__ if name not in _DERIVED
        }
        state["_memory"] = self._memory.to_bytes()
        return state

    def __setstate__(self, state: Any) -> None:
        self._run, self._consecutive, self._span_checked = 0, False, math.nan  # older layouts
        fields = slot_state(state)
        for name, value in fields.items():
            setattr(self, name, value)
        memory = fields.get("_memory")
        orders = fields.get("orders")
        longest = max(orders) if isinstance(orders, tuple) and orders else 0
        room = fields.get("capacity", 0) + (len(orders) if isinstance(orders, tuple) else 0)
        if isinstance(memory, bytes):
            keys = np.frombuffer(memory, dtype=np.int64)
            if not _fits(longest, room):
                self._memory = _WideContexts(dict.fromkeys((int(key) for key in keys), 0))
            else:
                self._memory = _Contexts.of(keys, room, longest)
        elif isinstance(memory, dict):
            self._memory = _memory(memory, longest, room, 0)
        else:
            self._memory = _memory((), longest, room, 0)  # an older layout: dropped (see tail.py)
        recent = fields.get("_recent")
        if isinstance(recent, list):
            self._recent = _appended(recent)
        if isinstance(fields.get("_first"), list):
            self._first = _appended(fields["_first"])
        self._body = _packed(recent) if isinstance(recent, list) else 0

    def narrow(self, orders: tuple[int, ...], capacity: int) -> None:
        """Keep the contexts of `orders` (some of the orders kept) only, the `capacity` most
        recently seen of them, in their order, and learn these orders in that capacity from
        now on: what a memory of `orders` and `capacity` fed the same values holds, if this
        one forgot none of the contexts that one holds. The bins, the last levels and their
        run are those of any orders; a value whose contexts were all just seen (a run past
        the longest order), which the narrower memory skips, moves none of them but to
        where they already are among the contexts of its orders."""
        if not orders or not set(orders) <= set(self.orders) or capacity < 1:
            raise ValueError(f"contexts of orders {self.orders} cannot be narrowed to {orders}"
                             f" in {capacity}")
        keys = np.frombuffer(self._memory.to_bytes(), dtype=np.int64)
        kept = keys[np.isin(keys & ((1 << _ORDER_BITS) - 1), orders)][-capacity:]
        longest = max(orders)
        self.orders = orders
        self.capacity = capacity
        self._longest = longest
        self._ascending = all(a < b for a, b in pairwise(orders))
        self._consecutive = orders == tuple(range(1, longest + 1))
        self._memory = _memory(kept.tolist(), longest, capacity, len(orders))
        self._recent = _appended(self._recent[-longest:])
        self._body = _packed(self._recent)

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
            novel = self._memory.see(
                (
                    1 | ((body >> 32) << 4),
                    2 | ((body >> 24) << 4),
                    3 | ((body >> 16) << 4),
                    4 | ((body >> 8) << 4),
                    5 | (body << 4),
                ),
                self.capacity,
            )
            return novel / 5
        return self._observe(level)

    def _level(self, value: float) -> int:
        return math.floor((value - self._anchor) / self._width)

    def _coarsen(self) -> None:
        self._width *= 2.0
        self._memory = _memory(
            _coarser(self._memory, self._longest), self._longest, self.capacity, len(self.orders)
        )
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
            keys = [order | ((body >> shift) << _ORDER_BITS) for order, shift in _ORDER_SHIFTS[n]]
        else:
            if n > longest:
                del recent[0]
                n -= 1
            ascending = self._ascending
            body = 0
            k = 0
            keys = []
            for order in self.orders:
                if n < order:
                    continue
                if ascending:
                    while k < order:
                        k += 1
                        body = (body << _BITS) | ((recent[-k] + _OFFSET) & _MASK)
                    keys.append(order | (body << _ORDER_BITS))
                else:
                    keys.append(_encode(recent[-order:]))
        if not keys:
            return 0.0
        # Each key: 1 if new; one seen before moves to the end.
        return self._memory.see(keys, self.capacity) / len(keys)
