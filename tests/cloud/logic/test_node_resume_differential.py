"""A node's state against two references on random small streams (sensors changing kind,
duplicate and reordered sequence numbers, numbers seen before with newer stamps (a
numbering that restarted), messages naming their numbering or not (a few names, so names
repeat, change and come back), readings late past the horizon, a clock stepping out of an
hour and back, warm-up, values outside the contract's range):

- the same state pickled and unpickled between any two messages (a snapshot and a
  restart, as the dataflow does) gives the same points, measured readings, site updates
  and alerts as one never pickled;
- a naive model, written here from what the node state promises, gives the same raw
  points, window lines, recompute requests, ledger lines and measured readings. It keeps
  every reading and recomputes each touched window from all of them.

test_node_pinned_output.py pins the output of a city and of seeded streams to digests;
this checks it against what it should be, and a resume at every point of a stream.
"""

from __future__ import annotations

import dataclasses
import math
import pickle
from collections.abc import Mapping

from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.logic.lines import line
from cloud.logic.node import LATE_AFTER_NS, LEDGER_IDLE_MIN_NS, MAX_LEDGER_HOURS, NodeState
from cloud.logic.recompute import RECOMPUTE, Recompute
from cloud.logic.records import RP_1H, RP_1M, RP_RAW, NodeData, Point
from cloud.logic.rollup import window_ts
from urbanpulse.wire import KINDS, Reading, outside_range

MINUTE_NS = 60 * 10**9
HOUR_NS = 60 * MINUTE_NS
T0 = 1_795_000_000_000_000_000 - 1_795_000_000_000_000_000 % HOUR_NS
SENSORS = {"bed-1": "hospital.bed", "bed-2": "hospital.bed", "pm-1": "air.pm", "loop-1": "traffic.loop"}
# 1e300 and -1 are outside every range; ints and floats, -0.0 and 0.0 (one in the windows).
KINDS_USED = sorted(set(SENSORS.values()))
VALUES = st.sampled_from([0, 1, 0.0, -0.0, 1.0, 2, 2.5, 1e-9, 3, 10**6, 7.25, -1, 1e300])
HORIZONS = st.sampled_from([10 * MINUTE_NS, 30 * MINUTE_NS, 3 * HOUR_NS])


@st.composite
def _reading(draw: st.DrawFn) -> Reading:
    sensor = draw(st.sampled_from(sorted(SENSORS)))
    # now and then a sensor claims another kind
    kind = SENSORS[sensor] if draw(st.integers(0, 20)) else draw(st.sampled_from(KINDS_USED))
    values: dict[str, float]
    if kind == "hospital.bed":
        values = {"occupied": draw(VALUES)}
        if draw(st.integers(0, 5)) == 0:
            values["fault"] = draw(VALUES)
    elif kind == "air.pm":
        values = {"pm25": draw(VALUES), "pm10": draw(VALUES)}
    else:
        values = {"count": draw(VALUES), "interval_s": draw(st.sampled_from([60, 60.0, 30.5]))}
    # mostly in the first of three hours (windows with several readings), to the microsecond;
    # now and then later than all before it (with a number seen before: a restart)
    hour = draw(st.sampled_from([0, 0, 0, 1, 2, 2, 4]))
    ts = T0 + hour * HOUR_NS + draw(st.integers(0, 180)) * MINUTE_NS // 3 + draw(st.integers(0, 10**6)) * 1000
    seq = draw(st.integers(0, 60))  # small: duplicates are frequent
    flags = draw(st.sampled_from([(), (), (), ("warmup",), ("backlog",), ("clock_unsynced",)]))
    return Reading(sensor, kind, ts, seq, values, flags)


_EXCURSION_VALUES = {"hospital.bed": {"occupied": 1}, "air.pm": {"pm25": 1.0, "pm10": 2.0},
                     "traffic.loop": {"count": 3, "interval_s": 60}}


