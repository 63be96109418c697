"""Partitions: a link goes silent (no FIN, no RST, both ends' sockets stay open), then heals.

Each link of the chain in turn runs through a PartitionProxy (tests/netfault.py), with the
real Mosquitto, InfluxDB, processor (`urbanpulse cloud run`) and, for the node's link, the
real edge agent. What must save the data is what saves it on a real dead link: keepalives,
request timeouts, reconnection and redelivery. Short keepalives and timeouts keep the
tests fast; the times each side took to notice are printed (run with -s to see them).
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from edge.agent import Agent
from edge.config import load_config
from firmware_bridge.protocols.sds011.emulator import Sds011Emulator
from tests.netfault import PartitionProxy
from urbanpulse.influx_http import InfluxHTTP
from urbanpulse.mqtt import connect_and_wait, make_client
from urbanpulse.stack import StackInfo
from urbanpulse.testing import wait_for
from urbanpulse.wire import status_topic

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


class StatusWatch:
    """Every status message of a node as the broker hands it out, with its arrival time:
    the broker publishes the node's will ("offline") when it gives the connection up."""

    def __init__(self, info: StackInfo, site: str, node: str) -> None:
        self.seen: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self.client = make_client(f"watch-{node}", info.mqtt("cloud"), clean_start=True)
        self.client.on_message = self._on_message
        self.topic = status_topic(site, node)

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        state = "offline" if b'"offline"' in msg.payload else "online"
        with self._lock:
            self.seen.append((time.monotonic(), state))

    def start(self) -> None:
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        connect_and_wait(self.client)
        self.client.subscribe(self.topic, qos=1)
        assert subscribed.wait(10), "subscription not acknowledged"

    def first(self, state: str, after: float) -> float | None:
        with self._lock:
            return next((t for t, s in self.seen if s == state and t > after), None)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def status_watch(stack: StackInfo) -> Iterator[Callable[[str, str], StatusWatch]]:
    made: list[StatusWatch] = []

    def make(site: str, node: str) -> StatusWatch:
        w = StatusWatch(stack, site, node)
        w.start()
        made.append(w)
        return w

    yield make
    for w in made:
        w.stop()


def _stored_seqs(reader: InfluxHTTP, measurement: str, node: str) -> list[int]:
    rows = reader.query_points(f"SELECT seq FROM raw.{measurement} WHERE node = '{node}'",
                               db="urbanpulse")
    return sorted(int(r["seq"]) for r in rows)


def _minute_counts(reader: InfluxHTTP, measurement: str, node: str) -> int:
    rows = reader.query_points(f"SELECT sum(count) FROM agg_1m.{measurement} WHERE node = '{node}'",
                               db="urbanpulse")
    return int(rows[0]["sum"]) if rows else 0


# -- a. the node's link to the broker ---------------------------------------------------

EDGE_KEEPALIVE_S = 2


def test_node_partitioned_from_the_broker_past_its_keepalive_loses_and_doubles_nothing(
        make_node_config, cloud_factory, reader, stack, status_watch) -> None:  # type: ignore[no-untyped-def]
    node = "aq-part"
    emu = Sds011Emulator(lambda: (25.0, 45.0), period_s=0.05, warmup_s=0.0)
    port = emu.start()
    cloud = cloud_factory("part-edge")
    cloud.start()
    with PartitionProxy(stack.mqtt_host, stack.mqtt_port) as proxy:
        path = make_node_config(SITE, node, f'[[sensors]]\nid = "pm-1"\ndriver = "sds011"\n'
                                f'port = "{port}"\nsilence_timeout_s = 30.0\n', delivery="cloud")
        text = re.sub(r"(?m)^port = \d+$", f"port = {proxy.port}", path.read_text())
        path.write_text(text.replace("[mqtt]\n", f"[mqtt]\nkeepalive_s = {EDGE_KEEPALIVE_S}\n", 1))
        watch = status_watch(SITE, node)
        wait_for(lambda: "ingest subscribed" in cloud.log(), 30, "the ingest to subscribe")
        agent = Agent(load_config(path))
        loop = asyncio.new_event_loop()
        stop = asyncio.Event()

        def run() -> None:
            loop.run_until_complete(agent.run(stop))
            loop.close()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        try:
            wait_for(lambda: len(_stored_seqs(reader, "air_pm", node)) >= 20, 30,
                     "readings through the cloud before the partition")
            publisher = agent.publisher
            assert publisher is not None
            proxy.partition()
            cut = time.monotonic()
            edge_noticed = wait_for(lambda: not publisher.state.connected and _noticed(cut), 15,
                                    "the node to notice the silent link", every_s=0.02)
            broker_noticed = wait_for(lambda: (t := watch.first("offline", cut)) and round(t - cut, 1),
                                      15, "the broker to give the node up (its will)", every_s=0.02)
            # The node keeps trying while the link is dead: connections into the void.
            wait_for(lambda: proxy.accepted >= 3, 30, "reconnection attempts during the partition")
            backlog = agent.outbox.stats().depth
            assert backlog > 0
            proxy.heal()
            healed = time.monotonic()
            reconnected = wait_for(lambda: publisher.state.connected and _noticed(healed), 30,
                                   "the node to reconnect by itself", every_s=0.02)
            wait_for(lambda: publisher.state.awaiting_cloud == 0 and agent.outbox.stats().depth < 5,
                     60, f"the cloud to confirm the backlog ({publisher.state})")
        finally:
            loop.call_soon_threadsafe(stop.set)
            thread.join(30)
            emu.stop()
    assert not thread.is_alive()
    assert publisher.state.disconnects >= 1
    assert publisher.state.connects >= 2
    assigned = agent.outbox.next_seq("pm-1")
    expected = list(range(assigned))
    try:
        wait_for(lambda: _stored_seqs(reader, "air_pm", node) == expected, 60,
                 f"exactly the {assigned} readings produced, in InfluxDB")
        wait_for(lambda: _minute_counts(reader, "air_pm", node) == assigned, 30,
                 "minute aggregates counting each reading once")
    except AssertionError:
        got = _stored_seqs(reader, "air_pm", node)
        raise AssertionError(f"missing {sorted(set(expected) - set(got))[:20]}, extra "
                             f"{len(got) - len(set(got))}; publisher {publisher.state}") from None
    print(f"\nnode<->broker partition: node noticed after {edge_noticed} s, broker after "
          f"{broker_noticed} s (keepalive {EDGE_KEEPALIVE_S} s); backlog {backlog} readings; "
          f"node reconnected {reconnected} s after the heal")
