"""A processor stopped while data flows (systemd's SIGTERM): the journal source ends, the
epoch under way is written and committed, and the run ends cleanly: exit 0, no Bytewax
panic in the log (operators read it after every upgrade), and after a restart every
reading is in InfluxDB exactly once with minute aggregates of exactly those readings."""

from __future__ import annotations

import os
import signal
from datetime import UTC, datetime, timedelta

from tests.e2e.counts import minute_count, raw_count
from urbanpulse.clock import to_epoch_ns
from urbanpulse.influx_http import InfluxHTTP
from urbanpulse.mqtt import close_client, connect_and_wait, make_client
from urbanpulse.testing import wait_for
from urbanpulse.wire import Reading, data_topic, encode_batch

T0 = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)


def _counts(reader: InfluxHTTP, node: str) -> tuple[int, int]:
    return raw_count(reader, "air_co2", "co2", node), minute_count(reader, "air_co2", node)


def test_sigterm_while_data_flows_ends_the_run_cleanly_and_loses_nothing(
        cloud_factory, add_stack_node, reader) -> None:  # type: ignore[no-untyped-def]
    site, node = "hn-e2e", "co2-stop"
    creds = add_stack_node(site, node)
    cloud = cloud_factory("stop")
    cloud.start()
    wait_for(lambda: "ingest subscribed" in cloud.log(), 30, "the ingest to subscribe")
    readings = [Reading("co2-1", "air.co2", to_epoch_ns(T0 + timedelta(seconds=i)), i,
                        {"co2": 410.0 + i % 30}) for i in range(2000)]
    client = make_client(f"pub-{node}", creds, clean_start=True)
    connect_and_wait(client)
    try:
        for i in range(0, 1000, 50):
            client.publish(data_topic(site, node), encode_batch(site, node, readings[i:i + 50]),
                           qos=1).wait_for_publish(10)
        wait_for(lambda: _counts(reader, node)[0] > 0, 30, "the first points")
        assert cloud.proc is not None
        os.killpg(cloud.proc.pid, signal.SIGTERM)  # as systemd stops the unit
        assert cloud.proc.wait(30) == 0, cloud.log()[-3000:]
        log = cloud.log()
        assert "the last epoch written and committed" in log, log[-3000:]
        assert "panicked" not in log, log[-3000:]
        for i in range(1000, len(readings), 50):  # the broker keeps them for the ingest
            client.publish(data_topic(site, node), encode_batch(site, node, readings[i:i + 50]),
                           qos=1).wait_for_publish(10)
        cloud.start()
        wait_for(lambda: _counts(reader, node) == (len(readings), len(readings)), 60,
                 "every reading, raw and in the minute aggregates, once")
    finally:
        close_client(client)
