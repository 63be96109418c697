"""Per-sensor event-time aggregates over fixed windows (1 minute, 1 hour).

A reading counts in the window of its stamp, but a reading of an interval (a kind with
`interval_s`: traffic loops, door counters) is stamped at the end of its interval, which
ends on a clock multiple: it counts in the window of its interval's last instant, ts - 1 ns
(`window_ts`), so that [12:00, 12:01) stamped 12:01:00 is in the 12:00 minute.

Every window is stamped with its start, and the whole aggregate is re-emitted whenever a
reading lands in it, so a late reading simply overwrites the stored point with the
corrected one. Windows older than the horizon (behind the newest reading of the sensor)
are dropped from memory; a reading of a window no longer held (or never made, starting
before the horizon) is counted as too late for aggregation, and its window is rebuilt from
the raw points. A reading older than the horizon whose window is still held (the window
the horizon falls in, up to one width behind) goes into it: a held window has taken every
reading of it so far, so its aggregate is the whole one, where a rebuild asked for the
reading would be overwritten by the held window's next write without it.

A field's `last` is the value of its newest reading: of readings of one stamp, the one
numbered highest (of one number too, the later to come), as a rebuild from the raw points
takes them (by stamp, then number: `recompute.taken_order`); before, a live window took the
later to come, so two readings of one stamp arriving out of sequence order wrote one `last`
live and another rebuilt. A window resumed from a snapshot taken before the numbers were
kept takes, of equal stamps, a reading that comes after it as its last (as it did then).

A window's sums are exact, so its aggregate does not depend on the order its readings came
in (a backlog after the fresh readings, a window resumed from a snapshot, one rebuilt from
the raw points all write the bits of an uninterrupted, in-order run): each field keeps its
running float sum and what that sum's roundings lost (error-free transformation, Knuth's
TwoSum), added up the same way (`Window.add`); the mean is the correctly rounded sum over
the count (math.fsum of those terms). A snapshot taken before sums were exact resumes its
windows' sums as they were, exact from there on. A reading's -0.0 is 0.0 in the windows
(its raw point keeps it): else a window holding both would write the minimum, maximum or
last of whichever came first.
"""

from __future__ import annotations

import math
import pickle
from array import array
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cloud.frozen_store import LOST_ROW, note_lost
from cloud.logic.frozen_index import FrozenIndex
from cloud.logic.lines import field_key, field_keys, float_text, float_texts
from urbanpulse.wire import KINDS

if TYPE_CHECKING:
    from cloud.frozen_store import FrozenStore

MINUTE_NS = 60 * 1_000_000_000
HOUR_NS = 60 * MINUTE_NS
# Readings flagged so are stored raw, but in no window, rollup, fault rule or drift step:
# a warming-up sensor's zeros are not air quality, and a stamp from a clock not yet
# synchronised (a Pi without RTC before NTP) would put the reading in some other minute.
CLOCK_UNSYNCED = "clock_unsynced"
OUT_OF_WINDOWS = frozenset({"warmup", CLOCK_UNSYNCED})
# The kinds whose readings cover the `interval_s` before their stamp (docs/wire-contract.md).
INTERVAL_KINDS = frozenset(kind for kind, spec in KINDS.items() if "interval_s" in spec.fields)


def window_ts(kind: str, ts_ns: int) -> int:
    """The instant whose windows a reading of `kind` stamped `ts_ns` belongs to: its stamp,
    or for a reading of an interval (stamped at the interval's end, which is exclusive) the
    interval's last instant, ts - 1 ns. Every per-sensor window and every domain rollup
    counting intervals (traffic, doors) places readings so; raw points keep their stamps."""
    return ts_ns - 1 if kind in INTERVAL_KINDS else ts_ns


@dataclass(slots=True)
class FieldAgg:
    """One field's aggregate in snapshots taken before windows went compact; kept so that
    they still load (`Window.__setstate__` turns it into the list form)."""

    n: int
    total: float
    low: float
    high: float
    last_ts: int
    last: float


