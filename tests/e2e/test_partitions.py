"""Partitions: a link goes silent (no FIN, no RST, both ends' sockets stay open), then heals.

Each link of the chain in turn runs through a PartitionProxy (tests/netfault.py), with the
real Mosquitto, InfluxDB, processor (`urbanpulse cloud run`) and, for the node's link, the
real edge agent. What must save the data is what saves it on a real dead link: keepalives,
request timeouts, reconnection and redelivery. Short keepalives and timeouts keep the
tests fast; the times each side took to notice are printed (run with -s to see them).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
import tomllib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from edge.agent import Agent
from firmware_bridge.protocols.sds011.emulator import Sds011Emulator
from tests.agent_thread import agent_in_thread
from tests.e2e.counts import minute_count
from tests.netfault import PartitionProxy, proxy_for_url, sockets_connected_to
from urbanpulse.clock import to_epoch_ns
from urbanpulse.influx_http import InfluxHTTP
from urbanpulse.mqtt import close_client, connect_and_wait, make_client
from urbanpulse.stack import StackConfig, StackInfo
from urbanpulse.stack.layout import Layout
from urbanpulse.testing import wait_for
from urbanpulse.wire import Reading, data_topic, encode_batch

if TYPE_CHECKING:
    from tests.conftest import CloudProcess, Collector

SITE = "hn-part"
T0 = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)


def _rewrite_cloud_config(path: Path, **tables: dict[str, Any]) -> None:
    """Point a processor's config (from cloud_factory) at a proxy, with short timeouts."""
    from cloud.stack_config import to_toml

    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    for table, values in tables.items():
        raw.setdefault(table, {}).update(values)
    path.write_text(to_toml(raw), encoding="utf-8")


def _noticed(start: float) -> float:
    return round(time.monotonic() - start, 1)


def _stored_seqs(reader: InfluxHTTP, measurement: str, node: str) -> list[int]:
    rows = reader.query_points(f"SELECT seq FROM raw.{measurement} WHERE node = '{node}'",
                               db="urbanpulse")
    return sorted(int(r["seq"]) for r in rows)


# -- the real edge agent -----------------------------------------------------------------

@contextlib.contextmanager
def _agent_reading_sds011(make_node_config: Callable[..., Path], node: str,
                          mqtt: dict[str, int | float], **node_args: Any) -> Iterator[Agent]:
    """The edge agent reading an emulated SDS011 (20 readings a second) on a real pty, its
    [mqtt] keys overridden by `mqtt`; stopped (outbox drained as far as it goes) on exit."""
    emu = Sds011Emulator(lambda: (25.0, 45.0), period_s=0.05, warmup_s=0.0)
    port = emu.start()
    path = make_node_config(SITE, node, f'[[sensors]]\nid = "pm-1"\ndriver = "sds011"\n'
                            f'port = "{port}"\nsilence_timeout_s = 30.0\nwarmup_s = 0\n', **node_args)
    head, rest = path.read_text().split("[mqtt]\n", 1)
    table, tail = rest.split("\n[", 1)
    for key, value in mqtt.items():
        table = re.sub(rf"(?m)^{key} = .*$", f"{key} = {value!r}", table)
        if f"{key} = " not in table:
            table = f"{key} = {value!r}\n{table}"
    path.write_text(f"{head}[mqtt]\n{table}\n[{tail}")
    try:
        with agent_in_thread(path) as agent:
            wait_for(lambda: agent.publisher, 30, "the agent's publisher to start")
            yield agent
    finally:
        emu.stop()


def _all_readings_exactly_once(reader: InfluxHTTP, agent: Agent, node: str) -> int:
    assigned = agent.outbox.next_seq("pm-1")
    expected = list(range(assigned))
    try:
        wait_for(lambda: _stored_seqs(reader, "air_pm", node) == expected, 60,
                 f"exactly the {assigned} readings produced, in InfluxDB")
        wait_for(lambda: minute_count(reader, "air_pm", node) == assigned, 30,
                 "minute aggregates counting each reading once")
    except AssertionError:
        got = _stored_seqs(reader, "air_pm", node)
        raise AssertionError(f"missing {sorted(set(expected) - set(got))[:20]}, extra "
                             f"{len(got) - len(set(got))}; publisher "
                             f"{agent.publisher and agent.publisher.state}") from None
    return assigned


