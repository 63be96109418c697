"""Traffic per lane (a `traffic.loop` sensor) and per intersection (the node).

Per event-time window (1 minute into agg_1m, 1 hour into agg_1h), from the loop readings
of the window: a reading covers the `interval_s` before its `ts` and is stamped at the end
of it, so it counts in the window of ts - 1 ns (`cloud.logic.rollup.window_ts`; the minute
[12:00, 12:01) stamped 12:01:00 is in the 12:00 window):
- vehicles: the sum of `count`;
- flow_vpm: vehicles per minute of covered time, 60 * sum(count) / sum(interval_s), so a
  missing reading does not read as an empty road (an intersection's flow is the sum of
  its lanes' flows);
- occupancy_pct: time-weighted, sum(occupancy_pct * interval_s) / sum(interval_s) over
  the readings that carry it (for the intersection over all its lanes' readings, i.e. the
  mean lane occupancy); absent when none does (pulse-output loop cards send no on-time);
- speed_kmh: vehicle-weighted, sum(speed_kmh * w) / sum(w) over readings that carry a
  speed with w > 0, w being the reading's `speed_count` (the vehicles its speed is the mean
  of) or, when it carries none (agents before session 16), its `count`; absent when there
  is none. A loop pair measures a vehicle's speed when it reaches the downstream loop, often
  in the reading after the one that counted it (a crawl takes seconds between the loops):
  weighted by count, such a speed in a reading that counted no vehicle was lost;
- speed_lanes (the intersection only): how many of its lanes have a speed_kmh in the window.

Readings are kept per window keyed by (sensor, ts) and summed with math.fsum, which is
exactly rounded, so the result does not depend on arrival order: a late reading and the
recomputation it triggers give the same point as in-order processing. A message costs about
the same however many readings its windows hold: each lane of a window, and the window over
all its lanes, keeps the exact sums of its samples' terms (a float total and the exact partials
of what its roundings lost, whose math.fsum is that of the terms) once it holds
`KEEP_SUMS_FROM` samples, and each lane its line's fields until a reading enters it
(`_Cache`); neither is pickled (a snapshot holds what it held before, and a resumed rollup
makes them again).
"""

from __future__ import annotations

import heapq
import math
import pickle
from array import array
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from cloud.frozen_store import LOST_ROW, FrozenRefs
from cloud.logic.domain.common import HOUR_NS, MINUTE_NS, NOT_MEASURING, WIDTHS, Horizon, Point
from cloud.logic.lines import float_text, float_texts, series_head
from cloud.logic.rollup import add_to_partials
from urbanpulse.wire import Reading

if TYPE_CHECKING:
    from cloud.frozen_store import FrozenStore

KIND = "traffic.loop"

# count, occupancy_pct * interval_s (or None), interval_s, speed_kmh * w (or None), where w,
# the speed's weight, is count; or, for a reading whose `speed_count` is not its count, count,
# occupancy_pct * interval_s (or None), interval_s, speed_kmh * speed_count, speed_count (the
# readings without it keep the pickled layout of the releases before)
Sample = tuple[float, float | None, float, float | None] \
    | tuple[float, float | None, float, float | None, float]


def _weight(sample: Sample) -> float:
    """The weight of a sample's speed: its speed_count, else its count."""
    return sample[4] if len(sample) == 5 else sample[0]


def sample_of(values: Mapping[str, float]) -> Sample:
    """A reading's sample (`Sample`)."""
    count, interval = float(values["count"]), float(values["interval_s"])
    speed, occupancy = values.get("speed_kmh"), values.get("occupancy_pct")
    occupied = None if occupancy is None else float(occupancy) * interval
    if speed is None:
        return (count, occupied, interval, None)
    weight = values.get("speed_count")
    if weight is None or float(weight) == count:
        return (count, occupied, interval, float(speed) * count)
    weight = float(weight)
    return (count, occupied, interval, float(speed) * weight, weight)


