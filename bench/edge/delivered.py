"""Counts what reaches the cloud: a subscriber, as the cloud user, on one node's topics."""

from __future__ import annotations

import threading
from collections import defaultdict
from typing import Any

from bench.edge.errors import BenchError
from urbanpulse.mqtt import MqttError, close_client, connect_and_wait, make_client
from urbanpulse.stack import StackInfo
from urbanpulse.wire import WireError, decode_batch, node_filter, parse_topic


class DeliveredCounter:
    """Unique readings per sensor (a QoS1 redelivery is counted once, and as a duplicate),
    and the node's status messages."""

    def __init__(self, info: StackInfo, site: str, node: str) -> None:
        self._lock = threading.Lock()
        self._seqs: dict[str, set[int]] = defaultdict(set)
        self._unique = 0
        self.duplicates = 0
        self.messages = 0
        self.bad_messages = 0
        self.statuses: list[bytes] = []
        self._client = make_client(f"bench-cloud-{site}-{node}", info.mqtt("cloud"),
                                   clean_start=True)
        self._client.on_message = self._on_message
        self._filter = node_filter(site, node)

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        stream = parse_topic(msg.topic).stream
        with self._lock:
            if stream != "data":
                self.statuses.append(msg.payload)
                return
            self.messages += 1
            try:
                readings = decode_batch(msg.payload).readings
            except WireError:
                self.bad_messages += 1
                return
            for r in readings:
                seen = self._seqs[r.sensor]
                if r.seq in seen:
                    self.duplicates += 1
                else:
                    seen.add(r.seq)
                    self._unique += 1

    def start(self, timeout_s: float = 10.0) -> None:
        try:
            connect_and_wait(self._client, timeout_s=timeout_s)
        except MqttError as exc:
            raise BenchError(f"the cloud subscriber could not connect: {exc}") from exc
        subscribed = threading.Event()
        self._client.on_subscribe = lambda *_: subscribed.set()
        self._client.subscribe(self._filter, qos=1)
        if not subscribed.wait(timeout_s):
            self.stop()
            raise BenchError(f"subscription to {self._filter} not acknowledged in {timeout_s} s")

    def stop(self) -> None:
        close_client(self._client)

    @property
    def unique(self) -> int:
        with self._lock:
            return self._unique

    def sensors_seen(self) -> int:
        with self._lock:
            return len(self._seqs)

    def gaps(self) -> int:
        """Sequence numbers missing below each sensor's highest seen one."""
        with self._lock:
            return sum(max(s) + 1 - len(s) for s in self._seqs.values() if s)

    def saw_status(self, marker: bytes) -> bool:
        with self._lock:
            return any(marker in s for s in self.statuses)

