"""The delivery ledger's integers stay within InfluxDB's (int64): the contract lets a
sequence number go up to 2^63 - 1, so one sensor sending seq 0 and 2^63 - 1 in an hour
spans 2^63 numbers, more than an int64 holds. InfluxDB refuses such a line ("value out of
range"), so the node's ledger for that hour was never stored, however often it was
written again. The span is capped at the largest int64."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import pytest

from cloud.logic.node import NodeState
from cloud.logic.records import RP_1H, NodeData
from urbanpulse.influx_http import InfluxHTTP
from urbanpulse.stack import StackInfo
from urbanpulse.wire import Reading
from urbanpulse.wire.payload import MAX_SEQ

INT64_MAX = 2**63 - 1
MINUTE_NS = 60 * 10**9
HOUR_NS = 60 * MINUTE_NS
# Recent: other tests may give the session's database a retention policy.
NOW_NS = time.time_ns()
HOUR = NOW_NS - NOW_NS % HOUR_NS
NODE = "ledger-bounds"


def _ledger_lines(readings: list[Reading]) -> list[str]:
    state = NodeState(10 * MINUTE_NS, detect=False)
    points = state.process(NodeData(f"hn/{NODE}", "hn", NODE, HOUR + MINUTE_NS, readings))
    return [ln for rp, ln in points if rp == RP_1H and ln.startswith("ledger,")]


def _extreme_readings() -> list[Reading]:
    """Two bed pads, each with the first and the last sequence number the contract allows."""
    return [Reading(sensor, "hospital.bed", HOUR + i * 1000, seq, {"occupied": 1})
            for i, (sensor, seq) in enumerate([("bed-1", 0), ("bed-1", MAX_SEQ),
                                               ("bed-2", 0), ("bed-2", MAX_SEQ)])]


def test_ledger_integers_fit_an_int64() -> None:
    (ledger,) = _ledger_lines(_extreme_readings())
    integers = {name: int(value) for name, value in re.findall(r"(\w+)=(-?\d+)i", ledger)}
    assert integers["received"] == 4
    assert integers["expected"] == INT64_MAX
    assert integers["missing"] == INT64_MAX - 4
    assert all(-INT64_MAX - 1 <= v <= INT64_MAX for v in integers.values())


def test_ordinary_spans_are_counted_as_before() -> None:
    readings = [Reading("bed-1", "hospital.bed", HOUR + seq * 1000, seq, {"occupied": 1})
                for seq in (5, 7, 9)]
    (ledger,) = _ledger_lines(readings)
    assert "expected=5i,received=3i,duplicates=0i,late=0i,missing=2i,restarts=0i " in ledger


@pytest.mark.stack
def test_influxdb_stores_the_ledger_of_extreme_sequence_numbers(
        stack: StackInfo, influx_client: Callable[[str | None], InfluxHTTP]) -> None:
    (ledger,) = _ledger_lines(_extreme_readings())
    influx_client("writer").write(ledger.encode(), db=stack.database)  # raised InfluxError 400
    rows = influx_client("reader").query_points(
        f"SELECT expected, received, missing FROM ledger WHERE node = '{NODE}'", db=stack.database)
    assert rows == [{"time": HOUR, "expected": INT64_MAX, "received": 4, "missing": INT64_MAX - 4}]
