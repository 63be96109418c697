"""Which faults a benchmark run injects: every fault type on every class of target.

The simulator's own `plan_events` draws targets uniformly over sensors, so four in
five land on bed pads. Here each fault type is placed once per class of target it
can hit (each sensor driver; for clock jumps each kind of node), so every
combination is measured. Targets, times and durations come from the seed. Faults on
one sensor (or, for clock jumps, one node) never overlap, with `PAD_S` of clean data
between them for the rules to settle.

Paraclinical departments (imaging, laboratory) are nodes with kiosks only: they are a
class of their own ("department" for clock jumps, "department_kiosk" for their
kiosks), placed after every other class from a random stream of their own, so the
other classes get the same targets and times as before the departments existed and
their figures stay comparable.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from urbanpulse.simulate import City
from urbanpulse.simulate.events import EVENT_TYPES, Event, make_event
from urbanpulse.simulate.randomness import substream
from urbanpulse.simulate.scenario import CLOCK_JUMPS_S

FAULT_TYPES = ("stuck", "silence", "spikes", "drift", "cut_cable", "clock_jump")
# Clean data before the first fault (the rules learn intervals and levels) and
# between two faults on one target.
WARMUP_S = 3600.0
PAD_S = 1800.0
# How long after a fault's end (plus its settling time) an event still counts.
GRACE_S = 900.0
_TRIES = 200
_PLACE_FIRST = ("clock_jump", "drift", "stuck", "cut_cable", "silence", "spikes")
DEPARTMENT = "department"
DEPARTMENT_KIOSK = "department_kiosk"


@dataclass(frozen=True, slots=True)
class Planned:
    event: Event
    target_class: str


def settle_s(event: Event) -> float:
    """After a forward clock jump ends, the node's stamps lie behind the last one the
    cloud saw for `offset_s`: the dataflow drops those readings as late until then."""
    if event.type == "clock_jump":
        return max(event.params["offset_s"], 0.0)
    return 0.0


def window(event: Event) -> tuple[float, float]:
    """Offsets within which an event about this fault counts as detecting it."""
    return event.start_s, event.end_s + settle_s(event) + GRACE_S


def node_class(drivers: set[str]) -> str:
    if drivers == {"queue_kiosk"}:
        return DEPARTMENT  # a paraclinical department: kiosks, no door counter
    if "bed_pad" in drivers:
        return "ward"
    if "traffic_loop" in drivers:
        return "cabinet"
    if "queue_kiosk" in drivers:
        return "opd-hall"
    if "door_counter" in drivers:
        return "er-gate"
    return "air-station"


def _classes(city: City, fault: str) -> dict[str, list[tuple[str, str, str | None]]]:
    spec = EVENT_TYPES[fault]
    classes: dict[str, list[tuple[str, str, str | None]]] = {}
    for n in city.nodes:
        cls = node_class({s.driver for s in n.sensors})
        if spec.target == "node":
            classes.setdefault(cls, []).append((n.site, n.node, None))
            continue
        for s in n.sensors:
            if s.driver in spec.drivers:
                key = DEPARTMENT_KIOSK if cls == DEPARTMENT else s.driver
                classes.setdefault(key, []).append((n.site, n.node, s.id))
    return dict(sorted(classes.items()))


def _clash(a: Event, b: Event) -> bool:
    if a.site != b.site or a.node != b.node:
        return False
    if a.type != "clock_jump" and b.type != "clock_jump" and a.sensor != b.sensor:
        return False
    a0, a1 = window(a)
    b0, b1 = window(b)
    return a0 - PAD_S < b1 and b0 - PAD_S < a1


def plan_faults(city: City, seed: int, hours: float) -> tuple[list[Planned], list[str]]:
    """The faults of one run, and the (type, class) pairs that found no free slot."""
    span = hours * 3600.0
    placed: list[Planned] = []
    missed: list[str] = []
    jumps = 0
    # Whole nodes and long faults first: they are the hardest to fit. Departments last.
    order = sorted(FAULT_TYPES, key=_PLACE_FIRST.index)
    pairs = [(f, c, t) for f in order for c, t in _classes(city, f).items()]
    later = (DEPARTMENT, DEPARTMENT_KIOSK)
    streams = (substream(seed, "bench-faults"), substream(seed, "bench-faults", DEPARTMENT))
    for rng, group in zip(streams, ([p for p in pairs if p[1] not in later],
                                    [p for p in pairs if p[1] in later]), strict=True):
        for fault, cls, targets in group:
            spec = EVENT_TYPES[fault]
            params: dict[str, float] = {}
            if fault == "clock_jump":
                params["offset_s"] = CLOCK_JUMPS_S[(seed + jumps) % len(CLOCK_JUMPS_S)]
                jumps += 1
            event = _place(rng, fault, spec.duration_h, targets, params, span, placed)
            if event is None:
                missed.append(f"{fault}/{cls}")
            else:
                placed.append(Planned(event, cls))
    return placed, missed


def _place(rng: np.random.Generator, fault: str, duration_h: tuple[float, float],
           targets: list[tuple[str, str, str | None]], params: dict[str, float],
           span: float, placed: list[Planned]) -> Event | None:
    for _ in range(_TRIES):
        site, node, sensor = targets[int(rng.integers(len(targets)))]
        duration = float(rng.uniform(*duration_h)) * 3600.0
        settle = max(params.get("offset_s", 0.0), 0.0)
        latest = span - duration - settle - GRACE_S
        if latest <= WARMUP_S:
            continue
        start = round(float(rng.uniform(WARMUP_S, latest)), 3)
        event = make_event(fault, site, node, sensor, start, round(start + duration, 3),
                           params, f"bench[{len(placed)}]")
        if not any(_clash(event, p.event) for p in placed):
            return event
    return None
