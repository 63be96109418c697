"""Events planned at random for a run, and the ground-truth file.

The ground truth is JSON Lines, one event per line, in start order:
    {"type": "incident", "category": "anomaly", "site": "nga-tu-so", "node": "cabinet",
     "sensor": "nguyen-trai-in", "start": "2026-03-02T00:30:00.000000Z",
     "end": "...", "params": {"speed_factor": 0.15, "flow_factor": 0.6}}
site/node/sensor are null above the event's target level (city-wide context events
have all three null). Times are RFC 3339 UTC like the wire contract's.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from urbanpulse.errors import ConfigError
from urbanpulse.simulate.city import City
from urbanpulse.simulate.events import EVENT_TYPES, Event, EventType, make_event
from urbanpulse.simulate.randomness import substream
from urbanpulse.simulate.timebase import TimeBase
from urbanpulse.wire import format_ts

CLOCK_JUMPS_S = (-86_400.0, -3600.0, -300.0, 30.0, 600.0, 7200.0)


def _targets(city: City, spec: EventType) -> list[tuple[str | None, str | None, str | None]]:
    if spec.target == "site":
        return [(h.site, None, None) for h in city.hospitals]
    if spec.target == "node":
        return [(n.site, n.node, None) for n in city.nodes
                if not spec.drivers or any(s.driver in spec.drivers for s in n.sensors)]
    return [(n.site, n.node, s.id) for n in city.nodes for s in n.sensors
            if s.driver in spec.drivers]


def plan_events(city: City, seed: int, hours: float, anomalies: int = 0,
                faults: int = 0) -> list[Event]:
    """`anomalies` anomalies and `faults` sensor faults at random (types in turn, targets
    and times drawn from the seed), all starting and ending within the first `hours`."""
    rng = substream(seed, "plan")
    planned: list[Event] = []
    for category, count in (("anomaly", anomalies), ("fault", faults)):
        types = [t for t in EVENT_TYPES.values() if t.category == category]
        for i in range(count):
            spec = types[i % len(types)]
            targets = _targets(city, spec)
            if not targets:
                continue
            site, node, sensor = targets[int(rng.integers(len(targets)))]
            low, high = spec.duration_h
            duration = min(float(rng.uniform(low, high)), 0.5 * hours) * 3600
            start = float(rng.uniform(0.02, 1.0)) * (hours * 3600 - duration) * 0.98
            params: dict[str, float] = {}
            if spec.name == "clock_jump":
                params["offset_s"] = CLOCK_JUMPS_S[int(rng.integers(len(CLOCK_JUMPS_S)))]
            planned.append(make_event(spec.name, site, node, sensor, round(start, 3),
                                      round(start + duration, 3), params,
                                      f"planned[{len(planned)}]"))
    return planned


def truth_record(event: Event, timebase: TimeBase) -> dict[str, Any]:
    return {
        "type": event.type,
        "category": event.category,
        "site": event.site,
        "node": event.node,
        "sensor": event.sensor,
        "start": format_ts(timebase.at(event.start_s)),
        "end": format_ts(timebase.at(event.end_s)),
        "params": dict(event.params),
    }


def write_ground_truth(path: Path, events: Iterable[Event], timebase: TimeBase) -> int:
    lines = [json.dumps(truth_record(e, timebase), sort_keys=True) for e in events]
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return len(lines)


def read_ground_truth(path: Path, timebase: TimeBase) -> list[Event]:
    """Events back from a ground-truth file (offsets relative to `timebase`)."""
    events: list[Event] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        key = f"{path}:{number}"
        try:
            raw = json.loads(line)
            start = timebase.offset(datetime.fromisoformat(raw["start"]))
            end = timebase.offset(datetime.fromisoformat(raw["end"]))
            events.append(make_event(raw["type"], raw["site"], raw["node"], raw["sensor"],
                                     start, end, raw["params"], key))
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(key, f"not a ground-truth record: {exc}") from exc
    return events


def merge_events(*groups: Sequence[Event]) -> tuple[Event, ...]:
    return tuple(e for group in groups for e in group)
