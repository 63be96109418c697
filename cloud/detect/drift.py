"""Sensor drift, seen across the stations of a city.

A drifting sensor reads a growing multiple of the truth (an aging laser or optical
cell, dust on the lens). Its own series cannot show it: weather moves PM by tens of
percent within hours. The other stations of the city breathe the same weather, so
each station is compared with them:

* Readings are averaged per sensor in `bin_s` bins of event time, in logs (a gain is
  a difference of logs). A sensor's bin where one value holds more than half of the
  readings is left out, as the pair rule leaves it out: a stuck sensor, which its own
  rule reports (its constant against the others' moving air is no gain); a bin of one
  reading (a sensor read once a bin, whose one value is always all of its readings) is
  stuck when that reading repeats the last one of the sensor's bin before. So is a bin the
  sensor covered only in part (`_MIN_COVERAGE`: fewer than 90 % of the readings it
  usually has in a bin, one less allowed for where a sparse sensor's readings fall
  against the bin's edges; usually: the median of its last `_COUNT_BINS` bins; a sensor's
  first bin is taken as it comes). Its mean is the air of part of the bin, the others' of
  all of it: a sensor silent from mid-bin while the air falls would read high against
  them. It is no reference for the others either, and its partner (below) is judged as a
  module without one. A bin is
  judged once the median sensor of the city has readings `lag_bins` bins later (one node
  whose clock runs ahead does not close the bins of the others), and once the sensors
  behind in it have read past it, or the median sensor is `_HOLD_NS` (10 min) past its
  end, whichever comes first. Behind: its last reading more than 2 of its intervals
  and 1 min before the bin's end, and no air sensor of its node past that end (a node
  whose readings come in late; a sensor silent while its node reads on is not waited
  for). A sensor still behind then is judged on its own once it has read past the bin
  (a late node, a backlog caught up after an outage), against the levels the others'
  bin was judged on (`_KEPT_BINS`, a day of them, are kept): its whole bin, not the part
  it had read when the others were judged; it is then no reference for the others in
  that bin. A module waits for its partner (below) there, as on time.
* Each sensor learns its usual log ratio to each other sensor of the same field (the
  stations' local levels, the sensors' biases): a mean over its first bins, then
  a slow follow (`follow`), only while no excursion is under way, so that a drift
  does not teach it. Its deviation d in a bin is the median, over at least
  `min_others` other sensors, of its log ratio to each minus the usual one (a pair
  baseline, so the deviation does not change when a sensor leaves the reference).
  The ratios are used after `learn_bins` / 2 bins; the mean absolute d over the next
  `learn_bins` / 2 sets the sensor's scale. Nothing is judged before `learn_bins`.
* A sensor found drifting is left out of the others' references until it is back;
  within a bin the most deviant sensor is judged first.
* z = d / scale (for a module of a pair, its own part of d: below), clipped to
  +-`z_clip` (a local pollution peak of an hour or two must not look like a drift),
  feeds a two-sided CUSUM with allowance `k`; a sum above `h` is a drift. It starts
  at the bin where the sum left zero and fires on the reading that completes the
  judged bin, once per excursion (re-armed when the sum is back at zero).

A station that carries two modules of a field (`cloud/detect/pair_drift.py`) is also
judged on their ratio, which sees a drift hours before the other stations could: the
event names the pair, and names the module when the comparison with the other stations
can tell (below). Another station's modules enter a sensor's reference as one station
(their offsets averaged), and the sensor's own station's other module not at all: it
breathes the same air, so it is no other station.

For the same reason, what both modules of a station show against the other stations is
the station's air (a local pollution spike, a new source nearby), not a gain. A module
(`<id>` or `<id>-b`, the pair rule's naming) whose partner is judged in the same bin feeds
the CUSUM with its own part of d only; the scale, the usual ratios and the attribution
below still take d whole. The station's air is taken as the least that both deviations
allow, the point between them nearest zero, and a module's own part is its d less that:
of two deviations of one sign, the one nearer zero is all air and the farther module
keeps the difference; of opposite signs, each keeps its whole d. So a module is never
charged more than without its partner. A drift of one module, which its partner does
not follow, keeps the drift alone when the air moves with it, and d (as without a
partner) when the air moves against it by less than the drift (by more, the partner is
charged with the difference instead: then nothing tells which module moved, as in the
attribution below); the station's air, which both follow, charges neither; two
modules drifting alike look exactly like the station's air and are found by neither
rule (their ratio does not move). A sensor without a partner in the bin (a
single-module station, a partner silent, stuck or covering the hour in part) is judged
on d whole.

Attribution of a pair's drift: over the hours judged here since the pair's departure
began, each module's mean deviation against the other stations. Both carry the
station's own air, which moves them alike against the others; the module that did not
drift is the one whose deviation is the air's alone. A module is named when its
deviation has the pair's sign, the other's is at least 19 times likelier than its
own to be the air's alone (each normal about 0, the sd the sensors' scale over the
hours seen) and within 2 sd of 0 (an air far off for both tells nothing): a drift
of 20-30 % against an hourly air of 15 % takes some hours to be told. Otherwise (no
judged hour yet, fewer than `min_others` other stations, or no clear answer) the
event's sensor is "<first>+<second>" and its detail says the other stations cannot
tell.

Keyed by city in the dataflow: one `CityDrift` holds every air sensor of the city.
Plain Python, picklable.
"""

