"""Air quality per station (the node), per event-time hour, into agg_1h.

Fields: the hour's means of PM2.5, PM10 (all `air.pm` sensors of the node) and CO2 (all
`air.co2` sensors), their reading counts, the NowCast of PM2.5 and PM10 over the 12
hours ending with this one, and the hourly index by both methods with its category
(see `cloud.logic.domain.aqi` for the method and sources). The NowCast takes an hour's PM
mean only if the hour is valid (`aqi.HourCover`: its readings cover 45 min of it); the
means of every hour are written. The NowCast of an hour depends on the 11 before it, so a
late reading re-emits its own hour and the 11 after it (and may make its hour valid).

Values are kept per hour keyed by (sensor, ts) and summed with math.fsum (exactly
rounded), so late or shuffled input gives the in-order result. A message costs about the
same however many values its hour holds: the hour it enters keeps the exact partial sums
of its values (those math.fsum keeps), whose math.fsum is that of the values, and the
NowCast keeps the 11 hours before an emitted hour until a reading enters one of them
(`aqi.NowCastTail`), and an hour's PM stamps keep the time they cover (`aqi.HourCover`)
until it is valid; none is pickled (a snapshot holds what it held before).
"""

from __future__ import annotations

import heapq
import math
import pickle
from array import array
from collections.abc import Iterable
from typing import TYPE_CHECKING

from cloud.frozen_store import LOST_ROW, FrozenRefs
from cloud.logic.domain import aqi
from cloud.logic.domain.common import HOUR_NS, RP_1H, Horizon, Point, skipped, window_start
from cloud.logic.lines import line
from cloud.logic.rollup import add_to_partials
from urbanpulse.wire import Reading

if TYPE_CHECKING:
    from cloud.frozen_store import FrozenStore

FIELDS_OF_KIND = {"air.pm": ("pm25", "pm10"), "air.co2": ("co2",)}
FIELDS = ("pm25", "pm10", "co2")
POLLUTANTS = ("pm25", "pm10")  # of the index: an hour's mean of these counts if it is valid
NOWCAST_HOURS = 12


_MISSING: list[float] = []  # no partials kept (`AirRollup._sums`)
_NO_COVER = aqi.HourCover()  # no cover kept (`AirRollup._covers`); never added to
_SAFE = 1e300  # values summed into partials: no partial sum can overflow
# An hour ended this long before the newest stamp is closed (`AirRollup._freeze`): a reading
# later than that opens it again. A station's sensors report within a message's delay.
FREEZE_AFTER_NS = 60 * 10**9

Values = dict[str, dict[tuple[str, int], float]]  # an hour's: field -> (sensor, ts) -> value
# a closed hour held: the pickled bytes of its `Values` (with a frozen store, the id of the
# row holding them: cloud/frozen_store.py), and field -> (mean, n, valid) of its fields
# holding values (`AirRollup.mean`, `AirRollup.valid`)
Frozen = tuple[bytes | int, dict[str, tuple[float, int, bool]]]


def _partials(values: Iterable[float]) -> list[float] | None:
    """The partials of `values`, or None if one is not safely summed so (inf, nan, huge)."""
    partials: list[float] = []
    for x in values:
        if not -_SAFE < x < _SAFE:
            return None
        add_to_partials(partials, x)
    return partials


def _thaw(state: bytes) -> Values:
    values: Values = pickle.loads(state)
    return values


