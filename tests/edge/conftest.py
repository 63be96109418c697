"""Fixtures for the agent on the real broker: node configs, a subscriber that collects."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from urbanpulse.mqtt import connect_and_wait, make_client
from urbanpulse.stack import StackInfo
from urbanpulse.wire import Reading, decode_batch, parse_topic


class Collector:
    """Subscribes to a node's data as the cloud user and keeps every reading it sees."""

    def __init__(self, info: StackInfo, site: str, node: str) -> None:
        self.readings: list[Reading] = []
        self.statuses: list[bytes] = []
        self._lock = threading.Lock()
        # A persistent session: the broker keeps the subscription and queues for it while
        # the collector reconnects after a broker restart.
        self.client = make_client(f"collector-{site}-{node}", info.mqtt("cloud"), clean_start=False)
        self.client.on_message = self._on_message
        self.topic = f"urbanpulse/v1/{site}/{node}/+"

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        t = parse_topic(msg.topic)
        with self._lock:
            if t.stream == "data":
                self.readings.extend(decode_batch(msg.payload).readings)
            else:
                self.statuses.append(msg.payload)

    def start(self) -> None:
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        connect_and_wait(self.client)
        self.client.subscribe(self.topic, qos=1)
        assert subscribed.wait(10), "subscription not acknowledged"

    def seqs(self, sensor: str) -> list[int]:
        with self._lock:
            return sorted(r.seq for r in self.readings if r.sensor == sensor)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def node_config(info: StackInfo, creds: Any, site: str, node: str, state_dir: Path,
                sensors: str, **outbox: Any) -> str:
    outbox_lines = "\n".join(f"{k} = {v!r}" for k, v in outbox.items())
    return f"""
[node]
id = "{node}"
site = "{site}"
state_dir = "{state_dir}"

[mqtt]
host = "{creds.host}"
port = {creds.port}
ca_file = "{creds.ca_file}"
username = "{creds.username}"
password_file = "{creds.password_file}"

[outbox]
batch_max_delay_s = 0.2
{outbox_lines}

[gpio]
backend = "mock"

[agent]
heartbeat_s = 2.0

{sensors}
"""


@pytest.fixture
def collector(stack: StackInfo) -> Iterator[Callable[[str, str], Collector]]:
    made: list[Collector] = []

    def make(site: str, node: str) -> Collector:
        c = Collector(stack, site, node)
        c.start()
        made.append(c)
        return c

    yield make
    for c in made:
        c.stop()


@pytest.fixture
def make_node_config(stack: StackInfo, add_stack_node: Callable[..., Any], tmp_path: Path
                     ) -> Callable[..., Path]:
    """make_node_config(site, node, sensors_toml, **outbox) -> path of a node config file
    on the session stack, with a fresh state dir."""

    def make(site: str, node: str, sensors: str, **outbox: Any) -> Path:
        creds = add_stack_node(site, node)
        path = tmp_path / f"{node}.toml"
        path.write_text(node_config(stack, creds, site, node, tmp_path / f"state-{node}", sensors,
                                    **outbox))
        return path

    return make
