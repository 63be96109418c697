"""The streaming anomaly detector: one object per series, one value at a time.

For each value it combines two views (see docs/anomaly-detection.md):

* tail surprise: five statistics (the value, its negation, its jump from the median
  of the previous `jump_span` values, and the mean of the last `mean_span` values and
  its negation) are each ranked against their own last `history` values
  (`TailHistory`); the largest surprise s gives `1 - exp(-s / surprise_scale)`;
* context novelty: the share of never-seen contexts of quantised values
  (`ContextNovelty`), raised to `record_jump_novelty` when the jump is larger than
  every jump since the series began (a step never seen is new even when the values
  on both sides of it are not), and, when `difference_novelty` > 0 (the road-traffic
  profile), to that share times the same novelty computed on the first differences
  (value minus the previous value): a change of a size or rhythm never seen.

A third view, the seasonal residual (`SeasonalResidual`, on unless `season_learn` is 0),
is reported on its own: when the means of the first `season_learn` time slots of
`season_slot_s` seconds (or the series' interval, if longer) show a period, the
distance of the first value of each slot's visit from its phase's smoothed profile is
ranked against the last `history` such distances, and its surprise s gives
`1 - exp(-s / season_scale)`.

The score is `novelty_weight * novelty + (1 - novelty_weight) * tail`, or the seasonal
one when that is higher, 0 during the first `warmup` values, and 0 again while it is
not higher than every score of the last `refractory` values: a lasting anomaly is
reported when it starts and when it grows, not on every value. For `damp_span` values
after a score reached `damp_level` (an alert), scores are multiplied by `damp_factor`:
a second alert so soon must be clearly stronger than an ordinary one. For `hold`
values after a score reached the threshold (a reported alert), scores are 0: that
alert is still open (40 values by default, 10 in the road-traffic profile, whose
anomalies can come closer together), and for as many 5-minute rows of its stamps, the
rows it was tuned on (`HOLD_ROW_NS`): the same time whatever the series' rate.

No value is used before it arrives, nothing about the range of a series is known in
advance, and the state is a fixed set of bounded buffers (picklable, under 64 KB).
"""

from __future__ import annotations

import math
from array import array
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from itertools import islice
from math import exp, isfinite
from typing import Any, cast

from cloud.detect.errors import DetectError
from cloud.detect.novelty import ContextNovelty
from cloud.detect.seasonal import SeasonalResidual
from cloud.detect.tail import TailHistory
from urbanpulse.clock import to_epoch_ns


