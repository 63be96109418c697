"""The alerts publisher when the broker's link is lost between its connected check and its
publish (a broker restart at that moment): paho answers the messages "not connected" and
keeps them queued for the next connection. Waiting on them once raised RuntimeError out of
the dataflow's alert sink, which ended the processor. Now nothing raises, the publish
returns within its one wait, and the alerts stay queued (a stop counts them undelivered):
the alerts are a notification, the events are stored in InfluxDB by the main sink. A real
paho client that never connected stands for the dropped link; the connected flag as its
callback left it."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from cloud import alerts
from cloud.alerts import PUBLISH_WAIT_S, AlertPublisher
from cloud.logic.events import Alert
from urbanpulse.clock import to_epoch_ns


def test_alerts_refused_by_a_link_just_lost_stay_queued_and_nothing_raises() -> None:
    from paho.mqtt.client import Client
    from paho.mqtt.enums import CallbackAPIVersion

    publisher = AlertPublisher(Client(CallbackAPIVersion.VERSION2, client_id="alerts-gone"))
    publisher._connected.set()  # the link was up when last heard of
    stamp = to_epoch_ns(datetime(2026, 11, 29, 6, tzinfo=UTC))
    alerts = [Alert("hn", "aq-1", "pm-1", "air.pm", "spike", "pm25", 300.0, stamp, "300 against 40"),
              Alert("hn", "aq-1", "pm-1", "air.pm", "spike", "pm10", 500.0, stamp + 1, "500 against 60")]
    started = time.monotonic()
    publisher.publish(alerts)
    assert time.monotonic() - started < PUBLISH_WAIT_S + 1.0
    assert (publisher.published, publisher.undelivered, publisher.pending) == (0, 0, 2)
    publisher.publish(alerts[:1])  # the wait went unanswered: the next does not wait
    assert time.monotonic() - started < PUBLISH_WAIT_S + 1.0
    publisher._connected.clear()  # as the disconnect callback leaves it
    publisher.stop()
    assert (publisher.published, publisher.undelivered, publisher.pending) == (0, 3, 0)


def test_alerts_beyond_the_queue_are_counted_undelivered(monkeypatch: pytest.MonkeyPatch) -> None:
    from paho.mqtt.client import Client
    from paho.mqtt.enums import CallbackAPIVersion

    # The publish waits once for the connection that never comes: its length is not what is
    # checked here (the test above checks it), only the counts.
    monkeypatch.setattr(alerts, "PUBLISH_WAIT_S", 0.5)

    publisher = AlertPublisher(Client(CallbackAPIVersion.VERSION2, client_id="alerts-full"),
                               max_queued=2)
    stamp = to_epoch_ns(datetime(2026, 11, 29, 6, tzinfo=UTC))
    publisher.publish([Alert("hn", "aq-1", "pm-1", "air.pm", "silence", None, None, stamp + k, "")
                       for k in range(5)])
    assert (publisher.published, publisher.undelivered, publisher.pending) == (0, 3, 2)
    publisher.stop()
