"""A server that cuts answers at its `max-row-limit`, and a database whose ledger never held
`restarts`: on an InfluxDB of the test's own (the `limited` fixture, scratch_influx.py)."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest

from bench.influx.server import Server
from cloud.query import CityData, IncompleteAnswer
from urbanpulse.influx_http import InfluxHTTP

from .cutting_proxy import cutting_proxy
from .scratch_influx import BIG, LIMIT, T0, T0_NS, S

pytestmark = pytest.mark.stack


def test_a_streamed_answer_is_not_cut_at_the_row_limit(limited: InfluxHTTP) -> None:
    data = CityData(limited, "d", chunk=timedelta(hours=1))
    frame = data.readings("air.pm", T0, T0 + timedelta(minutes=1), fields=["pm25"])
    # all 20, not the first LIMIT (a one-piece answer would stop after pm-0's 7 rows)
    assert frame["pm25"].tolist() == [float(i) for i in range(20)]
    assert frame["sensor"].tolist() == [f"pm-{i % 3}" for i in range(20)]
    assert frame.index.tolist() == [pd.Timestamp(T0_NS + i * S, tz="UTC") for i in range(20)]
    assert data.requests == 2  # the keys, then the one chunk: nothing fetched again


def test_an_answer_of_exactly_the_row_limit_is_whole(limited: InfluxHTTP) -> None:
    data = CityData(limited, "d", chunk=timedelta(hours=1))
    frame = data.readings("air.pm", T0 + timedelta(minutes=1), T0 + timedelta(minutes=2))
    assert frame["pm25"].tolist() == [100.0 + i for i in range(LIMIT)]
    assert data.requests == 2


def test_more_points_in_one_nanosecond_than_the_limit_come_whole(limited: InfluxHTTP) -> None:
    data = CityData(limited, "d", chunk=timedelta(hours=1))
    frame = data.readings("air.pm", T0 + timedelta(minutes=2), T0 + timedelta(minutes=3))
    assert frame["sensor"].tolist() == [f"pm-x{i}" for i in range(LIMIT + 1)]


def test_a_series_longer_than_influxdbs_pieces_comes_whole_once(limited: InfluxHTTP) -> None:
    data = CityData(limited, "d", chunk=timedelta(hours=4), chunk_rows=20_000)
    frame = data.measurement("big", T0, T0 + timedelta(hours=4))
    assert frame["v"].tolist() == list(range(BIG))
    assert data.requests == 2


def test_a_stream_cut_short_is_fetched_again_in_parts(limited: InfluxHTTP,
                                                     limited_server: Server) -> None:
    whole = CityData(limited, "d").readings("air.pm", T0, T0 + timedelta(minutes=1))
    with cutting_proxy(limited_server.url(), keep=2) as url, \
            InfluxHTTP(url, "admin", limited_server.password("admin")) as cut:
        data = CityData(cut, "d", chunk=timedelta(hours=1))
        frame = data.readings("air.pm", T0, T0 + timedelta(minutes=1))
    pd.testing.assert_frame_equal(frame, whole)
    assert data.requests > 3


def test_a_stream_cut_short_even_for_one_nanosecond_names_what_and_when(
        limited_server: Server) -> None:
    with cutting_proxy(limited_server.url(), keep=2) as url, \
            InfluxHTTP(url, "admin", limited_server.password("admin")) as cut:
        data = CityData(cut, "d", chunk=timedelta(hours=1))
        with pytest.raises(IncompleteAnswer) as cut_short:
            data.readings("air.pm", T0 + timedelta(minutes=2), T0 + timedelta(minutes=3))
    at = pd.Timestamp(T0_NS + 120 * S + 1, tz="UTC")
    assert (cut_short.value.measurement, cut_short.value.start) == ("raw.air_pm", at)
    assert cut_short.value.end == at + pd.Timedelta(1, "ns")
    assert str(cut_short.value) == (
        f"raw.air_pm from {at.isoformat()} to {(at + pd.Timedelta(1, 'ns')).isoformat()}: "
        "InfluxDB's answer even for one nanosecond ended before its last rows (partial)")


def test_keys_cut_short_are_an_error_before_any_row(limited_server: Server) -> None:
    with cutting_proxy(limited_server.url(), keep=1) as url, \
            InfluxHTTP(url, "admin", limited_server.password("admin")) as cut:
        data = CityData(cut, "d")
        with pytest.raises(IncompleteAnswer, match="naming its tags and fields") as cut_short:
            data.readings("air.pm", T0, T0 + timedelta(minutes=1))
    assert cut_short.value.measurement == "raw.air_pm"
    assert data.requests == 1


def test_a_ledger_that_never_held_restarts_has_the_column(limited: InfluxHTTP) -> None:
    frame = CityData(limited, "d").ledger(T0, T0 + timedelta(hours=1))
    assert list(frame.columns) == ["site", "node", "duplicates", "expected", "late", "missing",
                                   "received", "restarts", "completeness"]
    assert frame["restarts"].dtype == "Int64"
    assert frame["restarts"].isna().tolist() == [True]
    assert frame["expected"].tolist() == [3]
    assert frame["completeness"].tolist() == [1.0]


def test_a_database_without_a_ledger_gives_its_columns(limited: InfluxHTTP) -> None:
    limited.query('CREATE DATABASE "empty"', post=True)
    limited.query('CREATE RETENTION POLICY "agg_1h" ON "empty" DURATION INF REPLICATION 1', post=True)
    frame = CityData(limited, "empty").ledger(T0, T0 + timedelta(hours=1))
    assert frame.empty
    assert list(frame.columns) == ["site", "node", "duplicates", "expected", "late", "missing",
                                   "received", "restarts", "completeness"]
    assert [str(t) for t in frame.dtypes] == ["object", "object", *["Int64"] * 6, "float64"]


def test_fields_of_a_measurement_never_stored_give_an_empty_frame(limited: InfluxHTTP) -> None:
    limited.query('CREATE DATABASE "fresh"', post=True)
    limited.query('CREATE RETENTION POLICY "raw" ON "fresh" DURATION 30d REPLICATION 1 DEFAULT',
                 post=True)
    frame = CityData(limited, "fresh").readings("air.pm", T0, T0 + timedelta(hours=1),
                                               fields=["pm25"])
    assert frame.empty  # the keys the processor writes (cloud.query.written)
    assert list(frame.columns) == ["site", "node", "sensor", "kind", "pm25"]
    assert frame["pm25"].dtype == "float64"


def test_a_burst_denser_than_its_chunk_is_never_read_whole(limited: InfluxHTTP) -> None:
    """4 hours of one point a second, asked in 4-hour chunks of about 1,000 rows: reading
    stops past 2,000 rows and the chunk is asked again in halves, never holding all 12,005."""
    data = CityData(limited, "d", chunk=timedelta(hours=4), chunk_rows=1000)
    frames = list(data.iter_measurement("big", T0, T0 + timedelta(hours=4)))
    assert [v for f in frames for v in f["v"]] == list(range(BIG))
    assert max(len(f) for f in frames) <= 2000
    assert data.requests > 1 + len(frames)  # the cut chunks were asked again