def _sums(samples: Iterable[Sample]) -> dict[str, float]:
    items = list(samples)
    vehicles = math.fsum(s[0] for s in items)
    covered = math.fsum(s[2] for s in items)
    out = {"vehicles": vehicles, "interval_s": covered, "flow_vpm": 60.0 * vehicles / covered}
    occupied = [s for s in items if s[1] is not None]
    if occupied:
        out["occupancy_pct"] = (math.fsum(s[1] for s in occupied if s[1] is not None)
                                / math.fsum(s[2] for s in occupied))
    counted = [s for s in items if s[3] is not None and _weight(s) > 0]
    if counted:
        out["speed_kmh"] = (math.fsum(s[3] for s in counted if s[3] is not None)
                            / math.fsum(_weight(s) for s in counted))
    return out


def _sums_text(items: list[Sample], flow: float | None = None) -> tuple[str, float]:
    """`line`'s fields of `_sums(items)`, and its flow; with `flow` given (an intersection's:
    the sum of its lanes' flows) that flow is written instead. A single sample's sums are
    its own values: fsum([x]) is x + 0.0 (which turns -0.0 into 0.0, as fsum does)."""
    occupancy: float | None
    if len(items) == 1:
        count, occupied, covered, speed = items[0][:4]
        weight = _weight(items[0])
        vehicles, covered = count + 0.0, covered + 0.0
        occupancy = None if occupied is None else (occupied + 0.0) / covered
        speed_sums = None if speed is None or not weight > 0 else (speed + 0.0, weight + 0.0)
    else:
        vehicles = math.fsum([s[0] for s in items])
        covered = math.fsum([s[2] for s in items])
        with_occupancy = [s for s in items if s[1] is not None]
        occupancy = None if not with_occupancy else (
            math.fsum([s[1] for s in with_occupancy if s[1] is not None])
            / (covered if len(with_occupancy) == len(items)
               else math.fsum([s[2] for s in with_occupancy])))
        counted = [s for s in items if s[3] is not None and _weight(s) > 0]
        speed_sums = (math.fsum([s[3] for s in counted if s[3] is not None]),
                      math.fsum([_weight(s) for s in counted])) if counted else None
    return _text(vehicles, covered, occupancy, speed_sums, flow)


def _text(vehicles: float, covered: float, occupancy: float | None,
          speed_sums: tuple[float, float] | None, flow: float | None) -> tuple[str, float]:
    """`_sums_text` of the sums."""
    lane_flow = 60.0 * vehicles / covered
    written_flow = lane_flow if flow is None else flow
    texts = float_texts()  # each float's repr, cached: a lane's values repeat
    text = (f"vehicles={texts.get(vehicles) or float_text(vehicles)},"
            f"interval_s={texts.get(covered) or float_text(covered)},"
            f"flow_vpm={texts.get(written_flow) or float_text(written_flow)}")
    if occupancy is not None:
        text += f",occupancy_pct={texts.get(occupancy) or float_text(occupancy)}"
    if speed_sums is not None:
        speed = speed_sums[0] / speed_sums[1]
        text += f",speed_kmh={texts.get(speed) or float_text(speed)}"
    return text, lane_flow


_SPEED_FIELD = ",speed_kmh="  # in a lane's fields (`_text`) when it has a speed
_SAFE = 1e300  # terms summed exactly (`_Sums`): no sum of them can overflow
# samples from which a lane, or a window over all its lanes, keeps its sums (`_Sums`); fewer
# are summed at each message as they are (the samples of a minute, most often)
KEEP_SUMS_FROM = 8
# a sample's terms, by sum: count, interval_s (of all); occupancy_pct * interval_s and
# interval_s (of those carrying it); speed_kmh * w and w (of those carrying it with a weight
# w > 0: `_weight`)
_VEHICLES, _COVERED, _OCCUPIED, _OCCUPIED_COVERED, _SPEED, _COUNTED = range(6)


def _summable(sample: Sample) -> bool:
    """Whether `_Sums` sums a sample's terms exactly: none infinite, nan, huge or -0.0."""
    for x in sample:
        if x is not None and (not -_SAFE < x < _SAFE or (x == 0 and math.copysign(1.0, x) < 0)):
            return False
    return True


