"""Sensor drift, seen between the two modules of one station.

A station that carries two modules of one kind (a PurpleAir carries two laser counters,
channels A and B) measures the same air twice: the station's own air, which moves PM
by tens of percent within the hour, cancels in the ratio of the two, and what remains
is the modules' noise and their slowly varying difference in response (humidity,
particle mix, ageing: a few percent over a day). A drift of one module moves that
ratio at its own rate, which is what this rule looks for:

* Each module's readings are summed up per `bin_s` bin of event time by their median
  (spikes do not move it), over at least `min_readings`; a bin where one value holds
  more than half the readings is left out (a stuck module: its own rule reports it), and so is a bin where
  one module's readings scatter (interquartile range / median) over `scatter` and over
  `scatter_ratio` times the other's: the same air, so a spiking module. A bin is judged once
  both modules have readings in a later bin, or once one of them is `max_lag_bins`
  ahead (the other is silent: that bin is skipped). Its log ratio r = log(median of
  the first module) - log(median of the second), modules in id order.
* The usual ratio is a mean of r, fed with a delay of `delay_bins`: the mean of the
  first `learn_bins` ratios, then followed at `follow` per bin. The delay keeps a
  drift's first hours out of it, the following keeps the slow difference in response
  in it. It does not follow while the pair is out of line.
* The deviation d is judged on the last `smooth_bins` bins, only when every one of them
  was judged (a bin left out, or a module silent, leaves the window short for
  `smooth_bins` bins: nothing is judged meanwhile): the mean of their ratios' deviations
  from the usual one, each clipped to `BIN_CLIP` x the threshold. A departure must be
  carried by most bins of the window, as a drift (a gain changing gradually) is: not by
  one bin whose median a module's spikes took over (more than half of its readings
  spiked: the bin filters above cannot see it) or that a module coming back mid-bin
  summed up over part of the bin only. Clipped at 1.5 thresholds, one bin of a 3-bin
  window carries at most half the threshold, however far it is: the other two must
  average over 3/4 of it. (Before, d was the nearer zero of the window's mean and median,
  which asks the same of a far bin but also shrinks a ramp's window, whose newest bin is
  its highest, to its middle bin.)
  The threshold is max(`shift`, `spread` x the pair's scale), the scale being the mean
  absolute d while the pair is in line (learnt over `learn_bins`, then followed). How
  far the ratio moved (the event's, and the new usual ratio below) is the window's mean,
  unclipped.
* A drift is |d| above the threshold for `persist` judged bins in a row, of one sign.
  It starts at the first bin of that run whose |d| exceeded a third of the threshold,
  and fires on the reading that completes the last bin of the run, once; re-armed
  when |d| is back under half the threshold. A pair out of line for `accept_bins` takes
  its current ratio as the usual one (the drift was reported; a module replaced by
  one of another gain is reported once, then compared afresh).

Which modules form a pair is declared by their ids, as the simulator names them
(`urbanpulse/simulate/module_pairs.py`): a sensor `<id><second_suffix>` ("-b" by
default, e.g. "pms5003" and "pms5003-b") is the second module of the sensor `<id>` of
the same node, and the two are paired on each field they share. Nothing else is
paired: two sensors of one kind on a node that are not so named (an indoor and an
outdoor module, say) are not the same air, and a third module ("pms5003-c") is left
out. A sensor without its partner keeps no state here.

Which module drifted the pair cannot say: the ratio moves the same whichever one
moves. `PairDrift` reports the pair; `cloud/detect/drift.py` names the module when
the other stations can tell. Both directions and any rate are judged alike; a rate
so slow that the usual ratio follows it (well under a percent an hour) is not a
drift to this rule.

Plain Python, picklable.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cloud.detect.errors import DetectError

PairKey = tuple[str, str, str]  # site, node, field
_Slot = tuple[str, str, str, str]  # site, node, field, first module

_NS = 1_000_000_000
# A bin's deviation counts at most this many thresholds in its window's mean: one bin of a
# 3-bin window, however far, then carries at most half the threshold (a constant, not a
# setting: the settings are pickled with the rule, docs/anomaly-detection.md, session 20).
BIN_CLIP = 1.5


@dataclass(frozen=True, slots=True)
class PairDriftSettings:
    bin_s: float = 900.0
    max_lag_bins: int = 4
    min_readings: int = 10  # per module and bin
    scatter: float = 0.3  # a bin's relative spread that is never a spiking module's...
    scatter_ratio: float = 3.0  # ...nor one at most this many times the other module's
    delay_bins: int = 4
    learn_bins: int = 32
    follow: float = 1 / 24
    smooth_bins: int = 3
    shift: float = 0.12
    spread: float = 4.0
    persist: int = 1
    accept_bins: int = 96
    log_floor: float = 1.0  # values below this are taken as this (logs of ~0)
    second_suffix: str = "-b"  # `<id><second_suffix>` is the second module of `<id>`

    def __post_init__(self) -> None:
        if (not self.bin_s > 0 or self.max_lag_bins < 1 or self.min_readings < 1
                or self.delay_bins < 0 or self.learn_bins < 2 or not 0 < self.follow < 1
                or self.smooth_bins < 1 or not self.shift > 0 or self.spread < 0
                or self.persist < 1 or self.accept_bins < 1 or not self.log_floor > 0
                or not self.scatter > 0 or self.scatter_ratio < 1 or not self.second_suffix):
            raise DetectError(f"invalid pair drift settings {self}")


@dataclass(frozen=True, slots=True)
class PairDeviation:
    """A pair found out of line: `first` / `second` its modules (id order), `ratio` how
    far their log ratio moved from the usual one (positive: the first reads higher
    than usual against the second), `start_ns` the start of the bin where it began,
    `bins` the bins judged since then."""

    key: PairKey
    first: str
    second: str
    ratio: float
    start_ns: int
    bins: int


def window_deviation(ratios: Sequence[float], usual: float, clip: float) -> float:
    """The deviation d of a window of judged ratios from the usual one: the mean of their
    deviations, each clipped to +-`clip` (so that one bin, however far, carries at most
    `clip` / the window's length of it)."""
    return sum(min(max(r - usual, -clip), clip) for r in ratios) / len(ratios)


@dataclass
class _Open:
    index: int
    values: list[float] = field(default_factory=list)

    def level(self, least: int) -> tuple[float, float] | None:
        """The bin's median and relative spread (interquartile range / median); None
        with fewer than `least` readings or one value in more than half of them (a
        stuck module, reported as such by its own rule: no ratio to judge)."""
        v = self.values
        if len(v) < least or 2 * max(Counter(v).values()) > len(v):
            return None
        q1, mid, q3 = statistics.quantiles(v, n=4)
        return mid, (q3 - q1) / mid if mid > 0 else math.inf


@dataclass
class _Pair:
    modules: list[str] = field(default_factory=list)  # the pair's modules seen, sorted
    current: dict[str, _Open] = field(default_factory=dict)
    # bin -> module -> (median, relative spread)
    done: dict[int, dict[str, tuple[float, float]]] = field(default_factory=dict)
    judged: int | None = None
    # ratios not yet taken into the usual one: bin, ratio, judged while found drifting
    delayed: deque[tuple[int, float, bool]] = field(default_factory=deque)
    usual: float = 0.0
    learnt: int = 0
    scale: float = 0.0
    scaled: int = 0
    run: int = 0  # judged bins in a row beyond the threshold, signed by their side
    since: int | None = None  # bin where the current departure began
    side: int = 0  # its sign
    fired: bool = False
    out_bins: int = 0  # judged bins since the pair went out of line
    recent: deque[tuple[int, float]] = field(default_factory=deque)


class PairDrift:
    """Drift of every pair of like modules of the stations that carry two."""

    def __init__(self, settings: PairDriftSettings | None = None) -> None:
        self.settings = settings or PairDriftSettings()
        self._pairs: dict[_Slot, _Pair] = {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        # pairs of a snapshot that paired any two modules of a field (keyed by the field
        # only) start afresh
        state["_pairs"] = {k: v for k, v in state["_pairs"].items() if len(k) == 4}
        self.__dict__.update(state)

    def partner(self, module: str) -> str | None:
        """The id of the module this rule pairs with `module` on its node (`<id>` with
        `<id><second_suffix>`), whether or not the node has it; None for a module it pairs
        with none (`<id><second_suffix><second_suffix>`: its `<id><second_suffix>` is the
        second module of `<id>`)."""
        suffix = self.settings.second_suffix

        def second(m: str) -> bool:
            return m.endswith(suffix) and len(m) > len(suffix)

        if not second(module):
            return module + suffix
        first = module[:-len(suffix)]
        return None if second(first) else first

    def update(self, key: PairKey, module: str, ts_ns: int, value: float
               ) -> list[PairDeviation]:
        """One reading of `module` of the station and field `key`; the pairs it finds
        out of line. Only a module and its declared second one are judged (above)."""
        if not math.isfinite(value):
            raise DetectError(f"{'/'.join(key)}/{module}: value {value!r} is not finite")
        s = self.settings
        suffix = s.second_suffix
        if module.endswith(suffix) and len(module) > len(suffix):
            slot = (*key, module[:-len(suffix)])
            pair = self._pairs.get(slot)
            if pair is None:
                pair = self._pairs[slot] = _Pair()
        else:
            found = self._pairs.get((*key, module))
            if found is None:
                return []  # no second module of it seen: nothing to pair
            pair = found
        if module not in pair.modules:
            pair.modules = sorted([*pair.modules, module])
        index = math.floor(ts_ns / (s.bin_s * _NS))
        if pair.judged is not None and index <= pair.judged:
            return []  # too late: its bin is judged
        current = pair.current.get(module)
        if current is None or current.index != index:
            if current is not None and current.index > index:
                return []  # stamped before its current bin (a clock set back): skipped
            # a bin is kept for judging only once the station has shown both modules:
            # a station with one module has no ratio, and its bins would pile up unjudged
            if (current is not None and len(pair.modules) == 2
                    and (level := current.level(s.min_readings)) is not None):
                pair.done.setdefault(current.index, {})[module] = level
            current = pair.current[module] = _Open(index)
        current.values.append(value)
        if len(pair.modules) < 2:
            return []
        return self._judge(key, pair)

    def _judge(self, key: PairKey, pair: _Pair) -> list[PairDeviation]:
        s = self.settings
        heads = [c.index for m in pair.modules if (c := pair.current.get(m)) is not None]
        if len(heads) < 2:
            return []
        ready = max(min(heads) - 1, max(heads) - s.max_lag_bins)
        found: list[PairDeviation] = []
        for index in sorted(i for i in pair.done if i <= ready):
            means = pair.done.pop(index)
            pair.judged = index
            (first, a), (second, b) = (means.get(m, (0.0, math.inf)) for m in pair.modules)
            if max(a, b) <= max(s.scatter, s.scatter_ratio * min(a, b)):
                ratio = (math.log(max(first, s.log_floor))
                         - math.log(max(second, s.log_floor)))
                dev = self._ratio(key, pair, index, ratio)
                if dev is not None:
                    found.append(dev)
        # the open bins of a module whose partner is far ahead are dropped with them
        for m, c in pair.current.items():
            if c.index <= ready:
                pair.current[m] = _Open(c.index)
        return found

    def _ratio(self, key: PairKey, pair: _Pair, index: int, ratio: float
               ) -> PairDeviation | None:
        s = self.settings
        pair.delayed.append((index, ratio, pair.fired))
        pair.recent.append((index, ratio))
        while pair.recent and pair.recent[0][0] <= index - s.smooth_bins:
            pair.recent.popleft()
        out = pair.run != 0 or pair.fired
        while pair.delayed and pair.delayed[0][0] <= index - s.delay_bins:
            _, old, drifting = pair.delayed.popleft()
            if drifting:  # judged while the pair was found drifting: never usual
                continue
            if pair.learnt < s.learn_bins:
                pair.learnt += 1
                pair.usual += (old - pair.usual) / pair.learnt
            elif not out:
                pair.usual += s.follow * (old - pair.usual)
        if pair.learnt < s.learn_bins:
            return None
        if len(pair.recent) < s.smooth_bins:
            return None  # a bin of the window was not judged: the window is short
        limit = max(s.shift, s.spread * pair.scale)
        window = [r for _, r in pair.recent]
        d = window_deviation(window, pair.usual, BIN_CLIP * limit)
        if pair.scaled < s.learn_bins:  # the pair's own spread, before judging
            pair.scaled += 1
            pair.scale += (abs(d) - pair.scale) / pair.scaled
            return None
        side = (d > 0) - (d < 0)
        if pair.fired:
            pair.out_bins += 1
            if abs(d) < limit / 2 or pair.out_bins >= s.accept_bins:
                if abs(d) >= limit / 2:  # out of line for long: the new usual ratio
                    pair.usual += window_deviation(window, pair.usual, math.inf)
                    pair.delayed.clear()
                pair.fired, pair.run, pair.since, pair.out_bins = False, 0, None, 0
            return None
        if abs(d) < limit / 3:
            pair.since = None
        elif pair.since is None or side != pair.side:
            pair.since, pair.side = index, side
        if abs(d) <= limit:
            pair.run = 0
            if abs(d) < limit / 3:  # in line: the scale follows
                pair.scale += s.follow * (abs(d) - pair.scale)
            return None
        pair.run = pair.run + side if pair.run * side > 0 else side
        if abs(pair.run) < s.persist:
            return None
        pair.fired, pair.out_bins = True, 0
        since = pair.since if pair.since is not None else index
        # how far the ratio moved: the window's mean, unclipped
        return PairDeviation(key, pair.modules[0], pair.modules[1],
                             window_deviation(window, pair.usual, math.inf),
                             int(since * s.bin_s * _NS), index - since + 1)
