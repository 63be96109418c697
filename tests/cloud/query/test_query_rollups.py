"""The named rollup helpers (hospital flow, waiting times, air quality) and the ledger's
`restarts`, read back cell by cell from data written through the processor's own code
(NodeState, HospitalSite, InfluxWriter). Every expected value is derived by hand from the
readings below; the AQI indices come from the NowCast of the hourly means written here,
through the project's AQI functions (their arithmetic is tested in tests/cloud/logic)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import pytest

from cloud.logic.domain import aqi
from cloud.logic.domain.hospital_site import HospitalSite
from cloud.logic.node import NodeState
from cloud.logic.records import NodeData, Point
from cloud.query import CityData
from urbanpulse.clock import to_epoch_ns
from urbanpulse.influx_http import InfluxHTTP
from urbanpulse.stack import StackInfo
from urbanpulse.wire import Reading

from .conftest import City, write_points
from .helpers import rows
from .scratch_influx import HORIZON_NS

pytestmark = pytest.mark.stack
HOUR = 3600


def _door(city: City, sensor: str, seconds: float, seq: int, count: float) -> Reading:
    return Reading(sensor, "hospital.door", to_epoch_ns(city.at(seconds)), seq,
                   {"count": count, "interval_s": 60.0})


def _ticket(city: City, seconds: float, seq: int, ticket: int, called: bool, sensor: str = "k-1"
            ) -> Reading:
    return Reading(sensor, "hospital.queue", to_epoch_ns(city.at(seconds)), seq,
                   {"ticket": float(ticket), "called": 1.0 if called else 0.0})


def _air(city: City, sensor: str, kind: str, seconds: float, seq: int, **values: float) -> Reading:
    return Reading(sensor, kind, to_epoch_ns(city.at(seconds)), seq, values)


def _nodes(city: City) -> dict[str, list[Reading]]:
    return {
        # ER doors by their `er-` prefix, the others visit doors; 4 ER arrivals next hour
        "door-a": [_door(city, "er-1", 100, 0, 3.0), _door(city, "main-1", 150, 0, 10.0),
                   _door(city, "er-1", 200, 1, 2.0), _door(city, "er-1", HOUR + 100, 2, 4.0)],
        "door-b": [_door(city, "main-2", 300, 0, 5.0)],
        # kiosk-1: tickets 1-3 wait 600, 900, 1200 s; ticket 4 is never called
        "kiosk-1": [_ticket(city, 0, 0, 1, False), _ticket(city, 60, 1, 2, False),
                    _ticket(city, 120, 2, 3, False), _ticket(city, 180, 3, 4, False),
                    _ticket(city, 600, 4, 1, True), _ticket(city, 960, 5, 2, True),
                    _ticket(city, 1320, 6, 3, True)],
        # kiosk-2 also hands out ticket 1 (its own numbering): 300 s
        "kiosk-2": [_ticket(city, 0, 0, 1, False, "k-2"), _ticket(city, 300, 1, 1, True, "k-2")],
        # hourly means: PM2.5 10, 20, 40; PM10 20, 40, 70; CO2 - , -, 500. The first two hours
        # valid (every 15 min: 45 min covered), the third not (a minute)
        "air-s": [*[_air(city, "pm-1", "air.pm", -2 * HOUR + 60 + k * 900, k, pm25=10.0, pm10=20.0)
                    for k in range(4)],
                  *[_air(city, "pm-1", "air.pm", -HOUR + 60 + k * 900, 4 + k, pm25=20.0, pm10=40.0)
                    for k in range(4)],
                  _air(city, "pm-1", "air.pm", 60, 8, pm25=30.0, pm10=60.0),
                  _air(city, "pm-1", "air.pm", 120, 9, pm25=50.0, pm10=80.0),
                  _air(city, "co2-1", "air.co2", 60, 0, co2=400.0),
                  _air(city, "co2-1", "air.co2", 120, 1, co2=600.0)],
        # seq 0, 1, then 0 again with a newer stamp: the numbering restarted
        "restarter": [_air(city, "co2-9", "air.co2", 10, 0, co2=410.0),
                      _air(city, "co2-9", "air.co2", 20, 1, co2=420.0),
                      _air(city, "co2-9", "air.co2", 30, 0, co2=430.0),
                      _air(city, "co2-9", "air.co2", 40, 1, co2=440.0)],
    }


@pytest.fixture(scope="module")
def site(db_ready: StackInfo, city: City) -> City:
    written = City(city.site + "-dom", city.base)
    points: list[Point] = []
    hospital = HospitalSite(HORIZON_NS)
    for node, readings in _nodes(written).items():
        state = NodeState(HORIZON_NS, detect=False)
        received = max(r.ts_ns for r in readings) + 10**9  # none late
        points += state.process(NodeData(f"{written.site}/{node}", written.site, node, received,
                                          readings))
        points += hospital.process(written.site, state.take_site_updates())
    write_points(db_ready, points)
    return written


@pytest.fixture
def data(reader: InfluxHTTP) -> CityData:
    return CityData(reader, "urbanpulse")


def ts(city: City, seconds: float) -> pd.Timestamp:
    return pd.Timestamp(city.at(seconds))


def hours(city: City, first: int, last: int) -> tuple[datetime, datetime]:
    return city.at(first * HOUR), city.at(last * HOUR)


def test_hospital_flow_per_hour(data: CityData, site: City) -> None:
    frame = data.hospital_flow(*hours(site, 0, 2), site=site.site)
    assert list(frame.columns) == ["site", "er_arrivals", "faulty", "visits"]
    # sums of door counts, stored as floats: returned as counts
    assert list(frame.dtypes[1:]) == ["Int64", "Int64", "Int64"]
    assert rows(frame) == [
        {"time": ts(site, 0), "site": site.site, "er_arrivals": 5, "faulty": 0, "visits": 15},
        {"time": ts(site, HOUR), "site": site.site, "er_arrivals": 4, "faulty": 0, "visits": 0}]
    doors = data.rollup("door_flow", *hours(site, 0, 1), site=site.site)
    assert list(doors.dtypes[2:]) == ["Int64", "Int64", "Int64"]
    assert rows(doors) == [
        {"time": ts(site, 0), "site": site.site, "node": "door-a", "er_arrivals": 5,
         "faulty": 0, "visits": 10},
        {"time": ts(site, 0), "site": site.site, "node": "door-b", "er_arrivals": 0,
         "faulty": 0, "visits": 5}]


def _waits(waits: list[float]) -> dict[str, Any]:
    return {"n": len(waits), "median_s": float(np.quantile(waits, 0.5)),
            "p90_s": float(np.quantile(waits, 0.9)), "mean_s": sum(waits) / len(waits)}


def test_waiting_times_per_hospital_and_per_queue(data: CityData, site: City) -> None:
    whole = data.waiting_times(*hours(site, 0, 1), site=site.site)
    assert list(whole.columns) == ["site", "mean_s", "median_s", "n", "p90_s"]
    assert whole["n"].dtype == "Int64"
    assert rows(whole) == [{"time": ts(site, 0), "site": site.site,
                            **_waits([300.0, 600.0, 900.0, 1200.0])}]
    assert _waits([300.0, 600.0, 900.0, 1200.0])["median_s"] == 750.0
    queues = data.waiting_times(*hours(site, 0, 1), site=site.site, per_queue=True)
    assert rows(queues) == [
        {"time": ts(site, 0), "site": site.site, "node": "kiosk-1", **_waits([600.0, 900.0, 1200.0])},
        {"time": ts(site, 0), "site": site.site, "node": "kiosk-2", **_waits([300.0])}]
    one = data.waiting_times(*hours(site, 0, 1), site=site.site, per_queue=True, node="kiosk-2")
    assert one["node"].tolist() == ["kiosk-2"]


def _indices(pm25: list[float | None], pm10: list[float | None]) -> dict[str, Any]:
    """The index fields of an hour whose hourly means, newest first, are `pm25`, `pm10`."""
    out: dict[str, Any] = {"pm25_nowcast": aqi.epa_nowcast(pm25),
                           "pm10_nowcast": aqi.epa_nowcast(pm10)}
    epa = aqi.overall([aqi.epa_aqi("pm25", out["pm25_nowcast"]),
                       aqi.epa_aqi("pm10", out["pm10_nowcast"])])
    vn = aqi.overall([aqi.vn_subindex("pm25", aqi.vn_nowcast(pm25)),
                      aqi.vn_subindex("pm10", aqi.vn_nowcast(pm10))])
    return {**out, "aqi_epa": epa, "category_epa": aqi.epa_category(epa),
            "aqi_vn": vn, "category_vn": aqi.vn_category(vn)}


def test_air_quality_per_station_and_hour(data: CityData, site: City) -> None:
    frame = data.air_quality(*hours(site, -2, 1), site=site.site, node="air-s")
    assert list(frame.columns) == [
        "site", "node", "aqi_epa", "aqi_vn", "category_epa", "category_vn", "co2_mean", "co2_n",
        "pm10_mean", "pm10_n", "pm10_nowcast", "pm25_mean", "pm25_n", "pm25_nowcast"]
    assert {c: str(frame[c].dtype) for c in ("aqi_epa", "aqi_vn", "co2_n", "pm25_n")} == dict.fromkeys(
        ("aqi_epa", "aqi_vn", "co2_n", "pm25_n"), "Int64")
    assert frame["category_vn"].dtype == object
    tags = {"site": site.site, "node": "air-s"}
    no_co2 = {"co2_mean": None, "co2_n": None}
    # the first hour has one hour of means: no NowCast (2 of the last 3 hours needed)
    first = {"aqi_epa": None, "aqi_vn": None, "category_epa": None, "category_vn": None,
             "pm10_nowcast": None, "pm25_nowcast": None}
    second = _indices([20.0, 10.0], [40.0, 20.0])
    # the hour in progress is not valid yet: its NowCast is that of the two before it
    third = _indices([None, 20.0, 10.0], [None, 40.0, 20.0])
    assert second["category_epa"] == "Moderate"  # the hand check: NowCast 16.7 -> AQI 65
    assert second["aqi_epa"] == 65
    expected = [
        {"time": ts(site, -2 * HOUR), **tags, **first, **no_co2, "pm10_mean": 20.0, "pm10_n": 4,
         "pm25_mean": 10.0, "pm25_n": 4},
        {"time": ts(site, -HOUR), **tags, **second, **no_co2, "pm10_mean": 40.0, "pm10_n": 4,
         "pm25_mean": 20.0, "pm25_n": 4},
        {"time": ts(site, 0), **tags, **third, "co2_mean": 500.0, "co2_n": 2, "pm10_mean": 70.0,
         "pm10_n": 2, "pm25_mean": 40.0, "pm25_n": 2},
    ]
    got = rows(frame)
    assert [{k: r[k] for k in sorted(r)} for r in got] == [{k: r[k] for k in sorted(r)} for r in expected]


def test_ledger_counts_restarts(data: CityData, site: City) -> None:
    frame = data.ledger(*hours(site, 0, 1), site=site.site, node=["restarter", "door-b"])
    assert frame["restarts"].dtype == "Int64"
    # restarter: seqs 0-1 (closed by the restart) and 0-1 again: 4 expected, 4 received
    assert rows(frame) == [
        {"time": ts(site, 0), "site": site.site, "node": "door-b", "duplicates": 0, "expected": 1,
         "late": 0, "missing": 0, "received": 1, "restarts": 0, "completeness": 1.0},
        {"time": ts(site, 0), "site": site.site, "node": "restarter", "duplicates": 0,
         "expected": 4, "late": 0, "missing": 0, "received": 4, "restarts": 1,
         "completeness": 1.0}]


def test_a_filter_on_a_key_that_is_no_tag_is_refused(data: CityData, site: City) -> None:
    from cloud.query import BadArgument

    start, end = hours(site, 0, 1)
    with pytest.raises(BadArgument, match=r"^sensor: not a tag of agg_1h.ward_occupancy") as err:
        data.rollup("ward_occupancy", start, end, site=site.site, sensor="bed-1")
    assert err.value.argument == "sensor"
    with pytest.raises(BadArgument, match=r"^seq: not a tag of raw.air_pm \(tags: site, node, "):
        data.measurement("air_pm", start, end, tags={"site": site.site, "seq": "1"})
    # a measurement nothing was ever written to: no keys to check, an empty frame
    assert data.measurement("never_written", start, end, tags={"anything": "x"}).empty
