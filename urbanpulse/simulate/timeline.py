"""On/off timelines of contact sensors, and random arrivals in time.

An `Intervals` is a sorted list of disjoint [start, end) spans when a contact is closed
(a vehicle over a loop, a patient on a bed pad, a person breaking a door beam). From it
come the two outputs of a GPIO sensor: the pin's edges, and the per-interval aggregates
an edge driver computes from them (rising-edge counts, time on).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, NamedTuple, TypeVar

import numpy as np

from urbanpulse.simulate.randomness import FloatArray, IntArray, slot_uniform

_EMPTY = np.empty(0, dtype=np.float64)


class PinEdge(NamedTuple):
    t: float
    level: int


@dataclass(frozen=True, slots=True)
class PinTrack:
    """A pin over a window [t0, t1): its level from t0 on, then its edges (after t0) in
    time order.
    Levels are logical: 1 = active (vehicle present, pad loaded, beam broken, button
    pressed); the wiring (active-low, NC) is the emulation layer's business."""

    t0: float
    t1: float
    initial: int
    edges: list[PinEdge]

    def rising(self) -> int:
        return sum(1 for e in self.edges if e.level == 1)


@dataclass(frozen=True, slots=True)
class Intervals:
    starts: FloatArray
    ends: FloatArray

    @staticmethod
    def empty() -> Intervals:
        return Intervals(_EMPTY, _EMPTY)

    @staticmethod
    def merged(starts: FloatArray, ends: FloatArray, min_gap: float = 0.0) -> Intervals:
        """Union of possibly overlapping spans (two vehicles side by side over one loop
        make one detection, as they do for a real detector card); gaps shorter than
        `min_gap` are closed too (a detector does not resolve them)."""
        if starts.size == 0:
            return Intervals.empty()
        order = np.argsort(starts, kind="stable")
        s, e = starts[order], ends[order]
        running = np.maximum.accumulate(e)
        new = np.empty(s.size, dtype=bool)
        new[0] = True
        new[1:] = s[1:] > running[:-1] + min_gap
        first = np.flatnonzero(new)
        return Intervals(s[first], np.maximum.reduceat(e, first))

    def __len__(self) -> int:
        return int(self.starts.size)

    def union(self, other: Intervals) -> Intervals:
        return Intervals.merged(np.concatenate([self.starts, other.starts]),
                                np.concatenate([self.ends, other.ends]))

    def hold(self, start: float, end: float, level: int) -> Intervals:
        """The timeline with [start, end) forced to `level`."""
        s, e = self.starts, self.ends
        left = s < start
        right = e > end
        parts_s = [s[left], np.maximum(s[right], end)]
        parts_e = [np.minimum(e[left], start), e[right]]
        if level:
            parts_s.append(np.array([start]))
            parts_e.append(np.array([end]))
        return Intervals.merged(np.concatenate(parts_s), np.concatenate(parts_e))

    def extended(self, seconds: float) -> Intervals:
        """Each span lengthened by `seconds` at its end, then merged: gaps shorter than
        that disappear, and ends are seen `seconds` late (an exit-tolerance delay)."""
        n = self.starts.size
        ends = self.ends + seconds
        if n <= 1:
            return Intervals(self.starts, ends)
        new = np.empty(n, dtype=bool)
        new[0] = True
        new[1:] = self.starts[1:] > ends[:-1]  # spans are sorted and disjoint
        first = np.flatnonzero(new)
        last = np.append(first[1:] - 1, n - 1)
        return Intervals(self.starts[first], ends[last])

    def split_short(self, min_s: float) -> tuple[Intervals, Intervals]:
        """(spans lasting at least `min_s`, shorter ones): what an edge driver with a
        minimum pulse length keeps, and what it rejects as glitches."""
        short = (self.ends - self.starts) < min_s
        return (Intervals(self.starts[~short], self.ends[~short]),
                Intervals(self.starts[short], self.ends[short]))

    def level_at(self, t: float) -> int:
        k = int(np.searchsorted(self.starts, t, side="right"))
        return int(k > 0 and t < self.ends[k - 1])

    def levels_at(self, t: FloatArray) -> IntArray:
        if self.starts.size == 0:
            return np.zeros(t.shape, dtype=np.int64)
        k = np.searchsorted(self.starts, t, side="right")
        inside = (k > 0) & (t < self.ends[np.maximum(k - 1, 0)])
        return inside.astype(np.int64)

    def count_starts(self, lo: FloatArray, hi: FloatArray) -> IntArray:
        """Rising edges in each [lo, hi)."""
        counts: IntArray = (np.searchsorted(self.starts, hi, side="left")
                            - np.searchsorted(self.starts, lo, side="left"))
        return counts

    def on_before(self, x: FloatArray) -> FloatArray:
        """Total closed time before each x (from the first span on)."""
        if self.starts.size == 0:
            return np.zeros_like(x)
        durations = self.ends - self.starts
        cum = np.concatenate([[0.0], np.cumsum(durations)])
        k = np.searchsorted(self.starts, x, side="right")
        prev = np.maximum(k - 1, 0)
        partial = np.where(k > 0, np.minimum(x - self.starts[prev], durations[prev]), 0.0)
        result: FloatArray = cum[prev] + partial
        return result

    def on_time(self, lo: FloatArray, hi: FloatArray) -> FloatArray:
        on: FloatArray = self.on_before(hi) - self.on_before(lo)
        return on

    def track(self, t0: float, t1: float) -> PinTrack:
        # An edge exactly at t0 is in `initial`, the level from t0 on.
        ks = (self.starts > t0) & (self.starts < t1)
        ke = (self.ends > t0) & (self.ends < t1)
        times = np.concatenate([self.starts[ks], self.ends[ke]])
        levels = np.concatenate([np.ones(int(ks.sum()), dtype=np.int64),
                                 np.zeros(int(ke.sum()), dtype=np.int64)])
        order = np.lexsort((levels, times))
        edges = [PinEdge(t, lv) for t, lv in zip(times[order].tolist(), levels[order].tolist(),
                                                  strict=True)]
        return PinTrack(t0, t1, self.level_at(t0), edges)