from __future__ import annotations

import math
import statistics
import zlib
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from cloud.detect.errors import DetectError
from cloud.detect.faults import FaultEvent, FaultType
from cloud.detect.pair_drift import PairDeviation, PairDrift, PairDriftSettings
from urbanpulse.clock import from_epoch_ns

# The field compared per kind: PM2.5 and CO2. (A gain drift is the same on pm1, pm25
# and pm10, so one of them is enough.)
DRIFT_FIELDS: dict[str, str] = {"air.pm": "pm25", "air.co2": "co2"}

SeriesKey = tuple[str, str, str]  # site, node, sensor

_NS = 1_000_000_000


_RECENT_BINS = 24  # judged deviations kept per sensor, for a pair's attribution
# A bin is judged when the sensor has at least this share of the readings it usually has
# in a bin (less one). The mean of a share c of a bin is off that of the whole bin by up
# to (1 - c) x the change of the air within it: 0.14 for a local x4 spike's end (the fault
# bench's pollution spikes), about the scale of a sensor's deviation (0.13-0.21 on the
# bench), which the CUSUM's allowance (k = 1 scale) absorbs.
_MIN_COVERAGE = 0.9
_COUNT_BINS = 24  # readings counts of a sensor's last bins, for its usual count
_KEPT_BINS = 24  # judged bins whose levels are kept, to judge a late station's bins by
# A sensor whose last reading of a bin being judged is more than this many of its reading
# intervals, and this many ns, before the bin's end has not read the rest of it yet.
_BEHIND_INTERVALS = 2
_BEHIND_NS = 60 * _NS
# How long the judgement of a bin waits for the sensors behind in it (in the stamps of the
# city's median sensor, past the bin's end); those still behind then are judged late.
_HOLD_NS = 600 * _NS
_NAME_LOG_ODDS = math.log(19)  # a module is named at odds of 19 to 1 (95 %)
# A reference station of a sensor (`DriftSettings.max_reference_stations`) none of whose
# sensors had a level in this many judged bins of the city (two days of hours: switched off,
# renamed) gives its place to a station the sensor has none of, when one is judged with it.
_REFERENCE_GONE_BINS = 48


@dataclass(frozen=True, slots=True)
class Drift:
    """A drift of the sensor `series` (the event's `sensor` is only its id). For a drift
    found between the two modules of a station, `pair` names both; `series` then ends
    with the module named, or with "<first>+<second>" when none could be."""

    series: SeriesKey
    event: FaultEvent
    pair: tuple[str, str] | None = None


