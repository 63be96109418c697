"""The messages of a city whose nodes all went offline for some hours, in the order the
processor's journal gets them, and the same readings sent on time.

Timeline (data time, whole hours from `start`): `before_h` hours on time (the warm-up: the
processor's state and the raw points a replay reads back), then `outage_h` hours offline,
then `after_h` hours on time again. The measured part is every reading from the outage's
start on.

On time, a node sends what it read in the last `live_delay_s` (the edge's
`outbox.batch_max_delay_s`), at most `batch` readings a message. Back from the outage
(edge/publisher.py), a node sends the readings of its last `live_window_s` first, then
its backlog oldest first in messages of `batch` readings, `backlog_per_s` messages a
second, beside its live messages.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from bench.pipeline.workload import numbering_of
from urbanpulse.simulate import City, Simulation
from urbanpulse.wire import Reading, data_topic, encode_batch

HOUR_S = 3600.0
NS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class Sent:
    """A message as the journal gets it: when (epoch ns, the processor's received time)."""

    received_ns: int
    topic: str
    payload: bytes
    readings: int


@dataclass(frozen=True)
class OutagePlan:
    start: datetime
    before_h: int
    outage_h: int
    after_h: int
    replicas: int = 1
    batch: int = 500
    live_delay_s: float = 1.0
    live_window_s: float = 60.0
    backlog_per_s: float = 20.0
    seed: int = 1


@dataclass
class OutageMessages:
    warmup: list[Sent]
    measured: list[Sent]
    nodes: int
    outage_start_ns: int
    back_ns: int  # when the nodes come back
    end_ns: int

    @property
    def measured_readings(self) -> int:
        return sum(m.readings for m in self.measured)


def node_readings(plan: OutagePlan) -> dict[tuple[str, str], list[Reading]]:
    """Every reading of the plan's hours, per node, in the order each node read them."""
    city = City.load()
    if plan.replicas > 1:
        city = city.replicate(plan.replicas)
    sim = Simulation(city, seed=plan.seed, start=plan.start)
    gen = sim.readings(max_batch=2000)
    out: dict[tuple[str, str], list[Reading]] = defaultdict(list)
    total_s = (plan.before_h + plan.outage_h + plan.after_h) * HOUR_S
    while gen.position < total_s:
        for nb in gen.advance(min(total_s, gen.position + HOUR_S)):
            out[(nb.site, nb.node)].extend(nb.readings)
    return out


def _message(site: str, node: str, readings: list[Reading], received_ns: int) -> Sent:
    payload = encode_batch(site, node, readings, numbering=numbering_of(site, node))
    return Sent(received_ns, data_topic(site, node), payload, len(readings))


def _on_time(site: str, node: str, readings: list[Reading], plan: OutagePlan) -> list[Sent]:
    """Messages of readings within `live_delay_s` of the message's first, each received
    when its last reading was read."""
    out: list[Sent] = []
    delay = int(plan.live_delay_s * NS)
    chunk: list[Reading] = []
    for r in sorted(readings, key=lambda r: r.ts_ns):
        if chunk and (r.ts_ns - chunk[0].ts_ns >= delay or len(chunk) >= plan.batch):
            out.append(_message(site, node, chunk, chunk[-1].ts_ns + 1))
            chunk = []
        chunk.append(r)
    if chunk:
        out.append(_message(site, node, chunk, chunk[-1].ts_ns + 1))
    return out


def _merge(per_node: list[list[Sent]]) -> list[Sent]:
    """The nodes' messages in received order (each node's in its own order)."""
    return list(heapq.merge(*per_node, key=lambda m: m.received_ns))


def messages(plan: OutagePlan, backlog: bool) -> OutageMessages:
    """The warm-up's messages, and the measured ones: on time, or with the outage's
    readings held and sent as a backlog when the nodes come back (`backlog`)."""
    t0 = int(plan.start.timestamp()) * NS
    outage_start = t0 + int(plan.before_h * HOUR_S) * NS
    back = outage_start + int(plan.outage_h * HOUR_S) * NS
    end = back + int(plan.after_h * HOUR_S) * NS
    warmup: list[list[Sent]] = []
    measured: list[list[Sent]] = []
    readings = node_readings(plan)
    for (site, node), rs in sorted(readings.items()):
        warmup.append(_on_time(site, node, [r for r in rs if r.ts_ns < outage_start], plan))
        if not backlog:
            measured.append(_on_time(site, node, [r for r in rs if r.ts_ns >= outage_start], plan))
            continue
        held = sorted((r for r in rs if outage_start <= r.ts_ns < back), key=lambda r: r.ts_ns)
        live_since = back - int(plan.live_window_s * NS)
        fresh = [r for r in held if r.ts_ns >= live_since]
        old = [r for r in held if r.ts_ns < live_since]
        mine: list[Sent] = []
        if fresh:  # the first message back: the readings of the live window, in one
            for i in range(0, len(fresh), plan.batch):
                mine.append(_message(site, node, fresh[i:i + plan.batch], back))
        step = int(NS / plan.backlog_per_s)
        for k, i in enumerate(range(0, len(old), plan.batch)):
            mine.append(_message(site, node, old[i:i + plan.batch], back + (k + 1) * step))
        live = _on_time(site, node, [r for r in rs if r.ts_ns >= back], plan)
        measured.append(list(heapq.merge(mine, live, key=lambda m: m.received_ns)))
    return OutageMessages(_merge(warmup), _merge(measured), len(readings), outage_start, back, end)
