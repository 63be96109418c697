"""The dataflow hands the city's drift step each message's reception (NodeLogic: `drift_inputs`'
`received_ns`), so that a drift found on a late reading is stamped when the cloud received
it (tests/dashboards/test_dashboards_drift_clock.py shows why, with the alert rule on the
real InfluxDB). Here the real `build_flow` runs under Bytewax on journal records, its journal
source replaced by those records and InfluxDB by a sink that keeps the points (as
bench.pipeline.flowonly does): what is checked is the wiring, not the sink."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path
from typing import Any
from unittest import mock

from bytewax.testing import TestingSink, TestingSource, run_main

from cloud import flow as cloud_flow
from cloud.config import parse_cloud_config
from tests.dashboards.test_dashboards_drift_clock import _records
from urbanpulse.clock import from_epoch_ns
from urbanpulse.wire import format_ts


def test_the_flow_stamps_a_drift_found_on_an_hour_late_reading_at_its_reception(tmp_path: Path) -> None:
    records, stamp, received = _records("drift-flow", "pair", timedelta(hours=-1))
    cfg = parse_cloud_config({"mqtt": {"password_file": "p", "ca_file": "c"},
                              "influx": {"url": "http://127.0.0.1:1", "database": "city",
                                         "password_file": "p"},
                              "flow": {"detect": True}, "state": {"dir": str(tmp_path)}})
    points: list[Any] = []
    drain = threading.Event()
    drain.set()  # the process-start input ends at once; the records' source when read
    with mock.patch.object(cloud_flow, "JournalSource",
                           return_value=TestingSource(records, batch_size=20)):
        flow = cloud_flow.build_flow(cfg, ["i0"], sink=TestingSink(points),
                                     alert_sink=TestingSink([]), drain=drain)
    run_main(flow, epoch_interval=timedelta(seconds=2))
    drifts = [text for _, batch in points if isinstance(batch, list) for _, text in batch
              if text.startswith("events,") and "type=drift" in text]
    assert len(drifts) == 1, drifts
    _head, fields, ts = drifts[0].rsplit(" ", 2)
    assert int(ts) // 10_000 * 10_000 == received
    assert f'node_ts="{format_ts(from_epoch_ns(stamp))}"' in fields