class AirRollup(FrozenRefs, Horizon):
    """The hourly means of one station. Picklable.

    Kept between messages, not pickled (a resumed rollup makes them again): the exact
    partial sums of the values of an hour a reading entered (`_sums`, so that its mean is
    math.fsum of a few partials, not of all its values), the means of the hours (`_means`,
    until a reading enters the hour), the NowCast's 11 hours before each emitted hour
    (`_tails`, until a reading enters one of them), and the time an open hour's PM readings
    cover (`_covers`, until it is valid).

    `closed` keeps what the NowCast takes of an hour let go: its PM means only if the hour
    was valid (a previous release's snapshot holds them all: counted valid).

    An hour of `open` ended `FREEZE_AFTER_NS` before the newest stamp is held compact
    (`Frozen`: the pickled bytes of its values, memory about their pickled size, a snapshot
    copies the bytes; and its fields' means and validity, which the NowCast of the hours
    after it reads), until a late reading opens it again. With a frozen store (`use_store`)
    the bytes are written once to a row of the store and the hour holds the row's id, as a
    sensor's frozen windows do (`cloud.logic.rollup.SensorRollup`); the ids of rows let go
    (an hour opened again, or past the horizon) go to `gone`. A row missing from the store
    makes its hour lost (`lost_hours`): its late readings are too late, and their hour is
    rebuilt from the raw points (`DomainNode`)."""

    def __init__(self, horizon_ns: int) -> None:
        self.horizon_ns = horizon_ns
        self.newest_ns = 0
        self.too_late = 0
        self.open: dict[int, Values | Frozen] = {}
        self.closed: dict[int, dict[str, tuple[float, int]]] = {}  # hour -> field -> (mean, n)
        self._caches()
        self.store: FrozenStore | None = None  # not pickled: `use_store`
        self.gone: array[int] | None = None

    def use_store(self, store: FrozenStore | None, gone: array[int] | None) -> None:
        """`FrozenRefs.use_store`; the hours closed without a store (held as bytes: a run
        without recovery) written into it, their rows' ids held instead."""
        super().use_store(store, gone)
        for hour, held in self.open.items():
            if isinstance(held, tuple) and type(held[0]) is bytes:
                self.open[hour] = (self.frozen_state(held[0]), held[1])

    def lost_hours(self) -> set[int]:
        """The hours held whose row was not found in the store (their readings are too late)."""
        return {h for h, held in self.open.items() if isinstance(held, tuple) and held[0] == LOST_ROW}

    def _caches(self) -> None:
        # the open hours not `Frozen`, a heap (`_freeze`); a previous release's snapshot holds
        # them all so: closed at the end of the next message
        self._warm = sorted(h for h, fields in self.open.items() if not isinstance(fields, tuple))
        # (hour, field) -> `mean`, kept until a reading enters the hour or it is let go: a
        # message re-emits its hour, whose NowCast reads the 11 before
        self._means: dict[tuple[int, str], tuple[float, int] | None] = {}
        # (open hour, field) -> the partials of its values (`add_to_partials`), None to take math.fsum
        # of the values (one not safely summed in partials); made at the first reading of
        # the hour the rollup takes, kept up to date by those after it
        self._sums: dict[tuple[int, str], list[float] | None] = {}
        # open hour -> pollutant -> the means of the 11 hours before it
        self._tails: dict[int, dict[str, aqi.NowCastTail]] = {}
        # (open hour, pollutant) -> the time its readings cover, None once it is valid (it
        # stays so: readings are only added); made at the first reading of the hour the
        # rollup takes, or when the NowCast asks
        self._covers: dict[tuple[int, str], aqi.HourCover | None] = {}

    def __getstate__(self) -> dict[str, object]:
        state = self.__dict__.copy()
        for cache in ("_means", "_sums", "_tails", "_covers", "_warm", "store", "gone"):
            state.pop(cache, None)
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)  # a previous release's snapshot pickled the same fields
        self._caches()
        self.store = None
        self.gone = None

    def process(self, site: str, node: str, readings: Iterable[Reading]) -> list[Point]:
        touched: set[int] = set()
        changed: set[tuple[int, str]] = set()  # (hour, field) whose values changed
        kept = self.kept_ns
        sums = self._sums
        covers = self._covers
        for r in readings:
            names = FIELDS_OF_KIND.get(r.kind)
            if names is None or skipped(r):
                continue
            if r.ts_ns < self.newest_ns - self.horizon_ns or r.ts_ns < kept:  # before floor_ns()
                self.too_late += 1
                continue
            self.newest_ns = max(self.newest_ns, r.ts_ns)
            hour = window_start(r.ts_ns, HOUR_NS)
            held = self.open.get(hour)
            if held is None:
                fields = self.open[hour] = {}
                heapq.heappush(self._warm, hour)
            elif isinstance(held, tuple):  # closed: a late reading
                thawed = self._thawed(hour, held)
                if thawed is None:  # its row is gone: rebuilt from the raw points
                    self.too_late += 1
                    continue
                fields = self.open[hour] = thawed
                heapq.heappush(self._warm, hour)
            else:
                fields = held
            for name in names:
                if name in r.values:
                    value = float(r.values[name])
                    values = fields.setdefault(name, {})
                    key = (r.sensor, r.ts_ns)
                    old = values.get(key)
                    values[key] = value
                    sk = (hour, name)
                    changed.add(sk)
                    partials = sums.get(sk, _MISSING)
                    if partials is _MISSING:
                        sums[sk] = _partials(values.values())
                    elif partials is None:
                        if old is not None and not -_SAFE < old < _SAFE:  # perhaps safe now
                            sums[sk] = _partials(values.values())
                    elif not -_SAFE < value < _SAFE:
                        sums[sk] = None
                    elif old is None:
                        add_to_partials(partials, value)
                    elif old != value:  # the same (sensor, ts) again: it overwrites itself
                        add_to_partials(partials, value)
                        add_to_partials(partials, -old)
                    if name != "co2":  # a pollutant of the index: the time its hour covers
                        cover = covers.get(sk, _NO_COVER)
                        if cover is _NO_COVER:
                            cover = covers[sk] = aqi.HourCover(ts for _, ts in values)
                        elif cover is not None:
                            cover.add(r.ts_ns)
                        if cover is not None and cover.valid:
                            covers[sk] = None
            touched.add(hour)
        means = self._means
        for sk in changed:
            means.pop(sk, None)
        tails = self._tails
        if tails and changed:
            span = (NOWCAST_HOURS - 1) * HOUR_NS
            for t in {h for h, _ in changed}:
                for h in [h for h in tails if t < h <= t + span]:
                    del tails[h]
        emit = {h + k * HOUR_NS for h in touched for k in range(NOWCAST_HOURS)} & self.open.keys()
        out = [(RP_1H, line("air_quality", {"site": site, "node": node}, self._fields(h, means), h))
               for h in sorted(emit)]
        self._evict()
        self._freeze(touched)
        return out

    def held_open(self) -> dict[int, Values]:
        """`open` as the rollup held it before closed hours were kept compact (for tests;
        a lost hour as empty)."""
        out: dict[int, Values] = {}
        for h, held in self.open.items():
            if not isinstance(held, tuple):
                out[h] = held
                continue
            state = self.fetch(held[0])
            out[h] = {} if state is None else _thaw(state)
        return out

    def _thawed(self, hour: int, held: Frozen) -> Values | None:
        """A closed hour's values, opened again by a late reading (its row let go); None if
        its row is not in the store: the hour is then held lost."""
        state = self.opened(held[0], f"air hour at {hour}")
        if state is None:
            self.open[hour] = (LOST_ROW, held[1])
            return None
        return _thaw(state)

    def _freeze(self, touched: set[int]) -> None:
        """Holds the hours ended `FREEZE_AFTER_NS` before the newest stamp as `Frozen`, but
        those this message wrote (late readings: a backlog goes on into them), and lets
        their partial sums and covers go. Pops the heap of open hours: no pass over every
        hour per message."""
        warm, limit = self._warm, self.newest_ns - HOUR_NS - FREEZE_AFTER_NS
        kept: list[int] = []
        while warm and warm[0] <= limit:
            hour = heapq.heappop(warm)
            fields = self.open.get(hour)
            if fields is None or isinstance(fields, tuple):  # let go, or closed already
                continue
            if hour in touched:
                kept.append(hour)
                continue
            summary: dict[str, tuple[float, int, bool]] = {}
            for name, values in fields.items():
                m = self.mean(hour, name)
                if values and m is not None:
                    summary[name] = (m[0], m[1], name == "co2" or self.valid(hour, name))
            self.open[hour] = (self.frozen_state(pickle.dumps(fields, protocol=pickle.HIGHEST_PROTOCOL)),
                               summary)
            for name in FIELDS:
                self._sums.pop((hour, name), None)
                self._covers.pop((hour, name), None)
        for hour in kept:
            heapq.heappush(warm, hour)

    def mean(self, hour: int, name: str) -> tuple[float, int] | None:
        held = self.open.get(hour)
        if isinstance(held, tuple):
            kept = held[1].get(name)
            if kept is not None:
                return kept[0], kept[1]
            return self.closed.get(hour, {}).get(name)
        values = (held or {}).get(name)
        if values:
            partials = self._sums.get((hour, name))
            if partials:
                total = math.fsum(partials)
                if total != 0:  # (a zero's sign is that of fsum of the values)
                    return total / len(values), len(values)
            return math.fsum(values.values()) / len(values), len(values)
        return self.closed.get(hour, {}).get(name)

    def valid(self, hour: int, name: str) -> bool:
        """Whether the hour's mean of pollutant `name` counts in the NowCast: an open hour's
        readings cover 45 min of it (`aqi.HourCover`); a closed hour's mean is kept only so."""
        held = self.open.get(hour)
        if isinstance(held, tuple):
            kept = held[1].get(name)
            return kept[2] if kept is not None else name in self.closed.get(hour, {})
        values = (held or {}).get(name)
        if not values:
            return name in self.closed.get(hour, {})
        cover = self._covers.get((hour, name), _NO_COVER)
        if cover is _NO_COVER:
            cover = aqi.HourCover(ts for _, ts in values)
            cover = self._covers[(hour, name)] = None if cover.valid else cover
        return cover is None

    def _mean(self, hour: int, name: str, means: dict[tuple[int, str], tuple[float, int] | None]
              ) -> tuple[float, int] | None:
        """`mean`, remembered in `means`: the emitted hours share their NowCast hours."""
        key = (hour, name)
        if key in means:
            return means[key]
        m = means[key] = self.mean(hour, name)
        return m

    def _tail(self, hour: int, name: str,
              means: dict[tuple[int, str], tuple[float, int] | None]) -> aqi.NowCastTail:
        """The means of the 11 hours before `hour`, newest first, kept in `_tails`."""
        tails = self._tails.setdefault(hour, {})
        tail = tails.get(name)
        if tail is None:
            hours: list[float | None] = []
            for k in range(1, NOWCAST_HOURS):
                m = self._mean(hour - k * HOUR_NS, name, means)
                hours.append(None if m is None or not self.valid(hour - k * HOUR_NS, name)
                             else m[0])
            tail = tails[name] = aqi.NowCastTail(hours)
        return tail

    def _fields(self, hour: int, means: dict[tuple[int, str], tuple[float, int] | None]
                ) -> dict[str, float | int | str | bool]:
        fields: dict[str, float | int | str | bool] = {}
        now: dict[str, float | None] = {}
        for name in FIELDS:
            m = self._mean(hour, name, means)
            if m is not None:
                fields[f"{name}_mean"], fields[f"{name}_n"] = m
            if name != "co2":
                now[name] = None if m is None or not self.valid(hour, name) else m[0]
        epa: list[int | None] = []
        vn: list[int | None] = []
        pollutant: aqi.Pollutant
        for pollutant in ("pm25", "pm10"):
            epa_now, vn_now = self._tail(hour, pollutant, means).nowcasts(now[pollutant])
            if epa_now is not None:
                fields[f"{pollutant}_nowcast"] = epa_now
            epa.append(aqi.epa_aqi(pollutant, epa_now))
            vn.append(aqi.vn_subindex(pollutant, vn_now))
        for method, subs, category in (("epa", epa, aqi.epa_category), ("vn", vn, aqi.vn_category)):
            index = aqi.overall(subs)
            if index is not None:
                fields[f"aqi_{method}"] = index
                fields[f"category_{method}"] = category(index) or ""
        return fields

    def _evict(self) -> None:
        floor = self.newest_ns - self.horizon_ns - HOUR_NS
        for hour in [h for h in self.open if h < floor]:
            held = self.open[hour]
            if isinstance(held, tuple):
                self.let_go(held[0])
            self.closed[hour] = {name: m for name in (held[1] if isinstance(held, tuple) else held)
                                 if (m := self.mean(hour, name)) is not None
                                 and (name not in POLLUTANTS or self.valid(hour, name))}
            del self.open[hour]
            for name in FIELDS:
                self._sums.pop((hour, name), None)
                self._covers.pop((hour, name), None)
            self._tails.pop(hour, None)  # no longer emitted
        keep_from = floor - NOWCAST_HOURS * HOUR_NS
        for hour in [h for h in self.closed if h < keep_from]:
            del self.closed[hour]
        if len(self._means) > 4 * NOWCAST_HOURS * len(FIELDS):
            self._means = {k: m for k, m in self._means.items() if k[0] >= keep_from}