@st.composite
def _excursion(draw: st.DrawFn) -> list[Reading]:
    """A sensor's readings numbered in order, one a minute, those of a stretch in the middle
    stamped by a clock stepped out of the hour (ahead or back) and then corrected; a number
    or two lost, anywhere."""
    sensor = draw(st.sampled_from(sorted(SENSORS)))
    first, n = draw(st.integers(0, 55)), draw(st.integers(3, 10))
    out = draw(st.integers(1, n - 2))
    back = draw(st.integers(out + 1, n - 1))
    step = draw(st.sampled_from([-HOUR_NS, HOUR_NS, 2 * HOUR_NS, 4 * HOUR_NS]))
    start = T0 + draw(st.integers(0, 59)) * MINUTE_NS
    lost = draw(st.sets(st.integers(0, n - 1), max_size=2))
    kind = SENSORS[sensor]
    return [Reading(sensor, kind, start + i * MINUTE_NS + (step if out <= i < back else 0), first + i,
                    _EXCURSION_VALUES[kind]) for i in range(n) if i not in lost]


@st.composite
def _message(draw: st.DrawFn) -> list[Reading]:
    """Readings, some stamped as the one before (which of equal stamps is a window's last),
    now and then with a clock's excursion out of an hour among them."""
    readings = draw(st.lists(_reading(), max_size=12))
    for i in range(1, len(readings)):
        if draw(st.integers(0, 3)) == 0:
            readings[i] = dataclasses.replace(readings[i], ts_ns=readings[i - 1].ts_ns)
    if draw(st.integers(0, 3)) == 0:
        at = draw(st.integers(0, len(readings)))
        readings[at:at] = draw(_excursion())
    return readings


# A message's numbering id: none (an agent before names), or one of a few.
NAMES = st.sampled_from([None, None, "00000000000000aa", "00000000000000aa", "00000000000000bb",
                         "00000000000000cc"])
_MESSAGES = st.lists(st.tuples(NAMES, _message()), min_size=1, max_size=10)


def _data(i: int, readings: list[Reading], numbering: str | None, away_ns: int = 0) -> NodeData:
    return NodeData("hn/n1", "hn", "n1", T0 + (170 + i) * MINUTE_NS + away_ns, readings, None,
                    numbering)


@settings(max_examples=200, deadline=None, database=None)
@given(messages=_MESSAGES, cuts=st.sets(st.integers(0, 9)), horizon=HORIZONS, detect=st.booleans())
def test_a_state_resumed_from_a_snapshot_between_any_two_messages_goes_on_alike(
        messages: list[tuple[str | None, list[Reading]]], cuts: set[int], horizon: int,
        detect: bool) -> None:
    kept, resumed = NodeState(horizon, detect=detect), NodeState(horizon, detect=detect)
    for i, (numbering, readings) in enumerate(messages):
        if i in cuts:  # given its horizon again, as the dataflow does at every start
            resumed = pickle.loads(pickle.dumps(resumed, protocol=pickle.HIGHEST_PROTOCOL))
            resumed.set_horizon(horizon)
        data = _data(i, readings, numbering)
        assert resumed.process(data) == kept.process(data), i
        assert resumed.take_measured() == kept.take_measured(), i
        assert resumed.take_site_updates() == kept.take_site_updates(), i
        assert resumed.take_alerts() == kept.take_alerts(), i


@dataclasses.dataclass
class _Numbering:
    key: str  # its span's key in the ledger
    name: str | None = None
    seen: set[int] = dataclasses.field(default_factory=set)
    newest: int = -1  # the newest stamp taken not flagged clock_unsynced, and its number
    newest_seq: int = -1

    def starts_again(self, r: Reading) -> bool:
        """Stamped after all taken, numbered at or below the newest stamp's."""
        return r.ts_ns > self.newest and r.seq <= self.newest_seq


