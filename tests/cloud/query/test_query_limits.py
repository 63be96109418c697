"""A server that cuts answers at its `max-row-limit`, and a database whose ledger never held
`restarts`: on an InfluxDB of the test's own (scratch_influx.py)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from cloud.logic.lines import line
from cloud.logic.node import NodeState
from cloud.logic.records import NodeData
from cloud.query import CityData, QueryError
from urbanpulse.clock import to_epoch_ns
from urbanpulse.influx_http import InfluxHTTP
from urbanpulse.wire import Reading

from .conftest import HORIZON_NS
from .scratch_influx import scratch_influx

pytestmark = pytest.mark.stack
LIMIT = 7
T0 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
T0_NS = to_epoch_ns(T0)
S = 10**9


def _pm(sensor: str, at_ns: int, value: float) -> str:
    return line("air_pm", {"site": "s", "node": "n", "sensor": sensor, "kind": "air.pm"},
                {"pm25": value, "seq": 1}, at_ns)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxHTTP]:
    with scratch_influx(Path(tmp_path_factory.mktemp("influx")), LIMIT) as client:
        lines = [
            # 20 points of 3 sensors in the first minute: 2.9 answers' worth
            *(_pm(f"pm-{i % 3}", T0_NS + i * S, float(i)) for i in range(20)),
            # exactly LIMIT points in the second minute
            *(_pm("pm-0", T0_NS + 60 * S + i * S, 100.0 + i) for i in range(LIMIT)),
            # LIMIT + 1 series at one nanosecond in the third minute
            *(_pm(f"pm-x{i}", T0_NS + 120 * S + 1, 200.0 + i) for i in range(LIMIT + 1)),
        ]
        client.write("\n".join(lines).encode(), db="d", rp="raw")
        # a ledger without restarts, written by the processor's own code
        readings = [Reading("co2-1", "air.co2", T0_NS + i * S, i, {"co2": 400.0}) for i in range(3)]
        points = NodeState(HORIZON_NS, detect=False).process(
            NodeData("s/n", "s", "n", T0_NS + 10 * S, readings))
        for rp in ("raw", "agg_1m", "agg_1h"):
            body = "\n".join(text for r, text in points if r == rp)
            client.write(body.encode(), db="d", rp=rp)
        yield client


def test_an_answer_cut_at_the_row_limit_is_fetched_again_in_parts(server: InfluxHTTP) -> None:
    data = CityData(server, "d", chunk=timedelta(hours=1))
    frame = data.readings("air.pm", T0, T0 + timedelta(minutes=1), fields=["pm25"])
    # all 20, not the first LIMIT (InfluxDB cut the one-hour answer short)
    assert frame["pm25"].tolist() == [float(i) for i in range(20)]
    assert frame["sensor"].tolist() == [f"pm-{i % 3}" for i in range(20)]
    assert frame.index.tolist() == [pd.Timestamp(T0_NS + i * S, tz="UTC") for i in range(20)]
    assert data.requests > 2


def test_an_answer_of_exactly_the_row_limit_is_whole(server: InfluxHTTP) -> None:
    data = CityData(server, "d", chunk=timedelta(hours=1))
    frame = data.readings("air.pm", T0 + timedelta(minutes=1), T0 + timedelta(minutes=2))
    assert frame["pm25"].tolist() == [100.0 + i for i in range(LIMIT)]


def test_more_points_in_one_nanosecond_than_the_limit_is_an_error(server: InfluxHTTP) -> None:
    data = CityData(server, "d", chunk=timedelta(hours=1))
    with pytest.raises(QueryError, match="exceed InfluxDB's max-row-limit"):
        data.readings("air.pm", T0 + timedelta(minutes=2), T0 + timedelta(minutes=3))


def test_a_ledger_that_never_held_restarts_has_the_column(server: InfluxHTTP) -> None:
    frame = CityData(server, "d").ledger(T0, T0 + timedelta(hours=1))
    assert list(frame.columns) == ["site", "node", "duplicates", "expected", "late", "missing",
                                   "received", "restarts", "completeness"]
    assert frame["restarts"].dtype == "Int64"
    assert frame["restarts"].isna().tolist() == [True]
    assert frame["expected"].tolist() == [3]
    assert frame["completeness"].tolist() == [1.0]


def test_a_database_without_a_ledger_gives_its_columns(server: InfluxHTTP) -> None:
    server.query('CREATE DATABASE "empty"', post=True)
    server.query('CREATE RETENTION POLICY "agg_1h" ON "empty" DURATION INF REPLICATION 1', post=True)
    frame = CityData(server, "empty").ledger(T0, T0 + timedelta(hours=1))
    assert frame.empty
    assert list(frame.columns) == ["site", "node", "duplicates", "expected", "late", "missing",
                                   "received", "restarts", "completeness"]
    assert [str(t) for t in frame.dtypes] == ["object", "object", *["Int64"] * 6, "float64"]


def test_fields_of_a_measurement_never_stored_give_an_empty_frame(server: InfluxHTTP) -> None:
    server.query('CREATE DATABASE "fresh"', post=True)
    server.query('CREATE RETENTION POLICY "raw" ON "fresh" DURATION 30d REPLICATION 1 DEFAULT',
                 post=True)
    frame = CityData(server, "fresh").readings("air.pm", T0, T0 + timedelta(hours=1),
                                               fields=["pm25"])
    assert frame.empty
    assert list(frame.columns) == ["pm25"]
