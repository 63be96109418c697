"""The site gateway between two real Mosquitto brokers: real edge nodes (the agent, or its
outbox and publisher) on the site broker, the test as the cloud on the cloud broker
(conftest.py). Every node batch comes back acknowledged and leaves its outbox; relays are
cut by delay and by size; a SIGKILLed gateway, or the cloud broker away for a while, loses
no reading and holds bounded memory; node statuses, their wills included, are relayed."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edge.config import load_config as load_node_config
from edge.drivers.base import Sample
from edge.gateway.config import load_config
from edge.gateway.mqtt import make_client
from edge.gateway.relayer import RelayLimits
from edge.gateway.service import Gateway
from edge.mqtt_client import make_client as make_node_client
from edge.outbox import Outbox
from edge.publisher import Publisher
from firmware_bridge.protocols.sds011.emulator import Sds011Emulator
from tests.agent_thread import agent_in_thread
from tests.conftest import node_config
from tests.edge.gateway.conftest import GW, CloudBroker, GatewayProcess, TestCloud, gateway_toml
from urbanpulse.clock import SystemClock, to_epoch_ns
from urbanpulse.mqtt import close_client, connect_and_wait
from urbanpulse.mqtt import make_client as make_mqtt_client
from urbanpulse.stack import StackInfo
from urbanpulse.stack.site_broker import SiteBroker
from urbanpulse.testing import wait_for
from urbanpulse.wire import encode_status, status_topic
from urbanpulse.wire.relay import MAX_RELAY_BYTES


def _write_gateway(tmp_path: Path, site: SiteBroker, broker: CloudBroker, **settings: Any) -> Path:
    path = tmp_path / f"gateway-{site.site}.toml"
    path.write_text(gateway_toml(site, broker.creds(broker.gateway_user), **settings))
    return path


@contextlib.contextmanager
def gateway_in_thread(path: Path, limits: RelayLimits | None = None) -> Iterator[Gateway]:
    """The gateway of a config file, run in the test's process until the block ends, then
    stopped as SIGTERM stops it. `limits`: the relayer's instead of the file's (smaller than
    the config takes: a relay there carries a node's largest batch)."""
    config = load_config(path)
    if limits is not None:
        config = dataclasses.replace(config, limits=limits)
    gateway = Gateway(config, lambda: make_client(config.site_mqtt, "site_mqtt"),
                      lambda: make_client(config.cloud_mqtt, "cloud_mqtt"))
    stop = threading.Event()
    failures: list[BaseException] = []

    def run() -> None:
        try:
            gateway.run(stop)
        except Exception as exc:  # noqa: BLE001 - not swallowed: the test fails with it below
            failures.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: gateway.site.subscribed and gateway.cloud.subscribed, 20,
                 "the gateway subscribed on both brokers")
        yield gateway
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive(), "the gateway did not stop"
    assert failures == []


class Node:
    """A node's real outbox and publisher (delivery = "cloud"), on the site broker."""

    def __init__(self, stack: StackInfo, site_broker: SiteBroker, tmp_path: Path, node: str,
                 ack_timeout_s: float = 60.0, **outbox: Any) -> None:
        site = site_broker.site
        creds = site_broker.creds(f"{site}.{node}")
        path = tmp_path / f"{node}.toml"
        path.write_text(node_config(stack, creds, site, node, tmp_path / f"state-{node}",
                                    '[[sensors]]\nid = "pm-1"\ndriver = "sds011"\nport = "/dev/null"\n',
                                    "cloud", ack_timeout_s, **outbox))
        self.config = load_node_config(path)
        self.outbox = Outbox(tmp_path / f"{node}.sqlite3").open()
        self.publisher = Publisher(
            self.config, self.outbox,
            lambda: make_node_client(f"{site}.{node}", self.config.mqtt), SystemClock(), lambda: {})

    def add(self, n: int) -> None:
        now = datetime.now(UTC)
        self.outbox.append([Sample("pm-1", "air.pm", {"pm25": 12.5, "pm10": 20.0 + i % 50}, now)
                            for i in range(n)], to_epoch_ns(now))

    def close(self) -> None:
        self.publisher.stop()
        self.outbox.close()
        assert self.publisher.failure is None