@dataclass(frozen=True, slots=True)
class DriftSettings:
    bin_s: float = 3600.0
    lag_bins: int = 1
    min_others: int = 3
    learn_bins: int = 48
    follow: float = 1 / 96
    scale_floor: float = 0.02
    log_floor: float = 1.0  # values below this are taken as this (logs of ~0)
    k: float = 1.0
    h: float = 8.0
    z_clip: float = 2.5
    # The other stations a sensor keeps usual ratios to (to each of their sensors of the
    # field, and to its own station's other modules, which are no reference): the first it
    # is judged with, from a place in the city's order of its own (`_rotated`), then, in the
    # place of one gone (`_REFERENCE_GONE_BINS`), the next. Its state and its judgement then
    # grow with this, not with the city's air sensors (all of them before: 1.4 MB of state
    # and about 2,000 ratios a bin per sensor at 200 sensors, squared).
    max_reference_stations: int = 32

    def __setstate__(self, state: list[Any]) -> None:
        # Pickled before a field was added (`max_reference_stations`): the ones it lacks, the last,
        # keep their defaults.
        names = fields(self)
        for f, value in zip(names, state, strict=False):
            object.__setattr__(self, f.name, value)
        for f in names[len(state):]:
            object.__setattr__(self, f.name, f.default)

    def __post_init__(self) -> None:
        if (not self.bin_s > 0 or self.lag_bins < 0 or self.min_others < 1
                or self.max_reference_stations < self.min_others
                or self.learn_bins < 2 or not 0 < self.follow < 1
                or not self.scale_floor > 0 or not self.log_floor > 0
                or self.k < 0 or not self.h > 0 or not self.z_clip > 0):
            raise DetectError(f"invalid drift settings {self}")


@dataclass
class _Bin:
    index: int
    total: float = 0.0
    n: int = 0
    counts: Counter[float] = field(default_factory=Counter)  # readings per value
    first_ns: int | None = None  # its first and last readings' stamps
    last_ns: int | None = None
    last: float | None = None  # its last reading's value
    closed: bool = False  # its level taken (or left out): none of its readings is taken
    held: bool = False  # found behind when its judgement was due: waited for

    def __setstate__(self, state: dict[str, Any]) -> None:
        state.setdefault("counts", Counter())  # a bin pickled before the counts
        # a bin pickled before late bins were judged: its stamps unknown, and one of a
        # judged bin was closed with it (one of a later bin is closed when it ends)
        state.setdefault("first_ns", None)
        state.setdefault("last_ns", None)
        state.setdefault("last", None)
        state.setdefault("closed", True)
        state.setdefault("held", False)
        self.__dict__.update(state)

    def level(self, previous: float | None) -> float | None:
        """The mean log; None without readings or with one value in more than half of
        them (a stuck sensor). A bin of one reading (a sensor read once a bin) is stuck
        when its value is the last one of the sensor's bin before (`previous`)."""
        if not self.n:
            return None
        if self.n == 1:
            if previous is not None and self.last == previous:
                return None
        elif self.counts and 2 * max(self.counts.values()) > self.n:
            return None
        return self.total / self.n


@dataclass
class _Track:
    # usual log ratio to each other sensor, and the number of bins it was learnt from
    pairs: dict[SeriesKey, list[float]] = field(default_factory=dict)
    scale: float = 0.0
    scored: int = 0  # bins with a deviation
    up: float = 0.0
    down: float = 0.0
    since: int | None = None  # bin where the current excursion began
    fired: bool = False
    recent: deque[tuple[int, float]] = field(
        default_factory=lambda: deque(maxlen=_RECENT_BINS))  # judged bins' deviations
    counts: deque[int] = field(
        default_factory=lambda: deque(maxlen=_COUNT_BINS))  # readings of its last bins
    previous: float | None = None  # the last value of its last bin closed

    def __setstate__(self, state: dict[str, Any]) -> None:
        # a track pickled before the counts: its next bin is taken as it comes
        state.setdefault("counts", deque(maxlen=_COUNT_BINS))
        state.setdefault("previous", None)  # pickled before bins of one reading were judged
        self.__dict__.update(state)


