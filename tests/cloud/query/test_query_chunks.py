"""Long ranges in chunks: the same frame as one query, chunks that adapt to the data."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta

import pandas as pd
import pytest

from cloud.logic.node import NodeState
from cloud.logic.records import NodeData
from cloud.query import CityData
from cloud.query.timerange import MIN_CHUNK_NS, Chunks, TimeRange
from urbanpulse.clock import to_epoch_ns
from urbanpulse.influx_http import InfluxHTTP
from urbanpulse.stack import StackInfo
from urbanpulse.wire import Reading

from .conftest import City, write_points
from .scratch_influx import HORIZON_NS

READINGS = 300  # one every 30 s: 2.5 hours
MIN = 60 * 10**9


@pytest.fixture(scope="module")
def dense(db_ready: StackInfo, city: City) -> City:
    """One CO2 sensor every 30 s for 2.5 hours, on a site of its own."""
    site = City(city.site + "-dense", city.base)
    start = to_epoch_ns(city.base)
    readings = [Reading("co2-1", "air.co2", start + i * 30 * 10**9, i, {"co2": 400.0 + i % 7})
                for i in range(READINGS)]
    points = NodeState(HORIZON_NS, detect=False).process(
        NodeData(f"{site.site}/n", site.site, "n", start + READINGS * 30 * 10**9, readings))
    write_points(db_ready, points)
    return site


def span(city: City) -> tuple[datetime, datetime]:
    return city.base - timedelta(minutes=5), city.base + timedelta(hours=3)


@pytest.mark.stack
@pytest.mark.parametrize("resolution", [None, "1m", "1h"])
def test_many_chunks_give_the_frame_of_one_query(reader: InfluxHTTP, dense: City,
                                                 resolution: str | None) -> None:
    def fetch(data: CityData) -> list[pd.DataFrame]:
        if resolution is None:
            return list(data.iter_readings("air.co2", *span(dense), site=dense.site))
        return list(data.iter_aggregates("air.co2", *span(dense), resolution=resolution,
                                         site=dense.site))

    whole = fetch(CityData(reader, "urbanpulse", chunk=timedelta(days=2)))
    # 7-minute chunks start off the minute windows' stamps; later ones fall on them
    parts = fetch(CityData(reader, "urbanpulse", chunk=timedelta(minutes=7), chunk_rows=10))
    assert len(whole) == 1
    assert len(parts) >= 5
    expected = {None: READINGS, "1m": 150, "1h": 3}[resolution]
    assert len(whole[0]) == expected
    pd.testing.assert_frame_equal(pd.concat(parts), whole[0])
    assert pd.concat(parts).index.is_monotonic_increasing


@pytest.mark.stack
def test_dense_data_shrinks_the_chunks(reader: InfluxHTTP, dense: City) -> None:
    data = CityData(reader, "urbanpulse", chunk=timedelta(hours=1), chunk_rows=20)
    frames = list(data.iter_readings("air.co2", *span(dense), site=dense.site, fields=["co2"]))
    sizes = [len(f) for f in frames]
    # 1 h holds 110 readings (from 5 min before the first): reading stops past 40 (twice
    # chunk_rows, in pieces of 20) and the half hour is asked, 50 readings; the next chunks
    # halve to 7.5 min
    assert sizes[:4] == [50, 30, 15, 15]
    assert max(sizes[3:]) <= 20
    assert sum(sizes) == READINGS
    assert data.requests == 2 + len(frames)  # the schema, the cut hour, a statement per chunk
    whole = CityData(reader, "urbanpulse", chunk=timedelta(days=2)).readings(
        "air.co2", *span(dense), site=dense.site, fields=["co2"])
    pd.testing.assert_frame_equal(pd.concat(frames), whole)


def test_sparse_data_grows_the_chunks() -> None:
    day = 86_400 * 10**9
    chunks = Chunks(TimeRange(0, 40 * day), first_ns=day, rows=100)
    seen = []
    while (part := chunks.next_span()) is not None:
        seen.append(part)
        chunks.fetched(part[1], rows=3)
    assert [hi - lo for lo, hi in seen] == [day, 2 * day, 4 * day, 8 * day, 16 * day, 9 * day]
    assert seen[0][0] == 0
    assert seen[-1][1] == 40 * day
    assert all(a[1] == b[0] for a, b in itertools.pairwise(seen))


def test_chunks_never_shrink_below_the_floor() -> None:
    chunks = Chunks(TimeRange(0, 10 * MIN_CHUNK_NS), first_ns=2 * MIN_CHUNK_NS, rows=1)
    lengths = []
    while (part := chunks.next_span()) is not None:
        lengths.append(part[1] - part[0])
        chunks.fetched(part[1], rows=1000)
    assert lengths == [2 * MIN_CHUNK_NS] + [MIN_CHUNK_NS] * 8


@pytest.mark.stack
def test_points_at_and_beside_a_chunk_boundary_come_once(reader: InfluxHTTP, city: City) -> None:
    # 1 s chunks that never grow (chunk_rows=1), one boundary exactly on the point stored at
    # 10 s + 10 ns, the point at 10 s + 0 ns 10 ns before it
    on = pd.Timestamp(city.at(10)) + pd.Timedelta(10, "ns")
    data = CityData(reader, "urbanpulse", chunk=timedelta(seconds=1), chunk_rows=1)
    parts = list(data.iter_readings("air.pm", on - pd.Timedelta(1, "s"), on + pd.Timedelta(1, "s"),
                                    site=city.site, fields=["seq"]))
    assert [p["seq"].tolist() for p in parts] == [[0], [10]]
    assert parts[1].index.tolist() == [on]


@pytest.mark.stack
def test_the_iter_forms_give_the_frame_methods_rows_chunk_by_chunk(reader: InfluxHTTP,
                                                                   city: City) -> None:
    """What the CLI writes chunk by chunk is what an analyst gets whole."""
    data = CityData(reader, "urbanpulse", chunk=timedelta(minutes=7))
    whole = CityData(reader, "urbanpulse", chunk=timedelta(days=2))
    window = span(city)
    for name, args in (("rollup", ("traffic_lane",)), ("dead_letters", ())):
        kwargs = {"resolution": "1m"} if name == "rollup" else {}
        one = getattr(whole, name)(*args, *window, site=city.site, **kwargs)
        parts = list(getattr(data, f"iter_{name}")(*args, *window, site=city.site, **kwargs))
        assert len(one) > 0, name
        assert len(parts) > 1, name
        pd.testing.assert_frame_equal(pd.concat(parts), one)
