"""The events and alerts of the city workload are those of the code before detection was
made cheaper a second time (issue 6: cheaper per value, identical results).

The workload is the one `python -m bench.pipeline.stages` times (`generate`), 20,000
readings of the default city ending at a fixed moment, run through the dataflow's node
state with detection on, then ticked past the end so that the silence rules fire too.
The digest covers every `events` point (its line protocol, in order) and every alert.
It was computed with the code of commit d37b954; a deliberate change of the detector or
the fault rules, or of the simulated city, changes it: recompute it then.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta

from bench.pipeline.workload import generate
from cloud.journal import JournalRecord
from cloud.logic.node import NodeState
from cloud.logic.records import decode_record
from urbanpulse.clock import from_epoch_ns

HORIZON_NS = 6 * 3600 * 10**9
END = datetime(2024, 5, 1, 12, tzinfo=UTC)
PINNED = ("695a07bb7394546c0d57bec4c9da989be4ee2de20c18171ef31705dc268a49dd", 244, 244)


def city_events() -> tuple[str, int, int]:
    """(digest of the events and alerts, events, alerts) of the workload."""
    workload = generate(20_000, now=END)
    received = workload.last_ts_ns
    digest = hashlib.sha256()
    states: dict[str, NodeState] = {}
    events = alerts = 0

    def take(state: NodeState, points: list[tuple[str, str]]) -> None:
        nonlocal events, alerts
        for _, line in points:
            if line.startswith("events"):
                digest.update(line.encode() + b"\n")
                events += 1
        for alert in state.take_alerts():
            digest.update(json.dumps(alert.as_json(), sort_keys=True).encode() + b"\n")
            alerts += 1

    for i, message in enumerate(workload.messages):
        record = JournalRecord("i0", i + 1, received + i * 10_000_000, message.topic, message.payload)
        data, _ = decode_record(record, 4096)
        assert data is not None
        state = states.get(data.key)
        if state is None:
            state = states[data.key] = NodeState(HORIZON_NS, detect=True)
        take(state, state.process(data))
    for hours in (1, 3):
        now = from_epoch_ns(received) + timedelta(hours=hours)
        for state in states.values():
            take(state, state.tick(now))
    return digest.hexdigest(), events, alerts


def test_the_city_raises_the_events_and_alerts_it_raised_before() -> None:
    digest, events, alerts = city_events()
    assert events > 50
    assert alerts == events
    assert (digest, events, alerts) == PINNED