# A field's aggregate, compact (a list is cheaper than an object to make, update and pickle):
# [n, total, low, high, last_ts, last, last_seq], `total` the running float sum, `last_seq`
# the number of the reading `last` is of (-1: not known); once one of its
# roundings lost something, followed by `lost`, the running sum of what they lost, and any
# further items what lost's own roundings lost (none with a sensor's values; compacted past
# `_MORE_LOST`). The exact sum is total + lost + sum(more), each a float (`exact_sum`).
N, TOTAL, LOW, HIGH, LAST_TS, LAST, LAST_SEQ, LOST = range(8)
_MORE_LOST = 32
UNKNOWN_OLDEST = -(2**63)
NO_FLOOR = -(2**63)  # a rollup's kept floor while its horizon was never raised (set_horizon)
NO_SEQ = -1  # a reading's number not known: of equal stamps, a later one is the last
# The first item of a SensorRollup's pickled state since it is compact: ROLLUP_NO_SEQ before
# each field kept the number of its last reading (its lists one item shorter, LAST_SEQ absent).
# With its closed windows frozen (`SensorRollup.frozen`): each the bytes of its state, or
# with a frozen store (cloud/frozen_store.py) the id of the row holding them.
# Its frozen windows' index inline (`FrozenIndex.columns`), not an object of its own.
INDEXED_ROLLUP = "rollup-5"
FROZEN_ROLLUP = "rollup-4"
COMPACT_ROLLUP = "rollup-3"
ROLLUP_NO_SEQ = "rollup-2"
# A window is frozen once the newest reading of its sensor is this far past its end: live
# traffic (a sensor's readings sent in order within a second or so of their stamps) then
# never thaws one; a reading more than this older than its sensor's newest (a backlog) does.
COLD_AFTER_NS = 2 * MINUTE_NS
# Live windows a rollup holds before it freezes again those behind the line (the windows
# late readings thawed or made) but the latest: 3 at most are live from the line on (a
# minute rollup's). When the line moves on, every window behind it is frozen.
LIVE_MAX = 8


def exact_sum(a: list[Any]) -> float:
    """A field's sum, correctly rounded: its total when nothing was lost (the exact sum,
    a -0.0 kept), else math.fsum of its terms. A snapshot taken before sums were exact has
    no `lost`: its total is taken as it was."""
    total = a[TOTAL]
    if len(a) == 7 or total - total != 0.0:  # (an overflowed sum: inf or nan, as it is)
        return total  # type: ignore[no-any-return]
    return math.fsum(a[TOTAL:TOTAL + 1] + a[LOST:])


def add_to_partials(partials: list[float], x: float) -> None:
    """Adds x to Shewchuk's non-overlapping `partials` (their exact sum, as math.fsum keeps
    it: math.fsum(partials) is then math.fsum of every term added)."""
    i = 0
    for y in partials:
        if abs(x) < abs(y):
            x, y = y, x
        hi = x + y
        lo = y - (hi - x)
        if lo:
            partials[i] = lo
            i += 1
        x = hi
    partials[i:] = [x]


def _partials(terms: list[float]) -> list[float]:
    """The partials of `terms` (`add_to_partials`): a few dozen at most, whatever the terms."""
    partials: list[float] = []
    for x in terms:
        add_to_partials(partials, x)
    return partials


# (ts_ns, values, seq) as the reading came; (ts_ns, values) in a snapshot from before the
# numbers were kept (NO_SEQ)
Reading = tuple[int, Mapping[str, float]] | tuple[int, Mapping[str, float], int]