@contextlib.contextmanager
def nodes(stack: StackInfo, site_broker: SiteBroker, tmp_path: Path, names: list[str],
          ack_timeout_s: float = 60.0, **outbox: Any) -> Iterator[list[Node]]:
    made = [Node(stack, site_broker, tmp_path, name, ack_timeout_s, **outbox)
            for name in names]
    try:
        for node in made:
            node.publisher.start()
        wait_for(lambda: all(n.publisher.state.connected for n in made), 20,
                 "the nodes connected to the site broker")
        yield made
    finally:
        for node in made:
            node.close()


def test_every_node_batch_is_acked_back_to_its_node_and_relays_wait_the_delay(
        stack: StackInfo, site_side: Any, cloud_side: Any, tmp_path: Path) -> None:
    site = "hn-gw-acks"
    site_broker = site_side(site, ["n0", "n1", "n2"])
    broker, cloud = cloud_side(site, GW)
    delay = 3.0
    path = _write_gateway(tmp_path, site_broker, broker, relay_max_delay_s=delay)
    began = time.monotonic()  # before any node message
    with gateway_in_thread(path) as gateway, \
            nodes(stack, site_broker, tmp_path, ["n0", "n1", "n2"],
                  batch_max_readings=20) as made:
        for node in made:
            node.add(300)  # 15 full batches each, sent at once
        wait_for(lambda: all(n.outbox.stats().depth == 0 for n in made), 60,
                 "every node's outbox emptied by the acks the gateway passed on")
        for node in made:
            state = node.publisher.state
            assert state.messages_acked == 15, state
            assert state.readings_acked == 300, state
            assert state.resent_batches == 0, state  # each ack came back in time, once
            assert cloud.seqs(node.config.node.id) == set(range(300))
        relays = cloud.seen_relays()
        # Cut by the delay: the first relay waited `delay` after its first message (a node's
        # birth) for more, and bundles the three nodes' births and batches (the 45 came
        # within a few hundred ms of each other).
        assert relays[0].at - began >= delay
        assert relays[0].nodes == {"n0", "n1", "n2"}
        assert sum(r.data for r in relays) == 45, relays
        assert len(relays) <= 4, relays
        health = gateway.health()["gateway"]
        assert health["node_acks"] == 45
        assert health["relays_acked"] == len(relays)
        assert health["relays_in_flight"] == 0
        assert health["refused"] == 0
    # The gateway's own status on the cloud broker: born, its counters, then at its clean
    # stop offline, after relaying what waited (the nodes' offline statuses, as they stopped
    # first).
    wait_for(lambda: cloud.gateway_statuses and cloud.gateway_statuses[-1]["state"] == "offline",
             10, "the gateway's offline status after its clean stop")
    last = cloud.gateway_statuses[-1]["health"]["gateway"]
    assert last["messages_relayed"] == sum(r.messages for r in cloud.seen_relays())
    assert last["messages_relayed"] > 45 + 3  # the births, the batches, the offline statuses


