"""`check_readings` (a message scored per sensor and field, events put back in reading
order) against `SensorWatch.check` per reading, over every kind of the contract: kiosks
(stamps going back judged by `stamped_before`, the issue/call rule reading `called` from
the other field), doors, bed pads, loops and air; sensors changing kind, optional fields
left out, fields in any order, sequence numbers repeating, skipping and going back,
messages cut anywhere. The whole watch state must be the same, not only the events."""

from __future__ import annotations

import pickle
import random
from itertools import pairwise

import pytest

from cloud.logic.events import Alert, SensorWatch, check_readings
from cloud.logic.records import Point
from urbanpulse.wire import Reading
from urbanpulse.wire.kinds import KINDS

T0_NS = 1_714_000_000 * 10**9


def _value(rng: random.Random, name: str, low: float | None, high: float | None) -> float:
    if name == "called":
        return float(rng.random() < 0.5)
    low = -10.0 if low is None else low
    high = 100.0 if high is None else high
    draw = rng.random()
    if draw < 0.05:
        return high * 2 + 1  # out of range: OUT_OF_RANGE, not scored
    if draw < 0.3:
        return float(rng.choice([0, 1, 2]))  # stuck runs, zeros, cut flags
    return round(rng.uniform(low, min(high, low + 50)), 1)


def _readings(rng: random.Random) -> list[Reading]:
    sensors = [f"s{i}" for i in range(rng.randint(1, 4))]
    kinds = list(KINDS)
    kind_of = {s: rng.choice(kinds) for s in sensors}
    seq = dict.fromkeys(sensors, 0)
    ts = dict.fromkeys(sensors, T0_NS)
    out = []
    for _ in range(rng.randint(50, 400)):
        sensor = rng.choice(sensors)
        if rng.random() < 0.03:
            kind_of[sensor] = rng.choice(kinds)
        kind = kind_of[sensor]
        items = [(name, _value(rng, name, spec.low, spec.high))
                 for name, spec in KINDS[kind].fields.items()
                 if spec.required or rng.random() < 0.5]
        rng.shuffle(items)
        seq[sensor] += rng.choice([1, 1, 1, 1, 5, -3, 0])
        ts[sensor] += rng.choice([60, 60, 60, 1, 0, -120, 600, 5000]) * 10**9
        out.append(Reading(sensor, kind, ts[sensor], seq[sensor], dict(items)))
    return out


def _numbered(readings: list[Reading]) -> list[Reading]:
    """The readings with each sensor's numbers going up (by 1, or by 5 where they jumped),
    as the node state hands them to the rules: a number taken twice is a duplicate, dropped
    before (dedup by sensor and number)."""
    last: dict[str, tuple[int, int]] = {}  # sensor -> (number given, number generated)
    out = []
    for r in readings:
        given, generated = last.get(r.sensor, (-1, r.seq - 1))
        seq = given + (5 if r.seq - generated == 5 else 1)
        last[r.sensor] = (seq, r.seq)
        out.append(Reading(r.sensor, r.kind, r.ts_ns, seq, r.values, r.flags))
    return out


def _assert_both_ways_alike(readings: list[Reading], rng: random.Random, received: bool,
                            late_ns: int = 0) -> list[Point]:
    """The readings cut into messages at random, checked one reading at a time
    (`SensorWatch.check`) and a message at a time (`check_readings`): the same points,
    alerts and state; with `received`, each message told its reception (its last stamp,
    `late_ns` later). Returns the points."""
    cuts = sorted({0, len(readings), *(rng.randint(0, len(readings)) for _ in range(4))})
    one: dict[str, SensorWatch] = {}
    batch: dict[str, SensorWatch] = {}
    points: tuple[list[Point], list[Point]] = ([], [])
    alerts: tuple[list[Alert], list[Alert]] = ([], [])
    for start, end in pairwise(cuts):
        message = readings[start:end]
        at = (message[-1].ts_ns if message else T0_NS) + late_ns if received else None
        for r in message:
            points[0].extend(one.setdefault(r.sensor, SensorWatch()).check(
                "hn", "n1", r, alerts[0], received_ns=at))
        points[1].extend(check_readings("hn", "n1", message, batch, alerts[1], at))
    assert points[0] == points[1]
    assert alerts[0] == alerts[1]
    assert pickle.dumps(one) == pickle.dumps(batch)
    return points[1]


@pytest.mark.parametrize("seed", range(40))
def test_per_field_scoring_matches_one_check_per_reading_for_every_kind(seed: int) -> None:
    rng = random.Random(seed)
    _assert_both_ways_alike(_readings(rng), rng, received=False)


def test_events_stamped_at_their_reception_match_in_both_ways() -> None:
    """Messages received an hour after their readings' stamps (a node's clock behind, or a
    backlog): their fault events are stamped at the reception, each placed after it by its
    reading's number and field (cloud.logic.events.reception_stamp), the same in both ways
    and each a point of its own (no two of one series share a stamp)."""
    moved = 0
    for seed in range(20):
        rng = random.Random(seed)
        points = _assert_both_ways_alike(_numbered(_readings(rng)), rng, received=True,
                                         late_ns=3600 * 10**9)
        faults = [text for _, text in points if "type=anomaly" not in text]
        moved += sum("node_ts=" in text for text in faults)
        keys = [(text.split(" ")[0], text.rsplit(" ", 1)[1]) for text in faults]
        assert len(set(keys)) == len(keys)
    assert moved > 50


def test_the_generated_messages_reach_the_rules_that_read_across_fields_and_stamps() -> None:
    """The readings above include kiosk readings stamped before their sensor's newest
    (`stamped_before`) and fire events of several rules and kinds: the comparison is not
    between two empty lists. (Anomaly scores need warm detectors: test_detect_equivalence.)"""
    types: set[str] = set()
    stamped_back = 0
    for seed in range(40):
        readings = _readings(random.Random(seed))
        newest: dict[str, int] = {}
        for r in readings:
            if r.kind == "hospital.queue" and r.ts_ns < newest.get(r.sensor, 0):
                stamped_back += 1
            newest[r.sensor] = max(newest.get(r.sensor, 0), r.ts_ns)
        alerts: list[Alert] = []
        check_readings("hn", "n1", readings, {}, alerts)
        types |= {f"{a.kind}:{a.type}" for a in alerts}
    assert stamped_back > 10
    assert {"hospital.queue:clock_jump", "hospital.door:cut_cable", "hospital.bed:spike",
            "air.pm:spike", "traffic.loop:silence", "air.co2:out_of_range"} <= types


@pytest.mark.parametrize("seed", range(20))
def test_readings_kept_out_of_the_rules_are_told_to_them_alike(seed: int) -> None:
    """Readings flagged `warmup` or `clock_unsynced` are not judged but told to the rules
    (`FaultMonitor.unjudged`, with the message's reception): the same in both ways."""
    rng, flag = random.Random(seed), random.Random(1000 + seed)
    readings = [Reading(r.sensor, r.kind, r.ts_ns, r.seq, r.values,
                        (flag.choice(["warmup", "clock_unsynced"]),))
                if flag.random() < 0.2 else r for r in _readings(rng)]
    assert any(r.flags for r in readings)
    _assert_both_ways_alike(readings, rng, received=True)