class _Model:
    """What a node's state should write, kept the simple way: every reading remembered,
    every touched window computed again from all of them."""

    def __init__(self, horizon_ns: int) -> None:
        self.horizon_ns = horizon_ns
        # sensor -> its numberings, the current one last (at most 8 before it)
        self.numberings: dict[str, list[_Numbering]] = {}
        self.forgotten: dict[str, list[str | None]] = {}  # sensor -> names of numberings dropped
        self.newest: dict[str, int] = {}  # sensor -> its newest reading in a window
        # (sensor, policy) -> its readings in windows of that width
        self.windowed: dict[tuple[str, str], list[Reading]] = {}
        self.kind: dict[str, str] = {}  # sensor -> the kind of its latest fresh reading
        self.ledger: dict[int, dict[str, int]] = {}
        self.got: dict[int, dict[str, set[int]]] = {}  # hour -> numbering -> numbers it received
        # hour -> missing numbers of numberings forgotten, as they were when forgotten
        self.kept: dict[int, int] = {}
        self.touched: dict[int, int] = {}  # hour -> when a message with a reading of it came
        self.closed: set[int] = set()  # hours dropped after they were written
        self.written: dict[int, dict[str, int]] = {}  # hour -> its ledger fields last written

    def _tags(self, sensor: str) -> dict[str, str]:
        return {"site": "hn", "node": "n1", "sensor": sensor, "kind": self.kind[sensor]}

    def process(self, data: NodeData) -> tuple[list[Point], list[Point], list[Point], list[Reading]]:
        """(raw points and recompute requests in reading order, window lines in the order
        first touched, ledger lines by hour, measured readings)."""
        raw: list[Point] = []
        touched: list[tuple[str, str, int]] = []
        hours: set[int] = set()
        measured: list[Reading] = []
        for r in data.readings:
            hour = r.ts_ns - r.ts_ns % HOUR_NS
            fresh = {"received": 0, "duplicates": 0, "late": 0, "restarts": 0}
            got: dict[str, set[int]]
            if hour in self.closed and hour not in self.ledger:
                counts, got = fresh, {}  # counted nowhere: the hour stays as written
            else:
                hours.add(hour)
                self.touched[hour] = data.received_ns
                counts = self.ledger.setdefault(hour, fresh)
                got = self.got.setdefault(hour, {})
            counts["received"] += 1
            numberings = self.numberings.setdefault(r.sensor, [_Numbering(r.sensor)])
            unsynced = "clock_unsynced" in r.flags  # its stamp says nothing of restarts
            name, current = data.numbering, numberings[-1]
            named = [n for n in numberings if n.name == name]
            if name is None or named:
                # unnamed, or a name kept: among all (unnamed) or those of the name, the
                # oldest whose newest stamp is not before it, else the latest
                among = numberings if name is None else named
                n = next((n for n in among[:-1] if r.ts_ns <= n.newest), among[-1])
            elif name in self.forgotten.get(r.sensor, ()):  # its numbers gone: taken as new
                n = _Numbering(f"{r.sensor}#{name}", name)
            elif current.name is None and (unsynced or not current.starts_again(r)):
                current.name = name  # an agent that began to name its numbering
                n = current
            else:  # a name not seen: a new numbering
                n = self._restart(r.sensor, f"{r.sensor}#{r.ts_ns}", name, counts)
            if n is numberings[-1] and not unsynced and n.starts_again(r):
                n = self._restart(r.sensor, f"{r.sensor}#{r.ts_ns}", name, counts)
            elif r.seq in n.seen:  # a redelivery
                counts["duplicates"] += 1
                continue
            n.seen.add(r.seq)
            if not unsynced and r.ts_ns > n.newest:
                n.newest, n.newest_seq = r.ts_ns, r.seq
            got.setdefault(n.key, set()).add(r.seq)
            if data.received_ns - r.ts_ns > LATE_AFTER_NS:
                counts["late"] += 1
            self.kind[r.sensor] = r.kind
            fields: dict[str, float | int | str] = {k: float(v) for k, v in r.values.items()}
            fields["seq"] = r.seq
            if r.flags:
                fields["flags"] = ",".join(r.flags)
            stamp = r.ts_ns - r.ts_ns % 1000 + r.seq % 1000
            raw.append((RP_RAW, line(KINDS[r.kind].measurement, self._tags(r.sensor), fields, stamp)))
            if {"warmup", "clock_unsynced"} & set(r.flags) or outside_range(r.kind, r.values) is not None:
                continue
            measured.append(r)
            newest = self.newest.get(r.sensor, 0)
            at = window_ts(r.kind, r.ts_ns)  # a loop's or door's interval ends at its stamp
            for rp, width in ((RP_1M, MINUTE_NS), (RP_1H, HOUR_NS)):
                start = at - at % width
                held = any(_start(w, width) == start for w in self.windowed.get((r.sensor, rp), ()))
                # a window not held that starts before the horizon (its earlier readings
                # may have been too late): rebuilt from the raw points; a held one holds
                # every reading of it so far, a reading older than the horizon goes in too
                if not held and start < newest - self.horizon_ns:
                    raw.append((RECOMPUTE, Recompute(rp, KINDS[r.kind].measurement, "hn", "n1",
                                                     r.sensor, r.kind, width, start).encode()))
                    continue
                if (rp, r.sensor, start) not in touched:
                    touched.append((rp, r.sensor, start))
                self.windowed.setdefault((r.sensor, rp), []).append(r)
            if at >= newest - self.horizon_ns:
                self.newest[r.sensor] = max(newest, at)
        windows = []
        for rp, sensor, start in touched:
            width = MINUTE_NS if rp == RP_1M else HOUR_NS
            inside = [r for r in self.windowed[(sensor, rp)] if _start(r, width) == start]
            windows.append((rp, line(KINDS[self.kind[sensor]].measurement, self._tags(sensor),
                                     _aggregate(inside), start)))
        for sensor in {r.sensor for r in measured}:  # windows past the horizon leave memory
            for rp, width in ((RP_1M, MINUTE_NS), (RP_1H, HOUR_NS)):
                floor = self.newest.get(sensor, 0) - self.horizon_ns - width
                self.windowed[(sensor, rp)] = [r for r in self.windowed.get((sensor, rp), ())
                                               if _start(r, width) >= floor]
        # and the hours held whose counts changed all the same: a gap they are charged with
        # filled (or begun) by a reading of another hour
        hours |= {h for h in self.ledger if h in self.written and self._ledger(h) != self.written[h]}
        ledger = [(RP_1H, line("ledger", {"site": "hn", "node": "n1"}, self._ledger(h), h))
                  for h in sorted(hours)]
        self.written.update((h, self._ledger(h)) for h in hours)
        self._forget(max(self.newest.values(), default=0) - self.horizon_ns - HOUR_NS,
                     data.received_ns - max(self.horizon_ns, LEDGER_IDLE_MIN_NS))
        return raw, windows, ledger, measured

    def _restart(self, sensor: str, key: str, name: str | None, counts: dict[str, int]
                 ) -> _Numbering:
        """A new numbering; past 8 before it, the oldest is dropped, its name kept. Its
        ledger key is its first stamp's, made unique among the numberings kept."""
        numberings = self.numberings[sensor]
        if any(n.key == key for n in numberings):
            key = f"{key}.{len(numberings) - 1}"
        numberings.append(_Numbering(key, name))
        self.forgotten.setdefault(sensor, []).extend(n.name for n in numberings[:-9] if n.name)
        for dropped in numberings[:-9]:  # the gaps it charged to hours held stay theirs
            for hour, got in self.got.items():
                if dropped.key in got:
                    self.kept[hour] = self.kept.get(hour, 0) + _gaps(got[dropped.key], dropped.seen)
        del numberings[:-9]
        counts["restarts"] += 1
        return numberings[-1]

    def _ledger(self, hour: int) -> dict[str, int]:
        """A gap of a numbering's numbers (some below it came, the one below it did not)
        is the hour's that received the number just above it, whichever hours the numbers
        around went to: missing are those gaps (and those of numberings forgotten, as they
        were then), expected what the hour received and those."""
        counts = dict(self.ledger[hour])
        restarts = counts.pop("restarts")
        seen = {n.key: n.seen for ns in self.numberings.values() for n in ns}
        missing = self.kept.get(hour, 0) + sum(
            _gaps(got, seen[key]) for key, got in self.got.get(hour, {}).items() if key in seen)
        unique = counts["received"] - counts["duplicates"]
        return {"expected": unique + missing, **counts, "missing": missing, "restarts": restarts}

    def _forget(self, floor: int, idle: int) -> None:
        """Ledger hours before the floor and not touched since `idle` are dropped, and the
        oldest, whatever the floor, while more than MAX_LEDGER_HOURS are held; a reading
        for one later is counted nowhere."""
        over = len(self.ledger) - MAX_LEDGER_HOURS
        for i, hour in enumerate(sorted(self.ledger)):
            if i < over or (hour < floor and self.touched[hour] < idle):
                del self.ledger[hour]
                self.got.pop(hour, None)
                self.kept.pop(hour, None)
                self.written.pop(hour, None)
                self.closed.add(hour)