def test_relays_are_cut_when_the_next_message_would_pass_the_size_limit(
        stack: StackInfo, site_side: Any, cloud_side: Any, tmp_path: Path) -> None:
    site = "hn-gw-size"
    site_broker = site_side(site, ["big"])
    broker, cloud = cloud_side(site, GW)
    delay = 8.0  # long: a relay seen before it was cut by size
    path = _write_gateway(tmp_path, site_broker, broker, relay_max_delay_s=delay)
    with gateway_in_thread(path), \
            nodes(stack, site_broker, tmp_path, ["big"], batch_max_readings=2000) as made:
        began = time.monotonic()
        made[0].add(24_000)  # 12 messages of about 234 kB: 274 kB each in a relay
        wait_for(lambda: made[0].outbox.stats().depth == 0, 90, "the node's outbox emptied")
        assert cloud.seqs("big") == set(range(24_000))
    relays = cloud.seen_relays()
    by_size = [r for r in relays if r.at - began < delay]
    assert len(by_size) >= 3, relays  # 3, 3, 3 at once; the last 3 after the delay
    for r in by_size:
        # three node messages of about 274 kB each as relay items (and maybe the node's
        # small status): a fourth would not fit
        assert r.data == 3, r
        assert MAX_RELAY_BYTES - 250_000 < r.size <= MAX_RELAY_BYTES, r


def test_a_relay_the_cloud_does_not_ack_in_time_is_dropped_and_its_nodes_send_again(
        stack: StackInfo, site_side: Any, cloud_side: Any, tmp_path: Path) -> None:
    site = "hn-gw-noack"
    site_broker = site_side(site, ["n0", "n1"])
    broker, cloud = cloud_side(site, GW)
    cloud.acking = False  # the cloud takes the relays and never says so (its journal stuck)
    path = _write_gateway(tmp_path, site_broker, broker, relay_max_delay_s=0.2,
                          relay_ack_timeout_s=1.0)
    with gateway_in_thread(path) as gateway, \
            nodes(stack, site_broker, tmp_path, ["n0", "n1"], ack_timeout_s=2.0,
                  batch_max_readings=20) as made:
        for node in made:
            node.add(100)
        wait_for(lambda: gateway.relayer.stats.relays_expired >= 1
                 and all(n.publisher.state.resent_batches >= 5 for n in made), 30,
                 "relays dropped by the gateway, every batch sent again by its node")
        assert all(n.outbox.stats().depth == 100 for n in made)  # nothing confirmed, all kept
        with cloud.lock:
            cloud.acking = True
        wait_for(lambda: all(n.outbox.stats().depth == 0 for n in made), 60,
                 "the nodes' outboxes emptied once the cloud acknowledges")
        for node in made:
            assert cloud.seqs(node.config.node.id) == set(range(100))
    assert gateway.relayer.stats.relays_expired >= 1


def _sds011_node(stack: StackInfo, site_broker: SiteBroker, tmp_path: Path, node: str,
                 port: str) -> Path:
    """A node's config on the site broker: an SDS011 on `port`, its batches kept until the
    cloud acknowledges them."""
    path = tmp_path / f"{node}.toml"
    path.write_text(node_config(
        stack, site_broker.creds(f"{site_broker.site}.{node}"), site_broker.site, node,
        tmp_path / f"state-{node}", f'[[sensors]]\nid = "pm-1"\ndriver = "sds011"\nport = "{port}"\n',
        "cloud", 3.0))
    return path


@contextlib.contextmanager
def sds011s(n: int) -> Iterator[list[Sds011Emulator]]:
    emus = [Sds011Emulator(lambda: (21.0, 42.0), period_s=0.05, warmup_s=0.0) for _ in range(n)]
    for emu in emus:
        emu.start()
    try:
        yield emus
    finally:
        for emu in emus:
            emu.stop()


def _every_reading_arrives(cloud: TestCloud, agents: dict[str, Any], timeout_s: float) -> None:
    """Every reading the agents had numbered by now reaches the test's cloud (at least
    once: the nodes' resends are duplicates the cloud drops)."""
    marks = {name: agent.outbox.next_seq("pm-1") for name, agent in agents.items()}
    for name, mark in marks.items():
        assert mark > 0
        wait_for(lambda name=name, mark=mark: cloud.seqs(name) >= set(range(mark)), timeout_s,
                 f"{name}'s readings 0-{mark - 1} at the cloud (missing: "
                 f"{sorted(set(range(mark)) - cloud.seqs(name))[:10]}...)")


