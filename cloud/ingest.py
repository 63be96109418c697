"""MQTT → journal, acknowledging each message only after it is committed to disk.

A broker redelivers an unacknowledged QoS1 message on reconnect (persistent session), so a
crash anywhere here loses nothing; the price is an occasional duplicate, which the
dataflow removes.
"""

from __future__ import annotations

import logging
import os
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cloud.config import CloudMqtt
from cloud.errors import CloudError
from cloud.journal import Journal
from urbanpulse.clock import Clock, SystemClock, to_epoch_ns
from urbanpulse.wire import encode_ack
from urbanpulse.wire.payload import batch_id_of

if TYPE_CHECKING:
    from paho.mqtt.client import Client, MQTTMessage

log = logging.getLogger("urbanpulse.cloud.ingest")

SESSION_EXPIRY_S = 7 * 86400
COMMIT_INTERVAL_S = 0.005
MAX_PENDING = 5000

Pending = tuple[int, int, int, str, bytes, int]  # generation, mid, qos, topic, payload, arrived_ns


@dataclass
class IngestStats:
    received: int = 0
    committed: int = 0
    commits: int = 0
    acks_sent: int = 0
    connected: bool = False
    last_error: str | None = None


def make_ingest_client(cfg: CloudMqtt, client_id: str) -> Client:
    from paho.mqtt.client import Client
    from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

    client = Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                    protocol=MQTTProtocolVersion.MQTTv5, manual_ack=True)
    try:
        password = cfg.password_file.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise CloudError(f"mqtt.password_file {cfg.password_file}: {exc.strerror}") from exc
    client.username_pw_set(cfg.username, password)
    if cfg.tls:
        try:
            context = ssl.create_default_context(cafile=str(cfg.ca_file) if cfg.ca_file else None)
        except (OSError, ssl.SSLError) as exc:
            raise CloudError(f"mqtt.ca_file {cfg.ca_file}: {exc}") from exc
        client.tls_set_context(context)
    return client


