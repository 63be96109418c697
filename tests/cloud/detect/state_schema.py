"""The layout of the detector state the dataflow snapshots, for the guard on
`cloud.detect.version.STATE_VERSION` (tests/cloud/detect/test_detect_state_version.py).

A node's detectors and fault rules are pickled in its `NodeState` (`watch`, `node_watch`)
with the state version they were taken by; a snapshot of another version is dropped, not
unpickled. The layout is what pickle keeps of them, fed as the dataflow feeds them: each
class (module and qualified name) with its attributes and the types of their values
(containers with the types of their items, recursively), not the values. It is committed
in `state_schema.json` with the version it belongs to; a layout that differs under the
same version fails the test, which says what to do:

    .venv/bin/python -m tests.cloud.detect.state_schema            # check, print the differences
    .venv/bin/python -m tests.cloud.detect.state_schema --write    # after bumping STATE_VERSION
    .venv/bin/python -m tests.cloud.detect.state_schema --write --keep-version
        # the layout changed, but a snapshot of the old one loads and means the same

`--write` refuses a changed node layout under the version the file was written for unless
told `--keep-version`. A change of the feed below may change the layout seen (a rule that no
longer holds anything in it): `--keep-version` too. The file also holds:

* the settings each detector and fault monitor is made with, and the contract's range of
  each field (values): they are pickled with it, so a detector resumed from a snapshot
  keeps the settings and range it was made with;
* the layout of the city's drift state (`CityAir`, cloud/logic/domain/city_drift.py):
  its detectors (`CityDrift`, pickled apart) follow the state version like the node's;
  `CityAir`'s own attributes are resumed whatever the version, so a change there needs a
  `__setstate__` that loads the old one (then `--write --keep-version`); and the drift
  settings `CityDrift` keeps, but for those the config sets again on every resume.
"""

from __future__ import annotations

import argparse
import copyreg
import dataclasses
import enum
import json
import math
import pickle
import sys
from array import array
from collections import deque
from collections.abc import Collection, Iterable
from datetime import UTC, date, datetime, time, timedelta, timezone
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from cloud.detect import STATE_VERSION
from cloud.detect.drift import DriftSettings
from cloud.detect.faults import FAULT_SETTINGS, FaultSettings
from cloud.detect.pair_drift import PairDriftSettings
from cloud.detect.profiles import scored, settings_for
from cloud.journal import JournalRecord
from cloud.logic.domain.city_drift import CityAir, drift_inputs
from cloud.logic.node import NodeState
from cloud.logic.records import decode_record
from cloud.logic.rollup import HOUR_NS
from urbanpulse.clock import to_epoch_ns
from urbanpulse.wire import KINDS, Reading, data_topic, encode_batch, encode_status, status_topic

SCHEMA_PATH = Path(__file__).with_name("state_schema.json")
COMMAND = "python -m tests.cloud.detect.state_schema"
VERSION_FILE = "cloud/detect/version.py"

Layout = dict[str, dict[str, set[str]]]  # class -> attribute -> the types of its values

_LEAVES: frozenset[type] = frozenset((type(None), bool, int, float, complex, str, bytes, bytearray,
                                      datetime, date, time, timedelta, timezone))


def _name(cls: type) -> str:
    if cls.__module__ == "builtins":
        return "None" if cls is type(None) else cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


Term = tuple[str, list[list["Term"]] | None]  # a name, and its brackets' unions if any


def _parse(description: str) -> list[Term]:
    """A description (`describe`) as the union of its terms."""
    pos = 0

    def union() -> list[Term]:
        nonlocal pos
        terms = [term()]
        while description.startswith("|", pos):
            pos += 1
            terms.append(term())
        return terms

    def term() -> Term:
        nonlocal pos
        start = pos
        while pos < len(description) and description[pos] not in "[]|,":
            pos += 1
        name = description[start:pos]
        if not description.startswith("[", pos):
            return name, None
        pos += 1
        args: list[list[Term]] = []
        while not description.startswith("]", pos):
            args.append(union())
            if description.startswith(", ", pos):
                pos += 2
        pos += 1
        return name, args

    return union()


