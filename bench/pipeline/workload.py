"""Wire batches made ahead of time with the simulator, so that generating them costs nothing
during a measured run.

Readings are cut per node into batches of exactly `batch` readings (a node's remainder waits
for its next readings), in the order the generator makes them, so that data time moves
forward roughly together on every node. With `live_s`, they are cut as a live node's outbox
cuts them instead: a message holds the readings stamped within `live_s` of its first one
(the agent's `outbox.batch_max_delay_s`), `batch` at most.

`relayed` turns a schedule into what each site's gateway sends instead (urbanpulse.wire.relay):
the node messages of a site due in each window of a few seconds in one relay.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.pipeline.errors import PipelineBenchError
from urbanpulse.simulate import City, Simulation
from urbanpulse.wire import KINDS, Reading, data_topic, encode_batch
from urbanpulse.wire.payload import parse_ts
from urbanpulse.wire.relay import (
    MAX_RELAY_BYTES,
    MAX_RELAY_MESSAGES,
    RELAY_OVERHEAD_BYTES,
    RelayedMessage,
    encode_relay,
    relay_item_bytes,
)
from urbanpulse.wire.topics import relay_topic

STEP_S = 3600.0
MAX_SIMULATED_DAYS = 400


@dataclass(frozen=True, slots=True)
class Message:
    site: str
    node: str
    topic: str
    payload: bytes
    readings: int


@dataclass
class Workload:
    messages: list[Message]
    nodes: list[tuple[str, str]]
    first_ts_ns: int
    last_ts_ns: int
    # InfluxDB keeps one point per series and time: the raw points expected per measurement.
    expected_points: Counter[str] = field(default_factory=Counter)

    @property
    def readings(self) -> int:
        return sum(m.readings for m in self.messages)

    def prefix(self, readings: int) -> Workload:
        """The first messages holding at least `readings` readings (all if fewer)."""
        total = 0
        cut = len(self.messages)
        for i, m in enumerate(self.messages):
            total += m.readings
            if total >= readings:
                cut = i + 1
                break
        return _summarise(self.messages[:cut])


def _summarise(messages: list[Message]) -> Workload:
    nodes: dict[tuple[str, str], None] = {}
    seen: set[tuple[str, str, str, str, int]] = set()
    points: Counter[str] = Counter()
    first, last = 2**63, 0
    for m in messages:
        nodes[(m.site, m.node)] = None
        for r in json.loads(m.payload)["readings"]:
            ts = parse_ts(r["ts"])
            first, last = min(first, ts), max(last, ts)
            # The processor's raw point time (cloud.logic.node.raw_time): reading time plus
            # seq mod 1000 ns, so readings sharing a microsecond stay distinct points.
            key = (m.site, m.node, r["sensor"], r["kind"], ts - ts % 1000 + r["seq"] % 1000)
            if key not in seen:
                seen.add(key)
                points[KINDS[r["kind"]].measurement] += 1
    return Workload(messages, list(nodes), first, last, points)


def simulated_start(city: City, readings: int, now: datetime) -> datetime:
    """A start far enough back that `readings` readings end before `now` (the cloud refuses
    readings more than a day ahead of its clock), rounded down to the hour."""
    probe = Simulation(city, seed=1, start=now).readings()
    probe.advance(6 * STEP_S)
    per_s = max(probe.count, 1) / (6 * STEP_S)
    span = timedelta(seconds=readings / per_s * 1.2 + 2 * STEP_S)
    if span > timedelta(days=MAX_SIMULATED_DAYS):
        raise PipelineBenchError(f"{readings} readings need {span.days} simulated days of this city; "
                                 "use more replicas")
    start = now - span
    return start.replace(minute=0, second=0, microsecond=0)


def generate(readings: int, *, replicas: int = 1, batch: int = 500, seed: int = 1,
             now: datetime | None = None, live_s: float | None = None) -> Workload:
    """At least `readings` readings of the default city (`replicas` copies of it)."""
    return _summarise([Message(site, node, data_topic(site, node),
                               encode_batch(site, node, chunk, numbering=numbering_of(site, node)),
                               len(chunk))
                       for site, node, chunk in generate_chunks(readings, replicas=replicas, batch=batch,
                                                                seed=seed, now=now, live_s=live_s)])


def generate_chunks(readings: int, *, replicas: int = 1, batch: int = 500, seed: int = 1,
                    now: datetime | None = None, live_s: float | None = None
                    ) -> list[tuple[str, str, list[Reading]]]:
    """`generate`'s messages before encoding: (site, node, readings) each."""
    if readings < 1 or batch < 1 or replicas < 1:
        raise PipelineBenchError("readings, batch and replicas must be positive")
    if live_s is not None and not live_s > 0:
        raise PipelineBenchError("live_s must be positive")
    city = City.load()
    if replicas > 1:
        city = city.replicate(replicas)
    now = now or datetime.now(UTC)
    start = simulated_start(city, readings, now)
    while True:
        try:
            return list(node_chunks(city, readings, batch, seed, start, now, live_s))
        except _ReachedThePresent:
            # The rate probed at `now` overstated the hours before it (an evening's traffic
            # against a night's): start as far back again. A start that was enough stays
            # as it was, so a fixed `now` gives the same workload as before.
            start = (now - 2 * (now - start)).replace(minute=0, second=0, microsecond=0)
            if now - start > timedelta(days=MAX_SIMULATED_DAYS):
                raise PipelineBenchError(f"{readings} readings need more than {MAX_SIMULATED_DAYS} "
                                         "simulated days of this city; use more replicas") from None


