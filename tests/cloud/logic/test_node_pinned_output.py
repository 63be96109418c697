"""The node state's output pinned byte for byte, so that a faster `decode_record` or
`NodeState.process` cannot change a single point.

The digests were computed by the code before the per-sensor (columnar) rewrite of the node
state (commit 3c42cf8), on the benchmark's own generated city, once in order and once made
messy: messages shuffled and replayed, a short horizon (windows rebuilt from raw points,
eviction), warming-up sensors, values outside the contract's range, rejected readings. The
order of the points is part of the digest.

Detection's events come from `cloud.logic.events` and `cloud.detect`, which change on their
own; with detection on, the test checks that the node state's own points are those of
detection off and that each message's events follow its raw points, as before.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import cache

from bench.pipeline.workload import Workload, generate
from cloud.journal import JournalRecord
from cloud.logic.node import NodeState
from cloud.logic.recompute import RECOMPUTE
from cloud.logic.records import RP_RAW, Point, decode_record
from urbanpulse.wire.kinds import KINDS

HOUR_NS = 3600 * 10**9
NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)  # the workload's end: generate() is then deterministic

WORKLOAD_SHA256 = "c38cbc01a2e2c67ccaee07231ca379b038c2f0ada10fe0d698356dddb195885f"
PLAIN_SHA256 = "00200f865a3f1c80f7a1640dacadbf57b9089e89e3cf6ec1112db6fc50cae9c2"
PLAIN_POINTS = 40962
MESSY_SHA256 = "b50ee9b95b0f2fcad966a01588a517689c5019068c3a4819f41297ae05775766"
MESSY_POINTS = 40638


@cache
def _workload() -> Workload:
    return generate(20_000, now=NOW)


def _plain() -> list[JournalRecord]:
    w = _workload()
    return [JournalRecord("i0", i + 1, w.last_ts_ns + i * 10_000_000, m.topic, m.payload)
            for i, m in enumerate(w.messages)]


def _spoil(payload: bytes, rng: random.Random) -> bytes:
    """Some readings warming up, out of the contract's range, or broken on the wire."""
    body = json.loads(payload)
    for r in body["readings"]:
        roll = rng.random()
        if roll < 0.03:
            r["flags"] = ["warmup"]
        elif roll < 0.06:
            name = next(iter(r["values"]))
            high = KINDS[r["kind"]].fields[name].high
            r["values"][name] = (high if high is not None else 1e300) * 10 + 1
        elif roll < 0.07:
            r["flags"] = ["calibrating", "backlog"]
        elif roll < 0.075:
            r["seq"] = -1
        elif roll < 0.08:
            r["values"]["no_such_field"] = 1.0
    return json.dumps(body, separators=(",", ":")).encode()


def _messy() -> list[JournalRecord]:
    """Shuffled (late data), every fifth message delivered twice (duplicates), spoiled."""
    w = _workload()
    rng = random.Random(6)
    keys = [i + rng.uniform(0, 12) for i in range(len(w.messages))]  # local disorder
    messages = [m for _, m in sorted(zip(keys, w.messages, strict=True), key=lambda km: km[0])]
    out: list[JournalRecord] = []
    received = w.last_ts_ns
    for i, m in enumerate(messages):
        payload = _spoil(m.payload, rng)
        for _ in range(2 if i % 5 == 0 else 1):
            received += 10_000_000
            out.append(JournalRecord("i0", len(out) + 1, received, m.topic, payload))
    return out


def _points(records: list[JournalRecord], horizon_ns: int, detect: bool) -> Iterator[list[Point]]:
    """Per record: the decoder's points, then the node state's."""
    states: dict[str, NodeState] = {}
    for rec in records:
        data, points = decode_record(rec, 4096)
        if data is not None:
            state = states.setdefault(data.key, NodeState(horizon_ns, detect))
            points = points + state.process(data)
            state.take_alerts()
            state.take_site_updates()
        yield points


def _digest(records: list[JournalRecord], horizon_ns: int) -> tuple[str, int]:
    h = hashlib.sha256()
    n = 0
    for points in _points(records, horizon_ns, detect=False):
        for rp, text in points:
            h.update(f"{rp}\t{text}\n".encode())
            n += 1
    return h.hexdigest(), n


def _with_detection_same_points(records: list[JournalRecord], horizon_ns: int) -> int:
    """Checks the points with detection on against those without; returns the events."""
    seen = 0
    off = _points(records, horizon_ns, detect=False)
    on = _points(records, horizon_ns, detect=True)
    for i, (plain, detected) in enumerate(zip(off, on, strict=True)):
        events = [k for k, (_, text) in enumerate(detected) if text.startswith("events,")]
        assert [p for p in detected if not p[1].startswith("events,")] == plain, i
        if events:  # one run, right after the message's raw points
            assert events == list(range(events[0], events[-1] + 1)), i
            before = detected[:events[0]]
            assert before, i
            assert all(rp in (RP_RAW, RECOMPUTE) for rp, _ in before), i
        seen += len(events)
    return seen


def test_the_generated_workload_is_the_one_the_digests_were_taken_on() -> None:
    w = _workload()
    h = hashlib.sha256(b"".join(m.topic.encode() + b"\0" + m.payload for m in w.messages))
    assert h.hexdigest() == WORKLOAD_SHA256, "the simulator changed: recompute the digests"


def test_points_of_a_workload_in_order_are_byte_identical() -> None:
    assert _digest(_plain(), 6 * HOUR_NS) == (PLAIN_SHA256, PLAIN_POINTS)


def test_points_of_a_messy_workload_are_byte_identical() -> None:
    assert _digest(_messy(), HOUR_NS) == (MESSY_SHA256, MESSY_POINTS)


def test_detection_adds_its_events_and_changes_no_other_point() -> None:
    assert _with_detection_same_points(_plain(), 6 * HOUR_NS) > 0
    assert _with_detection_same_points(_messy(), HOUR_NS) > 0
