"""Parts of the ingest tests on the session's real Mosquitto: a node that publishes batches
and hears the cloud's acks, the ingest's MQTT settings, and looks into a journal."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cloud.config import CloudMqtt, parse_cloud_config
from cloud.journal import Journal
from cloud.stack_config import cloud_config_for_stack
from urbanpulse.mqtt import close_client, connect_and_wait, make_client
from urbanpulse.stack import MqttCredentials, StackInfo
from urbanpulse.wire import Reading, ack_topic, data_topic, decode_ack, encode_batch

NO_LIMIT = 1_073_741_823  # SQLite's largest max_page_count


def cloud_mqtt(stack: StackInfo, tmp_path: Path, site: str) -> CloudMqtt:
    raw = cloud_config_for_stack(stack, tmp_path / "state")
    raw["mqtt"].update(node_filter=f"urbanpulse/v1/{site}/+", shared_group=f"g-{tmp_path.name[-20:]}",
                       client_id=f"ingest-{tmp_path.name[-20:]}")
    return parse_cloud_config(raw).mqtt


def batch_payload(site: str, node: str, k: int) -> bytes:
    """Larger than a SQLite page, so that each append needs pages the full journal lacks."""
    readings = [Reading("co2-1", "air.co2", 1_790_000_000_000_000_000 + (50 * k + i) * 10**9, 50 * k + i,
                        {"co2": 400.0 + i}) for i in range(50)]
    return encode_batch(site, node, readings, batch=f"df.{k}")


class Node:
    """A node's MQTT side: publishes its batches and hears the cloud's acks."""

    def __init__(self, creds: MqttCredentials, site: str, node: str) -> None:
        self.site, self.node = site, node
        self.acked: list[str] = []
        self._lock = threading.Lock()
        self.client = make_client(f"node-{site}-{node}", creds, clean_start=True)
        self.client.on_message = self._on_message
        connect_and_wait(self.client)
        self.client.subscribe(ack_topic(site, node), qos=1)

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        with self._lock:
            self.acked.extend(decode_ack(msg.payload))

    def acks(self) -> list[str]:
        with self._lock:
            return list(self.acked)

    def publish(self, ks: range) -> None:
        for k in ks:
            self.client.publish(data_topic(self.site, self.node),
                                batch_payload(self.site, self.node, k),
                                qos=1).wait_for_publish(10)

    def close(self) -> None:
        close_client(self.client)


def node_on_stack(add_stack_node: Any, tmp_path: Path) -> Iterator[Node]:
    """A node of a site of the test's own, for a fixture."""
    site = f"df{tmp_path.name[-6:]}".replace("_", "-").lower()
    n = Node(add_stack_node(site, "n1"), site, "n1")
    try:
        yield n
    finally:
        n.close()


def journal_rows(path: Path) -> list[bytes]:
    """The journal's data payloads, read on a connection of the test's own."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        return [bytes(p) for (p,) in db.execute("SELECT payload FROM entries ORDER BY offset")]


def fill_journal(journal: Journal) -> None:
    (pages,) = journal.db.execute("PRAGMA page_count").fetchone()
    journal.db.execute(f"PRAGMA max_page_count = {pages}")


def ingest_log(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "urbanpulse.cloud.ingest" and r.levelno == level]
