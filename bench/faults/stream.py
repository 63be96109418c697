"""Stream a simulated run through the fault rules as the dataflow does.

`cloud/logic/events.py` keeps one `FaultMonitor` per (sensor, field), hands a
reading stamped before the newest one already checked for that field to
`stamped_before(ts_ns, float(value), seq, received_ns)` only, and calls
`update(ts_ns, float(value), seq, values, received_ns)` for the others (received at the
true time: the cloud's clock). `FaultFeed` does exactly that, without the anomaly
detector, and also calls `tick(now)` on every monitor each `tick_s` of simulated time
(the cloud's clock), which the silence rule needs. A node's clock jumps, its sensors'
and its heartbeat rule's, go through one `NodeClockJumps` per node as the dataflow's
`NodeWatch.jumps` (one event per node and jump).

The air readings also go, in the same order, through one `CityDrift` for the city
(the dataflow's step keyed by city, `cloud/detect/drift.py`), after the same
"not older than the newest checked" filter; a drift found between a station's two
modules is raised with both (`Raised.pair`). A deployment's drift step has days of
history behind it; the run's comparison starts from a baseline learnt on the clean
day before the run (`warm_drift`), which holds no fault.

Each node also sends the agent's heartbeat every `HEARTBEAT_S` (the default
`heartbeat_s`), which the dataflow hands to the node's `HeartbeatMonitor`
(`cloud/logic/events.py` `NodeWatch`, which also hands each heartbeat it takes to the
node's field monitors: `FaultMonitor.node_heartbeat`): stamped by the node's clock and
received at the true time, with one run id per node, the uptime of a node that never restarts during
the run and the agent's count of wall-clock jumps,
one counted when an injected clock offset starts and one when it ends, its clock
synchronised throughout (an injected offset is a step of a clock NTP keeps)
(`node_heartbeats`). The kiosks are supervised (`supervised_kiosks`, on by default):
their heartbeat carries what the queue_kiosk driver's supervision logic reports of
its loopback pair and "in service" line, which an unsupervised kiosk cannot say
(`kiosk_lines.py`). The door counters have the beam self-test (`tested_doors`, on by
default): their heartbeat carries what the door_counter driver's logic reports of its
self-test and blocked beam (`door_tests.py`). Both run the drivers' code on the levels
the simulated pins would read; what a fault does to those levels is assumed (listed
in those modules).

Each event is stamped with the simulated time the cloud raised it: the true time of
the reading or heartbeat that triggered it (the node's stamp minus its clock
offset), or the `now` of the tick.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

from bench.faults.door_tests import DoorSelfTests
from bench.faults.kiosk_lines import KioskLines
from cloud.detect import DetectError, FaultEvent, FaultMonitor
from cloud.detect.drift import DRIFT_FIELDS, CityDrift, Drift
from cloud.detect.faults import FaultType, Heartbeat, HeartbeatMonitor, NodeClockJumps, Supervision
from urbanpulse.clock import from_epoch_ns
from urbanpulse.simulate import Simulation
from urbanpulse.simulate.events import Event
from urbanpulse.wire import Reading

HEARTBEAT_S = 30.0  # the agent's default heartbeat_s
UPTIME_S = 86_400.0  # how long the nodes have been up when a run starts


@dataclass(frozen=True, slots=True)
class Raised:
    site: str
    node: str
    event: FaultEvent
    at_s: float  # simulated offset at which the cloud raised it
    pair: tuple[str, str] | None = None  # a drift between a station's two modules: both


@dataclass
class _Watch:
    monitor: FaultMonitor
    last_ts_ns: int = 0


@dataclass
class FaultFeed:
    """The fault half of `cloud.logic.events.SensorWatch`, for every sensor of a run."""

    watches: dict[tuple[str, str, str, str], _Watch | None] = field(default_factory=dict)
    drift: CityDrift = field(default_factory=CityDrift)
    nodes: dict[tuple[str, str], HeartbeatMonitor] = field(default_factory=dict)
    updates: int = 0
    pair_of: dict[FaultEvent, tuple[str, str]] = field(default_factory=dict)  # until raised
    # each node's field monitors, in the order they were made (the node's heartbeats go to them)
    of_node: dict[tuple[str, str], list[FaultMonitor]] = field(default_factory=dict)
    # each node's clock jumps, one event per jump (cloud/logic/events.py `NodeWatch.jumps`)
    clocks: dict[tuple[str, str], NodeClockJumps] = field(default_factory=dict)

    def _fold(self, site: str, node: str, events: list[FaultEvent],
              received: datetime | None) -> list[FaultEvent]:
        """`events` with their clock jumps through the node's `NodeClockJumps`, as the
        dataflow has them (`received`: None, each event's detection)."""
        if not any(ev.fault is FaultType.CLOCK_JUMP for ev in events):
            return events
        clock = self.clocks.get((site, node))
        if clock is None:
            clock = self.clocks[(site, node)] = NodeClockJumps()
        out = []
        for ev in events:
            folded = clock.fold(ev, received)
            if folded is not None:
                out.append(folded)
        return out

    def heartbeat(self, site: str, node: str, hb: Heartbeat) -> list[tuple[str, str, FaultEvent]]:
        monitor = self.nodes.get((site, node))
        if monitor is None:
            monitor = self.nodes[(site, node)] = HeartbeatMonitor()
        own = monitor.update(hb)
        released: list[FaultEvent] = []
        if monitor.taken:
            for faults in self.of_node.get((site, node), ()):
                released += faults.node_heartbeat(hb.ts, hb.received, monitor.started_at,
                                                  hb.synchronised)
        # folded as NodeWatch.check has them: the sensors' released jumps first
        released = self._fold(site, node, released, hb.received)
        own = self._fold(site, node, own, None)
        return [(site, node, ev) for ev in own + released]

    def check(self, site: str, node: str, r: Reading, received_ns: int | None = None
              ) -> list[tuple[str, str, FaultEvent]]:
        events: list[tuple[str, str, FaultEvent]] = []
        compared = DRIFT_FIELDS.get(r.kind)
        if compared is not None:
            seen = self.watches.get((site, node, r.sensor, compared))
            if seen is None or r.ts_ns >= seen.last_ts_ns:
                for d in self.drift.update((site, node, r.sensor), r.kind, r.ts_ns, r.values):
                    events.append((d.series[0], d.series[1], d.event))
                    if d.pair is not None:
                        self.pair_of[d.event] = d.pair
        for name, value in r.values.items():
            key = (site, node, r.sensor, name)
            watch = self.watches.get(key, ...)
            if watch is ...:
                watch = self.watches[key] = _make(r.kind, name, r.sensor)
                if watch is not None:
                    self.of_node.setdefault((site, node), []).append(watch.monitor)
            if watch is None:
                continue
            received = None if received_ns is None else from_epoch_ns(received_ns)
            if r.ts_ns < watch.last_ts_ns:  # as cloud.logic.events: only the clock rule
                events += [(site, node, ev) for ev in self._fold(
                    site, node, watch.monitor.stamped_before(r.ts_ns, float(value), r.seq,
                                                 received_ns),
                    received)]
                continue
            watch.last_ts_ns = r.ts_ns
            self.updates += 1
            events += [(site, node, ev) for ev in self._fold(
                site, node, watch.monitor.update(r.ts_ns, float(value), r.seq, r.values,
                                                 received_ns), received)]
        return events

    def tick(self, now: datetime) -> Iterator[tuple[str, str, FaultEvent]]:
        for (site, node, _, _), watch in self.watches.items():
            if watch is not None:
                for ev in watch.monitor.tick(now):
                    yield site, node, ev


def _make(kind: str, name: str, sensor: str) -> _Watch | None:
    try:
        return _Watch(FaultMonitor(kind, name, sensor))
    except DetectError:
        return None


def _true_offset(ts_offset: float, jumps: list[Event], after: float) -> float:
    """The simulated time of a reading stamped at `ts_offset`: the earliest time not
    before `after` (the node's previous reading) whose clock offset explains the
    stamp. A node's readings come in true-time order, which settles the stamps that
    a clock set back makes ambiguous."""
    best = math.inf
    for off in {0.0, *(e.params["offset_s"] for e in jumps)}:
        t = ts_offset - off
        skew = sum(e.params["offset_s"] for e in jumps if e.start_s <= t < e.end_s)
        if skew == off and after <= t < best:
            best = t
    return ts_offset if best == math.inf else best


def _offset_at(t: float, jumps: list[Event]) -> float:
    return sum(e.params["offset_s"] for e in jumps if e.start_s <= t < e.end_s)


def node_heartbeats(sim: Simulation, t0: float, t1: float,
                    jumps: dict[tuple[str, str], list[Event]],
                    kiosks: KioskLines | None = None, doors: DoorSelfTests | None = None
                    ) -> list[tuple[float, str, str, Heartbeat]]:
    """The heartbeats the nodes' agents send in [t0, t1) of true time: every
    `HEARTBEAT_S` from a phase of each node's own, stamped by the node's clock, with
    the jumps the agent has counted (a clock offset starting, and ending) and, with
    `kiosks`, each kiosk's supervision report; with `doors`, each door counter's (both
    from the drivers' logic: kiosk_lines.py, door_tests.py; call with consecutive
    windows)."""
    out: list[tuple[float, str, str, Heartbeat]] = []
    for n in sim.nodes:
        phase = zlib.crc32(f"{n.site}/{n.node}".encode()) % int(HEARTBEAT_S)
        run = f"{zlib.crc32(f'run/{n.site}/{n.node}'.encode()):08x}"  # one run each
        node_jumps = jumps.get((n.site, n.node), [])
        first = phase + math.ceil((t0 - phase) / HEARTBEAT_S) * HEARTBEAT_S
        times = [first + HEARTBEAT_S * k
                 for k in range(max(0, math.ceil((t1 - first) / HEARTBEAT_S)))]
        reports: list[dict[str, Supervision]] = [{} for _ in times]
        for source in (kiosks, doors):
            if source is not None:
                for report, more in zip(reports, source.reports(n.site, n.node, times),
                                        strict=True):
                    report.update(more)
        for t, supervision in zip(times, reports, strict=True):
            counted = sum((e.start_s <= t) + (e.end_s <= t) for e in node_jumps)
            # synchronised: the injected offsets are steps of a clock NTP keeps (a step
            # that synchronised one is no node clock jump: HeartbeatMonitor)
            hb = Heartbeat(sim.at(t + _offset_at(t, node_jumps)), UPTIME_S + t, counted,
                           supervision or None, run, sim.at(t), synchronised=True)
            out.append((t, n.site, n.node, hb))
    return out


def warm_drift(history: Simulation, drift: CityDrift, days: float = 2.0) -> list[Drift]:
    """Feed `drift` the air readings of clean simulated days (the days before a run);
    the drifts it raised there (false positives: those days hold no fault)."""
    timed: list[tuple[int, str, str, str, str, dict[str, float]]] = []
    for n in history.nodes:
        for s in n.sensors:
            if s.kind in DRIFT_FIELDS:
                t, values = history.output(n.site, n.node, s.id).reports(0.0, days * 86_400.0)
                stamps = history.timebase.ts_ns(t).tolist()
                timed += [(ts, n.site, n.node, s.id, s.kind, v)
                          for ts, v in zip(stamps, values, strict=True)]
    timed.sort(key=lambda x: x[0])
    events: list[Drift] = []
    for ts, site, node, sensor, kind, v in timed:
        events += drift.update((site, node, sensor), kind, ts, v)
    return events


def stream(sim: Simulation, hours: float, tick_s: float = 60.0,
           step_s: float = 600.0, drift: CityDrift | None = None,
           supervised_kiosks: bool = True, tested_doors: bool = True
           ) -> tuple[list[Raised], int, int]:
    """Every fault event of the run; the number of readings and of monitor updates."""
    feed = FaultFeed() if drift is None else FaultFeed(drift=drift)
    doors = DoorSelfTests(sim) if tested_doors else None
    kiosks = KioskLines(sim) if supervised_kiosks else None
    raised: list[Raised] = []
    jumps: dict[tuple[str, str], list[Event]] = {}
    for e in sim.events:
        if e.type == "clock_jump" and e.site is not None and e.node is not None:
            jumps.setdefault((e.site, e.node), []).append(e)
    gen = sim.readings(max_batch=1000)
    start_ns = sim.timebase.start_ns
    end = hours * 3600.0
    readings = 0
    t0 = 0.0
    while t0 < end:
        t1 = min(end, t0 + step_s)
        timed: list[tuple[float, int, str, str, Reading | Heartbeat]] = []
        for batch in gen.advance(t1):
            node_jumps = jumps.get((batch.site, batch.node), [])
            at = t0
            for r in batch.readings:
                if node_jumps:
                    at = _true_offset((r.ts_ns - start_ns) / 1e9, node_jumps, at)
                else:
                    at = (r.ts_ns - start_ns) / 1e9
                timed.append((at, len(timed), batch.site, batch.node, r))
        for at, site, node, hb in node_heartbeats(sim, t0, t1, jumps, kiosks, doors):
            timed.append((at, len(timed), site, node, hb))
        timed.sort(key=lambda x: (x[0], x[1]))
        readings += sum(isinstance(x[4], Reading) for x in timed)
        i = 0
        tick = (t0 // tick_s + 1) * tick_s
        while tick <= t1:
            while i < len(timed) and timed[i][0] < tick:
                raised += _feed(feed, start_ns, *timed[i])
                i += 1
            raised += [Raised(s, n, ev, tick) for s, n, ev in feed.tick(sim.at(tick))]
            tick += tick_s
        for item in timed[i:]:
            raised += _feed(feed, start_ns, *item)
        t0 = t1
    return raised, readings, feed.updates


def _feed(feed: FaultFeed, start_ns: int, at: float, _: int, site: str, node: str,
          item: Reading | Heartbeat) -> list[Raised]:
    """`item` received by the cloud at `at` (the true time, s after `start_ns`)."""
    events = (feed.heartbeat(site, node, item) if isinstance(item, Heartbeat)
              else feed.check(site, node, item, start_ns + round(at * 1e9)))
    return [Raised(s, n, ev, at, feed.pair_of.pop(ev, None)) for s, n, ev in events]