def _cut(buf: list[Reading], batch: int, live_ns: int | None) -> int | None:
    """How many of a node's pending readings its next message takes; None while it waits
    for more (`batch` readings, or with `live_ns` a reading stamped that much after the
    first, which the message leaves out)."""
    if live_ns is not None:
        end = buf[0].ts_ns + live_ns
        for i, r in enumerate(buf[:batch]):
            if r.ts_ns >= end:
                return i
    return batch if len(buf) >= batch else None


class _ReachedThePresent(Exception):
    pass


def node_chunks(city: City, readings: int, batch: int, seed: int, start: datetime, now: datetime,
                live_s: float | None = None) -> Iterator[tuple[str, str, list[Reading]]]:
    """Each node's readings cut into messages (site, node, readings), in the order
    `generate` sends them, until `readings` are made; raises _ReachedThePresent if the
    simulation reaches `now` first."""
    sim = Simulation(city, seed=seed, start=start)
    gen = sim.readings(max_batch=min(batch, 2000))
    pending: dict[tuple[str, str], list[Reading]] = {}
    made = 0
    live_ns = None if live_s is None else round(live_s * 1e9)
    while made < readings:
        for nb in gen.advance(gen.position + STEP_S):
            buf = pending.setdefault((nb.site, nb.node), [])
            buf.extend(nb.readings)
            while buf and made < readings:
                cut = _cut(buf, batch, live_ns)
                if cut is None:
                    break
                chunk, buf[:] = buf[:cut], buf[cut:]
                yield nb.site, nb.node, chunk
                made += len(chunk)
        if gen.position > (now - sim.start).total_seconds():
            raise _ReachedThePresent


def numbering_of(site: str, node: str) -> str:
    """A node's numbering id, as its outbox names it: fixed per node here, so that every run
    of the benchmark sends the same bytes."""
    return hashlib.blake2b(f"{site}/{node}".encode(), digest_size=8).hexdigest()


Scheduled = tuple[float, Message]  # (seconds after the start, message)


def schedule(messages: list[Message], rate: float) -> list[Scheduled]:
    """Each message due when the readings before it, sent at `rate` readings/s, are out."""
    out: list[Scheduled] = []
    before = 0
    for m in messages:
        out.append((before / rate, m))
        before += m.readings
    return out


GATEWAY = "gw-1"  # each site's gateway: its user is "<site>.gw-1"


def relayed(plan: list[Scheduled], seconds: float) -> list[Scheduled]:
    """`plan` as each site's gateway sends it: the node messages of a site due in each
    `seconds` window from the start in one relay (cut as a gateway cuts them, at
    MAX_RELAY_MESSAGES and MAX_RELAY_BYTES), due at the window's end; in due order."""
    windows: dict[tuple[str, int], list[Message]] = {}
    for t, m in plan:
        windows.setdefault((m.site, int(t // seconds)), []).append(m)
    counters: Counter[str] = Counter()
    out: list[Scheduled] = []
    for (site, k), messages in sorted(windows.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        for part in _relay_parts(messages):
            counters[site] += 1
            payload = encode_relay(site, GATEWAY, f"be.{counters[site]}",
                                   [RelayedMessage(m.node, "data", m.payload) for m in part])
            out.append(((k + 1) * seconds, Message(site, GATEWAY, relay_topic(site, GATEWAY), payload,
                                                   sum(m.readings for m in part))))
    return out


def _relay_parts(messages: list[Message]) -> list[list[Message]]:
    parts: list[list[Message]] = [[]]
    size = RELAY_OVERHEAD_BYTES
    for m in messages:
        grows = relay_item_bytes(RelayedMessage(m.node, "data", m.payload))
        if parts[-1] and (len(parts[-1]) == MAX_RELAY_MESSAGES or size + grows > MAX_RELAY_BYTES):
            parts.append([])
            size = RELAY_OVERHEAD_BYTES
        parts[-1].append(m)
        size += grows
    return parts


def save(scheduled: list[Scheduled], path: Path) -> None:
    rows = [(t, m.site, m.node, m.topic, m.payload, m.readings) for t, m in scheduled]
    path.write_bytes(pickle.dumps(rows, protocol=pickle.HIGHEST_PROTOCOL))


def load(path: Path) -> list[Scheduled]:
    try:
        rows = pickle.loads(path.read_bytes())
    except (OSError, pickle.UnpicklingError) as exc:
        raise PipelineBenchError(f"cannot read the workload file {path}: {exc}") from exc
    return [(row[0], Message(*row[1:])) for row in rows]
