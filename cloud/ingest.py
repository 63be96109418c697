"""MQTT → journal, acknowledging each message only after it is committed to disk.

A broker redelivers an unacknowledged QoS1 message on reconnect (persistent session), so a
crash anywhere here loses nothing; the price is an occasional duplicate, which the
dataflow removes.

A commit that fails (the state disk full) or that the free-space floor holds back
(state.min_free_bytes) acknowledges nothing: the messages stay pending and the commit is
retried with a bounded backoff until it succeeds. Meanwhile the broker sends no more than
RECEIVE_MAXIMUM unacknowledged messages (MQTT 5 Receive Maximum), so the rest wait in the
broker's session and in the nodes' outboxes, and the connection stays up.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cloud.config import DEFAULT_MIN_FREE_BYTES, CloudMqtt
from cloud.errors import CloudError, JournalError
from cloud.journal import Journal
from cloud.state_disk import FreeSpaceFloor, StatVfs
from urbanpulse.clock import Clock, SystemClock, to_epoch_ns
from urbanpulse.mqtt import MqttError, close_client, tls_context
from urbanpulse.wire import encode_ack
from urbanpulse.wire.payload import BATCH_ID, batch_id_of

if TYPE_CHECKING:
    from paho.mqtt.client import Client, MQTTMessage, MQTTMessageInfo

log = logging.getLogger("urbanpulse.cloud.ingest")

SESSION_EXPIRY_S = 7 * 86400
# Logged once the broker has granted the subscriptions: from then on it queues every
# message for the ingest's session (the demo waits for it before it publishes).
SUBSCRIBED = "ingest subscribed"
COMMIT_INTERVAL_S = 0.005
# Commits start at most this often (group commit): each costs about 100 µs of CPU and a
# disk flush whatever it holds, and live nodes' messages arrive one by one, so committing
# each as it came cost about as much again as everything else the ingest does per message.
# A message waits at most this long more for its acknowledgement.
COMMIT_MIN_SPACING_S = 0.01
MAX_PENDING = 5000
# Unacknowledged QoS 1 messages the broker may have sent us at once (sent in CONNECT). It
# bounds what a commit that cannot go on holds, and is how the ingest stops reading the
# broker without blocking paho's network thread (whose keepalives keep the link up).
RECEIVE_MAXIMUM = 1000
COMMIT_RETRY_MIN_S = 0.05  # a failed commit is retried after this, doubling...
COMMIT_RETRY_MAX_S = 2.0  # ...up to this
# How long a starting ingest waits for the one before it (an orphan still committing what
# it holds, up to the commit thread's 10 s join) to let go of the instance.
LOCK_WAIT_S = 30.0
LOCK_POLL_S = 0.05
# How long a stop waits for the last acks to the nodes to reach the broker (a node whose
# ack is lost sends its batch again after its ack_timeout_s: a duplicate, no loss).
ACK_FLUSH_S = 2.0

Pending = tuple[int, int, int, str, bytes, int]  # generation, mid, qos, topic, payload, arrived_ns


@dataclass
class IngestStats:
    received: int = 0
    committed: int = 0
    commits: int = 0
    acks_sent: int = 0
    connected: bool = False
    last_error: str | None = None
    commit_failures: int = 0  # commits that failed or were held back by the free-space floor
    holding: str | None = None  # why nothing commits now, while it does not
    retained_skipped: int = 0  # retained statuses a broker sent on subscribing: not journaled


class InstanceLock:
    """An exclusive flock on a file next to the journal, held for an ingest's lifetime: two
    ingests of one instance would share one MQTT session and append to one journal, which
    breaks its strictly increasing received times. The kernel lets go when the holder's
    process ends, however it ends."""

    def __init__(self, path: Path, holder: str = "another ingest of this instance") -> None:
        self.path = path
        self.holder = holder  # who else holds it, for the error when waiting times out
        self._fd: int | None = None

    def acquire(self, timeout_s: float, cancel: threading.Event | None = None) -> InstanceLock:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise CloudError(f"lock {self.path}: {exc.strerror}") from exc
        cancel = cancel or threading.Event()
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() >= deadline or cancel.wait(LOCK_POLL_S):
                    os.close(fd)
                    raise CloudError(
                        f"{self.holder} still holds {self.path} after "
                        f"{timeout_s:g} s (an earlier process not yet stopped?)") from None
                continue
            self._fd = fd
            return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the only descriptor drops the flock
            self._fd = None


def instance_lock_path(journal: Journal, instance: str) -> Path:
    return journal.path.parent / f"ingest-{instance}.lock"


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
            context = tls_context(cfg.ca_file)
        except MqttError as exc:
            raise CloudError(f"mqtt.ca_file: {exc}") from exc
        if cfg.cert_file is not None and cfg.key_file is not None:
            try:
                context = tls_context(cfg.ca_file, cfg.cert_file, cfg.key_file)
            except MqttError as exc:
                raise CloudError(f"mqtt.cert_file / mqtt.key_file: {exc}") from exc
            _check_certificate_name(cfg.cert_file, cfg.username)
        client.tls_set_context(context)
    return client


def _check_certificate_name(cert_file: Path, username: str) -> None:
    """A broker that requires a client certificate takes its common name as the user
    (Mosquitto's use_identity_as_username, the Ansible role's 'certificate' mode): under
    another name the ingest would connect and subscribe, and the ACL would give it nothing."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    try:
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    except (OSError, ValueError) as exc:
        raise CloudError(f"mqtt.cert_file {cert_file}: {exc}") from exc
    names = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if names != [username]:
        raise CloudError(f"mqtt.cert_file {cert_file}: its common name is "
                         f"{', '.join(map(str, names)) or 'missing'}, not mqtt.username "
                         f"{username!r}: the broker takes the certificate's name as the user")


