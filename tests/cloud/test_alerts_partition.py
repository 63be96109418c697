"""The alerts publisher while its link to the broker is silent (a partition: no FIN, no RST)
or not up: the alerts are a notification published from the dataflow's own worker, so a
publish holds the worker PUBLISH_WAIT_S at most for a whole batch, and not at all once a
wait went unanswered, until the link answers again; what it could not deliver stays
queued and goes out when the link is back. Before, each alert was waited for on its own
(5 alerts into a silent link held the worker 25 s), and a broker away cost each batch 5 s
and its alerts. The session's real Mosquitto behind a PartitionProxy."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cloud.alerts import PUBLISH_WAIT_S, AlertPublisher
from cloud.config import parse_cloud_config
from cloud.ingest import make_ingest_client
from cloud.logic.events import Alert
from cloud.stack_config import cloud_config_for_stack
from tests.netfault import PartitionProxy
from urbanpulse.clock import to_epoch_ns
from urbanpulse.stack import StackInfo
from urbanpulse.testing import wait_for

pytestmark = pytest.mark.stack

KEEPALIVE_S = 60  # far beyond the test: the client never notices the partition itself


def _alerts(n: int, first: int = 0) -> list[Alert]:
    stamp = to_epoch_ns(datetime(2026, 11, 29, 6, tzinfo=UTC))
    return [Alert("hn", "aq-1", "pm-1", "air.pm", "silence", None, None, stamp + k, "silent")
            for k in range(first, first + n)]


@pytest.fixture
def proxy(stack: StackInfo) -> Iterator[PartitionProxy]:
    with PartitionProxy(stack.mqtt_host, stack.mqtt("cloud").port) as p:
        yield p


def _started(stack: StackInfo, proxy: PartitionProxy, tmp_path: Path) -> AlertPublisher:
    raw = cloud_config_for_stack(stack, tmp_path)
    raw["mqtt"]["port"] = proxy.port
    cfg = parse_cloud_config(raw).mqtt
    client = make_ingest_client(cfg, f"alerts-{tmp_path.name[-20:]}")
    client.manual_ack_set(False)
    client.reconnect_delay_set(1, 1)
    pub = AlertPublisher(client)
    pub.start(cfg.host, cfg.port, keepalive_s=KEEPALIVE_S)
    return pub


@pytest.fixture
def publisher(stack: StackInfo, proxy: PartitionProxy, tmp_path: Path) -> Iterator[AlertPublisher]:
    pub = _started(stack, proxy, tmp_path)
    try:
        yield pub
    finally:
        pub.stop()


@pytest.fixture
def unanswered_publisher(stack: StackInfo, proxy: PartitionProxy,
                         tmp_path: Path) -> Iterator[AlertPublisher]:
    """Started behind a link already silent: its CONNACK never comes (partitioned first,
    so that a connection quicker than the test's next line cannot slip through)."""
    proxy.partition()
    pub = _started(stack, proxy, tmp_path)
    try:
        yield pub
    finally:
        pub.stop()


def _timed_publish(pub: AlertPublisher, alerts: list[Alert]) -> float:
    started = time.monotonic()
    pub.publish(alerts)
    return time.monotonic() - started


def test_alerts_into_a_silent_link_hold_the_worker_one_wait_and_are_delivered_after_the_heal(
        publisher: AlertPublisher, proxy: PartitionProxy) -> None:
    wait_for(publisher._connected.is_set, 10, "the publisher connected")
    assert _timed_publish(publisher, _alerts(2)) < PUBLISH_WAIT_S
    assert (publisher.published, publisher.undelivered) == (2, 0)

    proxy.partition()
    took = _timed_publish(publisher, _alerts(5, 2))
    assert PUBLISH_WAIT_S - 0.5 < took < PUBLISH_WAIT_S + 1.0  # one wait for the batch
    assert _timed_publish(publisher, _alerts(5, 7)) < 0.5  # and none while it stays silent
    assert (publisher.published, publisher.pending) == (2, 10)

    proxy.heal()  # what went into the dead link arrives, and so do the broker's PUBACKs
    wait_for(lambda: publisher.published == 12, 10, "the queued alerts acknowledged")
    assert (publisher.undelivered, publisher.pending) == (0, 0)
    assert _timed_publish(publisher, _alerts(1, 12)) < PUBLISH_WAIT_S  # waits again, answered
    assert publisher.published == 13


def test_alerts_published_while_the_link_is_not_up_wait_once_and_go_out_once_it_is(
        unanswered_publisher: AlertPublisher, proxy: PartitionProxy) -> None:
    publisher = unanswered_publisher
    wait_for(lambda: proxy.accepted >= 1, 10, "the publisher's connection taken by the proxy")
    assert not publisher._connected.is_set()
    took = _timed_publish(publisher, _alerts(3))
    assert PUBLISH_WAIT_S - 0.5 < took < PUBLISH_WAIT_S + 1.0  # one wait, for the connection
    assert _timed_publish(publisher, _alerts(2, 3)) < 0.5  # none while it is not up
    assert (publisher.published, publisher.undelivered, publisher.pending) == (0, 0, 5)
    proxy.heal()
    wait_for(lambda: publisher.published == 5, 15, "the alerts sent once connected")
    assert (publisher.undelivered, publisher.pending) == (0, 0)
