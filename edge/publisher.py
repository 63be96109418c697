"""Moves readings from the outbox to the broker: MQTT 5, QoS1, persistent session, batches.

A reading leaves the outbox when the cloud confirms the batch that carried it (or, with
`delivery = "broker"`, on the broker's PUBACK). Fresh readings go first; after an outage
the backlog drains at a bounded rate beside them, so live data stays fresh. Reconnects
back off exponentially with full jitter, back to the shortest wait only after a connection
that lasted a keepalive interval. A batch the cloud does not confirm is sent again
after `ack_timeout_s`, then after twice that, four times... (jittered) up to
`ack_timeout_max_s`: a long central outage does not make every node re-send its whole
window every `ack_timeout_s`. When the cloud confirms something after batches went
unconfirmed, those are sent again within `ack_timeout_s` (the broker may have dropped
their copies), at most once per `ack_timeout_max_s`: a cloud that confirms new batches
while older ones stay unconfirmed does not bring the flood back.

A batch sent again goes under a new batch id; the ids of the copies it replaced are
remembered (the last REPLACED_WINDOWS x max_inflight of them), so that the cloud's ack
for an older copy, arriving late after a heal, still confirms its readings.

A batch the broker refuses (a PUBACK with a failure reason code, e.g. "Not authorized"
from an ACL) waits for its resend on the same backoff as an unconfirmed one, counted in
the state (`refused`) and logged once per episode of refusals. When the broker takes a
batch again after refusing some, the refused ones are sent again at once (at most once
per `ack_timeout_max_s`, in case the broker refuses only some batches).
"""

from __future__ import annotations

import logging
import random
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from edge.config import AgentConfig
from edge.errors import CredentialsError, OutboxError
from edge.outbox import Outbox, OutboxRow
from urbanpulse.clock import Clock, to_epoch_ns
from urbanpulse.mqtt import close_client
from urbanpulse.wire import (
    ReadingRefused,
    WireError,
    ack_topic,
    data_topic,
    decode_ack,
    encode_batch,
    encode_status,
    reading_problem,
    status_topic,
)

if TYPE_CHECKING:
    from paho.mqtt.client import Client

log = logging.getLogger("urbanpulse.edge.publisher")

SESSION_EXPIRY_S = 7 * 86400
BACKOFF_MIN_S = 0.5
# How often the outbox is looked at when the network is quiet (incoming packets wake the
# loop at once): a few wake-ups a second keep an idle node's CPU near zero.
PUMP_INTERVAL_S = 0.1
BACKOFF_MAX_S = 60.0
# A resend's wait is its doubled (capped) value times a factor drawn from this range, so
# that nodes whose batches expired together do not send again together.
RESEND_JITTER = (0.75, 1.0)
# Batches the broker took but the cloud has not confirmed, or the broker refused, at most
# this many times max_inflight: past that the node sends nothing new until they are done.
AWAITING_WINDOWS = 20
# How often rows whose deletion the outbox refused (its disk full) are deleted again.
DELETE_RETRY_S = 1.0
# Copies replaced by a resend whose ids are remembered (times max_inflight), each as runs
# of consecutive outbox row ids (one run, or a few, per copy).
REPLACED_WINDOWS = AWAITING_WINDOWS


@dataclass(slots=True)
class Sent:
    batch: str
    ids: list[int]
    tries: int = 0  # how often these readings went out before without the cloud confirming
    due: float = 0.0  # clock.monotonic() at which to send them again if still unconfirmed
    wait: float = 0.0  # how long before `due` that was set: the backoff's step for them