# -- a. the node's link to the broker ---------------------------------------------------

EDGE_KEEPALIVE_S = 2


def test_a_tls_connect_into_a_dead_link_leaves_no_socket_open(stack: StackInfo) -> None:
    """paho leaves the TLS socket of a failed handshake to its finalizer: it stays open for
    as long as the error's traceback lives (kept, logged, or in a cycle until the garbage
    collector runs), one descriptor per reconnection attempt, unless closed."""
    import gc

    from edge.config import MqttConfig
    from edge.mqtt_client import make_client as make_node_client

    cfg = MqttConfig(host=stack.mqtt_host, port=0, username="u", ca_file=stack.ca_file,
                     password_file=None, cert_file=None, key_file=None, keepalive_s=2, tls=True,
                     delivery="broker", ack_timeout_s=120.0)
    with PartitionProxy(stack.mqtt_host, stack.mqtt_port) as proxy:
        proxy.partition()
        client = make_node_client("dead-link", cfg)
        client.connect_timeout = 0.3
        gc.disable()  # the collector would close what is left over, and hide it
        try:
            errors = []  # kept, as a caller that stores or logs the error keeps its traceback
            for _ in range(3):
                with pytest.raises(TimeoutError, match="handshake") as error:
                    client.connect(stack.mqtt_host, proxy.port)
                errors.append(error)
            # the clients' ends only: other tests' threads open and close descriptors too
            left = sockets_connected_to(proxy.port)
        finally:
            gc.enable()
    assert left == 0


def test_node_partitioned_from_the_broker_past_its_keepalive_loses_and_doubles_nothing(
        make_node_config: Callable[..., Path], cloud_factory: Callable[..., CloudProcess],
        reader: InfluxHTTP, stack: StackInfo, collector: Callable[[str, str], Collector]) -> None:
    node = "aq-part"
    cloud = cloud_factory("part-edge")
    cloud.start()
    watch = collector(SITE, node)
    wait_for(lambda: "ingest subscribed" in cloud.log(), 30, "the ingest to subscribe")
    with PartitionProxy(stack.mqtt_host, stack.mqtt_port) as proxy, _agent_reading_sds011(
            make_node_config, node, {"port": proxy.port, "keepalive_s": EDGE_KEEPALIVE_S},
            delivery="cloud") as agent:
        publisher = agent.publisher
        wait_for(lambda: len(_stored_seqs(reader, "air_pm", node)) >= 20, 30,
                 "readings through the cloud before the partition")
        assert publisher is not None
        proxy.partition()
        cut = time.monotonic()
        wait_for(lambda: not publisher.state.connected, 15, "the node to notice the silent link",
                 every_s=0.02)
        edge_noticed = _noticed(cut)
        offline_at = wait_for(lambda: watch.first_status("offline", cut), 15,
                              "the broker to give the node up (its will)", every_s=0.02)
        broker_noticed = round(offline_at - cut, 1)
        # The node keeps trying while the link is dead: connections into the void.
        wait_for(lambda: proxy.accepted >= 3, 30, "reconnection attempts during the partition")
        backlog = agent.outbox.stats().depth
        assert backlog > 0
        proxy.heal()
        healed = time.monotonic()
        wait_for(lambda: publisher.state.connected, 30, "the node to reconnect by itself",
                 every_s=0.02)
        reconnected = _noticed(healed)
        wait_for(lambda: publisher.state.awaiting_cloud == 0 and agent.outbox.stats().depth < 5,
                 60, f"the cloud to confirm the backlog ({publisher.state})")
    assert publisher.state.disconnects >= 1
    assert publisher.state.connects >= 2
    _all_readings_exactly_once(reader, agent, node)
    print(f"\nnode<->broker partition: node noticed after {edge_noticed} s, broker after "
          f"{broker_noticed} s (keepalive {EDGE_KEEPALIVE_S} s); backlog {backlog} readings; "
          f"node reconnected {reconnected} s after the heal")


