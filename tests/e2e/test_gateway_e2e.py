"""A site gateway on real parts, the whole way: real edge agents (SDS011s emulated on
pseudo-terminals, their outboxes on disk, `delivery = "cloud"`) publishing to a site's own
Mosquitto (the product's, `urbanpulse.stack.site_broker`, as the demo runs it),
`urbanpulse gateway run` relaying them to the session stack's Mosquitto, and
`urbanpulse cloud run` (ingest and processor) storing them in InfluxDB.

Every reading a node produced is stored raw once, its node's ledger counts what reached the
cloud, the outboxes drain (the cloud's acks come back through the gateway), and the nodes'
and the gateway's statuses reach the cloud as `node_status`. Then the faults: the gateway
SIGKILLed while the nodes read and started again after they sent their batches again (no
reading lost, the copies counted as duplicates, none stored twice), and the processor
SIGKILLed while relays flow, a node's stale direct status retained on the cloud broker
taken neither at the ingest's first subscription nor after the restart."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from edge.agent import Agent
from firmware_bridge.protocols.sds011.emulator import Sds011Emulator
from tests.agent_thread import agent_in_thread
from tests.conftest import CloudProcess, node_config
from tests.edge.gateway.conftest import GW, GatewayProcess, gateway_toml, start_site_broker
from urbanpulse.influx_http import InfluxHTTP
from urbanpulse.mqtt import close_client, connect_and_wait, make_client
from urbanpulse.stack import MqttCredentials, StackInfo, site_broker
from urbanpulse.testing import wait_for
from urbanpulse.wire import decode_status, encode_status
from urbanpulse.wire.topics import status_topic

pytestmark = pytest.mark.stack

NODES = ["aq-1", "aq-2", "aq-3"]
SENSOR = "pm-1"
PERIOD_S = 0.1  # each emulated SDS011 reports 10 times a second


class GatewayStatuses:
    """The gateway's own status messages on the cloud broker, as the cloud user reads them."""

    def __init__(self, stack: StackInfo, site: str) -> None:
        self.seen: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self.client = make_client(f"gw-status-{site}", stack.mqtt("cloud"), clean_start=True)
        self.client.on_message = self._message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        connect_and_wait(self.client)
        self.client.subscribe(status_topic(site, GW), qos=1)
        assert subscribed.wait(10), "subscription not acknowledged"

    def _message(self, client: Any, userdata: Any, msg: Any) -> None:
        with self._lock:
            self.seen.append(decode_status(msg.payload))

    def last(self) -> dict[str, Any] | None:
        with self._lock:
            return self.seen[-1] if self.seen else None

    def relaying(self, since_run: str | None = None) -> bool:
        """Its last status says online and subscribed on both brokers (of a run other than
        `since_run`)."""
        last = self.last()
        if last is None or last["state"] != "online":
            return False
        health = last["health"]
        return (health["run_id"] != since_run and health["site_mqtt"]["subscribed"]
                and health["cloud_mqtt"]["subscribed"])

    def close(self) -> None:
        close_client(self.client)


@dataclass
class Chain:
    site: str
    cloud: CloudProcess
    gateway: GatewayProcess
    statuses: GatewayStatuses
    agents: dict[str, Agent]
    emulators: list[Sds011Emulator]


@contextlib.contextmanager
def chain(site: str, stack: StackInfo, add_stack_node: Callable[..., MqttCredentials],
          cloud_factory: Callable[..., CloudProcess], reader: InfluxHTTP, tmp_path: Path,
          ack_timeout_s: float) -> Iterator[Chain]:
    """The cloud, the site broker, the gateway process and the nodes' agents, started in that
    order (each node publishing once the gateway is subscribed on both brokers), stopped in
    the reverse order: the agents, whose offline statuses reach the cloud through the
    gateway, then the gateway (SIGTERM, exit code 0)."""
    cloud = cloud_factory(f"cloud-{site}")
    cloud.start()
    broker, broker_proc = start_site_broker(stack, add_stack_node, site, NODES)
    config = tmp_path / "gateway.toml"
    config.write_text(gateway_toml(broker, add_stack_node(site, GW, gateway=True),
                                 relay_max_delay_s=0.5))
    gateway = GatewayProcess(config, tmp_path / "gateway.log")
    statuses = GatewayStatuses(stack, site)
    emulators: list[Sds011Emulator] = []
    try:
        wait_for(lambda: "ingest subscribed" in cloud.log(), 30, "the ingest to subscribe")
        gateway.start()
        wait_for(statuses.relaying, 20, "the gateway subscribed on both brokers")
        with contextlib.ExitStack() as running:
            agents: dict[str, Agent] = {}
            for node in NODES:
                # Behind a link of the test's own: _drain stops the sensors with the agents
                # running, their drivers reopening the ports (see PtyEmulator).
                emu = Sds011Emulator(lambda: (21.0, 40.0), period_s=PERIOD_S, warmup_s=0.0,
                                     link_path=str(tmp_path / f"tty-{node}"))
                emulators.append(emu)
                port = emu.start()
                path = tmp_path / f"{node}.toml"
                path.write_text(node_config(
                    stack, broker.creds(f"{site}.{node}"), site, node, tmp_path / f"state-{node}",
                    f'[[sensors]]\nid = "{SENSOR}"\ndriver = "sds011"\nport = "{port}"\n'
                    f'silence_timeout_s = 30.0\nwarmup_s = 0\n', "cloud", ack_timeout_s))
                agents[node] = running.enter_context(agent_in_thread(path))
            yield Chain(site, cloud, gateway, statuses, agents, emulators)
        # The agents stopped: their offline statuses relayed before the gateway's own stop.
        wait_for(lambda: all((rows := _node_status(reader, site).get(n)) and rows[-1]["state"] == "offline"
                             for n in NODES), 20, "the nodes' offline statuses through the gateway")
        assert gateway.stop() == 0, (tmp_path / "gateway.log").read_text()[-3000:]
    finally:
        for emu in emulators:
            emu.stop()
        gateway.kill()
        statuses.close()
        site_broker.stop(broker_proc)


