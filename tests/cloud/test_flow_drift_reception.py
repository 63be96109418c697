"""The dataflow hands the city's drift step each message's reception (NodeLogic: `drift_inputs`'
`received_ns`), so that a drift found on a late reading is stamped when the cloud received
it (tests/dashboards/test_dashboards_drift_clock.py shows why, with the alert rule on the
real InfluxDB). Here the real `build_flow` runs under Bytewax on journal records, its journal
source replaced by those records and InfluxDB by a sink that keeps the points (as
bench.pipeline.flowonly does, whose run this is): what is checked is the wiring, not the sink."""

from __future__ import annotations

from datetime import timedelta

from bench.pipeline.flowonly import measure
from tests.dashboards.test_dashboards_drift_clock import _records
from urbanpulse.clock import from_epoch_ns
from urbanpulse.wire import format_ts


def test_the_flow_stamps_a_drift_found_on_an_hour_late_reading_at_its_reception() -> None:
    records, stamp, received = _records("drift-flow", "pair", timedelta(hours=-1))
    _, batches = measure(records, len(records), detect=True, batch=20)
    drifts = [text for batch in batches for _, text in batch
              if text.startswith("events,") and "type=drift" in text]
    assert len(drifts) == 1, drifts
    _head, fields, ts = drifts[0].rsplit(" ", 2)
    assert int(ts) // 10_000 * 10_000 == received
    assert f'node_ts="{format_ts(from_epoch_ns(stamp))}"' in fields
