"""MQTT → ingest → Bytewax → InfluxDB on the real broker and database."""

from __future__ import annotations

import json
import statistics
from datetime import UTC, datetime, timedelta
from typing import Any

from cloud.logic.node import raw_time
from urbanpulse.clock import to_epoch_ns
from urbanpulse.influx_http import InfluxHTTP
from urbanpulse.mqtt import close_client, make_client
from urbanpulse.testing import wait_for
from urbanpulse.wire import Reading, data_topic, encode_batch

T0 = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)


def _readings(sensor: str, n: int, start_seq: int = 0) -> list[Reading]:
    return [Reading(sensor, "air.pm", to_epoch_ns(T0 + timedelta(seconds=7 * i)), start_seq + i,
                    {"pm25": 10.0 + (i * 37 % 23) / 4, "pm10": 30.0 + i % 5}) for i in range(n)]


def _publish(creds, messages):  # type: ignore[no-untyped-def]
    client = make_client(f"pub-{creds.username}", creds, clean_start=True)
    client.connect(creds.host, creds.port)
    client.loop_start()
    try:
        infos = [client.publish(topic, payload, qos=1) for topic, payload in messages]
        for info in infos:
            info.wait_for_publish(10)
            assert info.is_published()
    finally:
        close_client(client)


def _raw(reader: InfluxHTTP, node: str) -> dict[tuple[str, int], tuple[float, float, int]]:
    rows = reader.query_points(f"SELECT pm25, pm10, seq, sensor FROM raw.air_pm WHERE node = '{node}'",
                               db="urbanpulse")
    return {(r["sensor"], r["time"]): (r["pm25"], r["pm10"], r["seq"]) for r in rows}


def test_known_readings_arrive_exactly_once_with_their_minute_aggregates(
        cloud_factory, add_stack_node, reader, db_ready) -> None:  # type: ignore[no-untyped-def]
    site, node = "hn-e2e", "aq-exact"
    creds = add_stack_node(site, node)
    cloud = cloud_factory("exact")
    cloud.start()
    wait_for(lambda: "ingest subscribed" in cloud.log(), 30, "the ingest to subscribe")

    a, b = _readings("pm-a", 40), _readings("pm-b", 25)
    topic = data_topic(site, node)
    first = encode_batch(site, node, a[:20] + b[:10])
    messages = [
        (topic, first),
        (topic, encode_batch(site, node, a[20:] + b[10:])),
        (topic, first),  # a redelivery: must not count twice
        (topic, b"{not json"),
        (topic, json.dumps({"v": 1, "site": site, "node": node, "units": {"air.pm": {
            "pm25": "ug/m3", "pm10": "ug/m3"}}, "readings": [
            {"sensor": "pm-c", "kind": "air.pm", "ts": "2026-11-27T08:00:00.000000Z", "seq": -1,
             "values": {"pm25": 1.0, "pm10": 2.0}}]}).encode()),
    ]
    _publish(creds, messages)

    expected = {(r.sensor, raw_time(r)): (r.values["pm25"], r.values["pm10"], r.seq) for r in a + b}
    got = wait_for(lambda: (lambda raw: raw if len(raw) >= len(expected) else None)(_raw(reader, node)),
                   60, "all raw points")
    assert got == expected

    # 1-minute aggregates, computed here independently from the published set.
    by_window: dict[tuple[str, int], list[Reading]] = {}
    for r in a + b:
        by_window.setdefault((r.sensor, r.ts_ns - r.ts_ns % 60_000_000_000), []).append(r)

    def aggregates():  # type: ignore[no-untyped-def]
        rows = reader.query_points(
            f"SELECT * FROM agg_1m.air_pm WHERE node = '{node}'", db="urbanpulse")
        done = {(r["sensor"], r["time"]): r for r in rows}
        complete = all(done.get(k, {}).get("count") == len(v) for k, v in by_window.items())
        return done if complete else None

    aggs = wait_for(aggregates, 30, "complete minute aggregates")
    assert set(aggs) == set(by_window)
    for key, rs in by_window.items():
        row = aggs[key]
        pm25 = [r.values["pm25"] for r in rs]
        assert row["count"] == len(rs)
        assert row["pm25_mean"] == statistics.fmean(pm25)
        assert row["pm25_min"] == min(pm25)
        assert row["pm25_max"] == max(pm25)
        assert row["pm25_last"] == max(rs, key=lambda r: r.ts_ns).values["pm25"]

    def both_dead_letters() -> list[dict[str, Any]] | None:
        # both, not the first: on a busy machine the first came alone (two pytest-xdist workers)
        rows = reader.query_points(
            f"SELECT reason, detail FROM raw.dead_letter WHERE node = '{node}'", db="urbanpulse")
        return rows if len(rows) >= 2 else None

    dead = wait_for(both_dead_letters, 30, "two dead letters")
    reasons = sorted(d["reason"] for d in dead)
    assert reasons == ["bad_seq", "not_json"]
    assert any("readings[0].seq" in d["detail"] for d in dead)

    ledger = wait_for(lambda: reader.query_points(
        f"SELECT * FROM agg_1h.ledger WHERE node = '{node}'", db="urbanpulse"), 30, "the ledger")
    assert ledger[0]["received"] == 65 + 30
    assert ledger[0]["duplicates"] == 30
    assert ledger[0]["expected"] == 65
    assert ledger[0]["missing"] == 0


def test_a_sensor_fault_is_stored_as_an_event_and_published_as_an_alert(
        cloud_factory, add_stack_node, reader, db_ready) -> None:  # type: ignore[no-untyped-def]
    import threading

    from urbanpulse.mqtt import connect_and_wait

    site, node = "hn-alerts", "co2-x"
    creds = add_stack_node(site, node)
    received: list[bytes] = []
    subscribed = threading.Event()
    watcher = make_client("alert-watcher", db_ready.mqtt("cloud"), clean_start=True)
    watcher.on_message = lambda c, u, m: received.append(m.payload)
    watcher.on_subscribe = lambda *a: subscribed.set()
    connect_and_wait(watcher)
    watcher.subscribe(f"urbanpulse/v1/_alerts/{site}/#", qos=1)
    assert subscribed.wait(10)
    cloud = cloud_factory("alerts")
    cloud.start()
    wait_for(lambda: "ingest subscribed" in cloud.log(), 30, "the ingest to subscribe")
    try:
        readings = [Reading("co2-1", "air.co2", to_epoch_ns(T0 + timedelta(seconds=5 * i)), i,
                            {"co2": 450.0 + i % 9}) for i in range(40)]
        readings.append(Reading("co2-1", "air.co2", to_epoch_ns(T0 + timedelta(seconds=200)), 40,
                                {"co2": 25000.0}))  # beyond the sensor's 0-10000 ppm range
        _publish(creds, [(data_topic(site, node), encode_batch(site, node, readings))])
        events = wait_for(lambda: reader.query_points(
            f"SELECT * FROM raw.events WHERE node = '{node}' AND type = 'out_of_range'",
            db="urbanpulse"), 60, "the out_of_range event")
        assert events[0]["value"] == 25000.0
        assert events[0]["sensor"] == "co2-1"
        alert = json.loads(wait_for(lambda: next((m for m in received if b"out_of_range" in m), None),
                                    30, "the alert on MQTT"))
        assert alert["type"] == "out_of_range"
        assert alert["node"] == node
        assert alert["field"] == "co2"
    finally:
        close_client(watcher)