class Window:
    """The aggregate of one sensor's readings in one window. A window's first reading is
    kept as it came (`first`) until a second one arrives or the fields are read: most
    minute windows hold one reading, and their fields need no lists then."""

    __slots__ = ("_fields", "count", "first", "mark", "start_ns")

    def __init__(self, start_ns: int, count: int, fields: dict[str, list[float]]) -> None:
        self.start_ns = start_ns
        self.count = count
        self._fields = fields
        self.first: Reading | None = None
        # Whoever last touched the window (NodeState.process: its call's token), so that a
        # batch lists each window it touched once without a dict of keys. Not pickled.
        self.mark: object = None

    @property
    def fields(self) -> dict[str, list[float]]:
        if self.first is not None:
            self._settle()
        return self._fields

    def hold(self, ts_ns: int, values: Mapping[str, float], seq: int = NO_SEQ) -> None:
        """Add the first reading of a new (empty) window, kept as it is: `add` for a window
        with no reading yet."""
        self.count = 1
        self.first = (ts_ns, values, seq)

    def _settle(self) -> None:
        """The held first reading into the fields, as `add` would have put it."""
        assert self.first is not None
        first = self.first
        ts_ns, values = first[0], first[1]
        seq = first[2] if len(first) > 2 else NO_SEQ
        self.first = None
        fields = self._fields
        for name, value in values.items():
            v = value + 0.0  # float(value), and -0.0 taken as 0.0
            fields[name] = [1, v, v, v, ts_ns, v, seq]

    def __getstate__(self) -> tuple[object, ...]:
        if self.first is None:
            return self.start_ns, self.count, self._fields
        return self.start_ns, self.count, self._fields, self.first

    def __setstate__(self, state: tuple[object, ...]) -> None:
        self.first = None
        self.mark = None
        if len(state) == 3:
            self.start_ns, self.count, self._fields = state  # type: ignore[assignment]
        elif len(state) == 4:
            self.start_ns, self.count, self._fields, self.first = state  # type: ignore[assignment]
        if len(state) in (3, 4):
            for a in self._fields.values():
                if len(a) == LAST_SEQ:  # taken before the numbers (and lost terms) were kept
                    a.append(NO_SEQ)
            return
        # A snapshot taken before windows went compact: (None, slots) with FieldAgg objects.
        slots = state[1]
        assert isinstance(slots, dict)
        self.start_ns, self.count = slots["start_ns"], slots["count"]
        self._fields = {name: [a.n, a.total, a.low, a.high, a.last_ts, a.last, NO_SEQ]
                        for name, a in slots["fields"].items()}

    def __eq__(self, other: object) -> bool:
        """The same readings' aggregate: the same sums, however they are split in terms."""
        return (isinstance(other, Window) and self.start_ns == other.start_ns
                and self.count == other.count and _canonical(self.fields) == _canonical(other.fields))

    def __repr__(self) -> str:
        return f"Window({self.start_ns}, {self.count}, {self.fields!r})"

    def add(self, ts_ns: int, values: Mapping[str, float], seq: int = NO_SEQ) -> None:
        if self.first is not None:
            self._settle()
        self.count += 1
        fields = self._fields
        for name, value in values.items():
            v = value + 0.0  # float(value), and -0.0 taken as 0.0
            a = fields.get(name)
            if a is None:
                fields[name] = [1, v, v, v, ts_ns, v, seq]
                continue
            a[0] += 1
            # total + v, and what its rounding lost (TwoSum: exact, whatever the magnitudes)
            t = a[1]
            s = a[1] = t + v
            z = s - t
            e = (t - (s - z)) + (v - z)
            if e:  # into lost, the same way (what that loses: none with a sensor's values)
                if len(a) == 7:
                    a.append(e)
                else:
                    t = a[7]
                    s = a[7] = t + e
                    z = s - t
                    e = (t - (s - z)) + (e - z)
                    if e:
                        a.append(e)
                        if len(a) > 8 + _MORE_LOST:
                            a[8:] = _partials(a[8:])
            if v < a[2]:
                a[2] = v
            if v > a[3]:
                a[3] = v
            if ts_ns > a[4]:
                a[4] = ts_ns
                a[5] = v
                a[6] = seq
            elif ts_ns == a[4] and seq >= a[6]:  # of one stamp, the highest number
                a[5] = v
                a[6] = seq

    def as_fields(self) -> dict[str, float | int]:
        out: dict[str, float | int] = {"count": self.count}
        for name, a in sorted(self.fields.items()):
            out[f"{name}_mean"] = exact_sum(a) / a[N]
            out[f"{name}_min"] = a[LOW]
            out[f"{name}_max"] = a[HIGH]
            out[f"{name}_last"] = a[LAST]
        return out

    def field_text(self) -> str:
        """`as_fields` as line protocol (same keys, order and number formats), without the
        dict: this runs for every window a batch touches."""
        if self.first is not None:  # one reading: its values are the mean, low, high and last
            values = self.first[1]
            if len(values) == 1 and self.count == 1:  # a bed pad's reading, say: its text made once per value
                ((name, v),) = values.items()
                if type(v) is int or v:  # (not 0.0 or -0.0: one key, one text, below)
                    held = _held_texts.get((name, v))
                    if held is None:
                        held = _held_text(name, v)
                    return held
            texts = float_texts()
            parts = [f"count={self.count}i"]
            for name in sorted(values) if len(values) > 1 else values:
                v = values[name]
                r = texts.get(v) or float_text(v + 0.0)  # (a -0.0 is 0.0, as in `add`)
                segments = _held_segments.get(name) or _segments_of(name)
                parts.append(segments.get(r) or _held_segment(segments, name, r))
            return ",".join(parts)
        texts, keys = float_texts(), field_keys()
        parts = [f"count={self.count}i"]
        fields = self._fields
        for name in sorted(fields) if len(fields) > 1 else fields:
            a = fields[name]
            k = keys.get(name) or field_key(name)
            # A float's text is its repr, the costly part: a value that is the low, the high
            # and the last at once (one object) is written once, and so is a one-reading mean.
            low, high, last = a[2], a[3], a[5]
            r_low = texts.get(low) or float_text(low)
            r_high = r_low if high is low else texts.get(high) or float_text(high)
            r_last = (r_low if last is low else r_high if last is high
                      else texts.get(last) or float_text(last))
            if a[0] == 1 and a[1] is last:
                r_mean = r_last
            else:  # exact_sum(a), inlined
                total = a[1] if len(a) == 7 else exact_sum(a)
                r_mean = repr(total / a[0])
            parts.append(f"{k}_mean={r_mean},{k}_min={r_low},{k}_max={r_high},{k}_last={r_last}")
        return ",".join(parts)