# -- b. the cloud's ingest link to the broker --------------------------------------------

INGEST_KEEPALIVE_S = 5  # the lowest mqtt.keepalive_s the cloud config takes


def _co2(n: int) -> list[Reading]:
    return [Reading("co2-1", "air.co2", to_epoch_ns(T0 + timedelta(seconds=2 * i)), i,
                    {"co2": 410.0 + i % 37}) for i in range(n)]


class NodePublisher:
    """A node's batches straight to the broker (this link stays up), QoS1, each PUBACKed."""

    def __init__(self, info: StackInfo, creds: Any, site: str, node: str) -> None:
        self.site, self.node = site, node
        self.client = make_client(f"pub-{node}", creds, clean_start=True)

    def __enter__(self) -> NodePublisher:
        connect_and_wait(self.client)
        return self

    def send(self, readings: list[Reading], per_batch: int = 50) -> None:
        for i in range(0, len(readings), per_batch):
            self.client.publish(data_topic(self.site, self.node),
                                encode_batch(self.site, self.node, readings[i:i + per_batch]),
                                qos=1).wait_for_publish(10)

    def __exit__(self, *exc: object) -> None:
        close_client(self.client)


def _log_line_after(path: Path, pattern: str, seen_before: int) -> bool:
    text = path.read_text(errors="replace") if path.exists() else ""
    return text.count(pattern) > seen_before


def test_ingest_partitioned_from_the_broker_while_nodes_publish_loses_and_doubles_nothing(
        cloud_factory: Callable[..., CloudProcess], add_stack_node: Callable[[str, str], Any],
        reader: InfluxHTTP, stack: StackInfo, stack_config: StackConfig) -> None:
    node = "co2-part-ingest"
    creds = add_stack_node(SITE, node)
    readings = _co2(1200)
    broker_log = Layout(stack_config.home).mosquitto_log
    with PartitionProxy(stack.mqtt_host, stack.mqtt("cloud").port) as proxy, \
            NodePublisher(stack, creds, SITE, node) as nodes:
        cloud = cloud_factory("part-ingest")
        _rewrite_cloud_config(cloud.config_path,
                              mqtt={"port": proxy.port, "keepalive_s": INGEST_KEEPALIVE_S})
        client_id = tomllib.loads(cloud.config_path.read_text())["mqtt"]["client_id"] + "-i0"
        timeouts_before = broker_log.read_text(errors="replace").count(
            f"Client {client_id} has exceeded timeout")
        cloud.start()
        wait_for(lambda: "ingest subscribed" in cloud.log(), 30, "the ingest to subscribe")
        nodes.send(readings[:300])
        wait_for(lambda: len(_stored_seqs(reader, "air_co2", node)) == 300, 30, "the first 300")

        proxy.partition()
        cut = time.monotonic()
        # Before anyone notices: the broker hands these to the ingest, into the dead link.
        nodes.send(readings[300:600])
        wait_for(lambda: proxy.stranded()[0] > 0, 10, "messages sent into the dead link")
        wait_for(lambda: "ingest disconnected from the broker" in cloud.log(), 30,
                 "the ingest to notice the silent link", every_s=0.05)
        ingest_noticed = _noticed(cut)
        wait_for(lambda: _log_line_after(broker_log, f"Client {client_id} has exceeded timeout",
                                         timeouts_before), 30, "the broker to give the ingest up",
                 every_s=0.05)
        broker_noticed = _noticed(cut)
        stranded = proxy.stranded()[0]
        nodes.send(readings[600:900])  # queued by the broker for the ingest's session
        proxy.heal()
        healed = time.monotonic()
        wait_for(lambda: cloud.log().count("ingest subscribed") >= 2, 60,
                 "the ingest to reconnect by itself", every_s=0.05)
        reconnected = _noticed(healed)
        nodes.send(readings[900:])
        expected = list(range(len(readings)))
        wait_for(lambda: _stored_seqs(reader, "air_co2", node) == expected, 60,
                 "exactly the published set in InfluxDB")
        wait_for(lambda: minute_count(reader, "air_co2", node) == len(readings), 30,
                 "minute aggregates counting each reading once")
        assert cloud.proc is not None
        assert cloud.proc.poll() is None
    print(f"\ningest<->broker partition: ingest noticed after {ingest_noticed} s, broker after "
          f"{broker_noticed} s (keepalive {INGEST_KEEPALIVE_S} s); {stranded} bytes were in the "
          f"dead link toward the ingest; reconnected {reconnected} s after the heal")


