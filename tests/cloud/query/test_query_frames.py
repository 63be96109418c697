"""Each method of CityData against the city written by conftest.py, cell by cell."""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
import pytest

from cloud.query import CityData
from urbanpulse.influx_http import InfluxHTTP

from .conftest import City
from .helpers import rows

pytestmark = pytest.mark.stack


@pytest.fixture
def data(reader: InfluxHTTP) -> CityData:
    return CityData(reader, "urbanpulse")


def ts(city: City, seconds: float, ns: int = 0) -> pd.Timestamp:
    return pd.Timestamp(city.at(seconds)) + pd.Timedelta(ns, "ns")


def hour(city: City) -> tuple[datetime, datetime]:
    return city.base, city.base + timedelta(hours=1)


def test_raw_readings_keep_types_tags_and_nanosecond_stamps(data: CityData, city: City) -> None:
    frame = data.readings("air.pm", *hour(city), site=city.site)
    assert isinstance(frame.index, pd.DatetimeIndex)
    assert frame.index.name == "time"
    assert str(frame.index.tz) == "UTC"
    assert list(frame.columns) == ["site", "node", "sensor", "kind", "flags", "pm10", "pm25", "seq"]
    assert frame["pm25"].dtype == "float64"
    assert frame["pm10"].dtype == "float64"
    assert frame["seq"].dtype == "Int64"
    common = {"site": city.site, "node": "air-1", "kind": "air.pm"}
    # stored at ts + (seq mod 1000) ns; the redelivered seq 1 is one point; pm25 = 1.0 comes
    # back from InfluxDB's JSON as `1` and is still a float
    assert rows(frame) == [
        {"time": ts(city, 10), **common, "sensor": "pm-1", "flags": None, "pm10": 20.0,
         "pm25": 12.0, "seq": 0},
        {"time": ts(city, 10, 10), **common, "sensor": "pm-2", "flags": None, "pm10": 9.0,
         "pm25": 8.0, "seq": 10},
        {"time": ts(city, 40, 1), **common, "sensor": "pm-1", "flags": None, "pm10": 22.5,
         "pm25": 14.0, "seq": 1},
        {"time": ts(city, 70, 2), **common, "sensor": "pm-1", "flags": "calibrating", "pm10": 30.0,
         "pm25": 1.0, "seq": 2},
        {"time": ts(city, 130, 4), **common, "sensor": "pm-1", "flags": None, "pm10": 10.0,
         "pm25": 5000.0, "seq": 4},
    ]


def test_readings_filtered_by_sensor_with_chosen_fields(data: CityData, city: City) -> None:
    frame = data.readings("air.pm", *hour(city), site=city.site, sensor=["pm-2"], fields=["pm25"])
    assert rows(frame) == [{"time": ts(city, 10, 10), "site": city.site, "node": "air-1",
                            "sensor": "pm-2", "kind": "air.pm", "pm25": 8.0}]


def test_range_is_half_open(data: CityData, city: City) -> None:
    start = city.at(10) + timedelta(microseconds=0)
    frame = data.readings("air.pm", start, city.at(40), site=city.site, fields=["seq"])
    # [10 s, 40 s): both points at 10 s (+0 and +10 ns) in, 40 s + 1 ns out
    assert frame["seq"].tolist() == [0, 10]


def test_minute_and_hour_aggregates(data: CityData, city: City) -> None:
    minute = data.aggregates("air.pm", *hour(city), site=city.site, fields=["count", "pm25_mean",
                                                                              "pm25_min", "pm25_last"])
    tags = {"site": city.site, "node": "air-1", "kind": "air.pm"}
    # the out-of-range pm25 5000 is no measurement: in no window
    assert rows(minute) == [
        {"time": ts(city, 0), **tags, "sensor": "pm-1", "count": 2, "pm25_mean": 13.0,
         "pm25_min": 12.0, "pm25_last": 14.0},
        {"time": ts(city, 0), **tags, "sensor": "pm-2", "count": 1, "pm25_mean": 8.0,
         "pm25_min": 8.0, "pm25_last": 8.0},
        {"time": ts(city, 60), **tags, "sensor": "pm-1", "count": 1, "pm25_mean": 1.0,
         "pm25_min": 1.0, "pm25_last": 1.0},
    ]
    assert minute["count"].dtype == "Int64"
    hourly = data.aggregates("air.pm", *hour(city), resolution="1h", site=city.site, sensor="pm-1")
    assert rows(hourly) == [{
        "time": ts(city, 0), **tags, "sensor": "pm-1", "count": 3,
        "pm10_last": 30.0, "pm10_max": 30.0, "pm10_mean": (20.0 + 22.5 + 30.0) / 3, "pm10_min": 20.0,
        "pm25_last": 1.0, "pm25_max": 14.0, "pm25_mean": 9.0, "pm25_min": 1.0}]


def test_ledger_completeness(data: CityData, city: City) -> None:
    frame = data.ledger(*hour(city), site=city.site)
    assert list(frame.columns) == ["site", "node", "duplicates", "expected", "late", "missing",
                                   "received", "restarts", "completeness"]
    assert (frame.dtypes[2:8] == "Int64").all()
    # air-1: pm-1 seqs 0..4 and pm-2 seq 10 expected (6); 6 received of which 1 redelivered;
    # seq 3 missing -> 5 / 6
    assert rows(frame) == [
        {"time": ts(city, 0), "site": city.site, "node": "air-1", "duplicates": 1, "expected": 6,
         "late": 0, "missing": 1, "received": 6, "restarts": 0, "completeness": 5 / 6},
        {"time": ts(city, 0), "site": city.site, "node": "int-1", "duplicates": 0, "expected": 3,
         "late": 0, "missing": 0, "received": 3, "restarts": 0, "completeness": 1.0},
        {"time": ts(city, 0), "site": city.site, "node": "ward-1", "duplicates": 0, "expected": 3,
         "late": 0, "missing": 0, "received": 3, "restarts": 0, "completeness": 1.0},
    ]