def _canonical(fields: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """Fields with their sum in one term (as `exact_sum` gives it), for comparing."""
    return {name: [a[0], exact_sum(a), *a[2:6]] for name, a in fields.items()}


# (field, value) -> the field text of a window holding one reading of that one value
_held_texts: dict[tuple[str, float], str] = {}
_HELD_TEXTS_MAX = 20_000
# field -> the value's text -> "<field>_mean=<text>,..._min=...,..._max=...,..._last=...":
# a held reading's part for that field, its text made once (4 times the value's text, the
# costly part of a window's line; keyed by the text, so 0.0 and -0.0 are two keys)
_held_segments: dict[str, dict[str, str]] = {}


def _segments_of(name: str) -> dict[str, str]:
    if len(_held_segments) >= _HELD_TEXTS_MAX:
        _held_segments.clear()
    return _held_segments.setdefault(name, {})


def _held_segment(segments: dict[str, str], name: str, text: str) -> str:
    k = field_key(name)
    segment = f"{k}_mean={text},{k}_min={text},{k}_max={text},{k}_last={text}"
    if len(segments) >= _HELD_TEXTS_MAX:
        segments.clear()
    segments[text] = segment
    return segment


def _held_text(name: str, value: float) -> str:
    k = field_key(name)
    r = float_text(value)
    text = f"count=1i,{k}_mean={r},{k}_min={r},{k}_max={r},{k}_last={r}"
    if len(_held_texts) >= _HELD_TEXTS_MAX:
        _held_texts.clear()
    _held_texts[(name, value)] = text
    return text


_FRAME = pickle.FRAME[0]
_HEADER_LEN = 11  # PROTO n, FRAME and its 8-byte length


def _thawed(start_ns: int, frozen: bytes) -> Window:
    """The window frozen (`SensorRollup._freeze`) at `start_ns`."""
    window = Window.__new__(Window)
    window.__setstate__((start_ns, *pickle.loads(frozen)))
    return window


class SensorRollup:
    """The open windows of one sensor at one width.

    The windows a reading is likely to reach (those ending less than COLD_AFTER_NS before
    the sensor's newest reading, and those late readings thawed or made since) are live
    `Window` objects in `windows`. The closed ones are kept only so that a late reading can
    be folded in and its window written whole: they are frozen in `frozen`, as the bytes of
    their pickled compact state (about a third of a live window's memory; a snapshot copies
    the bytes instead of pickling the window again, and loading one leaves them frozen). A
    reading of a frozen window thaws it (back to `windows`, as it was); `evict` freezes it
    again when the line moves on (each width), or sooner if more than LIVE_MAX are live.

    With a frozen store (`use_store`), a window freezes into a row of the store and `frozen`
    holds the row's id (an int) instead of the bytes, so snapshots carry 8 bytes a window;
    bytes frozen before (a snapshot taken without the store) stay until thawed or dropped.
    A row id the rollup lets go (its window thawed, or dropped past the horizon) is added to
    `gone`, the node's list of rows to delete once no snapshot Bytewax may resume holds it.

    `pickled()` is its state pickled, kept until the rollup changes: a reading goes in
    through `window` (which lets it go: the window it returns is changed next), and the
    others that change it (`set_horizon`, `evict`'s freezing and dropping, `use_store`) let
    it go too. A sensor that sent nothing since the last snapshot (most of a ward's beds in
    an epoch) costs that snapshot a copy of the bytes."""

    __slots__ = ("_pickled", "cold_ns", "frozen", "gone", "horizon_ns", "kept_ns", "newest_ns",
                 "oldest_ns", "ordered", "store", "too_late", "width_ns", "windows")

    def __init__(self, width_ns: int, horizon_ns: int) -> None:
        self.width_ns = width_ns
        self.horizon_ns = horizon_ns
        # No window starting before this is made (`set_horizon`: the floor of a horizon raised)
        self.kept_ns = NO_FLOOR
        self.windows: dict[int, Window] = {}
        self.newest_ns = 0
        self.oldest_ns = 0  # no window starts before this: evict() has nothing to do above it
        self.ordered = True  # `windows` holds its starts in increasing order
        self.too_late = 0
        # start -> a closed window's frozen state (`_freeze`), or the id of its row in the
        # frozen store, in increasing order of start
        self.frozen = FrozenIndex(width=width_ns)
        # The line `evict` last froze the windows before: a live window starting before it
        # was thawed or made by a late reading.
        self.cold_ns = NO_FLOOR
        self.store: FrozenStore | None = None  # not pickled: `use_store`
        self.gone: array[int] | None = None
        self._pickled: bytes | None = None

    def use_store(self, store: FrozenStore | None, gone: array[int] | None) -> None:
        """Windows freeze into `store` (if it writes) and its rows are read back from it;
        the ids of rows let go are appended to `gone`."""
        self._pickled = None
        self.store = store
        self.gone = gone
        if store is not None and store.writes:  # (frozen without a store: a run without recovery)
            self.frozen.store_inline(store.put)

    def __getstate__(self) -> tuple[object, ...]:
        # The live windows as the plain tuples they pickle as: a Window object costs pickle
        # a reduce call of its own; nor is the frozen windows' index.
        return (INDEXED_ROLLUP, self.width_ns, self.horizon_ns, self.newest_ns, self.oldest_ns,
                self.ordered, self.too_late, [w.__getstate__() for w in self.windows.values()],
                self.kept_ns, self.cold_ns, *self.frozen.columns())

    def pickled(self) -> bytes:
        """`__getstate__` pickled, as last pickled if the rollup did not change since."""
        held = self._pickled
        if held is None:
            held = self._pickled = pickle.dumps(self.__getstate__(), protocol=pickle.HIGHEST_PROTOCOL)
        return held

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self._pickled = None
        # A snapshot from before windows were frozen has none: the first evict (set_horizon,
        # at resume) freezes its closed ones.
        self.frozen = FrozenIndex()  # (given its width once the rollup's is known)
        self.cold_ns = NO_FLOOR
        self.store = None
        self.gone = None
        if state[0] in (INDEXED_ROLLUP, FROZEN_ROLLUP, COMPACT_ROLLUP, ROLLUP_NO_SEQ):
            (_, self.width_ns, self.horizon_ns, self.newest_ns, self.oldest_ns, self.ordered,
             self.too_late, compact) = state[:8]
            self.kept_ns = state[8] if len(state) > 8 else NO_FLOOR
            if state[0] == INDEXED_ROLLUP:
                self.cold_ns = state[9]
                self.frozen = FrozenIndex.from_columns(state[10:])
            elif state[0] == FROZEN_ROLLUP:
                self.cold_ns, self.frozen = state[9:11]
                self._index_by_width()
            else:
                self._index_by_width()
            windows: dict[int, Window] = {}
            for window_state in compact:
                if state[0] == ROLLUP_NO_SEQ:  # each field's last reading's number not known
                    for a in window_state[2].values():
                        a.insert(LAST_SEQ, NO_SEQ)
                window = Window.__new__(Window)
                window.__setstate__(window_state)
                windows[window.start_ns] = window
            self.windows = windows
            return
        # A snapshot from before the compact form: (None, slots). Older ones kept neither
        # oldest_ns nor ordered: the next evict looks at every window.
        self.oldest_ns = UNKNOWN_OLDEST
        self.ordered = False
        self.kept_ns = NO_FLOOR
        slots = state[1]
        assert isinstance(slots, dict)
        for name, value in slots.items():
            setattr(self, name, value)
        self._index_by_width()

    def _index_by_width(self) -> None:
        # (a dict before session 23; int64 columns, without the width, before session 25)
        held: Any = self.frozen
        if type(held) is not FrozenIndex or held.width != self.width_ns:
            self.frozen = FrozenIndex(held.items(), self.width_ns)

    def add(self, ts_ns: int, values: Mapping[str, float], seq: int = NO_SEQ) -> Window | None:
        """Add a reading; returns its window, or None when it is too late to aggregate."""
        window = self.window(ts_ns)
        if window is not None:
            window.add(ts_ns, values, seq)
        return window

    def window(self, ts_ns: int) -> Window | None:
        """The window a reading at `ts_ns` goes to (made if new; the reading is then the
        newest), or None when it is too late to aggregate (`add` without the values): its
        window is not held and starts before the horizon. A held window takes a reading
        older than the horizon too (see the module's doc)."""
        self._pickled = None
        newest = self.newest_ns
        width = self.width_ns
        start = ts_ns - ts_ns % width
        window = self.windows.get(start)
        if window is None:
            frozen = self.frozen.get(start)
            if frozen is not None:  # a late reading of a closed window: thawed as it was
                if type(frozen) is int:
                    state = self._fetch(frozen)
                    if state is None:  # its row is gone: a window rebuilt from the raw points
                        self._lost(start, frozen)
                        self.too_late += 1
                        return None
                    if self.gone is not None:
                        self.gone.append(frozen)
                    frozen = state
                del self.frozen[start]
                assert isinstance(frozen, bytes)
                window = self.windows[start] = _thawed(start, frozen)
                if start < newest - newest % width:
                    self.ordered = False
                return window
            if start < newest - self.horizon_ns or start < self.kept_ns:
                # Its earlier readings, if any, were too late: it is rebuilt from the raw
                # points, and a window made now would hold the later ones only.
                self.too_late += 1
                return None
            if not self.windows and not self.frozen:
                self.oldest_ns = start
            elif start < newest - newest % width:  # the newest window starts last
                self.ordered = False
                if start < self.oldest_ns:
                    self.oldest_ns = start
            window = self.windows[start] = Window(start, 0, {})
        if ts_ns > newest:
            self.newest_ns = ts_ns
        return window

    def set_horizon(self, horizon_ns: int) -> None:
        """A horizon given anew to a rollup resumed from a snapshot. Lowered, the windows
        beyond it go now. Raised, the rollup had let go of the windows beyond the old one: a
        reading of one taken now would make a window of itself alone (which would overwrite
        the whole one stored), so no window starting before the old horizon's floor is made
        (`kept_ns`: its readings are too late, rebuilt from the raw points) until the newest
        has moved past it."""
        self._pickled = None
        if horizon_ns > self.horizon_ns and self.newest_ns:
            self.kept_ns = max(self.kept_ns, self.newest_ns - self.horizon_ns)
        self.horizon_ns = horizon_ns
        self.evict()

    def evict(self) -> None:
        """Drops the windows past the horizon and freezes those closed (called per message:
        each does nothing, but compare, until the newest has moved on by a width)."""
        newest, width = self.newest_ns, self.width_ns
        if self.oldest_ns < newest - self.horizon_ns - width:
            self._drop(newest - self.horizon_ns - width)
        # The line: the windows starting before it ended COLD_AFTER_NS ago. It has moved past
        # cold_ns (a multiple of the width) when newest - COLD_AFTER_NS >= cold_ns + width.
        if newest - COLD_AFTER_NS - width >= self.cold_ns:
            edge = newest - COLD_AFTER_NS
            self._freeze(edge - edge % width, None)
        elif not self.ordered and len(self.windows) > LIVE_MAX:
            # Late readings thawed or made windows behind the line (each made the windows
            # unordered): all frozen again but the latest.
            edge = newest - COLD_AFTER_NS
            line = edge - edge % width
            self._freeze(line, max((s for s in self.windows if s < line), default=None))

    def _freeze(self, line: int, keep: int | None) -> None:
        """Freezes the live windows starting before `line` (but `keep`: the latest a late
        reading thawed or made, which a backlog sent in order goes on filling)."""
        self._pickled = None
        windows = self.windows
        if self.ordered and keep is None:  # (as live traffic leaves them) the first ones
            cold = _starts_before(windows, line)
        else:
            cold = sorted(s for s in windows if s < line and s != keep)
        if cold:
            frozen = self.frozen
            dumps, protocol = pickle.dumps, pickle.HIGHEST_PROTOCOL
            store = self.store
            put = store.put if store is not None and store.writes else None
            for start in cold:
                # Its compact state without its start, pickled, without the pickle's header
                # (protocol and frame: 11 of some 30-150 bytes; unpickling does not need it)
                state = dumps(windows.pop(start).__getstate__()[1:], protocol)
                state = state[_HEADER_LEN if state[2] == _FRAME else 2:]
                frozen[start] = state if put is None else put(state)
        if line > self.cold_ns:
            self.cold_ns = line

    def _drop(self, floor: int) -> None:
        self._pickled = None
        windows = self.windows
        # ordered: the windows to drop come first
        old = _starts_before(windows, floor) if self.ordered else [s for s in windows if s < floor]
        for start in old:
            del windows[start]
        if not self.ordered:
            windows = self.windows = dict(sorted(windows.items()))
            self.ordered = True
        frozen = self.frozen
        if frozen:
            let_go = self.gone
            for state in frozen.drop_before(floor):
                if type(state) is int and state != LOST_ROW and let_go is not None:
                    let_go.append(state)
        oldest = next(iter(windows), None)
        oldest_frozen = frozen.first() if frozen else None
        if oldest is None or (oldest_frozen is not None and oldest_frozen < oldest):
            oldest = oldest_frozen
        self.oldest_ns = 0 if oldest is None else oldest

    def starts(self) -> list[int]:
        """The starts of the windows held, live or frozen, in increasing order."""
        return sorted([*self.windows, *self.frozen])

    def window_at(self, start_ns: int) -> Window | None:
        """The window held at `start_ns`, for reading: a frozen one thawed apart (it stays
        frozen in the rollup; a reading goes in through `window`)."""
        window = self.windows.get(start_ns)
        frozen = self.frozen.get(start_ns) if window is None else None
        if frozen is not None:
            state = self._fetch(frozen) if type(frozen) is int else frozen
            if state is not None:
                assert isinstance(state, bytes)
                window = _thawed(start_ns, state)
        return window

    def _fetch(self, ref: int) -> bytes | None:
        """A frozen window's state from the store, None if its row is not there."""
        store = self.store
        return None if store is None or ref == LOST_ROW else store.get(ref)

    def _lost(self, start: int, ref: int) -> None:
        """The row of the window at `start` is not in the store (or no store is given):
        the window is held as lost, so that every reading of it asks for its rebuild from
        the raw points (a window made anew would write its later readings alone over it)."""
        if ref != LOST_ROW:
            self._pickled = None
            self.frozen[start] = LOST_ROW
            note_lost(self.store, f"frozen window at {start} (row {ref})",
                      "its late readings are rebuilt from the raw points")


def rollup_states(rollups: dict[str, SensorRollup]) -> dict[str, bytes]:
    """A node's rollups by sensor as their states pickled (`SensorRollup.pickled`: kept while
    the sensor sends nothing); from session 19 to 26 a snapshot held the tuples, and before
    that the objects (pickle then made a reduce of its own for each)."""
    return {sensor: rollup.pickled() for sensor, rollup in rollups.items()}


def rollups_of(held: dict[str, Any]) -> dict[str, SensorRollup]:
    """The rollups of `rollup_states`, or of a snapshot that held them as tuples or objects."""
    rollups = {}
    for sensor, state in held.items():
        if type(state) is bytes:
            state = pickle.loads(state)
        if type(state) is tuple:
            rollup = SensorRollup.__new__(SensorRollup)
            rollup.__setstate__(state)
            state = rollup
        rollups[sensor] = state
    return rollups


def _starts_before(windows: dict[int, Window], line: int) -> list[int]:
    """The starts before `line` of windows held in increasing order of start: the first ones."""
    out = []
    for start in windows:
        if start >= line:
            break
        out.append(start)
    return out


def windows_of(rollups: Iterable[SensorRollup]) -> int:
    return sum(len(r.windows) + len(r.frozen) for r in rollups)
