"""The publisher and a wall clock that steps (NTP correcting a node that booted on a wrong
time, an RTC module set ahead): readings stamped with their commit time (`created_ns`)
before the step must not wait for the clock to catch up with that time again.

The node's publisher runs on the session's real Mosquitto with delivery = "broker", on a
FakeClock that the test steps; a collector (as the cloud) sees every reading.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from edge import publisher as publisher_module
from edge.config import load_config
from edge.drivers.base import Sample
from edge.mqtt_client import make_client as make_node_client
from edge.outbox import Outbox
from edge.publisher import Publisher
from tests.conftest import Collector
from urbanpulse.clock import FakeClock, to_epoch_ns
from urbanpulse.mqtt import close_client, connect_and_wait, make_client
from urbanpulse.stack import StackInfo
from urbanpulse.testing import wait_for
from urbanpulse.wire import ack_topic, data_topic, decode_batch, encode_ack
from urbanpulse.wire.payload import batch_id_of

SITE = "hn-clockstep"


@pytest.fixture(autouse=True)
def _quick_pumps(monkeypatch: pytest.MonkeyPatch) -> None:
    """The publisher looks at the outbox and the FakeClock every 10 ms, not 100 ms: each clock
    step here waits for a look. Only how soon it looks after a step changes; what it does at
    each look is driven by the FakeClock alone."""
    monkeypatch.setattr(publisher_module, "PUMP_INTERVAL_S", 0.01)


@pytest.fixture
def node(make_node_config: Callable[..., Path], tmp_path: Path
         ) -> Iterator[Callable[[str], tuple[Publisher, Outbox, FakeClock]]]:
    made: list[tuple[Publisher, Outbox]] = []

    def make(node_id: str) -> tuple[Publisher, Outbox, FakeClock]:
        path = make_node_config(SITE, node_id, '[[sensors]]\nid = "pm-1"\ndriver = "sds011"\n'
                                'port = "/dev/null"\n')
        config = load_config(path)
        clock = FakeClock(datetime(2026, 11, 29, 6, 0, tzinfo=UTC))
        outbox = Outbox(tmp_path / f"{node_id}.sqlite3").open()
        publisher = Publisher(config, outbox, lambda: make_node_client(f"edge-{SITE}.{node_id}",
                                                                       config.mqtt),
                              clock, lambda: {})
        publisher.start()
        made.append((publisher, outbox))
        return publisher, outbox, clock

    yield make
    for publisher, outbox in made:
        publisher.stop()
        outbox.close()
        assert publisher.failure is None


def _append(outbox: Outbox, clock: FakeClock, n: int) -> None:
    outbox.append([Sample("pm-1", "air.pm", {"pm25": 12.0, "pm10": 20.0}, clock.now())
                   for _ in range(n)], to_epoch_ns(clock.now()))


def _pumped(publisher: Publisher, clock: FakeClock) -> None:
    now = clock.monotonic()
    wait_for(lambda: (publisher.state.pumped_at or 0) >= now, 10, f"the publisher to look at {now}",
             every_s=0.01)


@pytest.mark.parametrize("readings_before", [3, 0])
def test_readings_committed_before_the_clock_steps_back_leave_at_once(
        node: Callable[[str], tuple[Publisher, Outbox, FakeClock]],
        collector: Callable[[str, str], Collector], readings_before: int) -> None:
    """Readings committed before an hour's step back, and readings after it, leave within
    batch_max_delay_s (0.2 s), not once the clock has caught up with the hour. Before, the
    live pass waited for the first of them to be batch_max_delay_s old on the stepped clock:
    a node's readings stalled for as long as the step (an RTC set a day ahead: a day)."""
    node_id = f"aq-back-{readings_before}"
    publisher, outbox, clock = node(node_id)
    seen = collector(SITE, node_id)
    wait_for(lambda: publisher.state.connected, 15, "the publisher to connect")
    _append(outbox, clock, 2)  # sent before the step, as usual
    clock.advance(1.0)
    wait_for(lambda: len(seen.seqs("pm-1")) == 2, 10, "the first readings")
    _append(outbox, clock, readings_before)  # committed, not yet due when the clock steps
    clock.jump(-3600)
    _append(outbox, clock, 4)
    for _ in range(10):  # 2 s of the FakeClock, ten times batch_max_delay_s
        clock.advance(0.2)
        _pumped(publisher, clock)
    total = 2 + readings_before + 4
    wait_for(lambda: len(seen.seqs("pm-1")) == total, 10,
             f"every reading at the subscriber (depth {outbox.stats().depth})")
    assert seen.seqs("pm-1") == list(range(total))
    wait_for(lambda: outbox.stats().depth == 0, 10, "the outbox emptied by the PUBACKs")


# -- a step back, then forward (or the clock catching up): the backlog ---------------------

class ConfirmingCloud:
    """Sees every data message of one node and confirms them when told to (as the cloud's
    acks do, with delivery = "cloud")."""

    def __init__(self, stack: StackInfo, site: str, node: str) -> None:
        self.site, self.node = site, node
        self.batches: list[tuple[str, list[int]]] = []  # (batch id, seqs), in arrival order
        self.confirmed = 0  # how many of `batches` were confirmed, oldest first
        self._lock = threading.Lock()
        self.client = make_client(f"confirming-cloud-{node}", stack.mqtt("cloud"), clean_start=True)
        self.client.on_message = self._on_message

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        batch = decode_batch(msg.payload, site=self.site, node=self.node)
        with self._lock:
            self.batches.append((batch_id_of(msg.payload) or "", [r.seq for r in batch.readings]))

    def start(self) -> None:
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        connect_and_wait(self.client)
        self.client.subscribe(data_topic(self.site, self.node), qos=1)
        assert subscribed.wait(10), "subscription not acknowledged"

    def count(self) -> int:
        with self._lock:
            return len(self.batches)

    def seqs(self) -> set[int]:
        with self._lock:
            return {seq for _, seqs in self.batches for seq in seqs}

    def confirm(self, n: int | None = None) -> int:
        """Confirms the `n` oldest batches not confirmed yet (all of them: None); how many."""
        with self._lock:
            todo = self.batches[self.confirmed:] if n is None \
                else self.batches[self.confirmed:self.confirmed + n]
            self.confirmed += len(todo)
        if todo:
            self.client.publish(ack_topic(self.site, self.node),
                                encode_ack([b for b, _ in todo]), qos=1).wait_for_publish(10)
        return len(todo)

    def stop(self) -> None:
        close_client(self.client)


