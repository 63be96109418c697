"""A sensor rollup's closed windows by start: the index `SensorRollup.frozen` keeps.

With the frozen store each closed window is a row id, and a rollup holds one per closed window
of its horizon (a bed pad's 6 h of minute windows: about 70; a loop detector's: 360). As a dict
of ints that cost about 100 bytes a window in memory and most of the CPU of pickling a node's
minute rollups at every snapshot (a dict is pickled key by key). Here the starts and the row
ids are two int64 arrays, sorted by start: 16 bytes a window, pickled as the arrays' bytes.
A window frozen without a store keeps its bytes (`_inline`, a list beside the arrays, made
at the first; its id there `INLINE`).
A mapping in what the rollup asks of it: get, set, delete, iterate the starts in order.
"""

from __future__ import annotations

import bisect
from array import array
from collections.abc import Iterable, Iterator

INLINE = -1  # the id of a window whose frozen bytes are held in `FrozenIndex._inline`

Frozen = bytes | int  # a closed window's frozen bytes, or the id of its row


class FrozenIndex:
    """start -> a closed window's row id (an int; `LOST_ROW` for a row found missing) or its
    frozen bytes, in increasing order of start."""

    __slots__ = ("_inline", "_refs", "_starts")

    def __init__(self, items: Iterable[tuple[int, Frozen]] = ()) -> None:
        self._starts: array[int] = array("q")
        self._refs: array[int] = array("q")
        # the frozen bytes of the windows whose id is INLINE, at their index (None: no window)
        self._inline: list[bytes | None] | None = None
        for start, frozen in items:
            self[start] = frozen

    def __reduce__(self) -> tuple[object, ...]:
        return _load, (self._starts.tobytes(), self._refs.tobytes(), self._inline)

    def __len__(self) -> int:
        return len(self._starts)

    def __bool__(self) -> bool:
        return bool(self._starts)

    def __iter__(self) -> Iterator[int]:
        return iter(self._starts)

    def __contains__(self, start: object) -> bool:
        return type(start) is int and self._index(start) >= 0

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FrozenIndex | dict):
            return dict(self.items()) == dict(other.items())
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # (mutable)

    def __repr__(self) -> str:
        return f"FrozenIndex({dict(self.items())!r})"

    def _index(self, start: int) -> int:
        starts = self._starts
        i = bisect.bisect_left(starts, start)
        return i if i < len(starts) and starts[i] == start else -1

    def _value(self, i: int) -> Frozen:
        ref = self._refs[i]
        if ref == INLINE:
            assert self._inline is not None
            held = self._inline[i]
            assert held is not None
            return held
        return ref

    def get(self, start: int) -> Frozen | None:
        i = self._index(start)
        return None if i < 0 else self._value(i)

    def __getitem__(self, start: int) -> Frozen:
        i = self._index(start)
        if i < 0:
            raise KeyError(start)
        return self._value(i)

    def __setitem__(self, start: int, frozen: Frozen) -> None:
        starts, refs = self._starts, self._refs
        held: bytes | None = None
        if type(frozen) is bytes:
            held, ref = frozen, INLINE
            if self._inline is None:
                self._inline = [None] * len(starts)
        else:
            ref = int(frozen)
        inline = self._inline
        n = len(starts)
        # (windows freeze in order, as live traffic leaves them: appended)
        i = n if not n or start > starts[-1] else bisect.bisect_left(starts, start)
        if i < n and starts[i] == start:
            refs[i] = ref
            if inline is not None:
                inline[i] = held
            return
        starts.insert(i, start)
        refs.insert(i, ref)
        if inline is not None:
            inline.insert(i, held)

    def pop(self, start: int) -> Frozen:
        i = self._index(start)
        if i < 0:
            raise KeyError(start)
        value = self._value(i)
        self._remove(i, i + 1)
        return value

    def __delitem__(self, start: int) -> None:
        self.pop(start)

    def _remove(self, lo: int, hi: int) -> None:
        del self._starts[lo:hi], self._refs[lo:hi]
        if self._inline is not None:
            del self._inline[lo:hi]

    def drop_before(self, floor: int) -> list[Frozen]:
        """Removes the windows starting before `floor`; what they held, in order."""
        n = bisect.bisect_left(self._starts, floor)
        dropped = [self._value(i) for i in range(n)]
        if n:
            self._remove(0, n)
        return dropped

    def first(self) -> int:
        return self._starts[0]

    def last(self) -> int:
        return self._starts[-1]

    def values(self) -> list[Frozen]:
        return [self._value(i) for i in range(len(self._starts))]

    def items(self) -> list[tuple[int, Frozen]]:
        return [(start, self._value(i)) for i, start in enumerate(self._starts)]


def _load(starts: bytes, refs: bytes, inline: list[bytes | None] | None) -> FrozenIndex:
    index = FrozenIndex()
    index._starts.frombytes(starts)
    index._refs.frombytes(refs)
    index._inline = inline
    return index