def _covers(wide: list[Term], narrow: list[Term]) -> bool:
    return all(any(_term_covers(w, n) for w in wide) for n in narrow)


def _term_covers(wide: Term, narrow: Term) -> bool:
    """Whether `narrow` is `wide` or `wide` with some of its containers empty."""
    if wide[0] != narrow[0] or (wide[1] is None) != (narrow[1] is None):
        return False
    if wide[1] is None or narrow[1] is None or not narrow[1]:
        return True
    return len(wide[1]) == len(narrow[1]) and all(
        _covers(w, n) for w, n in zip(wide[1], narrow[1], strict=True))


def _merged(descriptions: Iterable[str]) -> set[str]:
    """Descriptions of one place's types: one that another covers left out (the same but
    with a container empty: a ring empty at one walk and full at the next)."""
    found = set(descriptions)
    if len(found) < 2 or "[]" not in "".join(found):
        return found
    parsed = {d: _parse(d) for d in found}
    return {d for d in found
            if not any(e != d and _covers(parsed[e], parsed[d]) for e in found)}


def _union(descriptions: Iterable[str]) -> str:
    return "|".join(sorted(_merged(descriptions)))


class _Walker:
    """The layout of objects as pickle keeps them, merged into `classes`."""

    def __init__(self, classes: Layout) -> None:
        self.classes = classes
        self._walked: set[int] = set()  # objects walked in this pass (they are alive)

    def describe(self, value: object) -> str:
        cls = type(value)
        if cls in _LEAVES:
            return _name(cls)
        if isinstance(value, enum.Enum):
            return f"enum {_name(cls)}"
        if isinstance(value, np.ndarray):
            return f"numpy.ndarray[{value.dtype.str}, {value.ndim}d]"
        if isinstance(value, np.generic):
            return f"numpy.{cls.__name__}"
        if isinstance(value, array):
            return f"array.array[{value.typecode}]"
        if cls is tuple:
            return f"tuple[{', '.join(self.describe(item) for item in value)}]"  # type: ignore[attr-defined]
        if isinstance(value, dict) and (cls is dict or cls.__module__ == "collections"):
            if not value:
                return f"{_name(cls)}[]"
            return f"{_name(cls)}[{self._items(value)}, {self._items(value.values())}]"
        if cls in (list, set, frozenset, deque):
            return f"{_name(cls)}[{self._items(value)}]"  # type: ignore[arg-type]
        return self._object(value)

    def _items(self, items: Collection[object]) -> str:
        kinds = {type(item) for item in items}
        if kinds <= _LEAVES:  # the usual ring of numbers: no walk per item
            return _union(_name(kind) for kind in kinds)
        return _union(self.describe(item) for item in items)

    def _object(self, value: object) -> str:
        cls = type(value)
        name = _name(cls)
        attributes = self.classes.setdefault(name, {})
        if id(value) in self._walked:
            return name
        self._walked.add(id(value))
        reduced = value.__reduce_ex__(pickle.HIGHEST_PROTOCOL)
        if isinstance(reduced, str):  # a global, pickled by name
            return f"global {name}"
        maker, args = reduced[0], reduced[1]
        state = reduced[2] if len(reduced) > 2 else None
        if maker not in (copyreg.__newobj__, copyreg._reconstructor):  # type: ignore[attr-defined]
            note(attributes, f"(reduce {getattr(maker, '__qualname__', maker)})",
                 self.describe(tuple(args)))
        for attribute, item in _attributes(cls, state):
            note(attributes, attribute, self.describe(item))
        for place, attribute in ((3, "(list items)"), (4, "(dict items)")):  # a list's or dict's subclass
            if len(reduced) > place and reduced[place] is not None:
                note(attributes, attribute, f"list[{self._items(list(reduced[place]))}]")
        return name


def note(attributes: dict[str, set[str]], attribute: str, description: str) -> None:
    known = attributes.get(attribute)
    if known is None:
        attributes[attribute] = {description}
    elif description not in known:
        attributes[attribute] = _merged([*known, description])