class _Sums:
    """`_sums_text`'s sums of some samples (a lane's of a window, or a window's over all its
    lanes), kept exact: each sum is a running float total and what its roundings lost (TwoSum,
    error-free), the lost parts kept as exact partials (`add_to_partials`), so that math.fsum
    of a total and its lost parts is math.fsum of the terms. `exact` is False once a term was
    not safely summed so (infinite, nan, huge) or was a -0.0 (whose zero sum fsum may sign
    otherwise): the fields are then summed from the samples (`text`)."""

    __slots__ = ("exact", "lost", "n", "n_counted", "n_occupied", "totals")

    def __init__(self, samples: Iterable[Sample]) -> None:
        self.n = self.n_occupied = self.n_counted = 0
        self.totals = [0.0] * 6
        self.lost: list[list[float]] | None = None  # by sum, once a rounding lost something
        self.exact = True
        for sample in samples:
            self.put(sample, _summable(sample))

    def add(self, sample: Sample, sign: float) -> None:
        """Adds a sample (sign 1.0; `put` with the sample's `summable`), or takes one added
        before away (sign -1.0: a sample added to sums still exact was summable)."""
        count, occupied, covered, speed = sample[:4]
        weight = _weight(sample)
        step = 1 if sign > 0 else -1
        self.n += step
        if not self.exact:
            return
        terms = [(_VEHICLES, count), (_COVERED, covered)]
        if occupied is not None:
            self.n_occupied += step
            terms += ((_OCCUPIED, occupied), (_OCCUPIED_COVERED, covered))
        if speed is not None and weight > 0:
            self.n_counted += step
            terms += ((_SPEED, speed), (_COUNTED, weight))
        totals = self.totals
        for i, x in terms:
            x *= sign
            t = totals[i]
            s = totals[i] = t + x
            z = s - t
            e = (t - (s - z)) + (x - z)  # what t + x lost (TwoSum)
            if e:
                lost = self.lost
                if lost is None:
                    lost = self.lost = [[] for _ in totals]
                add_to_partials(lost[i], e)

    def put(self, sample: Sample, summable: bool) -> None:
        """Adds a sample, `summable` or not (`_summable`)."""
        if not summable:
            self.exact = False
        self.add(sample, 1.0)

    def _sum(self, i: int) -> float:
        """math.fsum of the terms of sum i (not a -0.0: none is a -0.0 term)."""
        total = self.totals[i]
        if self.lost is None or not self.lost[i]:
            return total + 0.0
        return math.fsum([total, *self.lost[i]])

    def text(self, samples: Iterable[Sample], flow: float | None = None) -> tuple[str, float]:
        """`_sums_text` of the samples summed (two or more)."""
        if not self.exact:
            return _sums_text(list(samples), flow)
        covered = self._sum(_COVERED)
        occupancy = None if not self.n_occupied else self._sum(_OCCUPIED) / (
            covered if self.n_occupied == self.n else self._sum(_OCCUPIED_COVERED))
        speed_sums = (self._sum(_SPEED), self._sum(_COUNTED)) if self.n_counted else None
        return _text(self._sum(_VEHICLES), covered, occupancy, speed_sums, flow)


class _Cache:
    """What a window keeps between messages, not pickled: each lane's `_Sums` (once it holds
    `KEEP_SUMS_FROM` samples) and its line's fields and flow (until a reading enters it), and
    the sums over all its lanes (likewise)."""

    __slots__ = ("lanes", "texts", "total")

    def __init__(self) -> None:
        self.lanes: dict[str, _Sums] = {}
        self.texts: dict[str, tuple[str, float]] = {}
        self.total: _Sums | None = None

    def put(self, sensor: str, old: Sample | None, sample: Sample, summable: bool) -> None:
        """A sample into the lane `sensor` (replacing `old`, one of the same stamp)."""
        self.texts.pop(sensor, None)
        for sums in (self.lanes.get(sensor), self.total):
            if sums is not None:
                if old is not None:
                    sums.add(old, -1.0)
                sums.put(sample, summable)


Lanes = dict[str, dict[int, Sample]]  # a window's samples: sensor -> ts -> sample
_MINUTE, _HOUR = WIDTHS  # (rp, width) keys of `TrafficRollup.windows`
# A window ended this long before the newest stamp is closed (`TrafficRollup._freeze`): a
# reading later than that opens it again. A node's lanes report within a message's delay.
FREEZE_AFTER_NS = MINUTE_NS


def _thaw(frozen: bytes) -> Lanes:
    lanes: Lanes = pickle.loads(frozen)
    return lanes