def _gaps(got: set[int], seen: set[int]) -> int:
    """The numbers missing (not `seen`) just below the numbers of `got` (an hour's, of one
    numbering) whose number before was not seen, where some below them were."""
    missing = 0
    for number in got:
        below = [x for x in seen if x < number]
        if below and number - 1 not in seen:
            missing += number - 1 - max(below)
    return missing


def _start(r: Reading, width: int) -> int:
    at = window_ts(r.kind, r.ts_ns)
    return at - at % width


def _aggregate(readings: list[Reading]) -> dict[str, float | int]:
    """count, then per field (sorted) mean (the exact sum, correctly rounded, over the
    count), min, max and last (the newest stamp; of equal stamps, the highest number, as a
    rebuild from the raw points takes them; of equal numbers too, the one that came last),
    a -0.0 taken as 0.0."""
    out: dict[str, float | int] = {"count": len(readings)}
    names = sorted({name for r in readings for name in r.values})
    for name in names:
        have = [((r.ts_ns, r.seq), float(r.values[name]) + 0.0) for r in readings if name in r.values]
        values = [v for _, v in have]
        newest = max(key for key, _ in have)
        out[f"{name}_mean"] = math.fsum(values) / len(have)
        out[f"{name}_min"] = min(values)
        out[f"{name}_max"] = max(values)
        out[f"{name}_last"] = [v for key, v in have if key == newest][-1]
    return out


