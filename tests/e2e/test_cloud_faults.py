"""The processor under faults: SIGKILLed while data flows, and a node's late backlog."""

from __future__ import annotations

import random
import statistics
import threading
from datetime import UTC, datetime, timedelta

from tests.e2e.counts import raw_count
from urbanpulse.clock import to_epoch_ns
from urbanpulse.influx_http import InfluxHTTP
from urbanpulse.mqtt import close_client, connect_and_wait, make_client
from urbanpulse.testing import wait_for
from urbanpulse.wire import Reading, data_topic, encode_batch

T0 = datetime(2026, 11, 27, 6, 0, tzinfo=UTC)


def _readings(sensor: str, n: int, seq0: int = 0, step_s: float = 2.0) -> list[Reading]:
    return [Reading(sensor, "air.co2", to_epoch_ns(T0 + timedelta(seconds=step_s * (seq0 + i))),
                    seq0 + i, {"co2": 400.0 + ((seq0 + i) * 13 % 97)}) for i in range(n)]


def _expected_minutes(readings: list[Reading]) -> dict[int, tuple[int, float, float, float]]:
    by: dict[int, list[float]] = {}
    for r in readings:
        by.setdefault(r.ts_ns - r.ts_ns % 60_000_000_000, []).append(r.values["co2"])
    return {k: (len(v), statistics.fmean(v), min(v), max(v)) for k, v in by.items()}


def _minutes(reader: InfluxHTTP, node: str) -> dict[int, tuple[int, float, float, float]]:
    rows = reader.query_points(f"SELECT * FROM agg_1m.air_co2 WHERE node = '{node}'", db="urbanpulse")
    return {r["time"]: (r["count"], r["co2_mean"], r["co2_min"], r["co2_max"]) for r in rows}


def _raw_count(reader: InfluxHTTP, node: str) -> int:
    return raw_count(reader, "air_co2", "co2", node)


def _close(a: dict[int, tuple[int, float, float, float]], b: dict[int, tuple[int, float, float, float]]
           ) -> bool:
    return a.keys() == b.keys() and all(
        a[k][0] == b[k][0] and abs(a[k][1] - b[k][1]) < 1e-9 and a[k][2:] == b[k][2:] for k in a)


def test_processor_sigkilled_while_data_flows_loses_and_doubles_nothing(
        cloud_factory, add_stack_node, reader) -> None:  # type: ignore[no-untyped-def]
    site, node = "hn-e2e", "co2-kill"
    creds = add_stack_node(site, node)
    cloud = cloud_factory("kill")
    cloud.start()
    wait_for(lambda: "ingest subscribed" in cloud.log(), 30, "the ingest to subscribe")
    readings = _readings("co2-1", 3000)
    batches = [readings[i:i + 50] for i in range(0, len(readings), 50)]
    publisher = make_client(f"pub-{node}", creds, clean_start=True)
    connect_and_wait(publisher)
    done = threading.Event()

    def publish() -> None:
        for batch in batches:
            publisher.publish(data_topic(site, node), encode_batch(site, node, batch), qos=1) \
                .wait_for_publish(10)
            if done.wait(0.04):
                return
        done.set()

    thread = threading.Thread(target=publish)
    thread.start()
    rng = random.Random(11)
    kills = 0
    try:
        while not done.is_set() and kills < 4:
            done.wait(rng.uniform(0.3, 0.9))
            cloud.kill()
            kills += 1
            cloud.start()
    finally:
        thread.join(30)
        close_client(publisher)
    assert kills >= 2, "the publisher finished before the processor was killed twice"
    wait_for(lambda: _raw_count(reader, node) >= len(readings), 90, "every raw point")
    assert _raw_count(reader, node) == len(readings)
    expected = _expected_minutes(readings)
    wait_for(lambda: _close(_minutes(reader, node), expected), 60,
             "aggregates equal to an uninterrupted run")


def _live_then_late(creds, reader: InfluxHTTP, site: str, node: str,  # type: ignore[no-untyped-def]
                    live: list[Reading], late: list[Reading], batch: int) -> None:
    """Publish `live`, wait until its aggregates are stored, then publish `late`."""
    publisher = make_client(f"pub-{node}", creds, clean_start=True)
    connect_and_wait(publisher)
    try:
        for part in (live, late):
            for i in range(0, len(part), batch):
                publisher.publish(data_topic(site, node), encode_batch(site, node, part[i:i + batch]),
                                  qos=1).wait_for_publish(10)
            if part is live:
                wait_for(lambda: _close(_minutes(reader, node), _expected_minutes(live)), 60,
                         "the aggregates of the live data")
    finally:
        close_client(publisher)


def test_a_nodes_late_backlog_corrects_the_aggregates(
        cloud_factory, add_stack_node, reader) -> None:  # type: ignore[no-untyped-def]
    site, node = "hn-e2e", "co2-late"
    creds = add_stack_node(site, node)
    cloud = cloud_factory("late")
    cloud.start()
    wait_for(lambda: "ingest subscribed" in cloud.log(), 30, "the ingest to subscribe")
    readings = _readings("co2-1", 2400, step_s=2.0)  # 80 minutes
    # An hour-long outage that starts and ends mid-minute, so windows are split across it.
    live = readings[:615] + readings[1815:]
    backlog = readings[615:1815]
    _live_then_late(creds, reader, site, node, live, backlog, batch=200)
    wait_for(lambda: _close(_minutes(reader, node), _expected_minutes(readings)), 60,
             "aggregates corrected by the backlog")
    assert _raw_count(reader, node) == len(readings)


def test_data_later_than_the_horizon_is_rebuilt_from_the_raw_points(
        cloud_factory, add_stack_node, reader) -> None:  # type: ignore[no-untyped-def]
    site, node = "hn-e2e", "co2-verylate"
    creds = add_stack_node(site, node)
    cloud = cloud_factory("verylate", aggregate_horizon_s=120)  # windows leave memory after 2 min
    cloud.start()
    wait_for(lambda: "ingest subscribed" in cloud.log(), 30, "the ingest to subscribe")
    readings = _readings("co2-1", 600, step_s=2.0)  # 20 minutes
    late = readings[15:45]  # minute 0 and 1, split mid-minute, arriving after minute 19
    live = readings[:15] + readings[45:]
    _live_then_late(creds, reader, site, node, live, late, batch=100)
    wait_for(lambda: _close(_minutes(reader, node), _expected_minutes(readings)), 60,
             "windows beyond the horizon rebuilt from raw points")
