"""Publishes anomaly and sensor-fault events on the MQTT alerts topic.

Events are stored in InfluxDB (`events`) by the main sink, which is the record. This
publication is a notification, published from the dataflow's own worker, so it must never
hold the data path up for long. Each alert goes at QoS 1 into the MQTT client's queue
(bounded: MAX_QUEUED, past which an alert is counted undelivered), which sends it now or,
while the broker is away or the link silent, once it is connected again. A publish then
waits for its batch's PUBACKs (and for the connection, at the start) for PUBLISH_WAIT_S at
most, all of the batch together, and only while the link is believed good: after a wait
that timed out, the next batches do not wait until the client connects again or the broker
acknowledges something.

Before, each alert of a batch was waited for PUBLISH_WAIT_S on its own, and each batch
waited PUBLISH_WAIT_S for the broker to come back: a silent link (a partition, before the
keepalive notices it) held the worker 5 s per alert (25 s for 5), a broker down 5 s per
batch, and the alerts of that time were dropped.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from cloud.config import CloudMqtt
from cloud.logic.events import Alert
from urbanpulse.mqtt import close_client
from urbanpulse.wire import alerts_topic

if TYPE_CHECKING:
    from paho.mqtt.client import Client

log = logging.getLogger("urbanpulse.cloud.alerts")

PUBLISH_WAIT_S = 5.0  # the longest a publish waits for its batch's PUBACKs
MAX_QUEUED = 10_000  # alerts the client holds unacknowledged (about 300 bytes each)
STOP_WAIT_S = 2.0  # how long a stop waits for the queue to go out while connected


class AlertPublisher:
    """`published`: acknowledged by the broker; `undelivered`: refused by it (a PUBACK
    with a failure reason code, e.g. its ACL) or by the full queue; `pending`: queued,
    not yet acknowledged."""

    def __init__(self, client: Client, max_queued: int = MAX_QUEUED) -> None:
        self.client = client
        self.max_queued = max_queued
        self.published = 0
        self.undelivered = 0
        self._connected = threading.Event()
        self._cond = threading.Condition()
        self._unacked: set[int] = set()  # mids queued, not yet acknowledged
        self._early: set[int] = set()  # mids acknowledged before `publish` noted them
        self._suspect = False  # a wait timed out: the link may be silent, or down
        self._queue_full_logged = False
        client.max_queued_messages_set(max_queued)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish

    @property
    def pending(self) -> int:
        with self._cond:
            return len(self._unacked)

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if not reason.is_failure:
            with self._cond:
                self._suspect = False
            self._connected.set()

    def _on_disconnect(self, *args: Any) -> None:
        self._connected.clear()

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        # Called on paho's network thread holding its own lock of the outgoing messages:
        # nothing here calls into the client.
        refused = reason is not None and reason.is_failure
        with self._cond:
            if mid in self._unacked:
                self._unacked.discard(mid)
            else:
                self._early.add(mid)
            if refused:
                self.undelivered += 1
            else:
                self.published += 1
            self._suspect = False
            self._cond.notify_all()
        if refused:
            log.warning("the broker refused an alert: %s", reason, extra={"reason": str(reason)})

    def start(self, host: str, port: int, keepalive_s: int) -> None:
        self.client.connect_async(host, port, keepalive=keepalive_s)
        self.client.loop_start()

    def publish(self, alerts: list[Alert]) -> None:
        if not alerts:
            return
        from paho.mqtt.enums import MQTTErrorCode

        infos = [self.client.publish(alerts_topic(a.site, a.kind.replace(".", "-")),
                                     json.dumps(a.as_json()), qos=1) for a in alerts]
        refused = 0
        with self._cond:
            batch = set()
            for info in infos:
                # rc 0: sent or queued behind the in-flight window; NO_CONN: queued until
                # the client is connected again. Both go out when they can.
                if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
                    refused += 1
                elif info.mid in self._early:
                    self._early.discard(info.mid)
                else:
                    batch.add(info.mid)
            self._unacked |= batch
            self.undelivered += refused
            if batch and not self._suspect:
                deadline = time.monotonic() + PUBLISH_WAIT_S
                while batch & self._unacked and (left := deadline - time.monotonic()) > 0:
                    self._cond.wait(left)
                if batch & self._unacked:
                    self._suspect = True
                    log.warning("alerts not acknowledged within %g s: they stay queued for the "
                                "broker, and publishing does not wait for it until it answers again",
                                PUBLISH_WAIT_S, extra={"alerts": len(batch & self._unacked)})
        if refused:
            if not self._queue_full_logged:
                log.warning("alerts not published: %d already wait for the broker", self.max_queued,
                            extra={"alerts": refused})
            self._queue_full_logged = True
        else:
            self._queue_full_logged = False

    def stop(self) -> None:
        """Waits up to STOP_WAIT_S for what is queued while connected (and the link not
        suspect), then disconnects; what is still queued is counted undelivered."""
        deadline = time.monotonic() + STOP_WAIT_S
        with self._cond:
            while self._unacked and self._connected.is_set() and not self._suspect \
                    and (left := deadline - time.monotonic()) > 0:
                self._cond.wait(min(left, 0.1))
            lost = len(self._unacked)
            self._unacked.clear()
            self.undelivered += lost
        if lost:
            log.warning("%d alerts not published: the broker had not acknowledged them at the stop",
                        lost)
        close_client(self.client)


def make_alert_publisher(cfg: CloudMqtt, client_id: str) -> AlertPublisher:
    from cloud.ingest import make_ingest_client

    client = make_ingest_client(cfg, client_id)
    client.manual_ack_set(False)
    publisher = AlertPublisher(client)
    publisher.start(cfg.host, cfg.port, cfg.keepalive_s)
    return publisher