def _stored(reader: InfluxHTTP, site: str, node: str) -> list[int]:
    rows = reader.query_points(f"SELECT seq FROM raw.air_pm WHERE site = '{site}' AND node = '{node}'",
                               db="urbanpulse")
    return sorted(int(r["seq"]) for r in rows)


def _ledger(reader: InfluxHTTP, site: str, node: str) -> dict[str, int]:
    rows = reader.query_points(
        "SELECT sum(received) AS received, sum(duplicates) AS duplicates, sum(missing) AS missing "
        f"FROM agg_1h.ledger WHERE site = '{site}' AND node = '{node}'", db="urbanpulse")
    return {k: int(rows[0][k]) for k in ("received", "duplicates", "missing")} if rows else {}


def _node_status(reader: InfluxHTTP, site: str) -> dict[str, list[dict[str, Any]]]:
    rows = reader.query_points(f"SELECT * FROM raw.node_status WHERE site = '{site}'", db="urbanpulse")
    out: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        out.setdefault(r["node"], []).append(r)
    return out


def _stored_count(reader: InfluxHTTP, site: str) -> int:
    rows = reader.query_points(f"SELECT count(pm25) FROM raw.air_pm WHERE site = '{site}'", db="urbanpulse")
    return int(rows[0]["count"]) if rows else 0


def _drain(c: Chain, reader: InfluxHTTP) -> dict[str, int]:
    """Stops the sensors and waits until every reading each node numbered is stored and its
    outbox is empty (the cloud's acks came back through the gateway): each node's count.
    A driver that failed since its port went away has read all it will read."""
    restarts = {node: a.health()["drivers"][SENSOR]["restarts"] for node, a in c.agents.items()}
    for emu in c.emulators:
        emu.stop()

    def done() -> bool:
        for node, agent in c.agents.items():
            assert agent.publisher is not None
            health = agent.health()
            if health["drivers"][SENSOR]["restarts"] == restarts[node] or health["outbox_uncommitted"]:
                return False
            if agent.outbox.stats().depth or agent.publisher.state.awaiting_cloud:
                return False
            if _stored(reader, c.site, node) != list(range(agent.outbox.next_seq(SENSOR))):
                return False
        return True

    def why() -> str:
        return "; ".join(f"{node}: numbered {a.outbox.next_seq(SENSOR)}, stored "
                         f"{len(_stored(reader, c.site, node))}, depth {a.outbox.stats().depth}, "
                         f"{a.publisher.state if a.publisher else None}" for node, a in c.agents.items())

    try:
        wait_for(done, 60, "every reading stored and every outbox drained")
    except AssertionError:
        raise AssertionError(f"{why()}\ngateway: {c.statuses.last()}") from None
    return {node: a.outbox.next_seq(SENSOR) for node, a in c.agents.items()}


def _check_stored_once(reader: InfluxHTTP, site: str, numbered: dict[str, int]) -> None:
    """Every reading raw once; each node's ledger: what reached the cloud, copies apart, is
    what the node numbered, nothing missing."""
    for node, n in numbered.items():
        assert n >= 20, (node, n)
        assert _stored(reader, site, node) == list(range(n))
    assert _stored_count(reader, site) == sum(numbered.values())

    def counted() -> bool:
        return all((led := _ledger(reader, site, node)) and led["received"] - led["duplicates"] == n
                   for node, n in numbered.items())

    wait_for(counted, 30, "each node's ledger to count its readings")
    for node in numbered:
        assert _ledger(reader, site, node)["missing"] == 0, node
    letters = reader.query_points(f"SELECT * FROM raw.dead_letter WHERE site = '{site}'", db="urbanpulse")
    assert letters == [], letters


