"""A demo killed outright (SIGKILL, the OOM killer, a power cut) must not make the next run
reuse the lightweight sensors' sequence numbers. The publisher kept its numbers and how far
it published in memory and saved them only when it stopped cleanly: the next run numbered
from the last clean stop again under the same numbering, and the cloud took its first
readings (each stamped before the newest it had) for redeliveries of what the killed run had
sent: dropped and counted as duplicates. A first run killed left no file at all, and the
next one back-filled the same minutes again under a new numbering: every interval counted
twice.

The runs go through the demo's own publisher (files in a demo directory, as runner.py
uses them) and what they hand to MQTT goes through the cloud's NodeState, as the processor
runs it."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cloud.detect.faults import FaultType
from cloud.logic.node import NodeState
from cloud.logic.records import RP_RAW, NodeData
from urbanpulse.demo.city_publisher import CityPublisher
from urbanpulse.demo.live import choose_live, live_sensor_keys
from urbanpulse.simulate import City, Simulation
from urbanpulse.wire import Reading
from urbanpulse.wire.payload import decode_batch

HISTORY_S = 300.0  # runner.HISTORY_S: the minutes a run back-fills
HOUR_NS = 3600 * 10**9
# On the hour plus a minute: every run of the test stays within one ledger hour.
READING_SERIES = ("air_", "traffic_", "hospital_")  # the raw measurements of readings
START = datetime(2026, 11, 28, 2, 1, tzinfo=UTC)


class _Info:
    def is_published(self) -> bool:
        return True


class _Client:
    """Keeps the data messages the publisher hands to MQTT (not the nodes' statuses)."""

    def __init__(self, sent: list[bytes]) -> None:
        self.sent = sent

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool = False) -> _Info:
        if topic.endswith("/data"):
            self.sent.append(payload)
        return _Info()


class _Demo:
    """The demo's lightweight publisher, as runner.run_demo builds it, in `demo_dir`."""

    def __init__(self, demo_dir: Path, city: City) -> None:
        self.seq_file = demo_dir / "city_seq.json"
        self.city = city
        self.live = live_sensor_keys(choose_live(city))
        self.sent: list[bytes] = []

    def start(self, now: datetime) -> CityPublisher:
        sim = Simulation(self.city, seed=0, start=now - timedelta(seconds=HISTORY_S))
        clock = sim.clock(at_offset=HISTORY_S)
        clients: Any = {(n.site, n.node): _Client(self.sent) for n in sim.nodes}
        publisher = CityPublisher(sim, clock, clients, self.live, self.seq_file)
        publisher.publish_until(HISTORY_S)  # the back-fill
        return publisher

    def run(self, publisher: CityPublisher, seconds: float) -> None:
        for step in range(10, int(seconds) + 1, 10):
            publisher.publish_until(HISTORY_S + step)


Sent = tuple[str | None, str, Reading]  # numbering, "site/node", the reading


def _cloud(sent: list[bytes]) -> tuple[dict[str, NodeState], int, list[Sent]]:
    """Every message through the cloud's node state, in order: the states, how many raw
    reading points they wrote, and the readings sent."""
    states: dict[str, NodeState] = {}
    stored = 0
    readings: list[Sent] = []
    for payload in sent:
        batch = decode_batch(payload)
        key = f"{batch.site}/{batch.node}"
        state = states.setdefault(key, NodeState(6 * HOUR_NS))
        received_ns = max(r.ts_ns for r in batch.readings) + 10**9
        points = state.process(NodeData(key, batch.site, batch.node, received_ns, batch.readings,
                                        None, batch.numbering))
        stored += sum(1 for rp, t in points if rp == RP_RAW and t.startswith(READING_SERIES))
        readings += [(batch.numbering, key, r) for r in batch.readings]
    return states, stored, readings


@pytest.mark.parametrize("earlier_clean_run", [False, True])
def test_a_demo_killed_outright_leaves_the_next_run_no_number_to_reuse(
        tmp_path: Path, earlier_clean_run: bool) -> None:
    city = City.load()
    demo = _Demo(tmp_path, city)
    now = START
    if earlier_clean_run:  # (a clean stop publishes what is due and waits for the PUBACKs)
        demo.run(demo.start(now), 60)
        now += timedelta(minutes=2)
    killed = demo.start(now)
    demo.run(killed, 110)
    sent_before = len(demo.sent)
    killed.publish_until(HISTORY_S + 120)
    # SIGKILL: nothing more is called, and what the last step handed to paho was still in
    # its queue, never sent.
    lost = [(f"{b.site}/{b.node}", r.sensor, r.seq)
            for b in map(decode_batch, demo.sent[sent_before:]) for r in b.readings]
    del demo.sent[sent_before:], killed
    assert lost
    now += timedelta(seconds=120 + 20)
    demo.run(demo.start(now), 60)

    states, stored, sent = _cloud(demo.sent)
    # No number used twice in one numbering; no minute sent twice (each sensor's stamps go on).
    numbers = [(numbering, key, r.sensor, r.seq) for numbering, key, r in sent]
    assert len(set(numbers)) == len(numbers), "a sequence number sent twice"
    newest: dict[tuple[str, str], int] = {}
    for _, key, r in sent:
        assert r.ts_ns >= newest.get((key, r.sensor), 0), f"{key}/{r.sensor}: minutes sent twice"
        newest[(key, r.sensor)] = r.ts_ns
    # The cloud stores every reading, and its ledger says so.
    assert stored == len(sent)
    # Each hour as the ledger point writes it (`field_text`: line protocol, integers as 3i).
    ledger = [{name: value.removesuffix("i") for name, value in
               (pair.split("=") for pair in h.field_text(s._missing(h)).split(","))}
              for s in states.values() for h in s.ledger.values()]
    assert sum(int(h["received"]) for h in ledger) == len(sent)
    assert sum(int(h["duplicates"]) for h in ledger) == 0
    assert sum(int(h["restarts"]) for h in ledger) == 0  # one numbering throughout
    # Missing: exactly the gaps in the numbers that reached the cloud (the simulation's own
    # gaps, kept, and what the kill lost) ...
    seqs: dict[tuple[str, str], list[int]] = defaultdict(list)
    for _, key, r in sent:
        seqs[(key, r.sensor)].append(r.seq)
    gaps = sum(max(s) - min(s) + 1 - len(set(s)) for s in seqs.values())
    missing = sum(int(h["missing"]) for h in ledger)
    assert missing == gaps
    # ... what the kill lost among them, numbered and never sent, once numbers follow it:
    # the summary's "missing" tells of it, its "duplicates" tell of nothing.
    followed = [seq for key, sensor, seq in lost if seq < max(seqs.get((key, sensor), [-1]))]
    assert followed
    assert missing >= len(followed)
    assert [a for s in states.values() for a in s.alerts if a.type == FaultType.CLOCK_JUMP] == []