# -- c. the processor's link to InfluxDB --------------------------------------------------

INFLUX_TIMEOUT_S = 2.0


def test_processor_partitioned_from_influxdb_times_out_retries_and_writes_everything_once(
        cloud_factory: Callable[..., CloudProcess], add_stack_node: Callable[[str, str], Any],
        reader: InfluxHTTP, stack: StackInfo) -> None:
    node = "co2-part-influx"
    creds = add_stack_node(SITE, node)
    readings = _co2(1200)
    with proxy_for_url(stack.influx_url) as proxy, NodePublisher(stack, creds, SITE, node) as nodes:
        cloud = cloud_factory("part-influx")
        _rewrite_cloud_config(cloud.config_path, influx={
            "url": f"http://127.0.0.1:{proxy.port}", "timeout_s": INFLUX_TIMEOUT_S})
        cloud.start()
        wait_for(lambda: "ingest subscribed" in cloud.log(), 30, "the ingest to subscribe")
        nodes.send(readings[:400])
        wait_for(lambda: len(_stored_seqs(reader, "air_co2", node)) == 400, 30, "the first 400")

        proxy.partition()
        cut = time.monotonic()
        opened = proxy.accepted
        nodes.send(readings[400:800])
        wait_for(lambda: "InfluxDB write failed" in cloud.log(), 30,
                 "the sink to give up on a silent request", every_s=0.05)
        noticed = _noticed(cut)
        assert "timed out" in cloud.log()
        # It keeps trying, each time on a fresh connection (into the void).
        wait_for(lambda: proxy.accepted >= opened + 2, 30, "retries during the partition")
        nodes.send(readings[800:])
        assert cloud.proc is not None
        assert cloud.proc.poll() is None, "the processor died"
        proxy.heal()
        healed = time.monotonic()
        expected = list(range(len(readings)))
        wait_for(lambda: _stored_seqs(reader, "air_co2", node) == expected, 60,
                 "exactly the published set in InfluxDB")
        written = _noticed(healed)
        wait_for(lambda: minute_count(reader, "air_co2", node) == len(readings), 30,
                 "minute aggregates counting each reading once")
    print(f"\nprocessor<->InfluxDB partition: the sink noticed after {noticed} s (timeout "
          f"{INFLUX_TIMEOUT_S} s), retried on {proxy.accepted - opened} connections; everything "
          f"written {written} s after the heal")


def test_sigterm_while_a_write_hangs_in_a_partition_stops_the_processor_promptly(
        cloud_factory: Callable[..., CloudProcess], add_stack_node: Callable[[str, str], Any],
        reader: InfluxHTTP, stack: StackInfo) -> None:
    node = "co2-part-sigterm"
    creds = add_stack_node(SITE, node)
    readings = _co2(400)
    with proxy_for_url(stack.influx_url) as proxy, NodePublisher(stack, creds, SITE, node) as nodes:
        cloud = cloud_factory("part-sigterm")
        # A timeout far beyond the test: the write hangs for as long as the partition lasts.
        _rewrite_cloud_config(cloud.config_path, influx={
            "url": f"http://127.0.0.1:{proxy.port}", "timeout_s": 600.0})
        cloud.start()
        wait_for(lambda: "ingest subscribed" in cloud.log(), 30, "the ingest to subscribe")
        nodes.send(readings[:200])
        wait_for(lambda: len(_stored_seqs(reader, "air_co2", node)) == 200, 30, "the first 200")
        proxy.partition()
        nodes.send(readings[200:])
        # A request or its answer stuck in the dead link: the writer waits on it.
        wait_for(lambda: sum(proxy.stranded()) > 0, 30, "a write hanging in the dead link")
        assert cloud.proc is not None
        signalled = time.monotonic()
        os.killpg(cloud.proc.pid, signal.SIGTERM)
        assert cloud.proc.wait(30) == 0, cloud.log()[-3000:]
        stopped = _noticed(signalled)
        # Not the 600 s of the hung request: the processor's shutdown grace (5 s) ends it.
        assert stopped < 10
        proxy.heal()
        cloud.start()
        expected = list(range(len(readings)))
        wait_for(lambda: _stored_seqs(reader, "air_co2", node) == expected, 60,
                 "everything after the restart")
    print(f"\nSIGTERM with a write hanging in a partition: stopped after {stopped} s")