def test_a_gateway_sigkilled_mid_stream_and_restarted_loses_no_reading(
        stack: StackInfo, site_side: Any, cloud_side: Any, tmp_path: Path) -> None:
    site = "hn-gw-kill"
    site_broker = site_side(site, ["aq-0", "aq-1"])
    broker, cloud = cloud_side(site, GW)
    gateway = GatewayProcess(_write_gateway(tmp_path, site_broker, broker, relay_max_delay_s=0.5),
                             tmp_path / "gateway.log")
    with sds011s(2) as emus, contextlib.ExitStack() as running:
        running.callback(gateway.kill)  # whatever happens
        gateway.start()
        wait_for(lambda: cloud.gateway_statuses, 20, "the gateway's birth on the cloud broker")
        agents = {f"aq-{i}": running.enter_context(agent_in_thread(
            _sds011_node(stack, site_broker, tmp_path, f"aq-{i}", emu.port))) for i, emu in enumerate(emus)}
        wait_for(lambda: all(len(cloud.seqs(n)) >= 40 for n in agents), 30,
                 "readings of both nodes through the gateway")
        # Mid-stream, with batches of both nodes relayed and not acknowledged yet (the cloud
        # holds its acks a moment), so that the gateway surely dies holding some.
        with cloud.lock:
            cloud.acking = False
            held_from = len(cloud.relays)
        wait_for(lambda: set(agents) <= {n for r in cloud.seen_relays()[held_from:]
                                         for n in r.data_nodes}, 20,
                 "relays of both nodes' data the cloud has not acknowledged")
        gateway.kill()
        with cloud.lock:
            cloud.acking = True
        relayed = len(cloud.seen_relays())
        # Its will, on the cloud broker; meanwhile the nodes go on, their batches unacked.
        wait_for(lambda: cloud.gateway_statuses[-1]["state"] == "offline", 20, "the gateway's will")
        wait_for(lambda: all(a.publisher.state.awaiting_cloud >= 3 for a in agents.values()), 20,
                 "batches of both nodes awaiting an ack while the gateway is gone")
        gateway.start()
        wait_for(lambda: len(cloud.seen_relays()) > relayed + 5, 30, "relays from the new gateway")
        _every_reading_arrives(cloud, agents, 60)
        # and the nodes' outboxes let go of them: the acks came back through the new gateway
        wait_for(lambda: all(a.health()["mqtt"]["readings_acked"] >= a.outbox.next_seq("pm-1") - 100
                             for a in agents.values()), 60, "the nodes' readings acked")
        # what the killed gateway held unacknowledged, the nodes sent again
        assert all(a.publisher.state.resent_batches > 0 for a in agents.values())
        assert gateway.stop() == 0, gateway.log.read_text()[-3000:]
    boots = {r.batch.split(".")[0] for r in cloud.seen_relays()}
    assert len(boots) == 2  # two runs of the gateway, each numbering its own relays


