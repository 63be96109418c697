"""Injected anomalies and sensor faults: what they are, what they may target, their
parameters; and the context events (rain, pollution episodes) the weather makes.

An `Event` is the single record of something that happens on purpose in a run: the
models read it to change what they generate, and it is written to the ground-truth
file unchanged, so a detector can be scored against exactly what was injected.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from urbanpulse.errors import ConfigError

Category = Literal["anomaly", "fault", "context"]
TargetLevel = Literal["sensor", "node", "site", "city"]

AIR_DRIVERS = frozenset({"sds011", "pms5003", "mhz19b"})
PULSE_DRIVERS = frozenset({"traffic_loop", "bed_pad", "door_counter"})
ALL_DRIVERS = AIR_DRIVERS | PULSE_DRIVERS | {"queue_kiosk"}


@dataclass(frozen=True, slots=True)
class ParamSpec:
    default: float
    low: float
    high: float


@dataclass(frozen=True, slots=True)
class EventType:
    name: str
    category: Category
    target: TargetLevel
    drivers: frozenset[str]
    params: Mapping[str, ParamSpec]
    # Range of durations, in hours, used when events are planned at random.
    duration_h: tuple[float, float]
    description: str


def _type(name: str, category: Category, target: TargetLevel, drivers: frozenset[str],
          duration_h: tuple[float, float], description: str,
          **params: ParamSpec) -> EventType:
    return EventType(name, category, target, drivers, params, duration_h, description)


EVENT_TYPES: dict[str, EventType] = {
    t.name: t
    for t in (
        _type("incident", "anomaly", "sensor", frozenset({"traffic_loop"}), (0.25, 1.5),
              "a lane blocked: fewer vehicles pass, slowly, and stand over the loops",
              speed_factor=ParamSpec(0.15, 0.01, 1.0), flow_factor=ParamSpec(0.6, 0.0, 1.0)),
        _type("pollution_spike", "anomaly", "node", AIR_DRIVERS, (0.5, 2.5),
              "a local source (fire, burning waste) near one station: PM multiplied",
              factor=ParamSpec(4.0, 1.0, 50.0)),
        _type("surge", "anomaly", "site", frozenset(), (2.0, 6.0),
              "a hospital surge: ER arrivals and ward admissions multiplied",
              factor=ParamSpec(2.5, 1.0, 20.0)),
        _type("stuck", "fault", "sensor", AIR_DRIVERS | PULSE_DRIVERS, (0.5, 4.0),
              "the sensor repeats the value (or holds the level) it had at the start"),
        _type("silence", "fault", "sensor", ALL_DRIVERS, (0.25, 3.0),
              "the sensor reports nothing"),
        _type("spikes", "fault", "sensor", AIR_DRIVERS | PULSE_DRIVERS, (0.5, 3.0),
              "isolated wrong samples (serial) or false pulses (GPIO)",
              rate_per_h=ParamSpec(30.0, 0.1, 3600.0), factor=ParamSpec(6.0, 1.5, 100.0)),
        _type("drift", "fault", "sensor", AIR_DRIVERS, (2.0, 8.0),
              "the reading drifts away from the truth by pct_per_h percent each hour",
              pct_per_h=ParamSpec(8.0, -100.0, 100.0)),
        _type("cut_cable", "fault", "sensor", ALL_DRIVERS, (0.5, 4.0),
              "wiring cut: serial sends nothing; a bed pad reads empty with fault=1; a loop "
              "card fails safe to constant presence; a door counter stops counting"),
        _type("clock_jump", "fault", "node", frozenset(), (1.0, 6.0),
              "the node's clock is off by offset_s for the duration",
              offset_s=ParamSpec(3600.0, -1e8, 1e8)),
        _type("rain", "context", "city", frozenset(), (0.5, 6.0),
              "rain over the city: particulate matter washed out"),
        _type("pollution_episode", "context", "city", frozenset(), (24.0, 72.0),
              "a stagnation episode over the city: PM multiplied by up to peak_factor",
              peak_factor=ParamSpec(2.2, 1.0, 10.0)),
    )
}


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happens between offsets start_s and end_s of a run (seconds from
    the simulation's start). `site`/`node`/`sensor` name the target as deep as the event
    type needs; None beyond that."""

    type: str
    site: str | None
    node: str | None
    sensor: str | None
    start_s: float
    end_s: float
    params: Mapping[str, float] = field(default_factory=dict)

    @property
    def category(self) -> Category:
        return EVENT_TYPES[self.type].category

    def covers(self, t0: float, t1: float) -> bool:
        """True if the event overlaps [t0, t1)."""
        return self.start_s < t1 and self.end_s > t0


def make_event(type_: str, site: str | None, node: str | None, sensor: str | None,
               start_s: float, end_s: float, params: Mapping[str, float],
               key: str = "event") -> Event:
    """Build an event, checking its type, target depth, times and parameters."""
    spec = EVENT_TYPES.get(type_)
    if spec is None:
        raise ConfigError(f"{key}.type", f"unknown event type {type_!r}; known: "
                          + ", ".join(sorted(EVENT_TYPES)))
    need = {"sensor": 3, "node": 2, "site": 1, "city": 0}[spec.target]
    given = (site, node, sensor)
    optional_sensor = type_ == "pollution_spike"
    for depth, (name, value) in enumerate(zip(("site", "node", "sensor"), given, strict=True)):
        if depth < need and value is None:
            raise ConfigError(f"{key}.{name}", f"{type_} targets a {spec.target}: {name} "
                              "is required")
        if depth >= need and value is not None and not (optional_sensor and name == "sensor"):
            raise ConfigError(f"{key}.{name}", f"{type_} targets a {spec.target}: "
                              f"{name} must not be given")
    if not 0 <= start_s < end_s:
        raise ConfigError(f"{key}.start_h", f"need 0 <= start < end, got start {start_s} s, "
                          f"end {end_s} s")
    clean: dict[str, float] = {}
    for name, number in params.items():
        pspec = spec.params.get(name)
        if pspec is None:
            raise ConfigError(f"{key}.{name}", f"not a parameter of {type_}; known: "
                              + (", ".join(sorted(spec.params)) or "none"))
        if not pspec.low <= number <= pspec.high:
            raise ConfigError(f"{key}.{name}", f"{number} is outside [{pspec.low}, {pspec.high}]")
        clean[name] = float(number)
    for name, pspec in spec.params.items():
        clean.setdefault(name, pspec.default)
    if type_ == "clock_jump" and clean["offset_s"] == 0:
        raise ConfigError(f"{key}.offset_s", "a clock jump of 0 s is no fault")
    return Event(type_, site, node, sensor, float(start_s), float(end_s), clean)


def factor_at(events: list[Event], name: str, t: float) -> float:
    """Product of the `name` parameter of the events active at t (1 when none)."""
    result = 1.0
    for e in events:
        if e.start_s <= t < e.end_s:
            result *= e.params[name]
    return result