def test_nodes_behind_a_gateway_reach_the_cloud_each_reading_once(
        stack: StackInfo, add_stack_node: Any, cloud_factory: Any, reader: InfluxHTTP,
        tmp_path: Path) -> None:
    site = "hn-gwe2e"
    with chain(site, stack, add_stack_node, cloud_factory, reader, tmp_path, ack_timeout_s=20.0) as c:
        wait_for(lambda: all(len(_stored(reader, site, n)) >= 20 for n in NODES), 30,
                 "readings of every node through the gateway")
        # Heartbeats (every 2 s) and the gateway's status (every 1 s) reach the cloud.
        wait_for(lambda: all(sum(s["state"] == "online" for s in _node_status(reader, site).get(n, []))
                             >= 2 for n in [*NODES, GW]), 20, "node_status of every node and the gateway")
        numbered = _drain(c, reader)
        for agent in c.agents.values():
            assert agent.publisher is not None
            state = agent.publisher.state
            assert state.resent_batches == 0, state  # every ack came back in time
            assert state.readings_acked == agent.outbox.next_seq(SENSOR), state
    _check_stored_once(reader, site, numbered)
    for node in NODES:
        assert _ledger(reader, site, node)["duplicates"] == 0, node  # no batch sent twice
    # The gateway's clean stop (after the nodes', checked by chain()): its offline status.
    wait_for(lambda: _node_status(reader, site)[GW][-1]["state"] == "offline", 20,
             "the gateway's offline status")
    gateway = _node_status(reader, site)[GW]
    assert all(r["uptime_s"] is not None for r in gateway if r["state"] == "online")
    last = c.statuses.last()
    assert last is not None
    assert last["state"] == "offline"
    counters = last["health"]["gateway"]
    assert counters["relays_acked"] == counters["relays_sent"] > 0
    assert counters["node_acks"] == sum(a.publisher.state.messages_acked for a in c.agents.values()
                                        if a.publisher is not None)
    assert counters["refused"] == counters["too_large"] == counters["relays_expired"] == 0


def test_gateway_and_processor_sigkilled_mid_stream_lose_and_double_nothing(
        stack: StackInfo, add_stack_node: Any, cloud_factory: Any, reader: InfluxHTTP,
        tmp_path: Path) -> None:
    site = "hn-gwe2e-kill"
    ack_timeout_s = 2.0
    # aq-1 published to the cloud broker directly before it moved behind the gateway: its
    # will stays retained there (docs/gateway.md, "A node that moves").
    direct = _retain_status(add_stack_node(site, "aq-1"), site, "aq-1",
                            encode_status("offline", datetime.now(UTC) - timedelta(days=1)))
    with chain(site, stack, add_stack_node, cloud_factory, reader, tmp_path, ack_timeout_s) as c:
        wait_for(lambda: all(len(_stored(reader, site, n)) >= 10 for n in NODES), 30,
                 "readings of every node through the gateway")
        first = c.statuses.last()
        assert first is not None
        c.gateway.kill()
        resent = {n: a.publisher.state.resent_batches for n, a in c.agents.items() if a.publisher}
        # Down until every node has sent batches again: those it published after the kill are
        # queued at the site broker for the gateway's session, their copies after them.
        wait_for(lambda: all(a.publisher is not None and a.publisher.state.resent_batches >= resent[n] + 8
                             for n, a in c.agents.items()), 30,
                 "the nodes' resends while the gateway is down")
        c.gateway.start()
        wait_for(lambda: c.statuses.relaying(since_run=first["health"]["run_id"]), 20,
                 "the restarted gateway subscribed on both brokers")
        mark = _stored_count(reader, site)
        wait_for(lambda: _stored_count(reader, site) >= mark + 30, 30, "readings after the restart")
        # The processor SIGKILLed while relays flow (its ingest child ends with it), then
        # started again: it resumes from its snapshot and the journal.
        assert c.cloud.proc is not None
        os.kill(c.cloud.proc.pid, signal.SIGKILL)
        c.cloud.proc.wait(10)
        c.cloud.start()
        mark = _stored_count(reader, site)
        wait_for(lambda: _stored_count(reader, site) >= mark + 30, 60,
                 "readings after the processor's restart")
        # Its ingest subscribed at the start and again after the restart: the stale will
        # was taken neither time (it read "offline" until the next heartbeat).
        assert [r["state"] for r in _node_status(reader, site)["aq-1"]
                if r["state"] == "offline"] == []
        numbered = _drain(c, reader)
    _check_stored_once(reader, site, numbered)
    duplicates = {node: _ledger(reader, site, node)["duplicates"] for node in NODES}
    assert all(d > 0 for d in duplicates.values()), duplicates  # the copies, counted
    direct(b"")  # deleted: other tests' clouds on the session's broker


def _retain_status(creds: MqttCredentials, site: str, node: str,
                   payload: bytes) -> Callable[[bytes], None]:
    """Publishes `payload` retained on the node's status topic as the node itself, on the
    broker of `creds`; returns a function that publishes another so."""

    def publish(payload: bytes) -> None:
        client = make_client(f"{site}.{node}", creds, clean_start=True)
        connect_and_wait(client)
        try:
            info = client.publish(status_topic(site, node), payload, qos=1, retain=True)
            info.wait_for_publish(10)
            assert info.is_published()
        finally:
            close_client(client)

    publish(payload)
    return publish
