"""The alerts publisher when the broker's link is lost between its connected check and its
publish (a broker restart at that moment): paho refuses the messages (not connected), and
waiting on them raised RuntimeError out of the dataflow's alert sink, which ended the
processor. They are counted undelivered instead: the alerts are a notification, the
events are stored in InfluxDB by the main sink. A real paho client that never connected
stands for the dropped link; the connected flag as its callback left it."""

from __future__ import annotations

from datetime import UTC, datetime

from cloud.alerts import AlertPublisher
from cloud.logic.events import Alert
from urbanpulse.clock import to_epoch_ns


def test_alerts_refused_by_a_link_just_lost_are_counted_undelivered() -> None:
    from paho.mqtt.client import Client
    from paho.mqtt.enums import CallbackAPIVersion

    publisher = AlertPublisher(Client(CallbackAPIVersion.VERSION2, client_id="alerts-gone"))
    publisher._connected.set()  # the link was up when last heard of
    stamp = to_epoch_ns(datetime(2026, 11, 29, 6, tzinfo=UTC))
    alerts = [Alert("hn", "aq-1", "pm-1", "air.pm", "spike", "pm25", 300.0, stamp, "300 against 40"),
              Alert("hn", "aq-1", "pm-1", "air.pm", "spike", "pm10", 500.0, stamp + 1, "500 against 60")]
    publisher.publish(alerts)
    assert (publisher.published, publisher.undelivered) == (0, 2)