class Ingest:
    def __init__(self, cfg: CloudMqtt, journal: Journal, *, instance: str = "i0",
                 client: Client | None = None, clock: Clock | None = None) -> None:
        self.cfg = cfg
        self.journal = journal
        self.instance = instance
        self.clock = clock or SystemClock()
        self.client = client or make_ingest_client(cfg, f"{cfg.client_id}-{instance}")
        self.stats = IngestStats()
        self._pending: list[Pending] = []
        self._generation = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._subscribed = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def subscriptions(self) -> list[str]:
        prefix = f"$share/{self.cfg.shared_group}/" if self.cfg.shared_group else ""
        return [prefix + topic for topic in self.cfg.subscriptions]

    def start(self) -> None:
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        c = self.client
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        c.reconnect_delay_set(1, 10)
        c.max_inflight_messages_set(100)
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        try:
            c.connect_async(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive_s,
                            clean_start=False, properties=props)
        except OSError as exc:
            raise CloudError(f"mqtt connect {self.cfg.host}:{self.cfg.port}: {exc}") from exc
        c.loop_start()
        self._thread = threading.Thread(target=self._commit_loop, name=f"ingest-{self.instance}",
                                        daemon=True)
        self._thread.start()

    def wait_subscribed(self, timeout_s: float) -> bool:
        return self._subscribed.wait(timeout_s)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client: Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            self.stats.last_error = f"broker refused the connection: {reason}"
            log.error("ingest connection refused", extra={"reason": str(reason)})
            return
        self.stats.connected = True
        client.subscribe([(topic, 1) for topic in self.subscriptions])

    def _on_subscribe(self, client: Client, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        if all(not r.is_failure for r in reasons):
            self._subscribed.set()
            log.info("ingest subscribed to %s", ", ".join(self.subscriptions))
        else:
            self.stats.last_error = f"subscription refused: {reasons}"
            log.error("subscription refused", extra={"reasons": str(reasons)})

    def _on_disconnect(self, client: Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self.stats.connected = False
        self._subscribed.clear()
        # Packet ids belong to a connection: what is pending now is committed but not acked
        # (the broker redelivers it; the dataflow drops the duplicate).
        with self._lock:
            self._generation += 1

    def _on_message(self, client: Client, userdata: Any, msg: MQTTMessage) -> None:
        arrived_ns = to_epoch_ns(self.clock.now())
        with self._lock:
            self._pending.append((self._generation, msg.mid, msg.qos, msg.topic, bytes(msg.payload),
                                  arrived_ns))
        self.stats.received += 1
        # Back-pressure: while the disk is slow, stop reading the socket.
        while len(self._pending) > MAX_PENDING and not self._stop.is_set():
            time.sleep(0.001)

    def _commit_loop(self) -> None:
        while not self._stop.is_set() or self._pending:
            with self._lock:
                batch, self._pending = self._pending, []
            if not batch:
                self._stop.wait(COMMIT_INTERVAL_S)
                continue
            # Stamped with each message's arrival, not the commit's time: the stamps are what
            # the dataflow merges several ingests' journals by, and a commit can wait for a
            # disk flush while another ingest commits later messages of the same node.
            self.journal.append([(p[3], p[4]) for p in batch], to_epoch_ns(self.clock.now()),
                                arrived_ns=[p[5] for p in batch])
            self.stats.committed += len(batch)
            self.stats.commits += 1
            with self._lock:
                generation = self._generation
            for gen, mid, qos, *_ in batch:
                if qos > 0 and gen == generation:
                    self.client.ack(mid, qos)
            self._ack_nodes(batch)

    def _ack_nodes(self, batch: list[Pending]) -> None:
        """Tell each node which of its batches are now durable here, so that it may delete
        them from its outbox (the broker's PUBACK alone is not enough: a broker crash can
        lose what it acknowledged)."""
        by_node: dict[str, list[str]] = {}
        for _, _, _, topic, payload, _ in batch:
            if not topic.endswith("/data"):
                continue
            batch_id = batch_id_of(payload)
            if batch_id is not None:
                by_node.setdefault(topic[: -len("data")] + "ack", []).append(batch_id)
        for topic, ids in by_node.items():
            self.client.publish(topic, encode_ack(ids), qos=1)
            self.stats.acks_sent += len(ids)


class IngestProcess:
    """`urbanpulse cloud ingest` in a child process, so that MQTT and journal commits do not
    share the dataflow's interpreter (and GIL). The journal is the hand-off, so nothing
    crosses between the two processes but files.

    The child's stdin is a pipe from this process and the child stops when it reads EOF:
    it ends with its parent however the parent ends, SIGKILL included, and a restarted
    processor never races an orphan for the same MQTT session. A child that exits on its
    own is restarted with backoff by `supervise`.
    """

    RESTART_MIN_S = 1.0
    RESTART_MAX_S = 30.0
    STOP_TIMEOUT_S = 15.0

    def __init__(self, config_path: Path, instance: str) -> None:
        self.config_path = config_path
        self.instance = instance
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self._stopping = threading.Event()
        self._watch: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "urbanpulse.cli", "cloud", "ingest", "--config",
             str(self.config_path), "--instance", self.instance, "--until-stdin-closes"],
            stdin=subprocess.PIPE)
        if self._watch is None:
            self._watch = threading.Thread(target=self._supervise, name=f"watch-{self.instance}",
                                           daemon=True)
            self._watch.start()

    def _supervise(self) -> None:
        delay = self.RESTART_MIN_S
        while not self._stopping.is_set():
            proc = self.proc
            if proc is not None and proc.poll() is not None:
                log.error("ingest %s exited with %s; restarting in %.0f s", self.instance,
                          proc.returncode, delay)
                if self._stopping.wait(delay):
                    return
                delay = min(self.RESTART_MAX_S, delay * 2)
                self.restarts += 1
                self.start()
            self._stopping.wait(0.5)

    def stop(self) -> None:
        self._stopping.set()
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        if proc.stdin is not None:
            proc.stdin.close()  # EOF: the child commits what it holds and disconnects
        try:
            proc.wait(self.STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(self.STOP_TIMEOUT_S)


def stop_when_stdin_closes(stop: Callable[[], None]) -> threading.Thread:
    """Call `stop` once stdin reaches EOF (the parent closed the pipe, or died)."""

    def watch() -> None:
        # os.read, not sys.stdin: a daemon thread blocked in a buffered read holds the
        # buffer's lock and makes interpreter shutdown abort.
        try:
            while os.read(0, 4096):
                pass
        except OSError:
            pass  # stdin closed under us: the same as EOF
        stop()

    thread = threading.Thread(target=watch, name="parent-watch", daemon=True)
    thread.start()
    return thread
