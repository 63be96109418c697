"""Counts the processor stores as floats (cloud.query.written.COUNTS: door and loop counts,
their sums, a status's outbox rows and clock jumps) come back as Int64, <NA> where missing,
and in the CSV as `3`, not `3.0`; a stored count that is not a whole number raises
NotWholeCount rather than being cut, and `float_counts=True` / `--float-counts` returns
them as stored. On a database of its own in the test's InfluxDB (scratch_influx.py),
written by the processor's own code: the fractional door count must not reach the
session's shared database, whose other readers sum door counts."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from bench.influx.server import Server
from cloud.journal import JournalRecord
from cloud.logic.domain.hospital_site import HospitalSite
from cloud.logic.node import NodeState
from cloud.logic.records import NodeData, Point, decode_record
from cloud.query import CityData, NotWholeCount, read_csv
from cloud.query.cli import main
from cloud.query.frames import whole_counts
from cloud.sink import InfluxWriter
from urbanpulse.clock import to_epoch_ns
from urbanpulse.influx_http import InfluxHTTP
from urbanpulse.wire import Reading, encode_status, status_topic

from .helpers import rows
from .scratch_influx import HORIZON_NS, T0, new_database, reader_config

pytestmark = pytest.mark.stack

SITE, HALF = "counted", "half"  # HALF's door sent 2.5 people: a node breaking the contract
DOOR = "hospital.door"
S = 10**9
START, END = T0, T0 + timedelta(hours=1)


def _door(seconds: int, seq: int, **values: float) -> Reading:
    return Reading("er-1", DOOR, to_epoch_ns(T0) + seconds * S, seq, {"interval_s": 60.0, **values})


def _doors(site: str, readings: list[Reading]) -> list[Point]:
    state = NodeState(HORIZON_NS, detect=False)
    points = state.process(NodeData(f"{site}/door-1", site, "door-1", to_epoch_ns(T0) + 600 * S,
                                    readings))
    return points + HospitalSite(HORIZON_NS).process(site, state.take_site_updates())


def _statuses() -> list[Point]:
    """A heartbeat (3 rows in the outbox, 1 clock jump), then the last will, which has no
    health: its counts are missing."""
    topic = status_topic(SITE, "door-1")
    health = {"outbox_depth": 3, "outbox_evicted": 0, "uptime_s": 60, "clock": {"jumps": 1}}
    out: list[Point] = []
    for offset, (seconds, payload) in enumerate([
            (30, encode_status("online", T0 + timedelta(seconds=30), health)),
            (90, encode_status("offline", T0 + timedelta(seconds=90)))]):
        record = JournalRecord("i0", offset, to_epoch_ns(T0) + seconds * S, topic, payload)
        out += decode_record(record, 4096)[1]
    return out


@dataclass(frozen=True)
class Counted:
    server: Server
    database: str


@pytest.fixture(scope="module")
def counted(limited_server: Server) -> Counted:
    database = new_database(limited_server, "counts")
    points = [*_doors(SITE, [_door(60, 0, count=3.0, glitches=2.0), _door(120, 1, count=2.0)]),
              *_doors(HALF, [_door(60, 0, count=2.5)]), *_statuses()]
    with limited_server.client("admin") as admin:
        writer = InfluxWriter(admin, database, 5000)
        writer.write(points)
        assert writer.stats.refused_requests == 0, writer.stats.last_error
    return Counted(limited_server, database)


@pytest.fixture
def reader(limited_server: Server) -> Iterator[InfluxHTTP]:
    with limited_server.client("reader") as client:
        yield client


def at(seconds: int, ns: int = 0) -> pd.Timestamp:
    return pd.Timestamp(T0) + pd.Timedelta(seconds, "s") + pd.Timedelta(ns, "ns")


def test_the_stored_floats_that_hold_counts_come_back_as_int64_missing_as_na(
        reader: InfluxHTTP, counted: Counted) -> None:
    data = CityData(reader, counted.database)
    raw = data.readings(DOOR, START, END, site=SITE)
    assert raw[["count", "glitches", "interval_s"]].dtypes.astype(str).tolist() == [
        "Int64", "Int64", "float64"]
    assert [(r["time"], r["count"], r["glitches"]) for r in rows(raw)] == [
        (at(60), 3, 2), (at(120, 1), 2, None)]
    assert raw["glitches"].isna().tolist() == [False, True]  # <NA>, not NaN
    hourly = data.aggregates(DOOR, START, END, resolution="1h", site=SITE,
                             fields=["count", "count_min", "count_max", "count_last", "count_mean"])
    assert hourly.dtypes.astype(str).tolist()[4:] == ["Int64"] * 4 + ["float64"]
    assert [r for r in rows(hourly)[0].items() if r[0].startswith("count")] == [
        ("count", 2), ("count_min", 2), ("count_max", 3), ("count_last", 2), ("count_mean", 2.5)]
    for flow in (data.hospital_flow(START, END, site=SITE),
                 data.rollup("door_flow", START, END, site=SITE)):
        assert flow[["er_arrivals", "faulty", "visits"]].dtypes.astype(str).tolist() == ["Int64"] * 3
        assert flow[["er_arrivals", "visits"]].to_numpy().tolist() == [[5, 0]]
    status = data.node_status(START, END, site=SITE)
    assert list(status["state"]) == ["online", "offline"]
    assert status[["outbox_depth", "outbox_evicted", "clock_jumps"]].dtypes.astype(str).tolist() == \
        ["Int64"] * 3
    assert status["outbox_depth"].tolist() == [3, pd.NA]
    assert status["clock_jumps"].tolist() == [1, pd.NA]
    assert status["uptime_s"].dtype == "float64"  # seconds, not a count: as stored
    doors = data.doors(START, END, site=SITE)
    assert doors["people"].dtype == "Int64"
    assert doors["people"].tolist() == [5]


def test_float_counts_returns_them_as_stored(reader: InfluxHTTP, counted: Counted) -> None:
    data = CityData(reader, counted.database, float_counts=True)
    raw = data.readings(DOOR, START, END, site=[SITE, HALF])
    assert raw["count"].dtype == "float64"
    assert raw["count"].tolist() == [3.0, 2.5, 2.0]
    assert data.node_status(START, END, site=SITE)["outbox_depth"].dtype == "float64"
    assert data.doors(START, END, site=HALF)["people"].tolist() == [2.5]


def test_a_count_that_is_not_whole_is_refused_naming_where_and_when(
        reader: InfluxHTTP, counted: Counted) -> None:
    data = CityData(reader, counted.database)
    with pytest.raises(NotWholeCount) as raised:
        data.readings(DOOR, START, END, site=HALF)
    err = raised.value
    assert (err.measurement, err.field, err.time, err.value) == ("raw.hospital_door", "count",
                                                                 at(60), 2.5)
    assert str(err).startswith(f"raw.hospital_door: count is 2.5 at {at(60).isoformat()}, not a "
                               "whole number")
    with pytest.raises(NotWholeCount, match=r"^agg_1h\.door_flow: er_arrivals is 2\.5 at "):
        data.rollup("door_flow", START, END, site=HALF)
    with pytest.raises(NotWholeCount, match=r"^raw\.hospital_door: people is 2\.5 at "):
        data.doors(START, END, site=HALF)
    # what is not asked for is not read: the other fields, and the other site, come back
    assert data.readings(DOOR, START, END, site=HALF, fields=["interval_s"])["interval_s"].tolist() == [60.0]
    assert data.readings(DOOR, START, END, site=SITE)["count"].tolist() == [3, 2]


@pytest.mark.parametrize(("values", "bad"), [
    ([1, None, 2.0, -0.0, 2**53], None),
    ([1, 0.5], 1),
    ([2.0**63, 1], 0),  # whole, but past Int64
    ([None, -(2.0**63) - 4096], 1),
])
def test_whole_counts_only_converts_exactly(values: list[float | None], bad: int | None) -> None:
    times = [10 + i for i in range(len(values))]
    if bad is None:
        series = whole_counts(values, times, "raw.m", "n")
        assert series.dtype == "Int64"
        assert series.tolist() == [pd.NA if v is None else int(v) for v in values]
        return
    with pytest.raises(NotWholeCount) as raised:
        whole_counts(values, times, "raw.m", "n")
    assert raised.value.time == pd.Timestamp(times[bad], tz="UTC")
    assert raised.value.value == values[bad]


def _span() -> list[str]:
    return ["--start", START.isoformat(), "--end", END.isoformat()]


def test_the_csv_writes_counts_as_integers(counted: Counted, tmp_path: Path, reader: InfluxHTTP,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    config = reader_config(counted.server, counted.database, tmp_path / "cloud.toml")
    sidecar = tmp_path / "status.dtypes.json"
    assert main(["node-status", "--config", str(config), *_span(), "--site", SITE,
                 "--dtypes", str(sidecar)]) == 0
    text = capsys.readouterr().out
    header, online, offline = text.splitlines()
    cells = [dict(zip(header.split(","), line.split(","), strict=True)) for line in (online, offline)]
    assert [(c["outbox_depth"], c["clock_jumps"], c["outbox_evicted"]) for c in cells] == [
        ("3", "1", "0"), ("", "", "")]
    frame = read_csv(io.StringIO(text), sidecar)
    assert frame["outbox_depth"].dtype == "Int64"
    pd.testing.assert_frame_equal(frame, CityData(reader, counted.database).node_status(
        START, END, site=SITE), check_exact=True)
    assert main(["node-status", "--config", str(config), *_span(), "--site", SITE,
                 "--float-counts"]) == 0
    header, online, _ = capsys.readouterr().out.splitlines()
    assert dict(zip(header.split(","), online.split(","), strict=True))["outbox_depth"] == "3.0"


def test_the_command_refuses_a_count_that_is_not_whole_and_writes_no_file(
        counted: Counted, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = reader_config(counted.server, counted.database, tmp_path / "cloud.toml")
    out = tmp_path / "doors.csv"
    argv = ["readings", DOOR, "--config", str(config), *_span(), "--site", HALF, "-o", str(out)]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("urbanpulse query readings: raw.hospital_door: count is 2.5 at ")
    assert "--float-counts" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cloud.toml"]  # nor a part of one
    assert main([*argv, "--float-counts"]) == 0
    frame = read_csv(out)
    assert frame["count"].dtype == "float64"
    assert frame["count"].tolist() == [2.5]


def test_a_heartbeat_s_counts_that_are_not_whole_are_left_out_not_stored(
        reader: InfluxHTTP, counted: Counted) -> None:
    """A heartbeat's health is the node's word, not the contract's (records._status keeps
    what it can use): a count in it that is not a whole number, or past Int64, is left out
    like any other unusable health value. Stored, it made every node_status query over its
    hour raise NotWholeCount, for every site's analyst who did not name the sites."""
    site = "loose"
    health = {"outbox_depth": 2.5, "outbox_evicted": 1e300, "outbox_uncommitted": 4.0,
              "readings_dropped": 7, "uptime_s": 60.5, "clock": {"jumps": 1}}
    record = JournalRecord("i0", 0, to_epoch_ns(T0) + 45 * S, status_topic(site, "door-1"),
                           encode_status("online", T0 + timedelta(seconds=45), health))
    with counted.server.client("admin") as admin:
        writer = InfluxWriter(admin, counted.database, 5000)
        writer.write(decode_record(record, 4096)[1])
        assert writer.stats.refused_requests == 0, writer.stats.last_error
    status = CityData(reader, counted.database).node_status(START, END, site=site)
    assert [(r["outbox_depth"], r["outbox_evicted"], r["outbox_uncommitted"],
             r["readings_dropped"], r["clock_jumps"], r["uptime_s"]) for r in rows(status)] == [
        (None, None, 4, 7, 1, 60.5)]


def test_the_health_counts_left_out_when_not_whole_are_the_ones_returned_as_counts() -> None:
    from cloud.logic.records import HEALTH_COUNTS
    from cloud.query.written import count_fields

    assert HEALTH_COUNTS | {"clock_jumps"} == count_fields("raw", "node_status")