def _split(points: list[Point], heads: Mapping[str, str]) -> tuple[list[Point], list[Point], list[Point]]:
    """A node state's points as the model's: raw and recompute, windows, ledger (other
    points, the domain's, are not modelled here)."""
    raw = [p for p in points if p[0] in (RP_RAW, RECOMPUTE)]
    windows = [p for p in points if p[0] in (RP_1M, RP_1H)
               and p[1].split(" ", 1)[0] in heads.values()]
    ledger = [p for p in points if p[0] == RP_1H and p[1].startswith("ledger,")]
    return raw, windows, ledger


@settings(max_examples=200, deadline=None, database=None)
@given(messages=_MESSAGES, horizon=HORIZONS, pauses=st.sets(st.integers(1, 9), max_size=2))
def test_a_state_writes_what_a_naive_model_of_its_windows_and_ledger_writes(
        messages: list[tuple[str | None, list[Reading]]], horizon: int, pauses: set[int]) -> None:
    """`pauses`: the messages received 7 hours after the one before (the ledger lets idle
    hours go: a reading of one is counted nowhere, but fills a gap of the hours held)."""
    state, model = NodeState(horizon, detect=False), _Model(horizon)
    for i, (numbering, readings) in enumerate(messages):
        data = _data(i, readings, numbering, 7 * HOUR_NS * sum(1 for p in pauses if p <= i))
        points = state.process(data)
        raw, windows, ledger, measured = model.process(data)
        heads = {s: line(KINDS[k].measurement, model._tags(s), {"x": 1}, 0).split(" ", 1)[0]
                 for s, k in model.kind.items()}
        assert _split(points, heads) == (raw, windows, ledger), i
        assert state.take_measured() == measured, i
