"""InfluxDB stopped for 60 s while data flows: the journal holds it, nothing is lost."""

from __future__ import annotations

import os
import signal
import time
from datetime import UTC, datetime, timedelta

from tests.e2e.counts import minute_count, raw_count
from urbanpulse.clock import to_epoch_ns
from urbanpulse.influx_http import InfluxHTTP
from urbanpulse.mqtt import close_client, connect_and_wait, make_client
from urbanpulse.stack import influxd, up
from urbanpulse.stack.layout import Layout
from urbanpulse.testing import wait_for
from urbanpulse.wire import Reading, data_topic, encode_batch

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
OUTAGE_S = 60


def _count(reader: InfluxHTTP, node: str) -> int:
    return raw_count(reader, "air_co2", "co2", node)


def _minute_counts(reader: InfluxHTTP, node: str) -> int:
    return minute_count(reader, "air_co2", node)


def test_influxdb_down_for_a_minute_mid_stream_loses_nothing(
        cloud_factory, add_stack_node, reader, stack_config) -> None:  # type: ignore[no-untyped-def]
    site, node = "hn-e2e", "co2-outage"
    creds = add_stack_node(site, node)
    cloud = cloud_factory("outage")
    cloud.start()
    wait_for(lambda: "ingest subscribed" in cloud.log(), 30, "the ingest to subscribe")
    readings = [Reading("co2-1", "air.co2", to_epoch_ns(T0 + timedelta(seconds=i)), i,
                        {"co2": 420.0 + i % 50}) for i in range(1500)]
    batches = [readings[i:i + 50] for i in range(0, len(readings), 50)]
    client = make_client(f"pub-{node}", creds, clean_start=True)
    connect_and_wait(client)
    restarted = False
    try:
        def send(batch: list[Reading]) -> None:
            client.publish(data_topic(site, node), encode_batch(site, node, batch), qos=1) \
                .wait_for_publish(10)

        for batch in batches[:10]:
            send(batch)
        wait_for(lambda: _count(reader, node) == 500, 30, "the first 500 points")
        assert influxd.stop(Layout(stack_config.home))
        stopped_at = time.monotonic()
        for batch in batches[10:]:  # mid-stream: the rest arrives while InfluxDB is away
            send(batch)
        wait_for(lambda: "InfluxDB write failed" in cloud.log() or None, 30,
                 "the sink to notice the outage")
        wait_for(lambda: time.monotonic() - stopped_at >= OUTAGE_S, OUTAGE_S + 5, "the outage",
                 every_s=1.0)
        assert cloud.proc is not None
        assert cloud.proc.poll() is None, "the processor died"
        up(stack_config)
        restarted = True
        wait_for(lambda: _count(reader, node) >= len(readings), 90, "every point after the outage")
        assert _count(reader, node) == len(readings)
        # The minute aggregates go in the writer's next request after the raw points (and a
        # health report may go between the two): polled, not read once.
        try:
            wait_for(lambda: _minute_counts(reader, node) >= len(readings), 30,
                     "minute aggregates counting every reading")
        except AssertionError:
            print(cloud.log()[-5000:])  # what the processor said, for the failure's report
            raise
        assert _minute_counts(reader, node) == len(readings)
    finally:
        close_client(client)
        if not restarted:
            up(stack_config)


def test_sigterm_during_an_outage_stops_at_once_and_the_restart_writes_everything(
        cloud_factory, add_stack_node, reader, stack_config) -> None:  # type: ignore[no-untyped-def]
    site, node = "hn-e2e", "co2-sigterm"
    creds = add_stack_node(site, node)
    cloud = cloud_factory("sigterm")
    cloud.start()
    wait_for(lambda: "ingest subscribed" in cloud.log(), 30, "the ingest to subscribe")
    readings = [Reading("co2-1", "air.co2", to_epoch_ns(T0 + timedelta(seconds=i)), i,
                        {"co2": 430.0 + i % 40}) for i in range(300)]
    client = make_client(f"pub-{node}", creds, clean_start=True)
    connect_and_wait(client)
    restarted = False
    try:
        for i in range(0, len(readings), 50):
            if i == 100:
                wait_for(lambda: _count(reader, node) == 100, 30, "the first 100 points")
                assert influxd.stop(Layout(stack_config.home))
            client.publish(data_topic(site, node), encode_batch(site, node, readings[i:i + 50]),
                           qos=1).wait_for_publish(10)
        wait_for(lambda: "InfluxDB write failed" in cloud.log() or None, 30,
                 "the sink to notice the outage")
        assert cloud.proc is not None
        os.killpg(cloud.proc.pid, signal.SIGTERM)  # as systemd stops the unit
        assert cloud.proc.wait(30) == 0, cloud.log()[-3000:]
        up(stack_config)
        restarted = True
        cloud.start()
        wait_for(lambda: _count(reader, node) >= len(readings), 90, "every point after the restart")
        assert _count(reader, node) == len(readings)
    finally:
        close_client(client)
        if not restarted:
            up(stack_config)
