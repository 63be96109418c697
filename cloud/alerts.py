"""Publishes anomaly and sensor-fault events on the MQTT alerts topic.

Events are stored in InfluxDB (`events`) by the main sink, which is the record. This
publication is a notification: QoS 1, a bounded wait per batch, and when the broker is
away the alerts of that batch are counted as undelivered and logged, so the data path is
never held up by a notification.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import TYPE_CHECKING

from cloud.config import CloudMqtt
from cloud.logic.events import Alert
from urbanpulse.wire import alerts_topic

if TYPE_CHECKING:
    from paho.mqtt.client import Client

log = logging.getLogger("urbanpulse.cloud.alerts")

PUBLISH_WAIT_S = 5.0


class AlertPublisher:
    def __init__(self, client: Client) -> None:
        self.client = client
        self.published = 0
        self.undelivered = 0
        self._connected = threading.Event()
        client.on_connect = lambda c, u, f, reason, p: self._connected.set() if not reason.is_failure \
            else None
        client.on_disconnect = lambda *a: self._connected.clear()

    def start(self, host: str, port: int, keepalive_s: int) -> None:
        self.client.connect_async(host, port, keepalive=keepalive_s)
        self.client.loop_start()

    def publish(self, alerts: list[Alert]) -> None:
        if not alerts:
            return
        if not self._connected.wait(PUBLISH_WAIT_S):
            self.undelivered += len(alerts)
            log.warning("alerts not published: broker unavailable", extra={"alerts": len(alerts)})
            return
        infos = [self.client.publish(alerts_topic(a.site, a.kind.replace(".", "-")),
                                     json.dumps(a.as_json()), qos=1) for a in alerts]
        for info in infos:
            # rc 0: queued. The link may have dropped since the wait above (its callback
            # comes later): paho then refuses the message, and waiting on it would raise
            # out of the dataflow's sink.
            if info.rc == 0:
                info.wait_for_publish(PUBLISH_WAIT_S)
            if info.rc == 0 and info.is_published():
                self.published += 1
            else:
                self.undelivered += 1

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def make_alert_publisher(cfg: CloudMqtt, client_id: str) -> AlertPublisher:
    from cloud.ingest import make_ingest_client

    client = make_ingest_client(cfg, client_id)
    client.manual_ack_set(False)
    publisher = AlertPublisher(client)
    publisher.start(cfg.host, cfg.port, cfg.keepalive_s)
    return publisher