class Ingest:
    def __init__(self, cfg: CloudMqtt, journal: Journal, *, instance: str = "i0",
                 client: Client | None = None, clock: Clock | None = None,
                 min_free_bytes: int = DEFAULT_MIN_FREE_BYTES, statvfs: StatVfs = os.statvfs,
                 receive_maximum: int = RECEIVE_MAXIMUM,
                 on_failure: Callable[[], None] | None = None) -> None:
        """`min_free_bytes`: state.min_free_bytes (0: commit until the disk is full);
        `statvfs` looks at the journal's filesystem for it."""
        self.cfg = cfg
        self.journal = journal
        self.instance = instance
        self.clock = clock or SystemClock()
        self.receive_maximum = receive_maximum
        self.failure: BaseException | None = None  # what ended the commit thread, if anything did
        self.on_failure = on_failure
        self.floor = FreeSpaceFloor(journal.path.parent, min_free_bytes, self.clock,
                                    self._journal_free_pages, statvfs)
        self._held_since: float | None = None  # monotonic time the commits began to fail
        self._held_for: str | None = None  # what kind of failure was logged last
        self.client = client or make_ingest_client(cfg, f"{cfg.client_id}-{instance}")
        self.stats = IngestStats()
        self._pending: list[Pending] = []
        self._generation = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._subscribed = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock_file = InstanceLock(instance_lock_path(journal, instance))
        self._acks_out: list[MQTTMessageInfo] = []  # acks to nodes queued, perhaps not yet sent

    @property
    def subscriptions(self) -> list[str]:
        prefix = f"$share/{self.cfg.shared_group}/" if self.cfg.shared_group else ""
        return [prefix + topic for topic in self.cfg.subscriptions]

    def start(self, lock_wait_s: float = LOCK_WAIT_S) -> None:
        """Connects once no other ingest of this instance runs (waits up to `lock_wait_s`
        for one still stopping; CloudError after that)."""
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        self._lock_file.acquire(lock_wait_s, self._stop)
        c = self.client
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        c.reconnect_delay_set(1, 10)
        c.max_inflight_messages_set(100)
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        props.ReceiveMaximum = self.receive_maximum
        try:
            c.connect_async(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive_s,
                            clean_start=False, properties=props)
        except OSError as exc:
            self._lock_file.release()
            raise CloudError(f"mqtt connect {self.cfg.host}:{self.cfg.port}: {exc}") from exc
        c.loop_start()
        self._thread = threading.Thread(target=self._commits, name=f"ingest-{self.instance}",
                                        daemon=True)
        self._thread.start()

    def wait_subscribed(self, timeout_s: float) -> bool:
        return self._subscribed.wait(timeout_s)

    def stop(self) -> None:
        """Takes no more messages, journals and acknowledges what it took, gives the acks
        to the nodes ACK_FLUSH_S to go out, and disconnects (the broker keeps the rest for
        the session)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            if not self._thread.is_alive():
                self._flush_acks(ACK_FLUSH_S)
        close_client(self.client)
        if self._thread is None or not self._thread.is_alive():
            self._lock_file.release()  # else the commit thread may still append: the lock
            #                             goes with this process

    def _flush_acks(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        for info in self._acks_out:
            left = deadline - time.monotonic()
            if left <= 0 or not self.stats.connected:
                break
            info.wait_for_publish(left)

    def _on_connect(self, client: Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        from paho.mqtt.subscribeoptions import SubscribeOptions

        if reason.is_failure:
            self.stats.last_error = f"broker refused the connection: {reason}"
            log.error("ingest connection refused", extra={"reason": str(reason)})
            return
        self.stats.connected = True
        # Retained messages never: the broker's last copy of a topic is one this persistent
        # session already took live, or one published while the cloud had no session, which
        # it cannot place in time (a node's stale direct status, docs/gateway.md).
        options = SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_DO_NOT_SEND)
        client.subscribe([(topic, options) for topic in self.subscriptions])

    def _on_subscribe(self, client: Client, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        if all(not r.is_failure for r in reasons):
            self._subscribed.set()
            log.info("%s to %s", SUBSCRIBED, ", ".join(self.subscriptions))
        else:
            self.stats.last_error = f"subscription refused: {reasons}"
            log.error("subscription refused", extra={"reasons": str(reasons)})

    def _on_disconnect(self, client: Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if self.stats.connected and not self._stop.is_set():
            log.warning("ingest disconnected from the broker: %s", reason)
        self.stats.connected = False
        self._subscribed.clear()
        # Packet ids belong to a connection: what is pending now is committed but not acked
        # (the broker redelivers it; the dataflow drops the duplicate).
        with self._lock:
            self._generation += 1

    def _on_message(self, client: Client, userdata: Any, msg: MQTTMessage) -> None:
        if self._stop.is_set():
            # Stopping: not taken, so not acknowledged; the broker keeps it for the session
            # and sends it to the next ingest of this instance. Taken, what keeps arriving
            # under load kept the commit thread busy past the stop's join (10 s), left
            # running with the instance lock.
            return
        if msg.retain and msg.topic.endswith("/status"):
            # Only a broker that ignores the subscription's retain handling sends one (MQTT 5
            # flags just the retained messages sent on subscribing): a status of the past,
            # not journaled. (Data and relays are never retained: a copy is a duplicate the
            # dataflow drops, and one taken by mistake would be a batch lost.)
            self.stats.retained_skipped += 1
            if self.stats.retained_skipped == 1:
                log.warning("the broker sends retained statuses although the ingest asked for "
                            "none (MQTT 5 retain handling 2); left out of the journal, as every "
                            "later one (logged once)", extra={"topic": msg.topic})
            if msg.qos > 0:
                client.ack(msg.mid, msg.qos)
            return
        arrived_ns = to_epoch_ns(self.clock.now())
        with self._lock:
            self._pending.append((self._generation, msg.mid, msg.qos, msg.topic, bytes(msg.payload),
                                  arrived_ns))
        self.stats.received += 1
        # Back-pressure: while the disk is slow, stop reading the socket.
        while len(self._pending) > MAX_PENDING and not self._stop.is_set():
            time.sleep(0.001)

    def _commits(self) -> None:
        """The commit thread. Anything it raises besides a journal that cannot commit (which
        it holds and retries) ends it: it is kept in `failure` and handed to `on_failure`
        (`cloud ingest` then exits, and `cloud run` starts it again); what it held is not
        acknowledged, so the broker sends it again. Before, such an error ended the thread
        alone and the ingest hung, connected, journaling nothing."""
        try:
            self._commit_loop()
        except Exception as exc:  # not swallowed: kept, logged, and the ingest ends
            self.failure = exc
            log.critical("ingest %s: its commit thread failed; stopping it: %s", self.instance, exc,
                         exc_info=exc)
            if self.on_failure is not None:
                self.on_failure()

    def _commit_loop(self) -> None:
        retry_s = COMMIT_RETRY_MIN_S
        last_start: float | None = None
        while True:
            if last_start is not None:
                wait_s = last_start + COMMIT_MIN_SPACING_S - self.clock.monotonic()
                if wait_s > 0:
                    self._stop.wait(wait_s)
            stopping = self._stop.is_set()
            with self._lock:
                batch, self._pending = self._pending, []
            if not batch:
                if stopping:
                    return
                self._stop.wait(COMMIT_INTERVAL_S)
                continue
            last_start = self.clock.monotonic()
            if self._commit(batch):
                retry_s = COMMIT_RETRY_MIN_S
                continue
            with self._lock:
                self._pending[:0] = batch  # held, before what arrived since
            if stopping:
                log.warning("ingest stopped with %d messages neither journaled nor acknowledged: "
                            "the broker sends them again", len(batch))
                return
            self._stop.wait(retry_s)
            retry_s = min(COMMIT_RETRY_MAX_S, retry_s * 2)

    def _commit(self, batch: list[Pending]) -> bool:
        """Journals `batch` and then acknowledges it; False, with nothing acknowledged, if
        it cannot be journaled now."""
        reason = self.floor.shortage()
        kind = "the state disk is below its free-space floor"
        if reason is None:
            try:
                # Stamped with each message's arrival, not the commit's time: the stamps are
                # what the dataflow merges several ingests' journals by, and a commit can wait
                # for a disk flush while another ingest commits later messages of the node.
                self.journal.append([(p[3], p[4]) for p in batch], to_epoch_ns(self.clock.now()),
                                    arrived_ns=[p[5] for p in batch])
            except JournalError as exc:
                kind, reason = "the journal cannot commit", str(exc)
        if reason is not None:
            self._hold(kind, reason, len(batch))
            return False
        if self._held_since is not None:
            log.info("ingest journals again after %.0f s; %d messages held meanwhile are "
                     "journaled", self.clock.monotonic() - self._held_since, len(batch))
            self._held_since = None
            self._held_for = None
            self.stats.holding = None
        self.stats.committed += len(batch)
        self.stats.commits += 1
        with self._lock:
            generation = self._generation
        for gen, mid, qos, *_ in batch:
            if qos > 0 and gen == generation:
                self.client.ack(mid, qos)
        self._ack_nodes(batch)
        return True

    def _hold(self, kind: str, reason: str, held: int) -> None:
        """Logged once per episode (and if it goes on for another kind of reason), not per
        retry."""
        self.stats.commit_failures += 1
        self.stats.holding = self.stats.last_error = reason
        if self._held_for == kind:
            return
        if self._held_since is None:
            self._held_since = self.clock.monotonic()
        self._held_for = kind
        log.warning("ingest cannot journal, %s (%s): holding %d messages unacknowledged and taking "
                    "no more from the broker (it keeps them, as the nodes' outboxes do); "
                    "retrying every %g s at most, logged again when it journals", kind, reason, held,
                    COMMIT_RETRY_MAX_S, extra={"reason": reason})

    def _journal_free_pages(self) -> int:
        try:
            return self.journal.free_page_bytes()
        except JournalError:
            return 0  # the append that follows reports what is wrong with the journal

    def _ack_nodes(self, batch: list[Pending]) -> None:
        """Tell each node which of its batches are now durable here, so that it may delete
        them from its outbox (the broker's PUBACK alone is not enough: a broker crash can
        lose what it acknowledged). A gateway's relay is acknowledged to the gateway, by the
        relay's own batch id; the gateway acknowledges the relayed batches to its nodes."""
        by_node: dict[str, list[str]] = {}
        for _, _, _, topic, payload, _ in batch:
            batch_id = acked_batch(topic, payload)
            if batch_id is not None:
                by_node.setdefault(topic[: topic.rindex("/")] + "/ack", []).append(batch_id)
        self._acks_out = [i for i in self._acks_out if not i.is_published()]
        for topic, ids in by_node.items():
            info = self.client.publish(topic, encode_ack(ids), qos=1)
            if info.rc == 0:  # else not connected: kept by paho for the next connection
                self._acks_out.append(info)
            self.stats.acks_sent += len(ids)