# -- d. the cloud's acks to a node, cut off ------------------------------------------------

ACK_TIMEOUT_S = 2.0


def test_cloud_acks_cut_off_the_node_resends_and_the_cloud_counts_duplicates(
        make_node_config: Callable[..., Path], cloud_factory: Callable[..., CloudProcess],
        reader: InfluxHTTP, stack: StackInfo) -> None:
    """The ingest, which sends the cloud's acks, is partitioned from the broker while the
    node's own link stays up: the broker takes the node's batches, no ack comes back, and
    the node sends them again, ack_timeout_s after the first send and then at doubling
    intervals (docs/delivery.md). After the heal the cloud gets originals
    and resends and must keep each reading once."""
    node = "aq-part-acks"
    with PartitionProxy(stack.mqtt_host, stack.mqtt("cloud").port) as proxy:
        cloud = cloud_factory("part-acks")
        _rewrite_cloud_config(cloud.config_path,
                              mqtt={"port": proxy.port, "keepalive_s": INGEST_KEEPALIVE_S})
        cloud.start()
        wait_for(lambda: "ingest subscribed" in cloud.log(), 30, "the ingest to subscribe")
        with _agent_reading_sds011(make_node_config, node, {}, delivery="cloud",
                                   ack_timeout_s=ACK_TIMEOUT_S) as agent:
            publisher = agent.publisher
            assert publisher is not None
            wait_for(lambda: len(_stored_seqs(reader, "air_pm", node)) >= 20, 30,
                     "readings through the cloud before the partition")
            proxy.partition()
            wait_for(lambda: publisher.state.resent_batches >= 3, 30,
                     "the node to send unconfirmed batches again")
            wait_for(lambda: "ingest disconnected from the broker" in cloud.log(), 30,
                     "the ingest to notice the silent link")
            assert publisher.state.connected, "the node's own link stayed up"
            proxy.heal()
            wait_for(lambda: cloud.log().count("ingest subscribed") >= 2, 60,
                     "the ingest to reconnect by itself")
            wait_for(lambda: publisher.state.awaiting_cloud == 0 and agent.outbox.stats().depth < 5,
                     60, f"the cloud to confirm every batch ({publisher.state})")
        assigned = _all_readings_exactly_once(reader, agent, node)

        def ledger() -> tuple[int, int, int, int] | None:  # expected, received, duplicates, missing
            rows = reader.query_points(
                "SELECT sum(expected), sum(received), sum(duplicates), sum(missing) "
                f"FROM agg_1h.ledger WHERE node = '{node}'", db="urbanpulse")
            if not rows:
                return None
            r = rows[0]
            return int(r["sum"]), int(r["sum_1"]), int(r["sum_2"]), int(r["sum_3"])

        def complete_ledger() -> tuple[int, int, int, int] | None:
            counts = ledger()
            return counts if counts is not None and counts[0] == assigned else None

        counts = wait_for(complete_ledger, 30, "the ledger of every reading")
    _, received, duplicates, missing = counts
    assert missing == 0
    assert duplicates > 0
    assert received - duplicates == assigned
    print(f"\ncloud acks cut off: the node sent {publisher.state.resent_batches} batches again "
          f"(ack timeout {ACK_TIMEOUT_S} s); the ledger counted {duplicates} duplicates of "
          f"{assigned} readings, none missing")
