"""The README's demo run again on the same stack raised a false `clock_jump` on the
lightweight MH-Z19B nodes (one reading a minute): the new run's simulation reads them at
other seconds of the minute, and the gap across the two runs (87.5 s) was longer than any
of their 60 s gaps by more than the rule's 20 s. A real agent restarted after a stop of
that length raises nothing (tests/cloud/logic/test_agent_restart_gap.py): its first
heartbeat, under a new run id, dates its start within the gap. The demo's nodes sent no
heartbeat; each run now restarts them as an agent restarts: a heartbeat with a new run id
and an uptime dating their start after what the run before published, before any data.

Two runs of the demo's own publisher (its files in a demo directory, as runner.py uses
them), every message it hands to MQTT through the cloud's decoder and NodeState in order,
received when it was sent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cloud.journal import JournalRecord
from cloud.logic.node import NodeState
from cloud.logic.records import decode_record
from urbanpulse.clock import to_epoch_ns
from urbanpulse.demo.city_publisher import CityPublisher
from urbanpulse.demo.live import choose_live, live_sensor_keys
from urbanpulse.simulate import City, Simulation
from urbanpulse.wire.payload import decode_batch, decode_status

HISTORY_S = 300.0  # runner.HISTORY_S
HOUR_NS = 3600 * 10**9
START = datetime(2026, 11, 28, 2, 1, tzinfo=UTC)
FIRST_RUN_S = 33 * 60  # as the finding's: long enough for the rule to learn 20 gaps
PAUSE_S = 90  # between the first run's end and the second's start
CO2 = ("bach-mai", "opd-hall", "mhz19b")  # a lightweight MH-Z19B


class _Info:
    def is_published(self) -> bool:
        return True


class _Demo:
    """The demo's lightweight publisher, as runner.run_demo builds it, in `demo_dir`; what it
    publishes is kept as journal records, received at the offset being published."""

    def __init__(self, demo_dir: Path) -> None:
        self.seq_file = demo_dir / "city_seq.json"
        self.city = City.load()
        self.live = live_sensor_keys(choose_live(self.city))
        self.records: list[JournalRecord] = []
        self.received_ns = 0

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool = False) -> _Info:
        self.records.append(JournalRecord("i0", len(self.records), self.received_ns, topic,
                                          payload))
        return _Info()

    def run(self, now: datetime, seconds: float) -> CityPublisher:
        sim = Simulation(self.city, seed=1, start=now - timedelta(seconds=HISTORY_S))
        clients: Any = {(n.site, n.node): self for n in sim.nodes}
        publisher = CityPublisher(sim, sim.clock(at_offset=HISTORY_S), clients, self.live,
                                  self.seq_file)
        for until in (HISTORY_S, *range(int(HISTORY_S) + 10, int(HISTORY_S + seconds) + 1, 10)):
            self.received_ns = to_epoch_ns(sim.at(until)) + 10**6
            publisher.publish_until(until)
        publisher._status("offline", HISTORY_S + seconds)  # stop(), without its thread
        return publisher


def _cloud(records: list[JournalRecord], heartbeats: bool) -> list[str]:
    """The CLOCK_JUMP events of the lightweight nodes, the messages taken in order."""
    states: dict[str, NodeState] = {}
    events = []
    for rec in records:
        if not heartbeats and "/status" in rec.topic:
            continue
        data, points = decode_record(rec, 4096)
        if data is not None:
            state = states.setdefault(data.key, NodeState(6 * HOUR_NS))
            points.extend(state.heartbeat(data) if data.status is not None else state.process(data))
        events += [ln for _, ln in points if ln.startswith("events,") and "type=clock_jump" in ln]
    return events


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[_Demo, CityPublisher,
                                                                   CityPublisher]:
    demo = _Demo(tmp_path_factory.mktemp("demo"))
    first = demo.run(START, FIRST_RUN_S)
    second = demo.run(START + timedelta(seconds=FIRST_RUN_S + PAUSE_S), 300)
    return demo, first, second


def test_a_second_run_restarts_the_nodes_as_an_agent_does(
        two_runs: tuple[_Demo, CityPublisher, CityPublisher]) -> None:
    demo, first, second = two_runs
    assert second.run_id != first.run_id
    stamps: dict[str, list[tuple[str, int]]] = {}  # per node: (run, stamp) of its readings
    for rec in demo.records:
        if rec.topic.endswith("/status"):
            body = decode_status(rec.payload)
            node = rec.topic.split("/")[3]
            stamps.setdefault(node, []).append((body["health"]["run_id"], -1))
        else:
            batch = decode_batch(rec.payload)
            run = stamps[batch.node][-1][0]  # a heartbeat of the run came before its data
            stamps[batch.node] += [(run, r.ts_ns) for r in batch.readings]
    # no reading of the second run stamped before its nodes' start, which comes after every
    # reading of the first
    last_first = max(ts for node in stamps.values() for run, ts in node if run == first.run_id)
    first_second = min(ts for node in stamps.values() for run, ts in node
                       if run == second.run_id and ts >= 0)
    assert last_first < second.start_ns < first_second


def test_a_second_run_after_a_pause_raises_no_clock_jump(
        two_runs: tuple[_Demo, CityPublisher, CityPublisher]) -> None:
    demo, _, _ = two_runs
    assert _cloud(demo.records, heartbeats=True) == []


def test_without_the_restarts_heartbeats_the_gap_is_a_clock_jump(
        two_runs: tuple[_Demo, CityPublisher, CityPublisher]) -> None:
    """What the demo did before: the same runs, no heartbeat, a clock jump on the MH-Z19B."""
    demo, _, _ = two_runs
    events = _cloud(demo.records, heartbeats=False)
    # the node's event (one per node and jump), its detail naming the sensor
    assert any(f"node={CO2[1]}," in e and f"{CO2[2]}" in e and "clock set forward" in e
               for e in events), events