@pytest.fixture
def cloud_node(make_node_config: Callable[..., Path], tmp_path: Path, stack: StackInfo
               ) -> Iterator[tuple[Publisher, Outbox, FakeClock, ConfirmingCloud]]:
    """A node confirmed by the played cloud, one reading per batch, one batch in flight (so
    at most 20 awaiting the cloud); resends far off (the test confirms what it wants)."""
    node_id = "aq-backforth"
    path = make_node_config(SITE, node_id, '[[sensors]]\nid = "pm-1"\ndriver = "sds011"\n'
                            'port = "/dev/null"\n', delivery="cloud", ack_timeout_s=100_000.0,
                            batch_max_readings=1, max_inflight=1)
    config = load_config(path)
    clock = FakeClock(datetime(2026, 11, 29, 6, 0, tzinfo=UTC))
    outbox = Outbox(tmp_path / f"{node_id}.sqlite3").open()
    cloud = ConfirmingCloud(stack, SITE, node_id)
    cloud.start()
    publisher = Publisher(config, outbox, lambda: make_node_client(f"edge-{SITE}.{node_id}",
                                                                   config.mqtt),
                          clock, lambda: {})
    publisher.start()
    try:
        yield publisher, outbox, clock, cloud
    finally:
        publisher.stop()
        outbox.close()
        cloud.stop()
    assert publisher.failure is None


def _settled(publisher: Publisher, clock: FakeClock, cloud: ConfirmingCloud) -> None:
    """One look of the publisher at the clock as it is now, and its batches at the cloud."""
    clock.advance(0.001)
    _pumped(publisher, clock)
    wait_for(lambda: cloud.count() == publisher.state.sent_batches, 10,
             "the batches sent at the cloud")


def _confirm_one(publisher: Publisher, clock: FakeClock, cloud: ConfirmingCloud) -> None:
    acks = publisher.state.cloud_acks
    assert cloud.confirm(1) == 1
    wait_for(lambda: publisher.state.cloud_acks > acks, 10, "the publisher to take the ack")
    _settled(publisher, clock, cloud)


@pytest.mark.parametrize("then", ["steps forward", "catches up"])
def test_a_backlog_reading_is_sent_after_the_clock_steps_back_and_forward(
        cloud_node: tuple[Publisher, Outbox, FakeClock, ConfirmingCloud], then: str) -> None:
    """A backlog reading the live pass had gone past, on a clock stepped back by an hour and
    later forward again (or caught up), is sent. Before, the step back made it look
    live (committed 'later' than now): the live pass had gone past it, and the backlog pass,
    which sees only old readings, went past it too once readings committed after the step
    were old and unconfirmed; old again after the step forward, neither pass saw it until
    the agent restarted. Now a step back takes the live pass back to the backlog's cursor
    (the reading leaves at once), and the backlog pass never goes past a reading that is
    neither old nor on its way."""
    publisher, outbox, clock, cloud = cloud_node
    wait_for(lambda: publisher.state.connected, 15, "the publisher to connect")
    _append(outbox, clock, 20)  # seqs 0-19: 20 batches awaiting the cloud, the most there are
    clock.advance(0.3)
    wait_for(lambda: publisher.state.awaiting_cloud == 20 and cloud.count() == 20, 10,
             "20 batches awaiting the cloud")
    _append(outbox, clock, 1)  # seq 20, not sent: no room
    clock.jump(120)  # seq 20 is backlog now (older than live_window_s)
    _append(outbox, clock, 1)  # seq 21, live
    clock.advance(0.3)
    _settled(publisher, clock, cloud)
    _confirm_one(publisher, clock, cloud)  # room for one: the live pass takes seq 21, going past 20
    assert cloud.seqs() == set(range(22)) - {20}
    clock.jump(-3600)  # NTP steps back: seq 20 was committed 'an hour ahead'
    _append(outbox, clock, 1)  # seq 22
    _confirm_one(publisher, clock, cloud)
    after_step_back = cloud.seqs()
    clock.advance(0.3)
    _settled(publisher, clock, cloud)
    clock.advance(61)  # seq 22 is old now
    _settled(publisher, clock, cloud)
    _confirm_one(publisher, clock, cloud)
    if then == "steps forward":
        clock.jump(3600)
    else:
        clock.advance(3600)
    for _ in range(25):  # everything confirmed as it comes; 5 s of the FakeClock
        cloud.confirm()
        clock.advance(0.2)
        _settled(publisher, clock, cloud)
        if cloud.seqs() == set(range(23)):
            break
    assert cloud.seqs() == set(range(23)), f"missing: {set(range(23)) - cloud.seqs()}"
    assert 20 in after_step_back, "the reading waited for the clock to catch up"
    cloud.confirm()
    wait_for(lambda: outbox.stats().depth == 0, 10, "the outbox emptied by the cloud's acks")
