"""A link that the broker takes and then drops at once, again and again, is not hammered.

Played for real: a Mosquitto of its own (on a free 127.0.0.1 port) with message_size_limit
below the node's batch. Mosquitto 2.0 answers the too large PUBLISH with a PUBACK whose
reason code, 0x95 "Packet too large", is not one MQTT 5 allows in a PUBACK; paho 2.2 takes
that for a protocol error and drops the connection, then sends the message again on the
next connection. Before, the publisher's reconnect backoff went back to its minimum at
every connect, so such a node reconnected a few times a second for ever (a city of them
would flood the broker). Now the backoff goes back to its minimum only after a
connection that lasted a keepalive interval.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge.config import AgentConfig, load_config
from edge.drivers.base import Sample
from edge.mqtt_client import make_client as make_node_client
from edge.outbox import Outbox
from edge.publisher import BACKOFF_MIN_S, Publisher
from urbanpulse.clock import FakeClock, to_epoch_ns
from urbanpulse.stack.mosquitto import BINARY
from urbanpulse.stack.process import free_ports
from urbanpulse.testing import wait_for

LIMIT_BYTES = 2000  # the broker's message_size_limit; 200 readings make about 10 kB


@pytest.fixture
def small_broker(tmp_path: Path) -> Iterator[int]:
    """A plain Mosquitto (anonymous, no TLS) that refuses messages over LIMIT_BYTES."""
    (port,) = free_ports(1)
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                    f"message_size_limit {LIMIT_BYTES}\n", encoding="utf-8")
    with (tmp_path / "mosquitto.log").open("wb") as log:
        proc = subprocess.Popen([BINARY, "-c", str(conf)], stdout=log,
                                stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: b"running" in (tmp_path / "mosquitto.log").read_bytes()
                 or proc.poll() is not None, 10, "mosquitto to listen", every_s=0.02)
        assert proc.poll() is None, (tmp_path / "mosquitto.log").read_text()
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def _config(tmp_path: Path, node: str, port: int, more: str = "") -> AgentConfig:
    """A node of site hn-flaps with one SDS011, on a plain-TCP lab broker at `port`;
    `more`: TOML lines after the [mqtt] table's own keys (more of its keys, then tables)."""
    (tmp_path / "password").write_text("not-checked-here", encoding="utf-8")
    path = tmp_path / "node.toml"
    path.write_text(f"""
[node]
id = "{node}"
site = "hn-flaps"
state_dir = "{tmp_path / 'state'}"

[mqtt]
host = "127.0.0.1"
port = {port}
tls = false  # a lab broker of the test's own
password_file = "{tmp_path / 'password'}"
{more}

[gpio]
backend = "mock"

[agent]
clock_check = "off"

[[sensors]]
id = "pm-1"
driver = "sds011"
port = "/dev/null"
""", encoding="utf-8")
    return load_config(path)


def test_a_connection_dropped_at_once_again_and_again_backs_off(
        small_broker: int, tmp_path: Path) -> None:
    config = _config(tmp_path, "aq-flaps", small_broker,
                     'delivery = "broker"\n\n[outbox]\nbatch_max_delay_s = 0.2')
    clock = FakeClock(datetime(2026, 11, 29, 6, 0, tzinfo=UTC))
    outbox = Outbox(tmp_path / "outbox.sqlite3").open()
    outbox.append([Sample("pm-1", "air.pm", {"pm25": 12.0, "pm10": 20.0}, clock.now())
                   for _ in range(200)], to_epoch_ns(clock.now()))
    clock.advance(1.0)  # the batch is due
    publisher = Publisher(config, outbox, lambda: make_node_client("edge-hn-flaps.aq-flaps",
                                                                   config.mqtt),
                          clock, lambda: {})
    state = publisher.state
    publisher.start()
    try:
        # Each connection lives a moment; the waits before the next are drawn from up to
        # 0.5, 1, 2 s: four drops take 3.5 s and four connects at most.
        wait_for(lambda: state.disconnects >= 4, 20, f"the link to drop four times ({state})")
        assert "Protocol error" in (state.last_error or ""), state
        # Doubled at each drop (the wait after the fourth is drawn from up to 4 s or, once
        # drawn, the next from up to 8 s); before, back to 0.5 s at every connect.
        assert state.reconnect_backoff_s >= BACKOFF_MIN_S * 2 ** 3, state
        assert outbox.stats().depth == 200  # nothing taken, nothing lost
    finally:
        publisher.stop()
        outbox.close()
    assert publisher.failure is None


def test_a_link_lost_just_as_the_publisher_stops_is_no_failure(tmp_path: Path) -> None:
    """The race the flapping link above hits at random: at the stop, the publisher still
    reads `connected` (paho's disconnect callback has not run yet) and publishes its
    "offline" status on a link already gone. paho refuses it (not connected) and raised from
    is_published(), which the agent took for the publisher failing. A real paho client that
    never connected stands for the dropped link; `connected` as the callback left it."""
    (port,) = free_ports(1)  # never connected: nothing listens there
    config = _config(tmp_path, "aq-gone", port)
    outbox = Outbox(tmp_path / "outbox.sqlite3").open()
    publisher = Publisher(config, outbox, lambda: make_node_client("hn-flaps.aq-gone", config.mqtt),
                          FakeClock(datetime(2026, 11, 29, 6, 0, tzinfo=UTC)), lambda: {})
    client = make_node_client("hn-flaps.aq-gone", config.mqtt)
    publisher.state.connected = True
    try:
        publisher._shutdown(client)  # returns without waiting on a message never queued
    finally:
        outbox.close()