def _minute_of(hour: Lanes, minute: int) -> Lanes:
    """The samples of an hour window's lanes in the minute starting at `minute` (stamped in
    (minute, minute + 1 min]: `window_ts`), by lane, lanes without one left out."""
    end = minute + MINUTE_NS
    out: Lanes = {}
    for sensor, lane in hour.items():
        kept = {ts: s for ts, s in lane.items() if minute < ts <= end}
        if kept:
            out[sensor] = kept
    return out


class TrafficRollup(FrozenRefs, Horizon):
    """The open windows of one intersection (node). Picklable.

    Closed windows (ended `FREEZE_AFTER_NS` before the newest stamp) are kept for the late
    readings that may still come within the horizon, and held compact: an hour window as
    the pickled bytes of its lanes (memory about its pickled size, a snapshot copies the
    bytes), thawed when a late reading enters it; a minute window not at all, as its samples
    are those of its hour window's within its minute (`_minute_of`), taken from there when a
    late reading enters it.

    With a frozen store (`use_store`) a closed hour window's bytes are written once to a row
    of the store and the window holds the row's id, as a sensor's frozen windows do
    (`cloud.logic.rollup.SensorRollup`); the ids of rows let go (a window opened again, or
    past the horizon) go to `gone`. A row missing from the store makes its hour lost
    (`lost_hours`): its late readings are too late, and the hour's windows are rebuilt from
    the raw points (`DomainNode`).

    Kept between messages, not pickled (a resumed rollup makes them again): each open
    window's `_Cache`, so that a message sums the samples it brings, not every sample of
    the hour, and writes again the lines of the lanes it did not touch as they were."""

    def __init__(self, horizon_ns: int) -> None:
        self.horizon_ns = horizon_ns
        self.newest_ns = 0
        self.too_late = 0
        # (rp, width) -> window start -> sensor -> ts -> sample; a closed hour window as
        # the pickled bytes of that, or the id of the store's row holding them (`Lanes |
        # bytes | int`), a closed minute window left out
        self.windows: dict[tuple[str, int], dict[int, Lanes | bytes | int]] = {w: {} for w in WIDTHS}
        self._caches()
        self.store: FrozenStore | None = None  # not pickled: `use_store`
        self.gone: array[int] | None = None

    def use_store(self, store: FrozenStore | None, gone: array[int] | None) -> None:
        """`FrozenRefs.use_store`; the hour windows closed without a store (held as bytes:
        a run without recovery) written into it, their rows' ids held instead."""
        super().use_store(store, gone)
        for windows in self.windows.values():
            for start, lanes in windows.items():
                if type(lanes) is bytes:
                    windows[start] = self.frozen_state(lanes)

    def lost_hours(self) -> set[int]:
        """The hour windows held whose row was not found in the store (their readings are
        too late)."""
        return {start for start, lanes in self.windows[_HOUR].items()
                if type(lanes) is int and lanes == LOST_ROW}

    def _caches(self) -> None:
        # (rp, width) -> window start -> its `_Cache`, made when a message writes the window
        self._cache: dict[tuple[str, int], dict[int, _Cache]] = {key: {} for key in self.windows}
        # the hour windows' starts, a heap (`_evict` lets go of the oldest; the minute windows
        # held are the few open ones)
        self._hours = sorted(self.windows[_HOUR])
        # (rp, width) -> the starts of the windows held open (not bytes), a heap (`_freeze`)
        self._open = {key: sorted(s for s, lanes in windows.items() if isinstance(lanes, dict))
                      for key, windows in self.windows.items()}

    def __getstate__(self) -> dict[str, object]:
        state = self.__dict__.copy()  # as pickled before the caches were kept
        for name in ("_cache", "_hours", "_open", "store", "gone"):
            state.pop(name, None)
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        # a snapshot from before the closed windows were held compact holds them all open:
        # closed at the end of the next message (`_freeze`)
        self.__dict__.update(state)
        self._caches()
        self.store = None
        self.gone = None

    def lanes(self, key: tuple[str, int], start: int) -> Lanes | None:
        """The lanes of a window held (sensor -> ts -> sample), open or closed, without
        opening it; None if it holds no sample."""
        lanes = self.windows[key].get(start)
        if isinstance(lanes, bytes | int):
            state = self.fetch(lanes)
            return None if state is None else _thaw(state)
        if lanes is None and key == _MINUTE:
            hour = self.lanes(_HOUR, start - start % HOUR_NS)
            lanes = None if hour is None else _minute_of(hour, start)
        return lanes or None

    def held_windows(self) -> dict[tuple[str, int], dict[int, Lanes]]:
        """Every window held, as the rollup held them all open before the closed ones were
        kept compact: (rp, width) -> start -> lanes (for tests and benchmarks, not fast)."""
        hours = {start: self.lanes(_HOUR, start) or {} for start in self.windows[_HOUR]}
        floor = self.floor_ns() - MINUTE_NS  # the minute windows older were let go
        minutes: dict[int, Lanes] = {}
        for lanes in hours.values():
            for sensor, lane in lanes.items():
                for ts, sample in lane.items():
                    minute = (ts - 1) - (ts - 1) % MINUTE_NS
                    if minute >= floor:
                        minutes.setdefault(minute, {}).setdefault(sensor, {})[ts] = sample
        return {_MINUTE: minutes, _HOUR: hours}

    def process(self, site: str, node: str, readings: Iterable[Reading]) -> list[Point]:
        touched: dict[tuple[str, int], set[int]] = {key: set() for key in self.windows}
        minutes, hours = self.windows[_MINUTE], self.windows[_HOUR]
        minute_caches, hour_caches = self._cache[_MINUTE], self._cache[_HOUR]
        opened = self._open
        horizon_ns, kept = self.horizon_ns, self.kept_ns
        for r in readings:
            if r.kind != KIND or (r.flags and not NOT_MEASURING.isdisjoint(r.flags)):  # skipped(r)
                continue
            ts = r.ts_ns
            newest = self.newest_ns
            if ts < newest - horizon_ns or ts < kept:  # before floor_ns()
                self.too_late += 1
                continue
            if ts > newest:
                self.newest_ns = ts
            sample = sample_of(r.values)
            sensor = r.sensor
            summable: bool | None = None  # (`_summable(sample)`, once a cache takes it)
            at = ts - 1  # its interval's last instant: window_ts(KIND, ts)
            hour = at - at % HOUR_NS
            hour_lanes = hours.get(hour)
            if hour_lanes is None:
                hour_lanes = hours[hour] = {}
                heapq.heappush(self._hours, hour)
                heapq.heappush(opened[_HOUR], hour)
            elif not isinstance(hour_lanes, dict):  # closed: a late reading
                thawed = self._thawed(hour, hour_lanes)
                if thawed is None:  # its row is gone: its windows rebuilt from the raw points
                    self.too_late += 1
                    continue
                hour_lanes = hours[hour] = thawed
                heapq.heappush(opened[_HOUR], hour)
            minute = at - at % MINUTE_NS
            minute_lanes = minutes.get(minute)
            if not isinstance(minute_lanes, dict):  # (never bytes nor an id)
                # closed, or new: a window after the newest stamp's holds no sample yet
                minute_lanes = minutes[minute] = (_minute_of(hour_lanes, minute)
                                                  if minute < newest else {})
                heapq.heappush(opened[_MINUTE], minute)
            for start, lanes, starts, caches in (
                    (minute, minute_lanes, touched[_MINUTE], minute_caches),
                    (hour, hour_lanes, touched[_HOUR], hour_caches)):
                lane = lanes.get(sensor)
                if lane is None:
                    lane = lanes[sensor] = {}
                old = lane.get(ts)
                lane[ts] = sample
                starts.add(start)
                cache = caches.get(start)
                if cache is not None:
                    if summable is None:
                        summable = _summable(sample)
                    cache.put(sensor, old, sample, summable)
        out: list[Point] = []
        lane_heads: dict[str, str] = {}
        tags = {"site": site, "node": node}
        total_head = series_head("traffic_intersection", tags)
        for key in sorted(touched):
            rp = key[0]
            windows, caches = self.windows[key], self._cache[key]
            for start in sorted(touched[key]):
                window = windows[start]
                assert isinstance(window, dict)  # (opened above)
                lanes = window
                cache = caches.get(start)
                if cache is None:
                    cache = caches[start] = _Cache()
                texts = cache.texts
                flows: list[float] = []
                speeded = 0  # lanes with a speed
                for sensor in sorted(lanes):
                    head = lane_heads.get(sensor)
                    if head is None:
                        head = lane_heads[sensor] = series_head("traffic_lane", tags | {"sensor": sensor})
                    written = texts.get(sensor)
                    if written is None:
                        written = texts[sensor] = self._lane_text(cache, sensor, lanes[sensor])
                    text, flow = written
                    flows.append(flow)
                    if _SPEED_FIELD in text:
                        speeded += 1
                    out.append((rp, f"{head} {text} {start}"))
                text = self._total_text(cache, lanes, math.fsum(flows))
                out.append((rp, f"{total_head} {text},lanes={len(lanes)}i,"
                                f"speed_lanes={speeded}i {start}"))
        self._evict()
        self._freeze(touched)
        return out

    def _freeze(self, touched: dict[tuple[str, int], set[int]]) -> None:
        """Closes the windows ended `FREEZE_AFTER_NS` before the newest stamp but those this
        message wrote (late readings: a backlog goes on into them): an hour's lanes to their
        pickled bytes, a minute's let go (its hour holds its samples), and their caches let
        go. Called per message: pops the heap of open windows, no pass over all."""
        newest = self.newest_ns
        for key, windows in self.windows.items():
            heap, caches, written = self._open[key], self._cache[key], touched[key]
            limit = newest - key[1] - FREEZE_AFTER_NS  # a start at or before it has closed
            kept: list[int] = []
            while heap and heap[0] <= limit:
                start = heapq.heappop(heap)
                lanes = windows.get(start)
                if not isinstance(lanes, dict):  # evicted, or closed already
                    continue
                if start in written:
                    kept.append(start)
                    continue
                caches.pop(start, None)
                if key == _MINUTE:
                    del windows[start]
                else:
                    windows[start] = self.frozen_state(
                        pickle.dumps(lanes, protocol=pickle.HIGHEST_PROTOCOL))
            for start in kept:
                heapq.heappush(heap, start)

    def _thawed(self, hour: int, held: bytes | int) -> Lanes | None:
        """A closed hour window's lanes, opened again by a late reading (its row let go);
        None if its row is not in the store: the hour is then held lost."""
        state = self.opened(held, f"traffic hour at {hour}")
        if state is None:
            self.windows[_HOUR][hour] = LOST_ROW
            return None
        return _thaw(state)

    @staticmethod
    def _lane_text(cache: _Cache, sensor: str, lane: dict[int, Sample]) -> tuple[str, float]:
        """`_sums_text` of a lane's samples, from its kept sums (made at `KEEP_SUMS_FROM`)."""
        sums = cache.lanes.get(sensor)
        if sums is None:
            if len(lane) < KEEP_SUMS_FROM:
                return _sums_text(list(lane.values()))
            sums = cache.lanes[sensor] = _Sums(lane.values())
        return sums.text(lane.values())

    @staticmethod
    def _total_text(cache: _Cache, lanes: Lanes, flow: float) -> str:
        """`_sums_text` of every lane's samples with the flow given, from the kept sums."""
        sums = cache.total
        if sums is None:
            samples = [s for lane in lanes.values() for s in lane.values()]
            if len(samples) < KEEP_SUMS_FROM:
                return _sums_text(samples, flow)[0]
            sums = cache.total = _Sums(samples)
            return sums.text(samples, flow)[0]
        return sums.text((s for lane in lanes.values() for s in lane.values()), flow)[0]

    def _evict(self) -> None:
        floor = self.newest_ns - self.horizon_ns - MINUTE_NS
        minutes, caches = self.windows[_MINUTE], self._cache[_MINUTE]
        if minutes and min(minutes) < floor:  # (the open ones: a few)
            for start in [s for s in minutes if s < floor]:
                del minutes[start]
                caches.pop(start, None)
        floor = self.newest_ns - self.horizon_ns - HOUR_NS
        starts, hours, caches = self._hours, self.windows[_HOUR], self._cache[_HOUR]
        while starts and starts[0] < floor:  # (called per message: not a pass over every window)
            start = heapq.heappop(starts)
            held = hours.pop(start)
            if not isinstance(held, dict):
                self.let_go(held)
            caches.pop(start, None)