@dataclass
class _Field:
    current: dict[SeriesKey, _Bin] = field(default_factory=dict)
    done: dict[int, dict[SeriesKey, float]] = field(default_factory=dict)
    judged: int | None = None  # the last bin judged
    tracks: dict[SeriesKey, _Track] = field(default_factory=dict)
    # the levels each of the last `_KEPT_BINS` judged bins was judged on, and of the
    # sensors judged in it late (below)
    kept: dict[int, dict[SeriesKey, float]] = field(default_factory=dict)
    # levels of late sensors' bins, complete, that wait for their judgement
    late: dict[int, dict[SeriesKey, float]] = field(default_factory=dict)
    # the bins judged on time so far, and each sensor's count of them at its last level
    # judged (to let a reference station go after `_REFERENCE_GONE_BINS` without one)
    judged_bins: int = 0
    seen: dict[SeriesKey, int] = field(default_factory=dict)

    def __setstate__(self, state: dict[str, Any]) -> None:
        state.setdefault("kept", {})  # pickled before late bins were judged
        state.setdefault("late", {})
        state.setdefault("judged_bins", 0)  # pickled before the references were capped
        state.setdefault("seen", {})
        self.__dict__.update(state)


class CityDrift:
    """Drift of every air sensor of one city, from the comparison with the others."""

    def __init__(self, settings: DriftSettings | None = None,
                 pair_settings: PairDriftSettings | None = None) -> None:
        self.settings = settings or DriftSettings()
        self._fields: dict[str, _Field] = {}
        self.pairs = PairDrift(pair_settings)

    def __setstate__(self, state: dict[str, Any]) -> None:
        # a snapshot from before the pair rule has no `pairs`
        state.setdefault("pairs", PairDrift())
        self.__dict__.update(state)

    def update(self, series: SeriesKey, kind: str, ts_ns: int, values: Mapping[str, float]
               ) -> list[Drift]:
        """One reading of `series` (site, node, sensor); the drifts it completes, of
        any sensor of the city."""
        name = DRIFT_FIELDS.get(kind)
        if name is None or name not in values:
            return []
        value = float(values[name])
        if not math.isfinite(value):
            raise DetectError(f"{'/'.join(series)}/{name}: value {value!r} is not finite")
        state = self._fields.setdefault(name, _Field())
        found = [self._pair_drift(name, state, dev, ts_ns)
                 for dev in self.pairs.update((series[0], series[1], name), series[2],
                                              ts_ns, value)]
        return found + self._cross(series, name, state, ts_ns, value)

    def _cross(self, series: SeriesKey, name: str, state: _Field, ts_ns: int, value: float
               ) -> list[Drift]:
        s = self.settings
        index = math.floor(ts_ns / (s.bin_s * _NS))
        current = state.current.get(series)
        if current is not None and current.index > index:
            return []  # stamped before its current bin (a clock set back): skipped
        if (state.judged is not None and index <= state.judged
                and not (current is not None and current.index == index and not current.closed)
                and not (index in state.kept and series not in state.kept[index]
                         and series not in state.late.get(index, ()))):
            return []  # its bin is judged already, with it: too late to count
        if current is None or current.index < index:
            if current is not None:
                self._end(state, series, current)
            current = state.current[series] = _Bin(index)
        current.total += math.log(max(value, s.log_floor))
        current.n += 1
        current.counts[value] += 1
        if current.first_ns is None:
            current.first_ns = ts_ns
        current.last_ns = ts_ns
        current.last = value
        return self._judge_late(name, state, ts_ns) + self._judge(name, state, ts_ns)

    def _end(self, state: _Field, series: SeriesKey, ended: _Bin) -> None:
        """`series` has read past its bin `ended`: its level goes to the bin's judgement,
        or, when the bin was judged while the sensor was behind, to a late judgement (as
        long as the others' levels of it are kept)."""
        if state.judged is None or ended.index > state.judged:
            if (level := self._close(state, series, ended)) is not None:
                state.done.setdefault(ended.index, {})[series] = level
        elif not ended.closed:
            level = self._close(state, series, ended)
            if level is not None and ended.index in state.kept:
                state.late.setdefault(ended.index, {})[series] = level

    def _behind(self, state: _Field, series: SeriesKey, open_bin: _Bin) -> bool:
        """Whether `series`, whose bin `open_bin` is being judged, has not read the rest of
        it yet (a node whose readings come in late): its last reading more than
        `_BEHIND_INTERVALS` of its reading intervals and `_BEHIND_NS` before the bin's
        end (or found so before: `held`, until it reads past the bin), and no air sensor
        of its node read past that end (else the node is not late: the sensor fell
        silent). Its interval: the bin's own, or, with one reading, the bin over its
        usual count of readings."""
        if open_bin.last_ns is None or open_bin.first_ns is None:
            return False  # pickled before the stamps were kept
        bin_ns = self.settings.bin_s * _NS
        end_ns = (open_bin.index + 1) * bin_ns
        if not open_bin.held:
            if open_bin.n >= 2:
                interval = (open_bin.last_ns - open_bin.first_ns) / (open_bin.n - 1)
            else:
                counts = state.tracks.get(series, _Track()).counts
                interval = bin_ns / max(1.0, statistics.median(counts)) if counts else bin_ns
            if end_ns - open_bin.last_ns <= _BEHIND_INTERVALS * interval + _BEHIND_NS:
                return False
        station = series[:2]
        return not any(k[:2] == station and c.last_ns is not None and c.last_ns >= end_ns
                       for f in self._fields.values() for k, c in f.current.items())

    @staticmethod
    def _city_ns(state: _Field, ts_ns: int) -> int:
        """Where the city's sensors are in event time: the median of their newest stamps
        (one node whose clock runs ahead does not end the wait early)."""
        stamps = [c.last_ns for c in state.current.values()
                  if c.last_ns is not None and (state.judged is None or c.index > state.judged)]
        return statistics.median_low(stamps) if stamps else ts_ns

    def _judge_late(self, name: str, state: _Field, ts_ns: int) -> list[Drift]:
        """Judge the late sensors' bins that are complete against the levels the bin was
        judged on. A module waits for its partner (the pair rule's) while the partner is
        still behind in that bin, until it has read two bins past it, so that the two are
        judged together as on time (each on its own part of the deviation)."""
        events: list[Drift] = []
        for index in sorted(state.late):
            pending = state.late[index]
            kept = state.kept.get(index)
            if kept is None:  # judged too long ago: nothing left to compare with
                del state.late[index]
                continue
            ready: dict[SeriesKey, float] = {}
            for series, level in pending.items():
                module = self.pairs.partner(series[2])
                partner = None if module is None else (series[0], series[1], module)
                waiting = (partner is not None and partner not in pending
                           and partner not in kept
                           and (other := state.current.get(partner)) is not None
                           and other.index == index and not other.closed
                           and state.current[series].index < index + 2)
                if not waiting:
                    ready[series] = level
            if not ready:
                continue
            for series in ready:
                del pending[series]
            if not pending:
                del state.late[index]
            events += self._compare(name, state, index, {**kept, **ready}, ts_ns, set(ready))
            kept.update(ready)
        return events

    def _judge(self, name: str, state: _Field, ts_ns: int) -> list[Drift]:
        if not state.done:  # (nothing to judge: most readings; no look at every sensor)
            return []
        s = self.settings
        # Where the city's sensors are: the median of their open bins, so that one node
        # whose clock jumps ahead does not close the others' bins early.
        alive = [c.index for c in state.current.values()
                 if state.judged is None or c.index > state.judged]
        progress = statistics.median_low(alive)
        events: list[Drift] = []
        for index in sorted(state.done):
            if index > progress - s.lag_bins:
                break
            # sensors that have not read the rest of the bin yet (a node whose readings
            # come in late) are waited for until they have read past it, a bounded while,
            # so that they count in it
            waiting = False
            for series, current in state.current.items():
                if current.index == index and self._behind(state, series, current):
                    current.held = waiting = True
            if waiting and self._city_ns(state, ts_ns) < (index + 1) * s.bin_s * _NS + _HOLD_NS:
                break
            means = state.done.pop(index)
            # a sensor whose bin is still open (no later reading yet) closes it now,
            # unless it has not read the rest of the bin yet: it is judged when it has
            for series, current in state.current.items():
                if (current.index == index and series not in means
                        and not self._behind(state, series, current)
                        and (level := self._close(state, series, current)) is not None):
                    means[series] = level
            state.judged = index
            events += self._compare(name, state, index, means, ts_ns)
            state.kept[index] = means
            for old in [i for i in state.kept if i <= index - _KEPT_BINS]:
                del state.kept[old]
        return events

    @staticmethod
    def _close(state: _Field, series: SeriesKey, closed: _Bin) -> float | None:
        """The level of `series`'s bin `closed`, now complete (no reading of it will be
        taken); None when it is left out: stuck, or covered in part (fewer readings than
        `_MIN_COVERAGE` of its usual count, less one)."""
        track = state.tracks.setdefault(series, _Track())
        counts = track.counts
        covered = not counts or closed.n >= _MIN_COVERAGE * statistics.median(counts) - 1
        counts.append(closed.n)
        closed.closed = True
        level = closed.level(track.previous)
        track.previous = closed.last
        return level if covered else None

    def _compare(self, name: str, state: _Field, index: int, means: dict[SeriesKey, float],
                 ts_ns: int, only: set[SeriesKey] | None = None) -> list[Drift]:
        """Judge bin `index` of the sensors of `means` (of those in `only`, the others
        being judged already: late sensors), on their levels `means`."""
        s = self.settings
        tracks = state.tracks
        for series in means:
            self._trim(tracks.setdefault(series, _Track()), series)
        if only is None:
            state.judged_bins += 1
        count, seen = state.judged_bins, state.seen
        for series in means if only is None else only:
            seen[series] = count
        # A sensor found drifting is no reference for the others while it drifts; the
        # most deviant sensor is judged first, so that it is the one found.
        drifting = {k for k in means if tracks[k].fired}
        judging = means if only is None else only
        deviations = {k: self._deviation(tracks[k], k, means, drifting) for k in judging}
        events: list[Drift] = []
        for series in sorted(judging, key=lambda k: -abs(deviations[k] or 0.0)):
            track = tracks[series]
            offsets = self._offsets(track, series, means, drifting)
            d = self._median(offsets)
            quiet = track.up == 0 and track.down == 0
            if quiet:  # the usual ratios follow slowly, never during an excursion
                self._learn(track, series, means, state)
            if d is None:
                continue
            if not hasattr(track, "recent"):  # a track pickled before the pair rule
                track.recent = deque(maxlen=_RECENT_BINS)
            track.recent.append((index, d))
            if track.scored < s.learn_bins // 2:
                track.scored += 1
                track.scale += (abs(d) * math.sqrt(math.pi / 2) - track.scale) / track.scored
                continue
            scale = max(s.scale_floor, track.scale)
            own, partner = self._own(series, d, tracks, means, drifting)
            z = max(-s.z_clip, min(s.z_clip, own / scale))
            track.up = max(0.0, track.up + z - s.k)
            track.down = max(0.0, track.down - z - s.k)
            if track.up == 0 and track.down == 0:
                track.since = None
                track.fired = False
                track.scale += s.follow * (abs(d) * math.sqrt(math.pi / 2) - track.scale)
                continue
            if track.since is None:
                track.since = index
            if not track.fired and max(track.up, track.down) > s.h:
                track.fired = True
                drifting.add(series)
                start = from_epoch_ns(int(track.since * s.bin_s * _NS))
                shared = ("" if partner is None else
                          f", {math.exp(own) * 100 - 100:+.0f} % not shared by {partner}")
                events.append(Drift(series, FaultEvent(
                    series[2], name, FaultType.DRIFT, start, from_epoch_ns(ts_ns),
                    math.exp(means[series]),
                    f"{math.exp(d) * 100 - 100:+.0f} % against its usual ratio to the "
                    f"other stations (median over {len(offsets)}){shared}")))
        return events

    def _own(self, series: SeriesKey, d: float, tracks: dict[SeriesKey, _Track],
             means: dict[SeriesKey, float], drifting: set[SeriesKey]
             ) -> tuple[float, str | None]:
        """The part of the deviation `d` of `series` that its station's other module (the
        pair rule's partner, judged this bin) does not show too, and that module's id; `d`
        itself, and None, for a sensor without one.

        Both modules breathe the station's air, which moves both alike against the other
        stations; a module's gain moves that module alone. The air is taken as the least
        that both deviations allow: the point between them nearest zero. Of one sign, that
        is the one nearer zero: it is all air (nothing of its own), and the farther module
        keeps the difference, the pair's own departure. Of opposite signs, zero: each
        keeps its whole deviation, as without a partner. So |own| <= |d|, of d's sign: a
        partner only ever takes from what a module is charged with."""
        module = self.pairs.partner(series[2])
        if module is None or (partner := (series[0], series[1], module)) not in means:
            return d, None
        other = self._deviation(tracks[partner], partner, means, drifting)
        if other is None:
            return d, None
        if d * other <= 0:
            return d, module
        return d - min(d, other, key=abs), module

    def _deviation(self, track: _Track, series: SeriesKey, means: dict[SeriesKey, float],
                   drifting: set[SeriesKey]) -> float | None:
        """The median, over the other stations, of this sensor's log ratio to each minus
        its usual one; None without enough learnt ratios."""
        return self._median(self._offsets(track, series, means, drifting))

    def _median(self, offsets: list[float]) -> float | None:
        return statistics.median(offsets) if len(offsets) >= self.settings.min_others else None

    def _offsets(self, track: _Track, series: SeriesKey, means: dict[SeriesKey, float],
                 drifting: set[SeriesKey]) -> list[float]:
        """This sensor's log ratio to each other station it has a learnt usual ratio to
        (a station's modules averaged; its own station and sensors found drifting left
        out), minus that usual ratio: one per station."""
        learnt = self.settings.learn_bins // 2
        mine = means[series]
        stations: dict[tuple[str, str], list[float]] = {}
        for other, pair in track.pairs.items():
            if (pair[1] >= learnt and other[:2] != series[:2] and other not in drifting
                    and (value := means.get(other)) is not None):
                stations.setdefault(other[:2], []).append(mine - value - pair[0])
        # (fsum: a station's modules in any order give the same mean)
        return [math.fsum(v) / len(v) for v in stations.values()]

    def _pair_drift(self, name: str, state: _Field, dev: PairDeviation, ts_ns: int
                    ) -> Drift:
        site, node, _ = dev.key
        since = math.floor(dev.start_ns / (self.settings.bin_s * _NS))
        seen: dict[str, float] = {}
        hours: list[int] = []
        scales: list[float] = []
        for module in (dev.first, dev.second):
            track = state.tracks.get((site, node, module))
            ds = [d for i, d in getattr(track, "recent", ()) if i >= since]
            if track is not None and ds:
                seen[module] = sum(ds) / len(ds)
                hours.append(len(ds))
                scales.append(max(self.settings.scale_floor, track.scale))
        named = None
        if len(seen) == 2:
            # Both modules breathe the station's own air, which moves both against the
            # other stations: a = air + drift of the first, b = air - drift of the
            # second. The module that did not move is the one whose deviation is
            # the air's alone, so which one is judged by how likely each deviation is
            # as the air's (normal, sd the tracks' scale over the hours seen).
            a, b = seen[dev.first], seen[dev.second]
            sd2 = (scales[0] ** 2 + scales[1] ** 2) / 2 / min(hours)
            odds = (a * a - b * b) / (2 * sd2)  # log odds: the first moved, not the second
            # and the module kept must itself look like the air alone (within 2 sd):
            # when the air is far off for both, the farther module only follows signs
            sign = 1.0 if dev.ratio > 0 else -1.0
            if a * sign > 0 and odds >= _NAME_LOG_ODDS and b * b <= 4 * sd2:
                named = dev.first
            elif b * sign < 0 and -odds >= _NAME_LOG_ODDS and a * a <= 4 * sd2:
                named = dev.second
        label = named or f"{dev.first}+{dev.second}"
        if seen:
            against = ", ".join(f"{m} {math.exp(d) * 100 - 100:+.0f} %" for m, d in seen.items())
            why = f"against the other stations since then: {against}"
        else:
            why = "no hour judged against the other stations since then"
        detail = (f"{dev.first}/{dev.second} ratio {math.exp(dev.ratio) * 100 - 100:+.0f} % "
                  f"against its usual over {dev.bins} bins; "
                  + (f"{named} drifts ({why})" if named
                     else f"the other stations cannot tell which module drifts ({why})"))
        event = FaultEvent(label, name, FaultType.DRIFT, from_epoch_ns(dev.start_ns),
                           from_epoch_ns(ts_ns), None, detail)
        return Drift((site, node, label), event, (dev.first, dev.second))

    def _learn(self, track: _Track, series: SeriesKey, means: dict[SeriesKey, float],
               state: _Field) -> None:
        """The usual ratios follow this bin's levels: of each sensor of its reference stations
        and of its own station, and, while it has fewer than `max_reference_stations`, of the
        stations judged with it next (`_rotated`). With as many, a station judged with it in
        the place of one gone (`_REFERENCE_GONE_BINS`), only when there is such a newcomer
        (a track learnt with more keeps the first: `_trim`)."""
        mine = means[series]
        pairs = track.pairs
        own = series[:2]
        cap = self.settings.max_reference_stations
        stations = _stations(pairs, own)
        if len(stations) >= cap and not self._replace_gone(pairs, series, means, state, stations):
            for other, held in pairs.items():  # (no look at the city's other sensors)
                value = means.get(other)
                if value is not None:
                    _follow(held, mine - value, self.settings.follow)
            return
        for other, value in _rotated(means, series):
            if other == series:
                continue
            pair = pairs.get(other)
            if pair is None:
                station = other[:2]
                if station != own and station not in stations:
                    if len(stations) >= cap:
                        continue
                    stations[station] = None
                pair = pairs[other] = [0.0, 0.0]
            _follow(pair, mine - value, self.settings.follow)

    def _trim(self, track: _Track, series: SeriesKey) -> None:
        """A track learnt with more reference stations than kept (before the cap, or with a
        larger one) keeps its first."""
        pairs, cap = track.pairs, self.settings.max_reference_stations
        if len(pairs) <= cap:  # (fewer sensors, so fewer stations)
            return
        own = series[:2]
        stations = list(_stations(pairs, own))
        if len(stations) > cap:
            kept = set(stations[:cap])
            for other in [o for o in pairs if o[:2] != own and o[:2] not in kept]:
                del pairs[other]

    @staticmethod
    def _replace_gone(pairs: dict[SeriesKey, list[float]], series: SeriesKey,
                      means: dict[SeriesKey, float], state: _Field,
                      stations: dict[tuple[str, str], None]) -> bool:
        """With as many reference stations as kept: those with no sensor judged in the last
        `_REFERENCE_GONE_BINS` bins let go, as many as stations judged now the sensor has
        none of (the longest gone first); whether any was (the caller then takes the new)."""
        count, seen = state.judged_bins, state.seen
        last: dict[tuple[str, str], int] = {}
        for other in pairs:
            if other[:2] in stations:
                at = seen.setdefault(other, count)
                last[other[:2]] = max(last.get(other[:2], at), at)
        gone = sorted((at, station) for station, at in last.items()
                      if count - at >= _REFERENCE_GONE_BINS)
        if not gone:
            return False
        own = series[:2]
        new = {o[:2] for o in means if o[:2] != own and o[:2] not in stations}
        if not new:
            return False
        let_go = {station for _, station in gone[:len(new)]}
        for other in [o for o in pairs if o[:2] in let_go]:
            del pairs[other]
        for station in let_go:
            del stations[station]
        return True


def _stations(pairs: Mapping[SeriesKey, object], own: tuple[str, str]) -> dict[tuple[str, str], None]:
    """The other stations a track's ratios reach (not `own`), in the order first learnt."""
    return dict.fromkeys(o[:2] for o in pairs if o[:2] != own)


def _follow(pair: list[float], ratio: float, follow: float) -> None:
    """A usual log ratio [mean, bins] after one more bin's `ratio`: a mean while learning,
    then a slow follow."""
    pair[1] += 1
    weight = max(follow, 1 / pair[1])
    pair[0] += weight * (ratio - pair[0])


def _rotated(means: dict[SeriesKey, float], series: SeriesKey) -> list[tuple[SeriesKey, float]]:
    """The levels of a bin in the city's order, from a place of `series`' own (a stable hash):
    the sensors of a large city take different first stations as their references, not all
    the same few (whose going together would leave the city unjudged)."""
    items = list(means.items())
    k = zlib.crc32("/".join(series).encode()) % len(items)
    return items[k:] + items[:k]
