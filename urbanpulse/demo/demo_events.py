"""Anomalies and faults the demo injects in its first minutes, on top of the city file's
own events (which are hours into a run), so that a short demo has something for the
cloud's detectors to find and the ground truth has something to score them against.

Targets are taken from the live subset and the rest of the city, in file order:
- `spikes` on the first live SDS011 (false samples ×6, about two a minute), from 10 s;
- `pollution_spike` at the second live air station (PM up to ×4 on a sin² bump), from 20 s;
- `incident` on the first live lane (a blocked lane: few, slow vehicles), from 10 s;
- `stuck` on the first lightweight air sensor, since 4 minutes before the demo started;
- a second `incident`, on the first lane of the second live intersection, from
  LATE_INCIDENT_S (27 min): the first is over before the cloud scores a lane on a fresh
  stack, whose detectors score nothing before a series' 150th value (docs/anomaly-
  detection.md, "The detector", 4.), 25 minutes of a live lane's 10 s counts; a later run's
  detectors have learnt it as that lane's traffic. The second starts once they score
  (docs/demo.md, "Injected events and ground truth": what each takes, measured).
Times are offsets from the demo's start (the simulation's offset `at`).
"""

from __future__ import annotations

from urbanpulse.demo.live import LiveNode
from urbanpulse.simulate import City, Event, make_event

AIR = ("sds011", "pms5003", "mhz19b")
# After a fresh stack's lane detectors have their 150 values (10 s apart: 25 min), with 2
# minutes for the processor's start and the agents' first intervals
# (tests/demo/test_demo_found.py checks it against the detectors' settings).
LATE_INCIDENT_S = 27 * 60.0
LATE_INCIDENT_MIN = 15.0


def demo_events(city: City, live: list[LiveNode], at: float) -> list[Event]:
    live_nodes = {n.key for n in live}
    events: list[Event] = []

    def add(type_: str, site: str, node: str, sensor: str | None, start: float,
            minutes: float, **params: float) -> None:
        events.append(make_event(type_, site, node, sensor, at + start, at + start + minutes * 60,
                                 params, f"demo.{type_}"))

    sds = [(n, s) for n in live for s in n.sensors if s.spec.driver == "sds011"]
    if sds:
        n, s = sds[0]
        add("spikes", n.site, n.node, s.id, 10, 30, rate_per_h=120, factor=6)
    stations = list(dict.fromkeys((n.site, n.node) for n, _ in sds))
    if len(stations) > 1:
        add("pollution_spike", *stations[1], None, 20, 40)
    lanes = [(n, s) for n in live for s in n.sensors if s.spec.driver == "traffic_loop"]
    if lanes:
        n, s = lanes[0]
        add("incident", n.site, n.node, s.id, 10, 20)
        # another intersection's lane: one that learnt the first incident's slow traffic
        # as its normal could take the second for usual
        others = [(m, t) for m, t in lanes if m.key != n.key]
        if others:
            m, t = others[0]
            add("incident", m.site, m.node, t.id, LATE_INCIDENT_S, LATE_INCIDENT_MIN)
    light_air = [(node.site, node.node, s.id) for node in city.nodes for s in node.sensors
                 if s.driver in AIR and (node.site, node.node) not in live_nodes]
    if light_air and at >= 240:
        site, node, sensor = light_air[0]
        add("stuck", site, node, sensor, -240, 60)
    return events