@dataclass
class PublisherState:
    connected: bool = False
    connects: int = 0
    disconnects: int = 0
    failed_connects: int = 0  # connections that ended before the broker took them
    # The longest wait before the next connect attempt (full jitter: a draw from 0 to it);
    # doubles at every failed attempt and every connection that did not last a keepalive.
    reconnect_backoff_s: float = BACKOFF_MIN_S
    last_publish_ns: int | None = None
    last_ack_ns: int | None = None
    messages_acked: int = 0
    readings_acked: int = 0
    rejected: int = 0  # batches the broker refused (PUBACK reason code >= 0x80), in all
    refused: int = 0  # of them, batches waiting to be sent again
    last_refusal: str | None = None  # the broker's reason, e.g. "Not authorized"
    inflight: int = 0
    awaiting_cloud: int = 0
    sent_batches: int = 0  # data messages published, first sends and resends
    resent_batches: int = 0
    cloud_acks: int = 0  # ack messages from the cloud, whichever batches they name
    # readings confirmed by an ack for a copy of their batch already replaced by a resend
    acked_by_replaced_copy: int = 0
    # The resend backoff: the longest wait now set for a batch awaiting the cloud or refused
    # (ack_timeout_s, doubling up to ack_timeout_max_s), and the time until the next one is
    # due; None while no batch waits.
    resend_wait_s: float | None = None
    next_resend_in_s: float | None = None
    # clock.monotonic() of the last look at what is due (expiries, the outbox); tests wait
    # for it to pass a time they set on a FakeClock
    pumped_at: float | None = None
    last_error: str | None = None
    # Outbox rows the wire contract refuses, deleted unsent: committed before the agent
    # checked each sample (an older agent), the rule being urbanpulse.wire.values's
    unsendable: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class Publisher:
    def __init__(self, config: AgentConfig, outbox: Outbox, client_factory: Callable[[], Client],
                 clock: Clock, health: Callable[[], dict[str, Any]]) -> None:
        self.config = config
        self.outbox = outbox
        self.client_factory = client_factory
        self.clock = clock
        self.health = health
        self.state = PublisherState()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.failure: BaseException | None = None  # what ended the thread, if anything did
        # the broker's refusal of a connect attempt, until one is taken or fails otherwise
        self._refused_with: str | None = None
        self._inflight: dict[int, Sent] = {}  # MQTT packet id -> batch, until PUBACK
        self._awaiting: dict[str, Sent] = {}  # batch id -> batch, until the cloud's ack
        self._refused: dict[str, Sent] = {}  # batch id -> batch the broker refused, until due
        self._acked_early: set[str] = set()
        self._pending_ids: set[int] = set()  # outbox rows in any of the three
        # batch id -> its outbox rows as (first, last) runs, for copies replaced by a resend
        self._replaced: dict[str, tuple[tuple[int, int], ...]] = {}
        self._refusing = False  # the broker refused a batch and has taken none since
        self._refusals_cut_at: float | None = None  # clock.monotonic() of the last cut
        self._tries: dict[int, int] = {}  # outbox row -> unconfirmed sends, until sent again
        self._unsendable_logged: set[str] = set()  # the codes said once a run
        # Rows done whose deletion the outbox refused (its disk full), pending until deleted
        # (rows, whether the cloud confirmed them: Outbox.ack's `confirmed`)
        self._undeleted: list[tuple[list[int], bool]] = []
        self._delete_again_at = 0.0  # clock.monotonic()
        self._backing_off = False  # a batch went unconfirmed since the waits were last cut
        self._cut_at: float | None = None  # clock.monotonic() when they were
        self._boot = secrets.token_hex(8)
        self._numbering: str | None = None  # the outbox's, read at the first send
        self._batches = 0
        self._live_cursor = 0
        self._backlog_cursor = 0
        self._backlog_tokens = 1.0
        self._last_tick = 0.0
        self._wall_ns = 0  # the wall clock at the last look at the outbox (a step back: lower)
        self._next_heartbeat = 0.0
        self._data_topic = data_topic(config.node.site, config.node.id)
        self._status_topic = status_topic(config.node.site, config.node.id)
        self._ack_topic = ack_topic(config.node.site, config.node.id)
        self._cloud_acks = config.mqtt.delivery == "cloud"

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="mqtt-publisher", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    # -- the thread ---------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._publish_until_stopped()
        except Exception as exc:  # noqa: BLE001 - not swallowed: Agent.run raises it
            self.failure = exc
        finally:
            # This thread's SQLite connection, closed now: left to the garbage collector,
            # it was still open at the agent's close of the outbox, which was then not the
            # last: SQLite's WAL and shared-memory files stayed, and on a full disk whose
            # reserve is gone the reserve's opening part was not made of their room.
            try:
                self.outbox.close(last=False)
            except sqlite3.Error as exc:
                log.warning("cannot close the publisher's outbox connection",
                            extra={"error": str(exc)})

    def _make_client(self) -> Client | None:
        """The MQTT client, once its credential and TLS files can be read: until then (not
        provisioned yet, or a mode the agent's user cannot read) the files are read again
        on the reconnect backoff, logged once, and the readings stay in the outbox, as while
        the broker refuses the node. Before, the thread ended and the agent with it (exit 3):
        restarted by systemd every few seconds, it read almost nothing meanwhile. None if
        stopped meanwhile."""
        delay = BACKOFF_MIN_S
        while True:
            try:
                return self.client_factory()
            except CredentialsError as exc:
                if self.state.last_error != str(exc):
                    log.error("cannot make the MQTT client; readings stay in the outbox, trying "
                              "again", extra={"error": str(exc)})
                self.state.last_error = str(exc)
            if self._stop.wait(delay):
                return None
            delay = min(BACKOFF_MAX_S, delay * 2)

    def _publish_until_stopped(self) -> None:
        client = self._make_client()
        if client is None:
            return
        self.state.last_error = None
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.max_inflight_messages_set(self.config.outbox.max_inflight + 2)
        client.will_set(self._status_topic, encode_status("offline", self.clock.now()), qos=1,
                        retain=True)
        backoff = BACKOFF_MIN_S
        first = True
        connected_at: float | None = None
        while not self._stop.is_set():
            if not self.state.connected:
                # Back to the shortest wait only after a connection that held: one the
                # broker drops at once (a message it answers with what paho calls a protocol
                # error, sent again at every connect) must not be retried a few times a
                # second for ever.
                if connected_at is not None \
                        and time.monotonic() - connected_at >= self.config.mqtt.keepalive_s:
                    backoff = BACKOFF_MIN_S
                connected_at = None
                if not first:
                    delay = random.uniform(0, backoff)
                    backoff = min(BACKOFF_MAX_S, backoff * 2)
                    self.state.reconnect_backoff_s = backoff
                    if self._stop.wait(delay):
                        break
                first = False
                if not self._connect(client):
                    continue
                connected_at = time.monotonic()
            rc = client.loop(timeout=PUMP_INTERVAL_S)
            if rc != 0:
                self.state.connected = False
                continue
            if self.state.connected:
                self._pump(client)
        self._shutdown(client)

    def _connect(self, client: Client) -> bool:
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        m = self.config.mqtt
        try:
            if self.state.connects == 0 and self.state.disconnects == 0:
                client.connect(m.host, m.port, keepalive=m.keepalive_s, clean_start=False,
                               properties=props)
            else:
                client.reconnect()
        except OSError as exc:
            self._refused_with = None
            self.state.last_error = f"connect to {m.host}:{m.port}: {exc}"
            log.warning("mqtt connect failed: %s", exc, extra={"error": str(exc)})
            return False
        deadline = time.monotonic() + 10
        while not self.state.connected and time.monotonic() < deadline and not self._stop.is_set():
            if client.loop(timeout=0.05) != 0:
                return False
        return self.state.connected

    def _on_connect(self, client: Client, userdata: Any, flags: Any, reason: Any,
                    properties: Any) -> None:
        if reason.is_failure:
            self._refused_with = f"broker refused the connection: {reason}"
            self.state.last_error = self._refused_with
            log.error("mqtt connection refused", extra={
                "reason": str(reason), "username": self.config.mqtt.username,
                "broker": f"{self.config.mqtt.host}:{self.config.mqtt.port}"})
            return
        self._refused_with = None
        self.state.connected = True
        self.state.connects += 1
        if self._cloud_acks:
            client.subscribe(self._ack_topic, qos=1)
        self._publish_status(client, "online")

    def _on_disconnect(self, client: Client, userdata: Any, flags: Any, reason: Any,
                       properties: Any) -> None:
        was_connected = self.state.connected
        self.state.connected = False
        if was_connected:
            self.state.disconnects += 1
            self.state.last_error = f"disconnected: {reason}"
        else:
            # The refusal says why (a wrong password: "Not authorized"); the close that
            # follows it only says "Protocol error", and a later attempt's close before the
            # broker answers (the agent's own at a stop: "Normal disconnection") nothing.
            self.state.last_error = self._refused_with or f"could not connect: {reason}"
            self.state.failed_connects += 1

    def _on_publish(self, client: Client, userdata: Any, mid: int, reason: Any,
                    properties: Any) -> None:
        sent = self._inflight.pop(mid, None)
        if sent is None:
            return
        self.state.inflight = len(self._inflight)
        if reason.is_failure:
            self._acked_early.discard(sent.batch)
            self._refuse(sent, reason)
            return
        self._broker_takes()
        if not sent.ids:  # every reading confirmed meanwhile, by an ack for an older copy
            self._acked_early.discard(sent.batch)
            return
        if self._cloud_acks and sent.batch not in self._acked_early:
            self._schedule(sent)
            self._awaiting[sent.batch] = sent
            self.state.awaiting_cloud = len(self._awaiting)
            self._show_backoff(self.clock.monotonic())
            return
        self._acked_early.discard(sent.batch)
        self._done(sent)

    def _refuse(self, sent: Sent, reason: Any) -> None:
        """The broker refused the batch: it is sent again on the resend backoff (its rows
        stay pending meanwhile, so neither the live nor the backlog pass takes them)."""
        self.state.rejected += 1
        self.state.last_refusal = str(reason)
        self.state.last_error = f"the broker refused a batch: {reason}"
        if not self._refusing:
            log.error("the broker refuses batches; sending them again on the resend backoff",
                      extra={"reason": str(reason), "reason_code": getattr(reason, "value", None)})
            self._refusing = True
        if not sent.ids:
            return
        self._schedule(sent)
        self._refused[sent.batch] = sent
        self.state.refused = len(self._refused)
        self._show_backoff(self.clock.monotonic())

    def _broker_takes(self) -> None:
        """The broker took a batch: if it refused some before (an ACL since mended), those
        are sent again now rather than after their long wait. At most once per
        ack_timeout_max_s: a broker that refuses one batch for good while taking the
        others would otherwise have it sent at every other batch. (A batch over Mosquitto
        2.0's message_size_limit does not come here: its PUBACK reason, 0x95, is not one
        MQTT 5 allows there, so paho drops the link and the reconnect backoff applies.)"""
        if not self._refusing:
            return
        self._refusing = False
        log.info("the broker takes batches again", extra={"refused_waiting": len(self._refused)})
        now = self.clock.monotonic()
        if self._refusals_cut_at is not None \
                and now - self._refusals_cut_at < self.config.mqtt.resend_wait_max_s:
            return
        self._refusals_cut_at = now
        for sent in self._refused.values():
            sent.due = min(sent.due, now)

    def _schedule(self, sent: Sent) -> None:
        sent.wait = self._resend_wait(sent.tries)
        sent.due = self.clock.monotonic() + sent.wait

    def _on_message(self, client: Client, userdata: Any, msg: Any) -> None:
        if msg.topic != self._ack_topic:
            return
        try:
            batches = decode_ack(msg.payload)
        except WireError as exc:
            log.warning("ignored a malformed ack", extra={"error": str(exc)})
            return
        if batches:
            self._cloud_answers()
        in_flight = {s.batch for s in self._inflight.values()}
        for batch in batches:
            sent = self._awaiting.pop(batch, None)
            if sent is not None:
                self._done(sent)
            elif batch in in_flight:
                self._acked_early.add(batch)  # the cloud's ack overtook the broker's PUBACK
            elif batch in self._replaced:
                self._confirm_replaced(batch)
        self.state.awaiting_cloud = len(self._awaiting)
        self.state.refused = len(self._refused)
        self.state.cloud_acks += 1

    def _done(self, sent: Sent) -> None:
        self._pending_ids.difference_update(sent.ids)
        self._delete(sent.ids, confirmed=True)
        self.state.messages_acked += 1
        self.state.readings_acked += len(sent.ids)
        self.state.last_ack_ns = to_epoch_ns(self.clock.now())

    def _confirm_replaced(self, batch: str) -> None:
        """The cloud confirms a copy that a resend replaced (its ack was late, or the cloud
        got the old copy only after the heal): its readings are done, wherever they are now:
        waiting in the outbox for their resend, or in a newer copy, which then carries only
        the others (and is forgotten if none are left)."""
        ids = {row for first, last in self._replaced.pop(batch) for row in range(first, last + 1)}
        for pool in (self._awaiting, self._refused):
            for key in [k for k, s in pool.items() if not ids.isdisjoint(s.ids)]:
                sent = pool[key]
                sent.ids = [row for row in sent.ids if row not in ids]
                if not sent.ids:
                    del pool[key]
        for sent in self._inflight.values():
            if not ids.isdisjoint(sent.ids):
                sent.ids = [row for row in sent.ids if row not in ids]
        self._pending_ids.difference_update(ids)
        confirmed = self._delete(sorted(ids))  # rows already gone count for nothing
        for row in ids:
            self._tries.pop(row, None)
        self.state.messages_acked += 1
        self.state.readings_acked += confirmed
        self.state.acked_by_replaced_copy += confirmed
        self.state.last_ack_ns = to_epoch_ns(self.clock.now())

    def _delete(self, ids: list[int], *, confirmed: bool = False) -> int:
        """Deletes rows that are done from the outbox; returns how many were still there.
        `confirmed`: the rows of a batch the cloud (or, with delivery = "broker", the
        broker) confirmed, each in no other copy, so that those no longer there were
        evicted on their way and are not counted as evicted (Outbox.ack). Not for a
        replaced copy's rows, which a newer copy's ack may have deleted.
        A deletion the outbox refuses (its disk full: even a DELETE needs room in SQLite's
        WAL file) is tried again every DELETE_RETRY_S; the rows stay pending meanwhile, so
        that they are not sent again, and nothing stops (after a restart they would be sent
        again, and the cloud would drop them as duplicates)."""
        try:
            deleted = self.outbox.ack(ids, confirmed=confirmed)
        except OutboxError as exc:
            if not self._undeleted:
                log.error("the outbox cannot delete rows that are done; trying again",
                          extra={"error": str(exc), "rows": len(ids)})
            self._undeleted.append((ids, confirmed))
            self._pending_ids.update(ids)
            self._delete_again_at = self.clock.monotonic() + DELETE_RETRY_S
            self.state.last_error = f"outbox: {exc}"
            return 0
        return deleted

    def _delete_again(self, now: float) -> None:
        if not self._undeleted or now < self._delete_again_at:
            return
        undeleted, self._undeleted = self._undeleted, []
        for ids, confirmed in undeleted:
            self._pending_ids.difference_update(ids)
            self._delete(ids, confirmed=confirmed)
        if not self._undeleted:
            log.info("the outbox deletes again",
                     extra={"rows": sum(len(ids) for ids, _ in undeleted)})

    def _remember_replaced(self, sent: Sent) -> None:
        runs: list[tuple[int, int]] = []
        for row in sorted(sent.ids):
            if runs and row == runs[-1][1] + 1:
                runs[-1] = (runs[-1][0], row)
            else:
                runs.append((row, row))
        self._replaced[sent.batch] = tuple(runs)
        limit = REPLACED_WINDOWS * self.config.outbox.max_inflight
        while len(self._replaced) > limit:
            del self._replaced[next(iter(self._replaced))]

    def _resend_wait(self, tries: int) -> float:
        """How long the cloud has to confirm readings sent `tries` times before unconfirmed:
        ack_timeout_s the first time, then doubling, jittered, up to ack_timeout_max_s."""
        m = self.config.mqtt
        if tries == 0:
            return m.ack_timeout_s
        cap = m.resend_wait_max_s
        doubled = cap if tries > 30 else min(cap, m.ack_timeout_s * 2 ** tries)
        return max(m.ack_timeout_s, doubled * random.uniform(*RESEND_JITTER))

    def _cloud_answers(self) -> None:
        """The cloud confirmed something after batches went unconfirmed: it may be back
        after a silence, and the broker may have dropped its copies meanwhile. Whatever
        waits longer than ack_timeout_s is sent again after ack_timeout_s at the latest;
        the tries stay, so the waits after that go on doubling. At most once per
        ack_timeout_max_s: while the cloud confirms new batches and not older ones (their
        copies lost, or the cloud far behind), cutting at every ack would send those again
        every ack_timeout_s."""
        if not self._backing_off:
            return
        now = self.clock.monotonic()
        m = self.config.mqtt
        if self._cut_at is not None and now - self._cut_at < m.resend_wait_max_s:
            return
        latest = now + m.ack_timeout_s
        for sent in self._awaiting.values():
            sent.due = min(sent.due, latest)
        self._backing_off = False
        self._cut_at = now

    def _expire_awaiting(self, now: float) -> None:
        """Batches the broker took but the cloud never confirmed (a broker crash can lose
        them) are sent again, later each time while the cloud stays silent; the cloud drops
        the duplicates."""
        expired = self._expire(self._awaiting, now)
        for sent in expired:
            self._remember_replaced(sent)
        if expired:
            self._backing_off = True
            self.state.awaiting_cloud = len(self._awaiting)
            log.warning("no cloud ack in time; sending again", extra={"batches": len(expired)})

    def _expire_refused(self, now: float) -> None:
        """Batches the broker refused are sent again when due (logged once per episode,
        when the refusals began)."""
        if self._expire(self._refused, now):
            self.state.refused = len(self._refused)

    def _expire(self, pool: dict[str, Sent], now: float) -> list[Sent]:
        """Takes the batches of `pool` that are due out of it; their rows are sent again
        (the cursors go back to them) with one more try each."""
        expired = [pool.pop(b) for b in [b for b, sent in pool.items() if now >= sent.due]]
        for sent in expired:
            self._pending_ids.difference_update(sent.ids)
            for row in sent.ids:
                self._tries[row] = sent.tries + 1
            first = min(sent.ids) - 1
            self._live_cursor = min(self._live_cursor, first)
            self._backlog_cursor = min(self._backlog_cursor, first)
            self.state.resent_batches += 1
        if expired:
            self._forget_tries_of_gone_rows()
        return expired

    def _show_backoff(self, now: float) -> None:
        waiting = [*self._awaiting.values(), *self._refused.values()]
        if not waiting:
            self.state.resend_wait_s = self.state.next_resend_in_s = None
            return
        self.state.resend_wait_s = round(max(s.wait for s in waiting), 1)
        self.state.next_resend_in_s = round(max(0.0, min(s.due for s in waiting) - now), 1)

    def _forget_tries_of_gone_rows(self) -> None:
        """Rows evicted from the outbox while their batch waited are never sent again, so
        their counts would stay for as long as the cloud is silent: one per evicted row.
        Past the rows the unconfirmed batches can hold, the counts of rows below the
        outbox's oldest are dropped, and all of them if that is not enough (a count only
        lengthens a wait: forgetting one costs an earlier resend, never a reading)."""
        ob = self.config.outbox
        limit = AWAITING_WINDOWS * ob.max_inflight * ob.batch_max_readings
        if len(self._tries) <= limit:
            return
        oldest = self.outbox.fetch(1)
        floor = oldest[0].id if oldest else max(self._tries) + 1
        self._tries = {row: tries for row, tries in self._tries.items() if row >= floor}
        if len(self._tries) > limit // 2:
            self._tries.clear()

    def _publish_status(self, client: Client, state: str) -> None:
        client.publish(self._status_topic, encode_status(state, self.clock.now(), self.health()),
                       qos=1, retain=True)
        self._next_heartbeat = time.monotonic() + self.config.heartbeat_s

    def _window_open(self) -> bool:
        ob = self.config.outbox
        return (len(self._inflight) < ob.max_inflight
                and len(self._awaiting) + len(self._refused) < AWAITING_WINDOWS * ob.max_inflight)

    def _fetch(self, cursor: int, **window: int) -> tuple[list[OutboxRow], int]:
        """The next rows after `cursor` that are not already on their way, and the new
        cursor; skips over rows in flight without stalling."""
        limit = self.config.outbox.batch_max_readings
        for _ in range(50):
            rows = self.outbox.fetch(limit, after_id=cursor, **window)
            if not rows:
                return [], cursor
            fresh = [r for r in rows if r.id not in self._pending_ids]
            if fresh:
                return fresh, cursor
            cursor = rows[-1].id
        return [], cursor

    def _backlog_rows(self, live_since_ns: int) -> list[OutboxRow]:
        """The backlog pass's next batch: the rows after its cursor committed before
        `live_since_ns` that are not on their way already, in id order, up to the first row
        that is neither (a live one). Its cursor goes past the rows it takes and those on
        their way, never past a live row: after a wall-clock step back, rows committed
        later can be older than rows committed before them, and a live row the backlog
        pass went past, old by the time the live pass came to it (after the clock caught
        up, or stepped forward again, or while the link was down), was sent by neither
        pass until the agent restarted."""
        limit = self.config.outbox.batch_max_readings
        cursor = self._backlog_cursor
        chosen: list[int] = []
        for _ in range(50):
            stamps = self.outbox.stamps(limit, after_id=cursor)
            stop = False
            for row, created_ns in stamps:
                if row in self._pending_ids:
                    cursor = row
                    continue
                if created_ns >= live_since_ns or len(chosen) >= limit:
                    stop = True  # a live row, or one for the next batch
                    break
                chosen.append(row)
                cursor = row
            if stop or len(chosen) >= limit or len(stamps) < limit:
                break
        self._backlog_cursor = cursor
        if not chosen:
            return []
        taken = set(chosen)
        rows = self.outbox.fetch(chosen[-1] - chosen[0] + 1, after_id=chosen[0] - 1,
                                 through_id=chosen[-1])
        return [r for r in rows if r.id in taken]

    def _pump(self, client: Client) -> None:
        now_mono = time.monotonic()
        if now_mono >= self._next_heartbeat:
            self._publish_status(client, "online")
        pumped_at = self.clock.monotonic()
        self._delete_again(pumped_at)
        if self._cloud_acks:
            self._expire_awaiting(pumped_at)
        self._expire_refused(pumped_at)
        ob = self.config.outbox
        elapsed = now_mono - self._last_tick if self._last_tick else 0.0
        self._last_tick = now_mono
        self._backlog_tokens = min(2.0, self._backlog_tokens + elapsed * ob.backlog_batches_per_s)
        now_ns = to_epoch_ns(self.clock.now())
        if now_ns < self._wall_ns:
            # The wall clock stepped back: rows the live pass went past as backlog may be
            # live again (committed less than live_window_s before now, or even "after"
            # it), where the backlog pass does not look. The live pass looks again from
            # the backlog's cursor (below it every row is gone or on its way).
            self._live_cursor = min(self._live_cursor, self._backlog_cursor)
        self._wall_ns = now_ns
        live_since = now_ns - int(ob.live_window_s * 1e9)
        # A row is due batch_max_delay_s after its commit, or at once if it was committed
        # "later" than now: the wall clock stepped back since (NTP correcting a clock that
        # ran ahead), and waiting for it to be that late again would hold the live readings
        # for as long as the step.
        delay_ns = ob.batch_max_delay_s * 1e9
        while self._window_open():
            waiting, oldest, newest, first, top = self.outbox.waiting(self._live_cursor,
                                                                      live_since)
            # The live pass's cursor goes past the rows before the first live one (or to the
            # top, with none): committed before live_since, they are the backlog pass's (its
            # cursor stops at live rows, never past one), and stay so until a step back,
            # which sets this cursor back to the backlog's. Before, after a restart (the
            # cursor at 0) or a resend, each pump scanned the whole backlog here until a
            # live batch was sent, and for as long as no reading came (11 ms a pump for
            # 200,000 rows on a desktop CPU, ten pumps a second).
            skip_to = first - 1 if first is not None else top
            if skip_to is not None and skip_to > self._live_cursor:
                self._live_cursor = skip_to
            if not waiting or not (waiting >= ob.batch_max_readings or self._stop.is_set()
                                   or now_ns - oldest >= delay_ns or newest > now_ns):
                break  # cheaper than fetching and decoding rows that are not due yet
            rows, self._live_cursor = self._fetch(self._live_cursor, created_since_ns=live_since)
            if not rows:
                break
            full = len(rows) >= ob.batch_max_readings
            due = any(now_ns - r.created_ns >= delay_ns or r.created_ns > now_ns for r in rows)
            if not (full or due or self._stop.is_set()):
                break
            self._live_cursor = rows[-1].id
            self._send(client, rows)
        while self._window_open() and self._backlog_tokens >= 1.0:
            rows = self._backlog_rows(live_since)
            if not rows:
                break
            self._backlog_tokens -= 1.0
            self._send(client, rows)
        self._show_backoff(pumped_at)
        self.state.pumped_at = pumped_at

    def _send(self, client: Client, rows: list[OutboxRow]) -> None:
        self._batches += 1
        batch = f"{self._boot}.{self._batches}"
        if self._numbering is None:
            self._numbering = self.outbox.numbering()
        try:
            payload = encode_batch(self.config.node.site, self.config.node.id,
                                   [r.reading for r in rows], batch=batch, numbering=self._numbering)
        except ReadingRefused:
            rows = self._drop_unsendable(rows)
            if rows:
                self._send(client, rows)
            return
        except WireError as exc:
            if exc.code == "too_large" and len(rows) > 1:
                half = len(rows) // 2
                self._send(client, rows[:half])
                self._send(client, rows[half:])
                return
            raise
        info = client.publish(self._data_topic, payload, qos=1)
        ids = [r.id for r in rows]
        tries = max((self._tries.pop(i, 0) for i in ids), default=0) if self._tries else 0
        self._inflight[info.mid] = Sent(batch, ids, tries)
        self._pending_ids.update(ids)
        self.state.inflight = len(self._inflight)
        self.state.sent_batches += 1
        self.state.last_publish_ns = to_epoch_ns(self.clock.now())

    def _drop_unsendable(self, rows: list[OutboxRow]) -> list[OutboxRow]:
        """The rows the contract accepts; those it refuses (`encode_batch` would refuse
        every batch they fall in, and the publisher with it, at every restart) are deleted
        from the outbox unsent, counted (`unsendable`) and logged once a run per reason."""
        keep: list[OutboxRow] = []
        dropped: list[int] = []
        for row in rows:
            refusal = reading_problem(row.reading.kind, row.reading.values)
            if refusal is None:
                keep.append(row)
                continue
            dropped.append(row.id)
            if refusal.code not in self._unsendable_logged:
                self._unsendable_logged.add(refusal.code)
                log.error("an outbox row the wire contract refuses was deleted unsent (said "
                          "once per reason, counted in the heartbeat's mqtt.unsendable)",
                          extra={"sensor": row.reading.sensor, "kind": row.reading.kind,
                                 "reason": refusal.code,
                                 "detail": refusal.detail.removeprefix(".")})
        for row_id in dropped:
            self._tries.pop(row_id, None)
        self._delete(dropped)
        self.state.unsendable += len(dropped)
        return keep

    def _shutdown(self, client: Client) -> None:
        if self.state.connected:
            self._pump(client)
            deadline = time.monotonic() + 5
            while (self._inflight or self._awaiting) and time.monotonic() < deadline \
                    and self.state.connected:
                client.loop(timeout=0.05)
            info = client.publish(self._status_topic, encode_status("offline", self.clock.now(),
                                                                    self.health()), qos=1, retain=True)
            deadline = time.monotonic() + 2
            # rc 0: queued. The link may have dropped since `connected` was read (the
            # callback comes later): then there is nothing to wait for, and is_published()
            # would raise; the broker sends the will instead.
            while info.rc == 0 and not info.is_published() and time.monotonic() < deadline \
                    and self.state.connected:
                client.loop(timeout=0.05)
            client.disconnect()
            client.loop(timeout=0.1)
        close_client(client)
