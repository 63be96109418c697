"""Cross-station drift through the whole processor: five PM stations of one city on real
Mosquitto and InfluxDB, sharing the weather, one of whose gains grows 10 %/h after two
days; its drift is stored in `events` and published on the alerts topic, and nothing is
raised for the other four."""

from __future__ import annotations

import json
import math
import random
import threading
from datetime import UTC, datetime

from urbanpulse.clock import to_epoch_ns
from urbanpulse.influx_http import InfluxHTTP
from urbanpulse.mqtt import close_client, connect_and_wait, make_client
from urbanpulse.testing import wait_for
from urbanpulse.wire import Reading, data_topic, encode_batch

SITE = "hn-drift"
T0_NS = to_epoch_ns(datetime(2026, 11, 20, tzinfo=UTC))
LEVELS = (1.0, 1.3, 0.9, 1.1, 0.7)
HOURS = 72
PER_HOUR = 6  # a reading every 10 minutes


def _hours(drifting: int) -> list[list[tuple[str, list[Reading]]]]:
    """Per hour, each station's readings of that hour (weather x level x noise x gain)."""
    rng = random.Random(3)
    out = []
    for hour in range(HOURS):
        chunk = []
        for i, level in enumerate(LEVELS):
            readings = []
            for j in range(PER_HOUR):
                h = hour + j / PER_HOUR
                value = 40 * (1.5 + math.sin(2 * math.pi * h / 24)) * level * math.exp(0.08 * rng.gauss(0, 1))
                if i == drifting:
                    value *= 1 + 0.1 * max(0.0, h - 50)
                seq = hour * PER_HOUR + j
                readings.append(Reading("pm-1", "air.pm", T0_NS + seq * 600_000_000_000, seq,
                                        {"pm25": round(value, 1), "pm10": round(1.6 * value, 1)}))
            chunk.append((f"aq-{i}", readings))
        out.append(chunk)
    return out


def _raw(reader: InfluxHTTP) -> int:
    rows = reader.query_points(f"SELECT count(pm25) FROM raw.air_pm WHERE site = '{SITE}'", db="urbanpulse")
    return int(rows[0]["count"]) if rows else 0


def test_a_drifting_station_is_found_by_comparison_with_the_others(  # type: ignore[no-untyped-def]
        cloud_factory, add_stack_node, reader, db_ready) -> None:
    hours = _hours(drifting=3)
    publishers = {}
    for i in range(len(LEVELS)):
        node = f"aq-{i}"
        publishers[node] = make_client(f"pub-{SITE}-{node}", add_stack_node(SITE, node), clean_start=True)
        connect_and_wait(publishers[node])
    received: list[bytes] = []
    subscribed = threading.Event()
    watcher = make_client("drift-watcher", db_ready.mqtt("cloud"), clean_start=True)
    watcher.on_message = lambda c, u, m: received.append(bytes(m.payload))
    watcher.on_subscribe = lambda *a: subscribed.set()
    connect_and_wait(watcher)
    watcher.subscribe(f"urbanpulse/v1/_alerts/{SITE}/#", qos=1)
    assert subscribed.wait(10)
    cloud = cloud_factory("drift", topic=f"urbanpulse/v1/{SITE}/+")
    cloud.start()
    wait_for(lambda: "ingest subscribed" in cloud.log(), 60, "the ingest to subscribe")
    try:
        # Hour by hour, as live stations report: each hour is stored before the next is
        # sent. (Sent at once, the node step would take each station's whole backlog in
        # turn, and the city step would judge hours before the last stations had reported.)
        for hour, chunk in enumerate(hours):
            for node, readings in chunk:
                publishers[node].publish(data_topic(SITE, node), encode_batch(SITE, node, readings),
                                         qos=1).wait_for_publish(10)
            stored = (hour + 1) * PER_HOUR * len(LEVELS)

            def all_stored(n: int = stored) -> bool:
                return _raw(reader) == n

            wait_for(all_stored, 30, f"{stored} raw points")
        events = wait_for(lambda: reader.query_points(
            f"SELECT * FROM raw.events WHERE site = '{SITE}' AND type = 'drift'", db="urbanpulse"),
            60, "the drift event")
        assert [(e["node"], e["sensor"], e["kind"], e["field"]) for e in events] == [
            ("aq-3", "pm-1", "air.pm", "pm25")]
        assert events[0]["time"] > T0_NS + 50 * 3_600_000_000_000
        alert = json.loads(wait_for(lambda: next((m for m in received if b'"drift"' in m), None),
                                    30, "the drift alert on MQTT"))
        assert (alert["node"], alert["type"], alert["field"]) == ("aq-3", "drift", "pm25")
    finally:
        close_client(watcher)
        for client in publishers.values():
            close_client(client)
