"""A sensor rollup's closed windows by start: the index `SensorRollup.frozen` keeps.

With the frozen store each closed window is a row id, and a rollup holds one per closed window
of its horizon (a bed pad's 6 h of minute windows: about 70; a loop detector's: 360). As a dict
of ints that cost about 100 bytes a window in memory and most of the CPU of pickling a node's
minute rollups at every snapshot (a dict is pickled key by key). Here the starts and the row
ids are two arrays, sorted by start, pickled as their bytes; each as int32 offsets when they
fit, which they do in a rollup: a start is its slot, its number of widths past a base start
(`_sbase + slot * _step`), and a row id its difference from a base id (`_rbase + ref`), as a
process gives row ids in order: 8 bytes a window. When a start or an id does not fit (off
the grid of the width, more than 2^31 widths or ids apart: a node moved between processes,
a `LOST_ROW`) both columns are encoded anew, int64 where they must be. A snapshot holds the
ids and, when the starts are one run (a sensor that reports every minute), only the first
start and their count: 4 bytes a window.
A window frozen without a store keeps its bytes (`_inline`, a list beside the arrays, made
at the first; its id there `INLINE`).
A mapping in what the rollup asks of it: get, set, delete, iterate the starts in order.
"""

from __future__ import annotations

import bisect
from array import array
from collections.abc import Callable, Iterable, Iterator

INLINE = -1  # the id of a window whose frozen bytes are held in `FrozenIndex._inline`

Frozen = bytes | int  # a closed window's frozen bytes, or the id of its row
# What a snapshot holds of an index (`FrozenIndex.columns`): width, step, base start, the
# starts' bytes or their count (one run from the base), base id, the ids' bytes, layout
# (`_WIDE_STARTS`, `_WIDE_REFS`), the frozen bytes held inline
Columns = tuple[int, int, int, bytes | int, int, bytes, int, list[bytes | None] | None]

_I32_MIN, _I32_MAX = -(1 << 31), (1 << 31) - 1
_WIDE_STARTS, _WIDE_REFS = 1, 2  # the pickled layout's bits: which column is int64