def _attributes(cls: type, state: object) -> list[tuple[str, object]]:
    """The attributes of an object's pickled `state` (what `__reduce_ex__` gives): a dict,
    `(dict or None, slots)`, `(names, values)` (`cloud.detect.compat.slot_state`), or a
    frozen slotted dataclass's values in field order."""
    if state is None:
        return []
    if isinstance(state, dict):
        return sorted(state.items())
    if isinstance(state, tuple) and len(state) == 2 and type(state[0]) is tuple \
            and type(state[1]) is tuple:  # (names, values), what is None left out as a
        # dict's layout leaves it out
        return sorted((n, v) for n, v in zip(*state, strict=True) if v is not None)
    if isinstance(state, tuple) and len(state) == 2 and all(s is None or isinstance(s, dict)
                                                            for s in state):
        return sorted({**(state[0] or {}), **(state[1] or {})}.items())
    if isinstance(state, list | tuple) and dataclasses.is_dataclass(cls):
        names = [f.name for f in dataclasses.fields(cls)]
        if len(names) == len(state):  # positional: the order is the layout
            return [(f"{i:02d}:{n}", v) for i, (n, v) in enumerate(zip(names, state, strict=True))]
    return [("(state)", state)]


def walk(roots: dict[str, object], classes: Layout) -> None:
    """The layout of `roots` (name -> object) merged into `classes`, the roots' own types
    under the entry "(roots)"."""
    walker = _Walker(classes)
    top = classes.setdefault("(roots)", {})
    for root, value in roots.items():
        note(top, root, walker.describe(value))


def as_json(classes: Layout) -> dict[str, dict[str, str]]:
    """The layout as it is committed: class -> attribute -> its types, sorted, " | " between
    them (one line each in the file)."""
    return {name: {a: " | ".join(sorted(types)) for a, types in sorted(attrs.items())}
            for name, attrs in sorted(classes.items())}


# -- the node feed -----------------------------------------------------------------------

T0 = datetime(2026, 3, 2, tzinfo=UTC)
STEP_S = 300
STEPS = 720  # 60 h: a detector's seasonal part learns for 50 h
SITE, NODE = "schema", "n1"
# Steps after whose messages the layout is walked, besides every 24th: where a rule holds
# something for a moment.
WALKED = frozenset((*range(100, 131, 10), 200, 201, *range(250, 257), 300, 301, *range(400, 405),
                    450, 451, 460, 461, *range(480, 501, 5), 540, 560, *range(610, 614),
                    *range(620, 624), 640, 641, *range(645, 654), *range(660, 664), *range(670, 674),
                    *range(680, 684), *range(690, 694), *range(700, 704), *range(710, 720)))
SENSORS = {"pm-1": "air.pm", "co2-1": "air.co2", "loop-1": "traffic.loop",
           "door-1": "hospital.door", "bed-1": "hospital.bed", "kiosk-1": "hospital.queue"}


def _daily(t: float, low: float, high: float, rng: float) -> float:
    """A value with a daily cycle between about `low` and `high`, and some noise."""
    phase = math.sin(2 * math.pi * (t / 86_400 - 0.3))
    return round(low + (high - low) * (0.5 + 0.5 * phase) + rng, 2)


