"""`outbox_evicted` (the heartbeat's count of rows the outbox let go unconfirmed) during the
age eviction of a backlog once the clock is synchronised mid-run: the publisher is sending
that backlog meanwhile, oldest first, so the eviction's batches take rows that are on their
way to the cloud. Those reach it (the cloud confirms them), and were counted as evicted
too: an operator reading `edge status` or the node's status took readings the cloud has
for lost (found by review). Rows the cloud confirms after their eviction are taken back
from the count; rows never confirmed stay counted.

The node's publisher runs on the session's real Mosquitto; the test plays the cloud."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from edge.agent import Agent
from edge.clock_sync import FixedClockSync
from edge.config import load_config
from edge.drivers.base import Sample
from edge.mqtt_client import make_client as make_node_client
from edge.publisher import Publisher
from urbanpulse.clock import FakeClock, to_epoch_ns
from urbanpulse.mqtt import close_client, connect_and_wait, make_client
from urbanpulse.stack import StackInfo
from urbanpulse.testing import wait_for
from urbanpulse.wire import ack_topic, data_topic, decode_batch, encode_ack
from urbanpulse.wire.payload import batch_id_of

SITE = "hn-evict"
NODE = "aq-evict"
NOW = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
OLD = 1_000  # rows committed ten days ago
BATCH = 100


class PlayedCloud:
    """Every data message of the node; confirms only when told to."""

    def __init__(self, stack: StackInfo) -> None:
        self.batches: dict[str, list[int]] = {}  # batch id -> seqs
        self._lock = threading.Lock()
        self.client = make_client("played-cloud-evict", stack.mqtt("cloud"), clean_start=True)
        self.client.on_message = self._on_message

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        batch = decode_batch(msg.payload, site=SITE, node=NODE)
        with self._lock:
            self.batches[batch_id_of(msg.payload) or ""] = [r.seq for r in batch.readings]

    def start(self) -> None:
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        connect_and_wait(self.client)
        self.client.subscribe(data_topic(SITE, NODE), qos=1)
        assert subscribed.wait(10), "subscription not acknowledged"

    def seen(self) -> dict[str, list[int]]:
        with self._lock:
            return dict(self.batches)

    def confirm(self, batches: list[str]) -> None:
        self.client.publish(ack_topic(SITE, NODE), encode_ack(batches), qos=1).wait_for_publish(10)

    def stop(self) -> None:
        close_client(self.client)


@pytest.fixture
def cloud(stack: StackInfo) -> Iterator[PlayedCloud]:
    played = PlayedCloud(stack)
    played.start()
    yield played
    played.stop()


def test_rows_evicted_by_age_while_on_their_way_are_not_counted_once_the_cloud_confirms_them(
        make_node_config: Callable[..., Path], cloud: PlayedCloud) -> None:
    path = make_node_config(SITE, NODE, '[[sensors]]\nid = "pm-1"\ndriver = "sds011"\n'
                            'port = "/dev/null"\n', delivery="cloud", ack_timeout_s=600.0,
                            batch_max_readings=BATCH, backlog_batches_per_s=2.0)
    config = load_config(path)
    clock = FakeClock(NOW)
    probe = FixedClockSync(False)  # a Pi booted on a stale clock: no age eviction yet
    agent = Agent(config, clock=clock, clock_sync=probe)
    agent.clock_sync.start()
    agent.outbox.open()
    sample = Sample("pm-1", "air.pm", {"pm25": 12.0, "pm10": 20.0}, NOW - timedelta(days=10))
    agent.outbox.append([sample] * OLD, to_epoch_ns(NOW - timedelta(days=10)))
    publisher = Publisher(config, agent.outbox,
                          lambda: make_node_client(f"edge-{SITE}.{NODE}", config.mqtt),
                          clock, agent.health)
    agent.publisher = publisher
    publisher.start()
    try:
        # the backlog pass, 2 batches a second: some of it on its way, none confirmed
        wait_for(lambda: len(cloud.seen()) >= 2, 15, "backlog batches sent")
        probe.set(True)  # NTP answers: the age eviction runs, a batch per flush interval
        clock.advance(2.0)
        agent.clock_sync.refresh()
        for _ in range(10):
            agent._evict_aged()
        assert agent._aged
        assert agent.outbox.stats().depth == 0
        seen = cloud.seen()
        assert 0 < len(seen) < OLD // BATCH
        delivered = {seq for seqs in seen.values() for seq in seqs}
        cloud.confirm(list(seen))
        wait_for(lambda: publisher.state.readings_acked >= len(delivered), 10,
                 "the cloud's ack to be taken")
        assert publisher.state.readings_acked == len(delivered)
        # the rows the cloud has are not counted as evicted; the others are, for good
        wait_for(lambda: agent.outbox.stats().evicted == OLD - len(delivered), 5,
                 "the count of rows evicted unconfirmed")
        assert agent.health()["outbox_evicted"] == OLD - len(delivered)
    finally:
        publisher.stop()
        agent.outbox.close()
    assert publisher.failure is None