def test_events_by_type_and_node_events_without_sensor(data: CityData, city: City) -> None:
    everything = data.events(*hour(city), site=city.site)
    assert everything["type"].tolist() == ["out_of_range", "clock_jump"]
    node_event = rows(everything)[1]
    assert node_event["sensor"] is None
    assert node_event["kind"] == "node"
    faults = data.events(*hour(city), site=city.site, type="out_of_range", sensor="pm-1")
    # Another test's anomaly events in the shared database give the measurement a `score`
    # field (its columns are the measurement's): void on these rows.
    if "score" in faults.columns:
        assert faults["score"].isna().all()
        faults = faults.drop(columns=["score"])
    assert rows(faults) == [{
        "time": ts(city, 130), "site": city.site, "node": "air-1", "sensor": "pm-1",
        "kind": "air.pm", "type": "out_of_range", "delay_s": 0.0,
        "detail": "5000.0 outside [0, 1000]", "field": "pm25", "seq": 4, "value": 5000.0}]
    assert faults["seq"].dtype == "Int64"


def test_dead_letters(data: CityData, city: City) -> None:
    frame = data.dead_letters(*hour(city), site=city.site, reason="not_json")
    assert rows(frame) == [{
        "time": ts(city, 160), "site": city.site, "node": "air-1", "reason": "not_json",
        "detail": "payload is not UTF-8 JSON", "offset": 7, "partition": "i0", "payload": "{oops",
        "topic": "urbanpulse/v1/x/air-1/data", "truncated": False}]
    assert frame["truncated"].dtype == "boolean"


def test_traffic_rollups(data: CityData, city: City) -> None:
    lanes = data.lane_traffic(*hour(city), site=city.site)
    tags = {"site": city.site, "node": "int-1"}
    # lane-1: 10 + 20 vehicles over 30 + 30 s -> 30 / min; occupancy (20*30 + 40*30) / 60;
    # speed (40*10 + 50*20) / 30
    assert rows(lanes) == [
        {"time": ts(city, 0), **tags, "sensor": "lane-1", "flow_vpm": 30.0, "interval_s": 60.0,
         "occupancy_pct": 30.0, "speed_kmh": 1400.0 / 30.0, "vehicles": 30},
        {"time": ts(city, 0), **tags, "sensor": "lane-2", "flow_vpm": 6.0, "interval_s": 60.0,
         "occupancy_pct": 10.0, "speed_kmh": 30.0, "vehicles": 6},
    ]
    assert lanes["vehicles"].dtype == "Int64"  # a sum of counts, stored as a float
    crossing = data.intersection_traffic(*hour(city), resolution="1h", site=city.site)
    assert rows(crossing) == [{
        "time": ts(city, 0), **tags, "flow_vpm": 36.0, "interval_s": 120.0, "lanes": 2,
        "occupancy_pct": (600 + 1200 + 600) / 120, "speed_kmh": (400 + 1000 + 180) / 36,
        "speed_lanes": 2, "vehicles": 36}]


def test_hospital_occupancy(data: CityData, city: City) -> None:
    ward = data.ward_occupancy(*hour(city), site=city.site)
    assert rows(ward) == [{"time": ts(city, 0), "site": city.site, "node": "ward-1", "available": 1,
                           "beds": 3, "faulty": 0, "occupancy_pct": 200 / 3, "occupied": 2,
                           "stale": 0}]
    whole = data.hospital_occupancy(*hour(city), site=city.site)
    assert rows(whole) == [{"time": ts(city, 0), "site": city.site, "available": 1, "beds": 3,
                            "faulty": 0, "occupancy_pct": 200 / 3, "occupied": 2, "stale": 0}]


def test_nothing_stored_gives_empty_frame_with_the_columns(data: CityData, city: City) -> None:
    frame = data.readings("air.pm", *hour(city), site=city.site + "-none")
    assert frame.empty
    assert frame.index.name == "time"
    assert str(frame.index.tz) == "UTC"
    assert list(frame.columns) == ["site", "node", "sensor", "kind", "flags", "pm10", "pm25", "seq"]
    assert frame["seq"].dtype == "Int64"
    assert frame["pm25"].dtype == "float64"


def test_pandas_timestamps_are_exact_bounds(data: CityData, city: City) -> None:
    whole = data.readings("air.pm", *hour(city), site=city.site, fields=["seq"])
    # the rows after the first, by the first's own stamp + 1 ns: 10 ns after the 10 s mark
    after = data.readings("air.pm", whole.index[0] + pd.Timedelta(1, "ns"), whole.index[-1],
                          site=city.site, fields=["seq"])
    assert after["seq"].tolist() == [10, 1, 2]
    assert after.index[0] == ts(city, 10, 10)
    between = data.readings("air.pm", whole.index[1], whole.index[2], site=city.site, fields=["seq"])
    assert between["seq"].tolist() == [10]