class _NodeFeed:
    """One node with a sensor of every kind, fed to `NodeState` as the dataflow feeds it
    (journal records decoded, a tick after a message when 30 s passed), through the
    events each rule keeps state for: a stuck value, a spike, a sequence gap filled late,
    a forward clock jump, an outage and a restart, a late heartbeat of the run before, a
    clock not synchronised, readings kept out of the rules, one stamped before the newest,
    a kiosk's stamps going back, zeros, glitches, cut cables, supervised drivers, and an
    older agent's heartbeats without a run id. The layout is walked after each message."""

    def __init__(self) -> None:
        self.state = NodeState(HOUR_NS)
        self.classes: Layout = {}
        self.offset = 0
        self.seqs = dict.fromkeys(SENSORS, 0)
        self.run, self.run_start, self.numbering = 1, 0.0, "00000000000000a1"
        self.delayed: list[Reading] = []
        self.walking = True
        self.jumps = 0
        self.last_tick: float | None = None
        self.ticket = 0
        self.noise = 0

    def _rng(self) -> float:
        """Deterministic noise in [-1, 1)."""
        self.noise = (self.noise * 1103515245 + 12345) % 2**31
        return self.noise / 2**30 - 1

    def _record(self, topic: str, payload: bytes, at: float) -> None:
        self.offset += 1
        received = to_epoch_ns(T0 + timedelta(seconds=at))
        data, _ = decode_record(JournalRecord("i1", self.offset, received, topic, payload), 1 << 16)
        if data is not None:
            self.state.process(data)
        if self.last_tick is None or at - self.last_tick >= 30:
            self.last_tick = at
            self.state.tick(T0 + timedelta(seconds=at))
        if self.walking:  # a status message changes only the rules on heartbeats
            walk({"node_watch": self.state.node_watch} if data is not None and data.status
                 else {"watch": self.state.watch}, self.classes)

    def reading(self, sensor: str, at: float, values: dict[str, float], flags: tuple[str, ...] = (),
                seq: int | None = None) -> Reading:
        if seq is None:
            seq = self.seqs[sensor]
            self.seqs[sensor] += 1
        ts = to_epoch_ns(T0 + timedelta(seconds=at))
        return Reading(sensor, SENSORS[sensor], ts, seq, values, flags)

    def send(self, readings: list[Reading], at: float) -> None:
        self._record(data_topic(SITE, NODE), encode_batch(SITE, NODE, readings, numbering=self.numbering),
                     at)

    def heartbeat(self, at: float, *, run: int | None = None, uptime: float | None = None,
                  synchronised: bool = True, drivers: dict[str, Any] | None = None,
                  legacy: bool = False) -> None:
        health: dict[str, Any] = {
            "uptime_s": at - self.run_start if uptime is None else uptime,
            "clock": {"jumps": self.jumps, "synchronised": synchronised}, "drivers": drivers or {}}
        if not legacy:
            health["run_id"] = f"run{self.run if run is None else run:04d}"
        self._record(status_topic(SITE, NODE),
                     encode_status("online", T0 + timedelta(seconds=at), health), at)

    def step(self, i: int) -> None:
        t = float(i * STEP_S)
        self.walking = i % 24 == 0 or i in WALKED
        if 645 <= i < 650:
            return  # the node's agent is down
        if i == 650:  # and starts again: its data before its first heartbeat (two ingests)
            self.run += 1
            self.run_start = t
        if i == 690:  # the node lost its outbox: a new numbering
            self.numbering = f"{self.run:016x}"
            self.seqs = dict.fromkeys(SENSORS, 0)
        if i == 300:
            self.jumps += 1  # the agent counted a wall-clock jump
        unsynced = 400 <= i < 403
        if i == 401:
            self.jumps += 1
        readings = self._readings(i, t, unsynced)
        if 250 <= i < 255:  # the node's messages of steps 250-254 come after the next one
            self.delayed += readings
            return
        self.send(readings, t + 10)
        if i == 255:  # all but three of co2-1's: they stay missing
            self.send([r for r in self.delayed if not (r.sensor == "co2-1" and r.seq > 250)], t + 12)
        if i == 652:  # a late heartbeat of the run before the restart
            self.heartbeat(t + 15, run=self.run - 1, uptime=t + 15 - 60)
        self.heartbeat(t + 20, synchronised=not unsynced, drivers=self._drivers(i), legacy=i >= 710)

    def _readings(self, i: int, t: float, unsynced: bool) -> list[Reading]:
        rng = self._rng
        pm25 = 33.0 if 100 <= i < 130 else _daily(t, 8, 40, rng())
        if i == 200:
            pm25 = 400.0
        flags = ("clock_unsynced",) if unsynced else ()
        warmup = ("warmup",) if 690 <= i < 696 else ()
        out = [self.reading("pm-1", t, {"pm25": pm25, "pm10": round(pm25 * 1.6, 2),
                                        "pm1": round(pm25 * 0.6, 2),
                                        "temperature_c": _daily(t, 12, 24, rng()),
                                        "humidity_pct": _daily(t, 40, 80, rng())}, flags)]
        out.append(self.reading("co2-1", t + 1, {"co2": _daily(t, 420, 900, 5 * rng()),
                                                 "temperature_c": _daily(t, 18, 23, rng())},
                                flags or warmup))
        count = 0.0 if 480 <= i < 500 else max(0.0, round(_daily(t, -20, 120, 5 * rng())))
        loop: dict[str, float] = {"count": count, "interval_s": STEP_S,
                                  "occupancy_pct": 100.0 if 660 <= i < 663 else min(99.0, count / 3)}
        if i % 2:
            loop.update(speed_kmh=_daily(t, 30, 50, rng()), length_m=4.5)
        if 610 <= i < 613:
            loop["glitches"] = 2
        out.append(self.reading("loop-1", t + 2, loop, flags))
        if i == 450:  # a reading stamped before the newest (a backlog interleaving)
            out.append(self.reading("loop-1", t - 150, {"count": 3.0, "interval_s": STEP_S}, flags))
        door: dict[str, float] = {"count": max(0.0, round(_daily(t, -5, 60, 3 * rng()))),
                                  "interval_s": STEP_S}
        if 620 <= i < 623:
            door["glitches"] = 1
        if i == 640:
            door["fault"] = 1
        out.append(self.reading("door-1", t + 3, door, flags))
        if i % 6 == 0 or i == 650:
            bed: dict[str, float] = {"occupied": (i // 6) % 2}
            if i == 650:
                bed["fault"] = 1
            out.append(self.reading("bed-1", t + 4, bed, flags))
        if not 540 <= i < 560:  # a kiosk's issues and calls both stop, tickets waiting
            back = -400 if i == 460 else 0  # its clock set back
            for k in range(3):
                self.ticket += 1
                out.append(self.reading("kiosk-1", t + 5 + k + back, {"ticket": self.ticket, "called": 0},
                                        flags))
                out.append(self.reading("kiosk-1", t + 5.5 + k + back,
                                        {"ticket": self.ticket - 1, "called": 1, "counter": 1 + k}, flags))
        return out

    @staticmethod
    def _drivers(i: int) -> dict[str, Any]:
        return {"bed-1": {"supervision": {"cable": "cut" if 670 <= i < 673 or i == 715 else "ok"}},
                "door-1": {"supervision": {"ready": not 680 <= i < 683, "blocked": 700 <= i < 703,
                                           "self_test": "failed" if 690 <= i < 693 else "ok"}},
                "loop-1": {}}


def fed_node(steps: int = STEPS) -> tuple[NodeState, Layout]:
    """A `NodeState` fed `steps` steps of `_NodeFeed`, and the layout of its detector state
    over the feed."""
    feed = _NodeFeed()
    for i in range(steps):
        feed.step(i)
    return feed.state, feed.classes


# -- the city feed -----------------------------------------------------------------------

CITY_STEP_S = 60  # a station's pair of modules is judged on 15-min bins of at least 10 readings
CITY_STEPS = 60 * 60  # 60 h: the cross-station rule learns for 24 h
STATIONS = 5


# The first station's node is late for a while: its readings of [LATE_FROM, LATE_UNTIL)
# come as one backlog then (its hours judged late, a module's waiting for its partner's)
LATE_FROM, LATE_UNTIL = 30 * 60, 34 * 60


def fed_city(steps: int = CITY_STEPS) -> tuple[CityAir, Layout]:
    """A city of `STATIONS` air stations (a PM and a CO2 module each, the first a second PM
    module too) through `CityAir` as the dataflow's drift step takes them, one module of
    the first station and another station drifting after a day and a half, the first
    station's node late for 4 hours (a backlog); and the layout of its state over the feed."""
    city = CityAir()
    classes: Layout = {}
    noise = 0
    held: list[list[Reading]] = []  # the late node's readings, one list a reading
    for i in range(steps):
        if i == LATE_UNTIL:
            for batch in held:  # the backlog, walked after each reading
                city.process(drift_inputs("site0", "n1", batch))
                _walk_city(city, classes)
            held = []
        t = float(i * CITY_STEP_S)
        ts = to_epoch_ns(T0 + timedelta(seconds=t))
        closing = i % 180 == 0  # bins close: walked after each reading, bins kept for judging
        for k in range(STATIONS):
            noise = (noise * 1103515245 + 12345) % 2**31
            rng = noise / 2**30 - 1
            pm = _daily(t, 10, 30, rng) * (1 + 0.02 * k)
            drifting = 1 + max(0.0, t / 3600 - 36) * 0.05
            modules = {"pm-1": pm * (drifting if k == 3 else 1),
                       "co2-1": _daily(t, 420, 700, 3 * rng) + 10 * k}
            if k == 0:
                modules["pm-1-b"] = pm * drifting
            for sensor, value in modules.items():
                kind, name = ("air.co2", "co2") if sensor.startswith("co2") else ("air.pm", "pm25")
                batch = [Reading(sensor, kind, ts + k, i, {name: round(value, 2)})]
                if k == 0 and LATE_FROM <= i < LATE_UNTIL:
                    held.append(batch)
                    continue
                city.process(drift_inputs(f"site{k}", "n1", batch))
                if closing:
                    _walk_city(city, classes)
        if i % 30 == 0 or i == steps - 1:
            _walk_city(city, classes)
    return city, classes


def _walk_city(city: CityAir, classes: Layout) -> None:
    # CityAir pickles its detectors apart, as bytes (dropped unread at another version):
    # their layout is walked from the object itself.
    walk({"city": city, "city.drift": city.drift}, classes)


# -- the settings pickled with the detectors ---------------------------------------------

def _values(settings: object) -> dict[str, object]:
    return {f.name: repr(getattr(settings, f.name))
            for f in dataclasses.fields(settings)}  # type: ignore[arg-type]


def settings() -> dict[str, dict[str, object]]:
    """The settings each (kind, field) series' detector and fault monitor is made with, and
    the contract's field spec (its range), which the monitor keeps (`spec`) and its watch
    too (`FieldWatch.low`, `.high`)."""
    out: dict[str, dict[str, object]] = {}
    for kind, spec in sorted(KINDS.items()):
        for field in sorted(spec.fields):
            if scored(kind, field):
                out[f"detector {kind}/{field}"] = _values(settings_for(kind, field))
            out[f"faults {kind}/{field}"] = _values(FAULT_SETTINGS.get((kind, field), FaultSettings()))
            out[f"contract {kind}/{field}"] = _values(spec.fields[field])
    # The city drift's, pickled with CityDrift; the config's thresholds are set again on
    # every resume (CityAir.use_thresholds, use_pair_suffix), the rest are kept as made.
    from_config = {"k", "h", "min_others", "shift", "spread", "second_suffix"}
    for name, drift_settings in (("drift cross-station", DriftSettings()),
                                 ("drift pair", PairDriftSettings())):
        out[name] = {k: v for k, v in _values(drift_settings).items() if k not in from_config}
    return out


# -- the committed schema ----------------------------------------------------------------

@cache
def current() -> dict[str, Any]:
    """The schema of this code: the state version, the node's and the city's layouts, the
    settings (the feeds take a few seconds: computed once per process)."""
    _, node = fed_node()
    _, city = fed_city()
    return {"state_version": STATE_VERSION, "node": as_json(node), "settings": settings(),
            "city": as_json(city)}


def committed() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(SCHEMA_PATH.read_text())
    return loaded


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What changed from `old` to `new` (two layouts or settings: name -> attribute ->
    types or value), one line each."""
    lines: list[str] = []
    for name in sorted(old.keys() | new.keys()):
        if name not in new:
            lines.append(f"- {name}")
            continue
        if name not in old:
            lines.append(f"+ {name}")
        before, after = old.get(name, {}), new[name]
        for attribute in sorted(before.keys() | after.keys()):
            was, now = before.get(attribute, "(absent)"), after.get(attribute, "(absent)")
            if was != now:
                lines.append(f"  {name}.{attribute}: {was} -> {now}")
    return lines


def node_problems(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What stops `new` (this code's schema) from standing for `old` (the committed one) as
    to the node's detector state, with what to do; empty when nothing does."""
    version, written = new["state_version"], old["state_version"]
    if version != written:
        return [f"STATE_VERSION is {version!r} but {SCHEMA_PATH.name} was written for {written!r}: "
                f"regenerate it with `{COMMAND} --write`."]
    out: list[str] = []
    node = differences(old["node"], new["node"])
    if node:
        out.append(
            f"the pickled layout of the node's detectors and fault rules changed, but not "
            f"STATE_VERSION ({version!r}): a snapshot of the old layout would be unpickled into "
            f"this code. Bump STATE_VERSION in {VERSION_FILE} (deployed detectors start learning "
            f"again) and regenerate with `{COMMAND} --write`. Only if every snapshot of the old "
            f"layout loads into this code and means the same (a new attribute has a class-level "
            f"or __setstate__ default, and a test loads the old layout), or only the test's feed "
            f"changed, regenerate with `{COMMAND} --write --keep-version` instead.\n" + "\n".join(node))
    changed = differences(old["settings"], new["settings"])
    if changed:
        out.append(
            "the settings detectors and fault monitors are made with (or the contract's field "
            "specs they keep) changed, but not "
            "STATE_VERSION: each keeps the settings it was made with, pickled with it, so the "
            "ones resumed from a snapshot would keep the old settings (only series seen for the "
            f"first time would get these). Bump STATE_VERSION in {VERSION_FILE} so that every "
            f"detector starts again with them and regenerate with `{COMMAND} --write`; or, to "
            f"keep the old settings on the resumed series, `{COMMAND} --write --keep-version`.\n"
            + "\n".join(changed))
    return out


def city_problems(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """As `node_problems`, for the city's drift state."""
    city = differences(old["city"], new["city"])
    if not city:
        return []
    return [
        "the pickled layout of the city's drift state changed. Its detectors (CityDrift and "
        "what it holds) are dropped on resume at another STATE_VERSION, as the node's are: "
        f"bump STATE_VERSION in {VERSION_FILE} (the drift rules learn again) and regenerate "
        f"with `{COMMAND} --write`. CityAir's own attributes resume whatever STATE_VERSION says: "
        "a change there, or a drift class that loads the old layout as it was meant (a default "
        "in its __setstate__, as cloud.detect.drift._Bin does, tested), is regenerated with "
        f"`{COMMAND} --write --keep-version`.\n" + "\n".join(city)]


def problems(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    return node_problems(old, new) + city_problems(old, new)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help=f"write {SCHEMA_PATH.name}")
    parser.add_argument("--keep-version", action="store_true",
                        help="write a node layout or settings changed under the version the file was "
                             "written for, or a changed city layout: only when the old snapshots load "
                             "into this code and mean the same")
    args = parser.parse_args(argv)
    new = current()
    old = committed() if SCHEMA_PATH.exists() else None
    found = [] if old is None else problems(old, new)
    if not args.write:
        print("\n\n".join(found) or f"{SCHEMA_PATH.name} matches this code")
        return 1 if found else 0
    # What a write would hide: a change under the version the file was written for, or a
    # change of the city's layout (never versioned).
    hidden = [] if old is None else (
        (node_problems(old, new) if old["state_version"] == new["state_version"] else [])
        + city_problems(old, new))
    if hidden and not args.keep_version:
        print("\n\n".join(hidden), file=sys.stderr)
        print(f"\nnot written: bump STATE_VERSION in {VERSION_FILE} first, or pass --keep-version "
              "if old snapshots load into this code and mean the same", file=sys.stderr)
        return 1
    SCHEMA_PATH.write_text(json.dumps(new, indent=1, sort_keys=True) + "\n")
    print(f"wrote {SCHEMA_PATH} for STATE_VERSION {new['state_version']!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