@dataclass(frozen=True, slots=True)
class DetectorSettings:
    """Settings of one detector; the defaults are the ones tuned on NAB (see the doc)."""

    history: int = 1000
    warmup: int = 150
    jump_span: int = 5
    mean_span: int = 24
    record_weight: float = 3.0
    surprise_scale: float = 5.0
    levels: int = 8
    orders: tuple[int, ...] = (1, 2, 3, 4, 5)
    learn: int = 150
    coarsen: float = 2.5
    memory_capacity: int = 2500
    record_jump_novelty: float = 0.7
    difference_novelty: float = 0.0
    novelty_weight: float = 0.625
    refractory: int = 20
    damp_level: float = 0.8
    damp_span: int = 150
    damp_factor: float = 0.97
    hold: int = 40
    season_learn: int = 600
    season_slot_s: int = 300
    season_min_correlation: float = 0.5
    season_rate: float = 0.2
    season_scale: float = 20.0
    threshold: float = field(default=0.80)
    # The differences' context memory (`difference_novelty` > 0): its orders and its
    # capacity, None: the values' (`orders`, `memory_capacity`). Last, so that settings
    # pickled before them load (`__setstate__`) and mean what they meant.
    difference_orders: tuple[int, ...] | None = None
    difference_capacity: int | None = None

    def __setstate__(self, state: list[object]) -> None:
        # As the dataclass's own, but a state pickled before the last fields lacks them.
        for k, f in enumerate(fields(self)):
            object.__setattr__(self, f.name, state[k] if k < len(state) else f.default)

    def __post_init__(self) -> None:
        checks = {
            "history": self.history >= 50,
            "warmup": self.warmup >= 0,
            "jump_span": self.jump_span >= 1,
            "mean_span": self.mean_span >= 1,
            "record_weight": self.record_weight >= 0,
            "surprise_scale": self.surprise_scale > 0,
            "levels": self.levels >= 2,
            "orders": bool(self.orders) and all(0 < o < 16 for o in self.orders),
            "learn": self.learn >= 2,
            "coarsen": self.coarsen >= 1.0,
            "memory_capacity": self.memory_capacity >= 1,
            "record_jump_novelty": 0.0 <= self.record_jump_novelty <= 1.0,
            "difference_novelty": 0.0 <= self.difference_novelty <= 1.0,
            "novelty_weight": 0.0 <= self.novelty_weight <= 1.0,
            "refractory": self.refractory >= 0,
            "damp_level": 0.0 <= self.damp_level <= 1.0,
            "damp_span": self.damp_span >= 0,
            "damp_factor": 0.0 <= self.damp_factor <= 1.0,
            "hold": self.hold >= 0,
            "season_learn": self.season_learn == 0 or self.season_learn >= 8,
            "season_slot_s": self.season_slot_s >= 1,
            "season_min_correlation": 0.0 < self.season_min_correlation <= 1.0,
            "season_rate": 0.0 < self.season_rate <= 1.0,
            "season_scale": self.season_scale > 0,
            "threshold": 0.0 <= self.threshold <= 1.0,
            "difference_orders": self.difference_orders is None or (
                bool(self.difference_orders) and all(0 < o < 16 for o in self.difference_orders)
            ),
            "difference_capacity": self.difference_capacity is None or self.difference_capacity >= 1,
        }
        for name, ok in checks.items():
            if not ok:
                raise DetectError(f"detector setting {name}={getattr(self, name)!r} is out of range")


def _epoch_ns(ts: datetime | int) -> int:
    if isinstance(ts, datetime):
        if ts.tzinfo is None:
            raise DetectError(f"timestamp {ts.isoformat()} has no time zone (UTC expected)")
        return to_epoch_ns(ts)
    return int(ts)


def _recent_span(s: DetectorSettings) -> int:
    """The last values a detector keeps."""
    return max(s.mean_span, s.jump_span + 1)


def _scores_span(s: DetectorSettings) -> int:
    """The last scores a detector keeps (at least one)."""
    return max(s.refractory, 1)


# The hold was tuned on NAB's rows, 5 minutes apart: an alert is also held open for that
# many 5-minute rows of its stamps. Counted in values alone, 40 values are 200 min of
# NAB's rows but 200 s of an air module read every 5 s: a series past anything it had seen
# (a new station's CO2 rising through its first hours) alerted every few minutes.
HOLD_ROW_NS = 300 * 10**9


# The numbers and tuples of each profile's settings, by (type, value), for `_share_settings`.
_OWN: dict[int, tuple[DetectorSettings, dict[tuple[type, object], object]]] = {}


def _own(s: DetectorSettings, canonical: bool) -> dict[tuple[type, object], object]:
    """`s`'s numbers and tuples by (type, value), and 0.0; kept for the profiles' (few)."""
    kept = _OWN.get(id(s))
    if kept is not None and kept[0] is s:
        return kept[1]
    own: dict[tuple[type, object], object] = {(float, 0.0): 0.0}
    for f in fields(s):
        value = getattr(s, f.name)
        if type(value) in (int, float, tuple):
            own[type(value), value] = value
    if canonical:
        _OWN[id(s)] = (s, own)
    return own


def _alike(own: dict[tuple[type, object], object], value: object) -> object:
    """The object of `own` equal to `value` to the bit (0.0 is not -0.0), else `value`."""
    kind = type(value)
    if kind is int or kind is tuple:
        return own.get((kind, value), value)
    if kind is float:
        kept = own.get((float, value))
        if kept is not None and (value or math.copysign(1.0, cast(float, kept))
                                 == math.copysign(1.0, cast(float, value))):
            return kept
    return value