def test_the_cloud_broker_away_for_a_while_memory_stays_bounded_and_everything_arrives_after(
        stack: StackInfo, site_side: Any, cloud_side: Any, tmp_path: Path) -> None:
    site = "hn-gw-away"
    site_broker = site_side(site, ["aq-0", "aq-1"])
    broker, cloud = cloud_side(site, GW)
    waiting_max = 16 * 1024  # small, so that the bounds fill in seconds (these nodes' batches
    #                          are a few kB: the config's floor is for a node's largest)
    path = _write_gateway(tmp_path, site_broker, broker)
    limits = RelayLimits(max_delay_s=0.3, max_bytes=16 * 1024, max_inflight=2,
                         max_waiting_bytes=waiting_max)
    with sds011s(2) as emus, contextlib.ExitStack() as running:
        gateway = running.enter_context(gateway_in_thread(path, limits))
        agents = {f"aq-{i}": running.enter_context(agent_in_thread(
            _sds011_node(stack, site_broker, tmp_path, f"aq-{i}", emu.port))) for i, emu in enumerate(emus)}
        wait_for(lambda: all(len(cloud.seqs(n)) >= 20 for n in agents), 30,
                 "readings of both nodes through the gateway")
        broker.stop()
        seen: list[dict[str, Any]] = []

        def bounded_and_full() -> bool:
            h = gateway.health()["gateway"]
            seen.append(h)
            return h["refused"] > 20

        wait_for(bounded_and_full, 60, "the gateway to stop taking node messages", every_s=0.02)
        for h in seen:  # never more than the bounds, all along
            assert h["relays_in_flight"] <= 2, h
            assert h["waiting_bytes"] <= waiting_max, h
        assert seen[-1]["relays_in_flight"] == 2  # the broker took none of the last two
        # why it cannot reach the cloud: paho's OSError, not only "could not connect"
        error = wait_for(lambda: (lambda e: e if e and e.startswith("could not connect: ") else None)(
            gateway.health()["cloud_mqtt"]["last_error"]), 30, "a failed reconnect")
        assert "refused" in error.lower(), error
        depth = {n: a.outbox.stats().depth for n, a in agents.items()}
        assert all(d > 0 for d in depth.values())  # the nodes keep what the gateway refused
        broker.start()
        _every_reading_arrives(cloud, agents, 90)
    health = gateway.health()["gateway"]
    assert health["relays_in_flight"] <= 2


def test_node_statuses_and_wills_are_relayed(
        stack: StackInfo, site_side: Any, cloud_side: Any, tmp_path: Path) -> None:
    site = "hn-gw-status"
    site_broker = site_side(site, ["aq-lwt"])
    broker, cloud = cloud_side(site, GW)
    path = _write_gateway(tmp_path, site_broker, broker, relay_max_delay_s=0.2)
    with sds011s(1) as (emu,), gateway_in_thread(path):
        config = _sds011_node(stack, site_broker, tmp_path, "aq-lwt", emu.port)
        agent = subprocess.Popen([sys.executable, "-m", "urbanpulse.cli", "edge", "run",
                                  "--config", str(config)], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            wait_for(lambda: "online" in cloud.states("aq-lwt"), 30, "the node's birth relayed")
            wait_for(lambda: cloud.seqs("aq-lwt"), 30, "the node's readings relayed")
        finally:
            os.killpg(agent.pid, signal.SIGKILL)
            agent.wait(10)
        # The site broker sends the node's will when its connection breaks; the gateway
        # relays it as the node's status.
        wait_for(lambda: cloud.states("aq-lwt")[-1:] == ["offline"], 30, "the node's will relayed")


def test_a_nodes_status_retained_on_the_site_broker_is_not_relayed(
        stack: StackInfo, site_side: Any, cloud_side: Any, tmp_path: Path) -> None:
    """A node moved from the gateway to the cloud broker directly leaves its last status
    (its will) retained on the site broker: a gateway subscribing afresh (its first start, a
    session expired) relays it never, as the cloud would take it for the node's newest."""
    site = "hn-gw-retained"
    site_broker = site_side(site, ["aq-back"])
    broker, cloud = cloud_side(site, GW)
    node = make_mqtt_client(f"{site}.aq-back", site_broker.creds(f"{site}.aq-back"),
                            clean_start=True)
    connect_and_wait(node)
    try:
        stale = encode_status("offline", datetime.now(UTC))
        node.publish(status_topic(site, "aq-back"), stale, qos=1, retain=True).wait_for_publish(10)
        with gateway_in_thread(_write_gateway(tmp_path, site_broker, broker, relay_max_delay_s=0.2)):
            live = encode_status("online", datetime.now(UTC), {"run_id": "0c", "uptime_s": 1.0})
            node.publish(status_topic(site, "aq-back"), live, qos=1, retain=True).wait_for_publish(10)
            wait_for(lambda: cloud.states("aq-back"), 20, "the node's live status relayed")
        assert cloud.states("aq-back") == ["online"]
    finally:
        close_client(node)