def acked_batch(topic: str, payload: bytes) -> str | None:
    """The batch id the ingest acknowledges for a message on `topic` once it is journaled:
    a node's data batch's, a gateway's relay's; None for anything else (status, a payload
    without one). A relay's is looked for before its messages (never in a relayed payload,
    nor in an item), where urbanpulse.wire.relay.encode_relay puts it; a relay that has it
    elsewhere is parsed."""
    if topic.endswith("/data"):
        return batch_id_of(payload)
    if not topic.endswith("/relay"):
        return None
    messages = payload.find(b'"messages"')
    if messages >= 0:
        found = batch_id_of(payload[:messages])
        if found is not None:
            return found
    try:
        body = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    batch = body.get("batch") if isinstance(body, dict) else None
    return batch if isinstance(batch, str) and BATCH_ID.fullmatch(batch) else None


# How an ingest child ends on SIGTERM or SIGINT: 0 once its handler is set (a clean stop),
# killed by the signal before that.
SIGNAL_STOP_EXITS = frozenset({0, -signal.SIGTERM, -signal.SIGINT})


class IngestProcess:
    """`urbanpulse cloud ingest` in a child process, so that MQTT and journal commits do not
    share the dataflow's interpreter (and GIL). The journal is the hand-off, so nothing
    crosses between the two processes but files.

    The child's stdin is a pipe from this process and the child stops when it reads EOF:
    it ends with its parent however the parent ends, SIGKILL included. An orphan may take
    a few seconds to commit what it holds; the instance's lock (InstanceLock) makes the
    restarted processor's child wait for it rather than share its MQTT session and journal.
    A child that exits on its own is restarted with backoff by `_supervise`; none is
    started once the stop has begun (`stop`, or `stop_begun` from the run's signal handler).

    A stop of `cloud run` by a signal to its process group (systemd's SIGTERM to the unit,
    a terminal's Ctrl-C) stops the children too, at once, while the processor drains its
    last epoch (up to cli.DRAIN_S and more). The run's handler calls `stop_begun`; a child
    that exits as a signal leaves it (SIGNAL_STOP_EXITS) is judged only after the handler
    had STOP_NOTICE_S to say so. Before, its exit was logged at ERROR as a crash and the
    child restarted, subscribing again while the run stopped.
    """

    RESTART_MIN_S = 1.0
    RESTART_MAX_S = 30.0
    STOP_TIMEOUT_S = 15.0
    WATCH_EVERY_S = 0.5
    # How long a child's exit on a signal waits for the run to say that it stops (its
    # handler runs in the main thread, which Bytewax lets run within milliseconds; the
    # child takes longer than that to stop) before it is taken for a crash.
    STOP_NOTICE_S = 1.0
    STOP_POLL_S = 0.05

    def __init__(self, config_path: Path, instance: str) -> None:
        self.config_path = config_path
        self.instance = instance
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self.restart_min_s = self.RESTART_MIN_S
        self._stopping = threading.Event()
        self._stop_signalled = False  # set by `stop_begun`, from a signal handler
        self._lock = threading.Lock()  # start vs stop: no child is started once stop began
        self._watch: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def start(self) -> bool:
        """Starts the child (and its watch); False once the stop has begun."""
        with self._lock:
            if self._stop_has_begun():
                return False
            old = self.proc
            if old is not None and old.stdin is not None:
                old.stdin.close()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "urbanpulse.cli", "cloud", "ingest", "--config",
                 str(self.config_path), "--instance", self.instance, "--until-stdin-closes"],
                stdin=subprocess.PIPE)
            if self._watch is None:
                self._watch = threading.Thread(target=self._supervise, name=f"watch-{self.instance}",
                                               daemon=True)
                self._watch.start()
            return True

    def stop_begun(self) -> None:
        """The run stops (called from its signal handler, before `stop`, which comes once the
        dataflow drained): no child is started from now on, and one that exits is not taken
        for a crash. Only sets a flag: a handler must not wait for a lock that the main
        thread it interrupted may hold."""
        self._stop_signalled = True

    def _stop_has_begun(self) -> bool:
        return self._stop_signalled or self._stopping.is_set()

    def _wait_for_stop(self, timeout_s: float) -> bool:
        """True as soon as the stop has begun, False if it has not after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while not self._stop_has_begun():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._stopping.wait(min(left, self.STOP_POLL_S))
        return True

    def _supervise(self) -> None:
        delay = self.restart_min_s
        while not self._stop_has_begun():
            proc = self.proc
            if proc is not None and proc.poll() is not None:
                code = proc.returncode
                # Stopped by a signal: the run's own stop, sent to its whole process group,
                # if the run says so in time; else someone stopped the child alone.
                if self._wait_for_stop(self.STOP_NOTICE_S if code in SIGNAL_STOP_EXITS else 0):
                    return
                log.error("ingest %s exited with %s; restarting in %.0f s", self.instance,
                          code, delay)
                if self._wait_for_stop(delay) or not self.start():
                    return
                delay = min(self.RESTART_MAX_S, delay * 2)
                self.restarts += 1
            self._stopping.wait(self.WATCH_EVERY_S)

    def stop(self) -> None:
        with self._lock:
            self._stopping.set()
            proc = self.proc
        if self._watch is not None and self._watch is not threading.current_thread():
            self._watch.join()
        if proc is None:
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