# A detector's attributes in the order `__init__` sets them: the keys of its pickled state,
# in that order (test_detect_memory_size.py checks them), then `_held_until` once set.
_NAMES = (
    "settings", "name", "count", "last_ns", "_recent", "_value_tail", "_jump_tail",
    "_mean_tail", "_novelty", "_differences", "_season", "_jump_record", "_last_scores",
    "_top", "_top_age", "_since_alert", "_since_report",
)


class AnomalyDetector:
    """Anomaly scores in [0, 1] for one series, fed in time order (a value stamped before
    the one before scores 0 and is not learnt)."""

    # The stamp (epoch ns) before which an alert reported is still open (`HOLD_ROW_NS`);
    # a detector pickled before it was kept loads with the class's (none open).
    _held_until = -(2**63)

    def __init__(self, settings: DetectorSettings | None = None, name: str = "") -> None:
        self.settings = s = settings or DetectorSettings()
        self.name = name
        self.count = 0
        self.last_ns: int | None = None
        # The last values and scores (`_recent_span`, `_scores_span`), oldest first; pickled
        # as the deques they were (`__getstate__`), held in a list and an array: a deque's
        # block takes five times their pointers (the scores are read back only when the
        # largest leaves, the values on every update).
        self._recent: list[float] = []
        # The value and the mean, each with its negation (two-sided), and the jump.
        self._value_tail = TailHistory(s.history, s.record_weight, two_sided=True)
        self._jump_tail = TailHistory(s.history, s.record_weight)
        self._mean_tail = TailHistory(s.history, s.record_weight, two_sided=True)
        self._novelty = ContextNovelty(
            s.levels, s.orders, s.learn, s.coarsen, s.memory_capacity
        )
        self._differences = (
            ContextNovelty(
                s.levels,
                s.orders if s.difference_orders is None else s.difference_orders,
                s.learn,
                s.coarsen,
                s.memory_capacity if s.difference_capacity is None else s.difference_capacity,
            )
            if s.difference_novelty > 0
            else None
        )
        self._season = (
            SeasonalResidual(
                s.season_learn,
                s.season_slot_s * 10**9,
                s.season_min_correlation,
                s.season_rate,
                s.history,
                s.record_weight,
                max(s.warmup, 30),
            )
            if s.season_learn
            else None
        )
        self._jump_record = -math.inf
        self._last_scores = array("d")
        # The largest of `_last_scores` and how many scores were appended after it (the
        # newest largest one): it is looked for again only once it has left.
        self._top = 0.0
        self._top_age = 0
        self._since_alert = s.damp_span + 1
        self._since_report = s.hold + 1

    def __getstate__(self) -> dict[str, Any]:
        # By name, not `vars(self)`: on Python 3.11 that makes the attributes' dict, which
        # the detector then keeps (0.2-0.3 KB more for the rest of its life, from its
        # first snapshot).
        state = self._attributes()
        s = self.settings
        state["_recent"] = deque(self._recent, maxlen=_recent_span(s))
        state["_last_scores"] = deque(self._last_scores, maxlen=_scores_span(s))
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Set one by one, not into `vars(self)`, which would make the attributes' dict (see
        # `__getstate__`); setattr interns the names, as a fresh detector's are.
        for name, value in state.items():
            if type(name) is not str:
                raise DetectError(f"detector state has a key {name!r} that is not a name")
            setattr(self, name, value)
        if "_recent" in state:  # (an older layout without them is dropped by its owner)
            self._recent = list(state["_recent"])
        if "_last_scores" in state:
            self._last_scores = array("d", state["_last_scores"])
        # Here, not at the top: the profiles are made of this module's settings.
        from cloud.detect.profiles import CANONICAL, SUPERSEDED

        settings = state.get("settings")
        if isinstance(settings, DetectorSettings):
            if settings in SUPERSEDED:
                self.narrow(SUPERSEDED[settings])
            else:
                self.settings = CANONICAL.get(settings, settings)
            self._share_settings(CANONICAL.get(self.settings) is self.settings)

    def _attributes(self) -> dict[str, Any]:
        """The attributes this detector has, in the order a fresh one is given them:
        `_NAMES`, then `_held_until` once an alert set it (not the class's default)."""
        try:
            state = {name: getattr(self, name) for name in _NAMES}
        except AttributeError:  # a layout from before one of them (its owner drops it)
            state = {name: getattr(self, name) for name in _NAMES if hasattr(self, name)}
        held = self._held_until
        if held is not AnomalyDetector._held_until:
            state["_held_until"] = held
        return state

    def _share_settings(self, canonical: bool = False) -> None:
        """The numbers and tuples of the parts that equal one of the settings' made that
        object again, as in a detector made with them (pickle makes each its own copy).
        With the profile's own settings (`__setstate__`), a loaded detector holds no more
        than a fresh one: neither a copy of them (about 0.8 KB) nor about 0.5 KB of numbers.
        The tuples share again as they did when pickled: it pickles the same bytes."""
        s = self.settings
        own = _own(s, canonical)
        parts = [getattr(self, name, None) for name in (
            "_value_tail", "_jump_tail", "_mean_tail", "_novelty", "_differences", "_season")]
        for part in (*parts, getattr(parts[-1], "_residuals", None)):  # (an older layout's: any)
            for name in getattr(type(part), "__slots__", ()):
                value = getattr(part, name, None)
                kept = _alike(own, value)
                if kept is not value:
                    setattr(part, name, kept)
        for name, value in self._attributes().items():
            kept = _alike(own, value)
            if kept is not value:
                setattr(self, name, kept)
        # While the bins are learnt, the last values are the newest of the first ones (the
        # same floats in a fresh detector: one copy, not pickle's two).
        first = getattr(parts[3], "_first", None)
        if isinstance(first, list) and first and isinstance(getattr(self, "_recent", None), list):
            values: dict[tuple[type, object], object] = {
                (float, v): v for v in first[-len(self._recent):] if type(v) is float}
            self._recent = [cast(float, _alike(values, v)) for v in self._recent]

    def narrow(self, settings: DetectorSettings) -> None:
        """Take `settings`, which keep shorter tails, or fewer orders or contexts of the
        differences, than this detector's and are the same otherwise, keeping what it
        learnt as far as they hold it: each tail's newest values, the difference contexts
        of the orders kept, the most recently seen first. What a detector made with
        `settings` and fed the same values holds, except what its scores left (the last
        ones, which alert is still open or damped: this one's are kept) and, where this
        one's difference memory forgot a context that one would hold, that context."""
        s, name = self.settings, self.name or "detector"
        if replace(settings, history=s.history, difference_orders=s.difference_orders,
                   difference_capacity=s.difference_capacity) != s:
            raise DetectError(f"{name}: only the tails and the difference memory can be narrowed")
        if settings.history > s.history:
            raise DetectError(f"{name}: tails of {s.history} values cannot keep {settings.history}")
        orders = settings.orders if settings.difference_orders is None else settings.difference_orders
        differences = self._differences
        if differences is not None and not set(orders) <= set(differences.orders):
            raise DetectError(f"{name}: contexts of orders {differences.orders} cannot be"
                              f" narrowed to {orders}")
        count, history = self.count, settings.history
        self._value_tail.keep_newest(history, count)
        self._jump_tail.keep_newest(history, max(0, count - s.jump_span))
        self._mean_tail.keep_newest(history, max(0, count - s.mean_span + 1))
        if self._season is not None:
            self._season.narrow(history)
        if differences is not None:
            differences.narrow(orders, settings.memory_capacity if settings.difference_capacity
                               is None else settings.difference_capacity)
        self.settings = settings

    @property
    def threshold(self) -> float:
        return self.settings.threshold

    def update(self, ts: datetime | int, value: float) -> float:
        """Score of `value` observed at `ts` (aware datetime or epoch nanoseconds)."""
        if not isfinite(value):
            raise DetectError(f"{self.name or 'detector'}: value {value!r} is not finite")
        ts_ns = ts if type(ts) is int else _epoch_ns(ts)
        last_ns = self.last_ns
        if last_ns is not None and ts_ns < last_ns:
            # Stamped before the value before (a sensor's numbering started again, its
            # rules afresh, on a clock behind): neither scored nor learnt, time order kept.
            return 0.0
        self.last_ns = ts_ns
        s = self.settings
        self.count = count = self.count + 1
        recent = self._recent
        recent.append(value)
        n = len(recent)
        if n > s.mean_span and n > s.jump_span + 1:  # more than `_recent_span`
            del recent[0]
            n -= 1
        # The largest surprise of the five statistics, taken in this order.
        surprise = 0.0
        tail = self._value_tail
        t = tail.surprise_push(value)
        if t > surprise:
            surprise = t
        t = tail.lower
        if t > surprise:
            surprise = t
        record_jump = False
        jump_span = s.jump_span
        if n > jump_span:
            # The values before this one, newest first (the median's sign of zero aside,
            # which the absolute difference drops, the order given to sorted() is moot).
            if jump_span == 5:
                previous = sorted((recent[-2], recent[-3], recent[-4], recent[-5], recent[-6]))
            else:
                previous = sorted(islice(reversed(recent), 1, jump_span + 1))
            jump = abs(value - previous[jump_span // 2])
            t = self._jump_tail.surprise_push(jump)
            if t > surprise:
                surprise = t
            if jump > self._jump_record:
                record_jump = True
                self._jump_record = jump
        mean_span = s.mean_span
        if n >= mean_span:
            total = sum(recent) if n == mean_span else sum(islice(recent, n - mean_span, None))
            tail = self._mean_tail
            t = tail.surprise_push(total / mean_span)
            if t > surprise:
                surprise = t
            t = tail.lower
            if t > surprise:
                surprise = t
        tail_score = 1.0 - exp(-surprise / s.surprise_scale)
        novelty = self._novelty.update(value)
        differences = self._differences
        if differences is not None:
            step = value - recent[-2] if n > 1 else 0.0
            t = s.difference_novelty * differences.update(step)
            if t > novelty:
                novelty = t
        warmup = s.warmup
        if record_jump and count > warmup and s.record_jump_novelty > novelty:
            novelty = s.record_jump_novelty
        weight = s.novelty_weight
        score = weight * novelty + (1.0 - weight) * tail_score
        season = self._season
        if season is not None:
            t = season.update(ts_ns or 0, value)
            if t > 0.0:
                t = 1.0 - exp(-t / s.season_scale)
                if t > score:
                    score = t
        if count < warmup:
            return 0.0
        if s.refractory:
            last_scores = self._last_scores
            full = len(last_scores) == s.refractory  # `_scores_span`: the oldest leaves
            top = self._top
            if not last_scores or score >= top:
                higher = not last_scores or score > top
                self._top, self._top_age = score, 0
                if full:
                    del last_scores[0]
                last_scores.append(score)
            else:
                higher = False
                if full:
                    del last_scores[0]
                last_scores.append(score)
                age = self._top_age = self._top_age + 1
                if age >= len(last_scores):  # the largest has just left
                    self._top = top = max(last_scores)
                    newest = len(last_scores) - 1
                    while last_scores[newest] != top:
                        newest -= 1
                    self._top_age = len(last_scores) - 1 - newest
            if not higher:
                score = 0.0
        if score < 0.0:
            score = 0.0
        if score > 1.0:
            score = 1.0
        # Both counters stop one past their span (they start there).
        since = self._since_alert
        damp_span = s.damp_span
        if since <= damp_span:
            self._since_alert = since = since + 1
            if since <= damp_span:
                score *= s.damp_factor
        since = self._since_report
        hold = s.hold
        if since <= hold:
            self._since_report = since = since + 1
            if since <= hold:
                score = 0.0
        if ts_ns < self._held_until:
            score = 0.0
        if score >= s.damp_level:
            self._since_alert = 0
        if score >= s.threshold:
            self._since_report = 0
            self._held_until = ts_ns + hold * HOLD_ROW_NS
        return score

    def update_many(self, stamps: Sequence[int], values: Sequence[float]) -> list[float]:
        """`update` of each (stamp, value) in turn, stamps in epoch nanoseconds."""
        if len(stamps) != len(values):
            raise DetectError(f"{len(stamps)} stamps for {len(values)} values")
        update = self.update
        return [update(int(ts), value) for ts, value in zip(stamps, values, strict=True)]

    def is_anomaly(self, score: float) -> bool:
        return score >= self.settings.threshold
