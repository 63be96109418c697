"""The site gateway process: the Relayer between the site's broker and the cloud's.

Thin wiring. Two paho clients, injected as factories, run their own network threads
(`loop_start`: connecting, reconnecting with a backoff, persistent MQTT 5 sessions). Their
callbacks only put events on a queue; one pump thread takes them and drives the Relayer,
so the logic needs no lock and no callback holds one (paho calls `on_publish` holding its
own message lock, which `publish` takes too).

Site broker: subscribes `urbanpulse/v1/<site>/+/data` and `.../+/status` at QoS 1, never
taking retained messages (a node's last status there may be older than what it publishes
elsewhere now), and publishes the node acks at QoS 1.
Cloud broker: publishes relays at QoS 1 on its relay topic, reads its own ack topic, and
publishes its own status (birth, heartbeat with the relay counters, "offline" as its will),
retained, as a node's agent does.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from edge.gateway.config import GatewayConfig
from edge.gateway.relayer import Relay, Relayer
from urbanpulse.clock import Clock, SystemClock
from urbanpulse.mqtt import close_client
from urbanpulse.wire import WireError, ack_topic, decode_ack, encode_status, parse_topic, status_topic
from urbanpulse.wire.relay import RelayedMessage
from urbanpulse.wire.topics import ROOT, TopicError, relay_topic

if TYPE_CHECKING:
    from paho.mqtt.client import Client

log = logging.getLogger("urbanpulse.edge.gateway")

SESSION_EXPIRY_S = 7 * 86400
RECONNECT_MIN_S = 1
RECONNECT_MAX_S = 60
PUMP_MAX_WAIT_S = 0.5  # the pump looks at its timers at least this often
# At a clean stop: how long the relays in flight may take to be acknowledged (so that
# their nodes need not send them again), and the "offline" status to be taken.
STOP_WAIT_S = 5.0


@dataclass
class LinkState:
    name: str  # the config table: site_mqtt or cloud_mqtt
    connected: bool = False
    subscribed: bool = False  # the broker acknowledged the subscriptions of this connection
    connects: int = 0
    disconnects: int = 0
    last_error: str | None = None


class Gateway:
    def __init__(self, config: GatewayConfig, site_client: Callable[[], Client],
                 cloud_client: Callable[[], Client], clock: Clock | None = None,
                 boot: str | None = None) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self.relayer = Relayer(config.site, config.id, config.limits, self.clock, boot)
        self._site_factory = site_client
        self._cloud_factory = cloud_client
        self.site = LinkState("site_mqtt")
        self.cloud = LinkState("cloud_mqtt")
        self.ignored = 0  # messages on topics that are no node's data or status of the site
        self._events: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._mids: dict[int, str] = {}  # MQTT packet id -> relay batch, until its PUBACK
        self._started = time.monotonic()
        self._next_heartbeat = 0.0
        self._relay_topic = relay_topic(config.site, config.id)
        self._status_topic = status_topic(config.site, config.id)
        self._ack_topic = ack_topic(config.site, config.id)
        self._filters = (f"{ROOT}/{config.site}/+/data", f"{ROOT}/{config.site}/+/status")

    # -- health ---------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        return {"run_id": self.relayer.boot,
                "uptime_s": round(time.monotonic() - self._started, 1),
                "gateway": {**self.relayer.health(), "ignored": self.ignored,
                            "last_refusal": self.relayer.last_refusal},
                "site_mqtt": asdict(self.site), "cloud_mqtt": asdict(self.cloud)}

    # -- running --------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Relays until `stop` is set; raises what stopped it otherwise (GatewayError)."""
        site = self._site_factory()
        cloud = self._cloud_factory()
        self._wire(site, cloud)
        try:
            while not stop.is_set():
                self._pump(site, cloud, self._wait())
            self._finish(site, cloud)
        finally:
            for client in (site, cloud):
                close_client(client)

    def _wire(self, site: Client, cloud: Client) -> None:
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        site.on_connect = self._site_connected
        site.on_disconnect = lambda c, u, f, reason, p: self._lost(self.site, reason)
        site.on_connect_fail = lambda c, u: self._failed(self.site)
        site.on_message = lambda c, u, msg: self._events.put(("node", msg.topic, msg.payload))
        site.on_subscribe = lambda c, u, mid, reasons, p: self._subscribed(self.site, reasons)
        cloud.on_connect = self._cloud_connected
        cloud.on_disconnect = lambda c, u, f, reason, p: self._lost(self.cloud, reason)
        cloud.on_connect_fail = lambda c, u: self._failed(self.cloud)
        cloud.on_message = lambda c, u, msg: self._events.put(("ack", msg.topic, msg.payload))
        cloud.on_subscribe = lambda c, u, mid, reasons, p: self._subscribed(self.cloud, reasons)
        cloud.on_publish = lambda c, u, mid, reason, p: self._events.put(
            ("puback", mid, bool(reason.is_failure), str(reason)))
        cloud.max_inflight_messages_set(self.config.limits.max_inflight + 4)
        cloud.will_set(self._status_topic, encode_status("offline", self.clock.now()), qos=1,
                       retain=True)
        for client, link in ((site, self.config.site_mqtt), (cloud, self.config.cloud_mqtt)):
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = SESSION_EXPIRY_S
            client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
            client.connect_async(link.host, link.port, keepalive=link.keepalive_s,
                                 clean_start=False, properties=props)
            client.loop_start()

    # paho's network threads: state flags and events only

    def _site_connected(self, client: Client, userdata: Any, flags: Any, reason: Any,
                        properties: Any) -> None:
        from paho.mqtt.subscribeoptions import SubscribeOptions

        if reason.is_failure:
            self.site.last_error = f"broker refused the connection: {reason}"
            log.error("site broker refused the connection", extra={"reason": str(reason)})
            return
        self.site.connected = True
        self.site.connects += 1
        # No retained message: a node's last status on this broker may be from before it
        # moved to the cloud broker directly (docs/gateway.md, "A node that moves").
        options = SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_DO_NOT_SEND)
        client.subscribe([(f, options) for f in self._filters])

    def _cloud_connected(self, client: Client, userdata: Any, flags: Any, reason: Any,
                         properties: Any) -> None:
        if reason.is_failure:
            self.cloud.last_error = f"broker refused the connection: {reason}"
            log.error("cloud broker refused the connection", extra={"reason": str(reason)})
            return
        self.cloud.connected = True
        self.cloud.connects += 1
        client.subscribe(self._ack_topic, qos=1)
        self._events.put(("cloud_up",))

    def _subscribed(self, link: LinkState, reasons: Any) -> None:
        refused = [str(r) for r in reasons if r.is_failure]
        link.subscribed = not refused
        if refused:  # an ACL that does not let the gateway read: nothing would come
            link.last_error = f"subscription refused: {', '.join(refused)}"
            log.error("the broker refused a subscription", extra={"reasons": refused})

    def _lost(self, link: LinkState, reason: Any) -> None:
        link.subscribed = False
        if link.connected:
            link.disconnects += 1
            link.last_error = f"disconnected: {reason}"
        link.connected = False

    def _failed(self, link: LinkState) -> None:
        """A connection attempt failed (paho tries again on its backoff): logged once until
        a connection holds. paho calls this inside its `except OSError`, which it does not
        pass on: the error it handles says why (refused, no route, a TLS failure)."""
        why = sys.exc_info()[1]
        error = f"could not connect: {why}" if why is not None else "could not connect"
        if not (link.last_error or "").startswith("could not connect"):
            log.warning("cannot connect to the broker; trying again",
                        extra={"link": link.name, "error": error, "before": link.last_error})
        link.connected = False
        link.last_error = error

    # the pump thread: everything else

    def _wait(self) -> float:
        """How long the pump may wait for an event: until the relayer's next timer, the next
        heartbeat (while the cloud link is up: a heartbeat due while it is down waits for
        the connection), PUMP_MAX_WAIT_S at most."""
        due = self.relayer.next_due()
        wait = PUMP_MAX_WAIT_S if due is None else due - self.clock.monotonic()
        if self.cloud.connected:
            wait = min(wait, self._next_heartbeat - time.monotonic())
        return max(0.0, min(wait, PUMP_MAX_WAIT_S))

    def _pump(self, site: Client, cloud: Client, wait_s: float) -> None:
        try:
            event = self._events.get(timeout=wait_s) if wait_s > 0 else self._events.get_nowait()
        except queue.Empty:
            event = None
        while event is not None:
            self._handle(event, site, cloud)
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                event = None
        self.relayer.expire()
        self._send(cloud, self.relayer.cut())
        if self.cloud.connected and time.monotonic() >= self._next_heartbeat:
            self._publish_status(cloud, "online")

    def _send(self, cloud: Client, relays: list[Relay]) -> None:
        for relay in relays:
            info = cloud.publish(self._relay_topic, relay.payload, qos=1)
            self._mids[info.mid] = relay.batch

    def _handle(self, event: tuple[Any, ...], site: Client, cloud: Client) -> None:
        kind = event[0]
        if kind == "node":
            self._node_message(event[1], event[2])
        elif kind == "ack":
            if event[1] != self._ack_topic:
                return
            try:
                batches = decode_ack(event[2])
            except WireError as exc:
                log.warning("ignored a malformed ack from the cloud", extra={"error": str(exc)})
                return
            for ack in self.relayer.acked(batches):
                site.publish(ack_topic(self.config.site, ack.node), ack.payload, qos=1)
        elif kind == "puback":
            batch = self._mids.pop(event[1], None)
            if batch is not None:
                self.relayer.published(batch, not event[2], event[3])
        elif kind == "cloud_up":
            self._publish_status(cloud, "online")

    def _node_message(self, topic: str, payload: bytes) -> None:
        try:
            t = parse_topic(topic)
        except TopicError:
            t = None
        if t is None or t.site != self.config.site or t.stream not in ("data", "status") \
                or t.node == self.config.id:
            # The subscriptions cannot bring these; a broker's ACL or another gateway's
            # mistake could. Not relayed: the cloud would refuse them.
            self.ignored += 1
            log.warning("ignored a message on a topic that is no node's data or status of "
                        "this site", extra={"topic": topic[:200]})
            return
        self.relayer.offer(RelayedMessage(t.node, t.stream, payload))

    def _publish_status(self, cloud: Client, state: str) -> Any:
        self._next_heartbeat = time.monotonic() + self.config.heartbeat_s
        return cloud.publish(self._status_topic, encode_status(state, self.clock.now(),
                                                              self.health()), qos=1, retain=True)

    def _finish(self, site: Client, cloud: Client) -> None:
        """A clean stop: what waits is relayed now, and the acks of the relays in flight
        are waited for a moment (their nodes then need not send them again); then the
        "offline" status."""
        deadline = time.monotonic() + STOP_WAIT_S
        self._send(cloud, self.relayer.cut(flush=True))
        while self.relayer.inflight and self.cloud.connected and time.monotonic() < deadline:
            self._pump(site, cloud, 0.05)
            self._send(cloud, self.relayer.cut(flush=True))
        if not self.cloud.connected:
            return  # the broker sends the will
        info = self._publish_status(cloud, "offline")
        # not queued (RuntimeError, ValueError): the link dropped meanwhile; the will goes
        with contextlib.suppress(RuntimeError, ValueError):
            info.wait_for_publish(max(0.1, deadline - time.monotonic()))