class FrozenIndex:
    """start -> a closed window's row id (an int; `LOST_ROW` for a row found missing) or its
    frozen bytes, in increasing order of start; `width`: the spacing of the starts (a
    rollup's window width), whose multiples the starts are kept as."""

    __slots__ = ("_inline", "_rbase", "_refs", "_sbase", "_starts", "_step", "_width")

    def __init__(self, items: Iterable[tuple[int, Frozen]] = (), width: int = 1) -> None:
        if width < 1:
            raise ValueError(f"a frozen index's width must be at least 1, not {width}")
        self._width = width
        self._step = width  # a start is _sbase + slot * _step (1 when the starts are int64)
        self._sbase = 0
        self._starts: array[int] = array("i")
        self._rbase = 0  # a row id is _rbase + ref
        self._refs: array[int] = array("i")
        # the frozen bytes of the windows whose id is INLINE, at their index (None: no window)
        self._inline: list[bytes | None] | None = None
        for start, frozen in items:
            self[start] = frozen

    @property
    def width(self) -> int:
        return self._width

    def __reduce__(self) -> tuple[object, ...]:
        return _load_run, self.columns()

    def columns(self) -> Columns:
        """What a snapshot holds of the index (`from_columns` makes it again): its bases,
        its columns' bytes (the starts as their count when they are one run) and layout."""
        starts, refs = self._starts, self._refs
        n = len(starts)
        mode = (_WIDE_STARTS if starts.typecode == "q" else 0) | (
            _WIDE_REFS if refs.typecode == "q" else 0)
        if n and starts[-1] - starts[0] == n - 1:  # one run: its first start and its count
            first = self._sbase + starts[0] * self._step
            return (self._width, self._step, first, n, self._rbase, refs.tobytes(), mode,
                    self._inline)
        return (self._width, self._step, self._sbase, starts.tobytes(), self._rbase,
                refs.tobytes(), mode, self._inline)

    @staticmethod
    def from_columns(columns: Columns) -> FrozenIndex:
        return _load_run(*columns)

    def __len__(self) -> int:
        return len(self._starts)

    def __bool__(self) -> bool:
        return bool(self._starts)

    def __iter__(self) -> Iterator[int]:
        sbase, step = self._sbase, self._step
        if not sbase and step == 1:
            return iter(self._starts)
        return (sbase + slot * step for slot in self._starts)

    def __contains__(self, start: object) -> bool:
        return type(start) is int and self._index(start) >= 0

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FrozenIndex | dict):
            return dict(self.items()) == dict(other.items())
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # (mutable)

    def __repr__(self) -> str:
        return f"FrozenIndex({dict(self.items())!r}, width={self._width})"

    def _index(self, start: int) -> int:
        d, step = start - self._sbase, self._step
        if d % step:
            return -1
        slot = d // step
        starts = self._starts
        i = bisect.bisect_left(starts, slot)
        return i if i < len(starts) and starts[i] == slot else -1

    def _value(self, i: int) -> Frozen:
        ref = self._refs[i] + self._rbase
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
        held: bytes | None = None
        if type(frozen) is bytes:
            held, ref = frozen, INLINE
            if self._inline is None:
                self._inline = [None] * len(self._starts)
        else:
            ref = int(frozen)
        if not self._starts:  # the bases from the first window
            self._encode([], [], start, ref)
        d, step = start - self._sbase, self._step
        slot, rel = d // step, ref - self._rbase
        if d % step or not (_I32_MIN <= slot <= _I32_MAX or self._starts.typecode == "q") or not (
                _I32_MIN <= rel <= _I32_MAX or self._refs.typecode == "q"):
            self._encode(list(self), self._ref_list(), start, ref)
            step = self._step
            slot, rel = (start - self._sbase) // step, ref - self._rbase
        starts, refs, inline = self._starts, self._refs, self._inline
        n = len(starts)
        # (windows freeze in order, as live traffic leaves them: appended)
        i = n if not n or slot > starts[-1] else bisect.bisect_left(starts, slot)
        if i < n and starts[i] == slot:
            refs[i] = rel
            if inline is not None:
                inline[i] = held
            return
        starts.insert(i, slot)
        refs.insert(i, rel)
        if inline is not None:
            inline.insert(i, held)

    def store_inline(self, put: Callable[[bytes], int]) -> None:
        """Each window held inline (frozen without a store) written by `put` (a store's),
        its row id held instead."""
        inline = self._inline
        if inline is None:
            return
        for start, held in [(s, h) for s, h in zip(self, inline, strict=True) if h is not None]:
            self[start] = put(held)
        self._inline = None

    def _ref_list(self) -> list[int]:
        rbase = self._rbase
        return [ref + rbase for ref in self._refs]

    def _encode(self, starts: list[int], refs: list[int], start: int | None = None,
                ref: int = 0) -> None:
        """Both columns anew from the starts and ids held (in order), as int32 offsets from
        the smallest where they and the window about to be set (`start`, `ref`) fit."""
        width = self._width
        every = starts if start is None else [*starts, start]
        ids = refs if start is None else [*refs, ref]
        low = min(every, default=0)
        if (max(every, default=0) - low) // width <= _I32_MAX and all(
                (s - low) % width == 0 for s in every):
            self._sbase, self._step = low, width
            self._starts = array("i", [(s - low) // width for s in starts])
        else:
            self._sbase, self._step = 0, 1
            self._starts = array("q", starts)
        low = min(ids, default=0)
        if max(ids, default=0) - low <= _I32_MAX:
            self._rbase = low
            self._refs = array("i", [r - low for r in refs])
        else:
            self._rbase = 0
            self._refs = array("q", refs)

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
        step = self._step
        n = bisect.bisect_left(self._starts, -((self._sbase - floor) // step))  # (slot >= floor)
        dropped = [self._value(i) for i in range(n)]
        if n:
            self._remove(0, n)
            if "q" in (self._starts.typecode, self._refs.typecode):  # (the odd one gone?)
                self._encode(list(self), self._ref_list())
        return dropped

    def first(self) -> int:
        return self._sbase + self._starts[0] * self._step

    def last(self) -> int:
        return self._sbase + self._starts[-1] * self._step

    def values(self) -> list[Frozen]:
        return [self._value(i) for i in range(len(self._starts))]

    def items(self) -> list[tuple[int, Frozen]]:
        return [(start, self._value(i)) for i, start in enumerate(self)]


def _load_run(width: int, step: int, sbase: int, starts: bytes | int, rbase: int, refs: bytes,
              mode: int, inline: list[bytes | None] | None) -> FrozenIndex:
    index = FrozenIndex(width=width)
    index._step, index._sbase, index._rbase, index._inline = step, sbase, rbase, inline
    if isinstance(starts, int) and mode & _WIDE_STARTS:  # a run of int64 starts from sbase
        index._sbase, index._step = 0, 1  # (int64 starts are the starts themselves)
        index._starts = array("q", range(sbase, sbase + starts))
    elif isinstance(starts, int):  # one run of this many slots from sbase
        index._starts = array("i", range(starts))
    else:
        index._starts = array("q" if mode & _WIDE_STARTS else "i")
        index._starts.frombytes(starts)
    index._refs = array("q" if mode & _WIDE_REFS else "i")
    index._refs.frombytes(refs)
    return index


def _load(starts: bytes, refs: bytes, inline: list[bytes | None] | None) -> FrozenIndex:
    """An index as pickled before its columns were int32 offsets (session 24): int64 starts
    and ids (the rollup that holds it gives it its width: `SensorRollup.__setstate__`)."""
    index = FrozenIndex()
    index._encode(list(array("q", starts)), list(array("q", refs)))
    index._inline = inline
    return index