def with_bounce(track: PinTrack, key: int, bounce_s: float) -> PinTrack:
    """Add contact bounce after each edge: 0-3 extra toggle pairs within `bounce_s`,
    drawn from the edge's own time so that a track is the same however it is windowed."""
    if bounce_s <= 0 or not track.edges:
        return track
    slots = np.rint(np.array([e.t for e in track.edges]) * 1e6).astype(np.int64)
    pairs = np.floor(slot_uniform(key, slots, 0) * 4).astype(np.int64).tolist()
    out: list[PinEdge] = []
    for i, edge in enumerate(track.edges):
        out.append(edge)
        n = pairs[i]
        if n == 0:
            continue
        limit = track.edges[i + 1].t if i + 1 < len(track.edges) else track.t1
        offsets = sorted(float(slot_uniform(key, slots[i : i + 1], lane)[0]) * bounce_s
                         for lane in range(1, 2 * n + 1))
        for j, off in enumerate(offsets):
            if edge.t + off >= limit:
                break
            out.append(PinEdge(edge.t + off, edge.level if j % 2 else 1 - edge.level))
        if out[-1].level != edge.level:
            out.pop()
    return PinTrack(track.t0, track.t1, track.initial, out)


def glitches(key: int, t0: float, t1: float, rate_per_h: float) -> Intervals:
    """False pulses of 50-150 ms at about `rate_per_h` per hour, one decision per second
    of simulated time (so any window of the same span gives the same pulses)."""
    first, last = int(np.floor(t0)), int(np.ceil(t1))
    if last <= first:
        return Intervals.empty()
    slots = np.arange(first, last, dtype=np.int64)
    hit = slots[slot_uniform(key, slots, 0) < rate_per_h / 3600.0]
    width = 0.05 + 0.1 * slot_uniform(key, hit, 1)
    starts = hit + slot_uniform(key, hit, 2) * (1.0 - width)
    keep = (starts >= t0) & (starts < t1)
    return Intervals(starts[keep], (starts + width)[keep])


def poisson_times(rng: np.random.Generator, rate: Callable[[FloatArray], FloatArray],
                  t0: float, t1: float, step: float = 10.0) -> FloatArray:
    """Arrival times of a non-homogeneous Poisson process on [t0, t1).

    The rate (per second) is taken on a grid of `step` seconds and joined by straight
    lines; arrivals are uniform in the cumulative intensity and mapped back through it,
    which is exact for that piecewise-linear rate."""
    n_steps = max(1, int(np.ceil((t1 - t0) / step)))
    grid = np.linspace(t0, t1, n_steps + 1)
    lam = np.maximum(rate(grid), 0.0)
    cum = np.concatenate([[0.0], np.cumsum((lam[1:] + lam[:-1]) * 0.5 * np.diff(grid))])
    total = float(cum[-1])
    if total <= 0:
        return _EMPTY
    n = int(rng.poisson(total))
    u = np.sort(rng.uniform(0.0, total, n))
    times: FloatArray = np.interp(u, cum, grid)
    return times


K = TypeVar("K")
V = TypeVar("V")


class LruCache(Generic[K, V]):
    """The few most recent chunks of a model (simulations move forward in time)."""

    def __init__(self, make: Callable[[K], V], keep: int = 4) -> None:
        self._make = make
        self._keep = keep
        self._items: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V:
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        value = self._make(key)
        self._items[key] = value
        while len(self._items) > self._keep:
            self._items.popitem(last=False)
        return value

    def put(self, key: K, value: V) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self._keep:
            self._items.popitem(last=False)

    def __contains__(self, key: K) -> bool:
        return key in self._items

    def clear(self) -> None:
        self._items.clear()


S = TypeVar("S")


class SequentialChunks(Generic[S, V]):
    """Chunks of a process that carries state from one chunk to the next.

    `step(k, state)` makes chunk k from the state at its start and returns the chunk and
    the state at its end. States are kept (they are small), chunks only the few recent
    ones: an evicted chunk is remade from its saved state, exactly as it was."""

    def __init__(self, initial: S, step: Callable[[int, S], tuple[V, S]],
                 keep: int = 6) -> None:
        self._states: list[S] = [initial]
        self._step = step
        self._cache: LruCache[int, V] = LruCache(self._remake, keep)

    def _remake(self, k: int) -> V:
        value, _ = self._step(k, self._states[k])
        return value

    def get(self, k: int) -> V:
        if k < 0:
            raise ValueError(f"chunk {k} is before the start of the run")
        if k not in self._cache:
            while len(self._states) <= k + 1:
                j = len(self._states) - 1
                value, state = self._step(j, self._states[j])
                self._states.append(state)
                self._cache.put(j, value)
        return self._cache.get(k)

    @property
    def generated(self) -> int:
        """How many chunks have been made so far (0..generated-1)."""
        return len(self._states) - 1
