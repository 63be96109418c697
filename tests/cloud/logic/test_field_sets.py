"""No aggregate loses a field between two writes of one point, but a void one (issue 6).

InfluxDB merges two writes of one point (measurement, tags, time, retention policy) field
by field, so a rewrite that lacks a field the point had would leave that field's old value
beside the new ones (tests/cloud/test_void_fields_influx.py shows it on the real server).
docs/influx-schema.md ("Fields that can be void") says which fields may be left out of a
rewrite: a ratio or statistic of nothing, void by the counts written beside it. This test
holds every aggregate the processor writes to that, over small random cities whose
readings come shuffled, late within the horizon and beyond it (so windows are rebuilt and
domain spans replayed from the raw points, as the sink does), beds turning faulty, kiosks
whose calls arrive out of order, loops and dust sensors whose optional fields come and go.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

from cloud.logic.domain.hospital_site import HospitalSite
from cloud.logic.domain.late import SCOPE_KINDS
from cloud.logic.domain_replay import DOMAIN_REPLAY, ReplaySpan, coalesce, replay, replay_requests
from cloud.logic.node import NodeState
from cloud.logic.recompute import RECOMPUTE, Recompute
from cloud.logic.records import RP_1H, RP_1M, RP_RAW, NodeData, Point
from cloud.query.catalog import VOID
from tests.cloud.logic.domain_helpers import HOUR, MIN, T0, S, parse
from urbanpulse.wire import KINDS, Reading

SITE = "fs"
SEEDS = 8
Key = tuple[str, str, tuple[tuple[str, str], ...], int]


def _values(kind: str, rng: random.Random, state: dict[str, int]) -> dict[str, float]:
    if kind == "hospital.bed":
        return {"occupied": rng.choice([0, 1]), **({"fault": 1} if rng.random() < 0.25 else {})}
    if kind == "hospital.queue":
        ticket = state.setdefault("ticket", 1)
        if rng.random() < 0.5:  # a call of one of the last tickets, perhaps again
            return {"ticket": max(1, ticket - rng.randint(0, 2)), "called": 1}
        state["ticket"] = ticket % 4 + 1  # few numbers: tickets come round again
        return {"ticket": state["ticket"], "called": 0}
    if kind == "hospital.door":
        return {"count": rng.randint(0, 9), "interval_s": 60.0}
    if kind == "traffic.loop":
        v: dict[str, float] = {"count": rng.choice([0, 0, 2, 5]), "interval_s": rng.choice([30.0, 60.0])}
        if rng.random() < 0.4:
            v["occupancy_pct"] = rng.uniform(0, 60)
        if rng.random() < 0.4:
            v["speed_kmh"] = rng.uniform(5, 60)
        return v
    if kind == "air.pm":
        v = {"pm25": rng.uniform(0, 80), "pm10": rng.uniform(0, 120)}
        if rng.random() < 0.4:
            v["pm1"] = rng.uniform(0, 40)
        return v
    return {"co2": rng.uniform(400, 1500)}


SENSORS = {  # node -> (sensor, kind)
    "ward": [("bed-1", "hospital.bed"), ("bed-2", "hospital.bed"), ("bed-3", "hospital.bed")],
    "hall": [("kiosk-1", "hospital.queue")],
    "gate": [("er-1", "hospital.door"), ("main-1", "hospital.door")],
    "cross": [("lane-1", "traffic.loop"), ("lane-2", "traffic.loop")],
    "station": [("pm-1", "air.pm"), ("co2-1", "air.co2")],
}


def _city(seed: int) -> tuple[int, list[NodeData]]:
    """A horizon and the messages of a small city's 5 nodes over 7 hours: each reading
    sent on time, a little late or hours late, in messages of a few readings."""
    rng = random.Random(seed)
    horizon = rng.choice([30 * MIN, 2 * HOUR, 6 * HOUR])
    sends: list[tuple[int, str, Reading]] = []
    for node, sensors in SENSORS.items():
        for sensor, kind in sensors:
            state: dict[str, int] = {}
            step = rng.choice([1, 4, 13, 40]) * MIN
            t = T0 + rng.randrange(step)
            seq = 0
            while t < T0 + 7 * HOUR:
                r = Reading(sensor, kind, t - t % 1000, seq, _values(kind, rng, state))
                roll = rng.random()
                delay = (S if roll < 0.7 else rng.randrange(10 * MIN) if roll < 0.9
                         else rng.randrange(8 * HOUR))
                sends.append((t + delay, node, r))
                seq += 1
                t += step + rng.randrange(-step // 3, step // 3)
    sends.sort(key=lambda s: s[0])
    messages: list[NodeData] = []
    pending: dict[str, list[Reading]] = {}
    for at, node, r in sends:
        batch = pending.setdefault(node, [])
        batch.append(r)
        if len(batch) >= rng.randint(1, 6):
            messages.append(NodeData(f"{SITE}/{node}", SITE, node, at, batch))
            pending[node] = []
    last = sends[-1][0]
    messages += [NodeData(f"{SITE}/{node}", SITE, node, last, batch)
                 for node, batch in pending.items() if batch]
    return horizon, messages


def _row(point: str) -> dict[str, Any]:
    _, tags, fields, ts = parse(point)
    return {**tags, **fields, "time": ts}


def _written(horizon: int, messages: list[NodeData], asked: dict[str, int]) -> Iterator[list[Point]]:
    """What the sink writes per epoch (here one message each), in its order: the live
    points (node step, site step), then the windows rebuilt from the raw points, then the
    domain replays (counted in `asked`)."""
    nodes: dict[str, NodeState] = {}
    site = HospitalSite(horizon)
    raw: dict[str, list[dict[str, Any]]] = {}  # measurement -> rows
    for data in messages:
        state = nodes.setdefault(data.key, NodeState(horizon, detect=False))
        points = state.process(data)
        updates = state.take_site_updates()
        if updates:
            points += site.process(SITE, updates)
        points += replay_requests(SITE, data.node, state.domain.take_late())
        for rp, text in points:
            if rp == RP_RAW:
                raw.setdefault(text.split(",", 1)[0], []).append(_row(text))
        epoch = [(rp, text) for rp, text in points if rp in (RP_1M, RP_1H)]
        for rp, text in points:
            if rp == RECOMPUTE:
                asked[rp] += 1
                req = Recompute.decode(text)
                rows = [row for row in raw.get(req.measurement, [])
                        if row["sensor"] == req.sensor and row["node"] == req.node
                        and req.start_ns <= row["time"] < req.start_ns + req.width_ns]
                rebuilt = req.rebuild(rows)
                if rebuilt is not None:
                    epoch.append((req.rp, rebuilt))
        for span in coalesce(ReplaySpan.decode(text) for rp, text in points if rp == DOMAIN_REPLAY):
            asked[DOMAIN_REPLAY] += 1
            # the rows its queries would read (replay filters them again): its kinds, up to its end
            kinds = {KINDS[kind].measurement for kind in SCOPE_KINDS[span.scope]}
            epoch += replay(span, [row for name in kinds for row in raw.get(name, [])
                                   if row["time"] < span.end_ns])
        yield epoch


def _void(measurement: str, fields: dict[str, object]) -> set[str]:
    """The fields of this write that may be left out: void by its counts."""
    void = VOID.get(measurement)
    if void is None:
        return set()
    total = sum(float(str(fields.get(c, 0))) for c in void.counts)
    return set(void.fields) if total == 0 else set()


def test_a_point_written_again_has_every_field_it_had_but_a_void_one() -> None:
    asked = {RECOMPUTE: 0, DOMAIN_REPLAY: 0}
    names: set[str] = set()
    again = voided = 0
    for seed in range(SEEDS):
        last: dict[Key, set[str]] = {}
        for epoch in _written(*_city(seed), asked):
            # Within an epoch a live window of a replayed span may come before the replay
            # that rewrites it whole (docs/domain-rollups.md, "Late data"): what counts is
            # each point's last write of the epoch, which InfluxDB then holds.
            written: dict[Key, tuple[str, dict[str, object]]] = {}
            for rp, text in epoch:
                name, tags, fields, ts = parse(text)
                written[(rp, name, tuple(sorted(tags.items())), ts)] = (text, fields)
            for key, (text, fields) in written.items():
                names.add(key[1])
                before = last.get(key)
                if before is not None:
                    again += 1
                    void = _void(key[1], fields)
                    assert not before - fields.keys() - void, f"seed {seed}: {key[0]} {text} after {before}"
                    voided += bool(before & void)
                last[key] = set(fields)
    readings = {KINDS[kind].measurement for sensors in SENSORS.values() for _, kind in sensors}
    assert names >= readings | {"ledger", "ward_occupancy", "hospital_occupancy", "queue_wait",
                                "hospital_wait", "door_flow", "hospital_flow", "traffic_lane",
                                "traffic_intersection", "air_quality"}
    # not too tame: points are written again, windows rebuilt, spans replayed, and some
    # rewrites leave a ratio or a statistic void that the write before had
    assert again
    assert voided
    assert asked[RECOMPUTE]
    assert asked[DOMAIN_REPLAY]
