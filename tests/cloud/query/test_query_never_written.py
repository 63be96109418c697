"""A database nothing was ever written to (a fresh deployment: no kiosk, no dead letter, a
kind no node has sent) still gives every query the measurement's columns and dtypes, the
ones a database holding the processor's points gives: on an InfluxDB of the test's own
(scratch_influx.py), databases made by `cloud init-db`'s code, read with the reader's
account as an analyst would."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from bench.influx.server import Server
from cloud.query import BadArgument, CityData, read_csv
from cloud.query.cli import main
from cloud.query.written import WRITTEN
from urbanpulse.influx_http import InfluxHTTP

from .processor_points import one_per_shape, processor_points
from .scratch_influx import new_database, reader_config

pytestmark = pytest.mark.stack

START = datetime(2026, 3, 1, tzinfo=UTC)
END = START + timedelta(days=1)
DOC = Path(__file__).resolve().parents[3] / "docs" / "analyst-queries.md"

F, N, B, S = "float64", "Int64", "boolean", "object"  # N: nullable integers, counts too
# Each public method's frame as docs/analyst-queries.md, influx-schema.md and
# domain-rollups.md describe it: tags first, then the fields in name order.
OCCUPANCY = [("available", N), ("beds", N), ("faulty", N), ("occupancy_pct", F), ("occupied", N),
             ("stale", N)]
FLOW = [("er_arrivals", N), ("faulty", N), ("visits", N)]
WAITS = [("mean_s", F), ("median_s", F), ("n", N), ("p90_s", F)]
TRAFFIC = [("flow_vpm", F), ("interval_s", F), ("occupancy_pct", F), ("speed_kmh", F),
           ("vehicles", N)]
SENSOR_TAGS = [("site", S), ("node", S), ("sensor", S), ("kind", S)]
DOCUMENTED: dict[str, list[tuple[str, str]]] = {
    "readings air.pm": [*SENSOR_TAGS, ("flags", S), ("humidity_pct", F), ("pm1", F), ("pm10", F),
                        ("pm25", F), ("seq", N), ("temperature_c", F)],
    "aggregates air.co2 1h": [*SENSOR_TAGS, ("co2_last", F), ("co2_max", F), ("co2_mean", F),
                              ("co2_min", F), ("count", N), ("temperature_c_last", F),
                              ("temperature_c_max", F), ("temperature_c_mean", F),
                              ("temperature_c_min", F)],
    "ward_occupancy": [("site", S), ("node", S), *OCCUPANCY],
    "hospital_occupancy": [("site", S), *OCCUPANCY],
    "hospital_flow": [("site", S), *FLOW],
    "door_flow": [("site", S), ("node", S), *FLOW],
    "waiting_times": [("site", S), *WAITS],
    "waiting_times per_queue": [("site", S), ("node", S), *WAITS],
    "lane_traffic": [("site", S), ("node", S), ("sensor", S), *TRAFFIC],
    "intersection_traffic": [("site", S), ("node", S), *TRAFFIC[:2], ("lanes", N), *TRAFFIC[2:4],
                             ("speed_lanes", N), *TRAFFIC[4:]],
    "air_quality": [("site", S), ("node", S), ("aqi_epa", N), ("aqi_vn", N), ("category_epa", S),
                    ("category_vn", S), ("co2_mean", F), ("co2_n", N), ("pm10_mean", F),
                    ("pm10_n", N), ("pm10_nowcast", F), ("pm25_mean", F), ("pm25_n", N),
                    ("pm25_nowcast", F)],
    "ledger": [("site", S), ("node", S), ("duplicates", N), ("expected", N), ("late", N),
               ("missing", N), ("received", N), ("restarts", N), ("completeness", F)],
    "events": [("site", S), ("node", S), ("sensor", S), ("kind", S), ("type", S), ("delay_s", F),
               ("detail", S), ("field", S), ("node_ts", S), ("pair", S), ("score", F), ("seq", N),
               ("value", F)],
    "dead_letters": [("site", S), ("node", S), ("reason", S), ("detail", S), ("offset", N),
                     ("partition", S), ("payload", S), ("topic", S), ("truncated", B)],
    "node_status": [("site", S), ("node", S), ("clock_jumps", N), ("clock_offset_s", F),
                    ("clock_synchronised", B), ("cpu_temp_c", F), ("mqtt_unsendable", N), ("online", B),
                    ("outbox_depth", N),
                    ("outbox_evicted", N),
                    ("outbox_oldest_age_s", F), ("outbox_uncommitted", N), ("readings_dropped", N),
                    ("readings_per_s", F), ("state", S),
                    ("uptime_s", F)],
    "driver_status": [("site", S), ("node", S), ("sensor", S), ("bytes_skipped", N),
                      ("checksum_errors", N), ("door_gaps", N), ("empty_calls", N), ("glitches", N),
                      ("ignored", N), ("implausible_length", N), ("lost_sentences", N),
                      ("malformed", N), ("refused", N), ("refused_bad_count", N),
                      ("refused_bad_value", N), ("refused_bad_values", N), ("refused_missing_field", N),
                      ("refused_unknown_field", N), ("refused_unknown_kind", N), ("refused_wrong_unit", N),
                      ("sensor_errors", N), ("uneven_intervals", N),
                      ("unmatched_downstream", N), ("unmatched_upstream", N)],
}


def _frames(city: CityData) -> dict[str, pd.DataFrame]:
    """Every public method once, filtered as an analyst would (the filters match nothing)."""
    w = (START, END)
    return {
        "readings air.pm": city.readings("air.pm", *w, site="bach-mai", sensor=["pm-1", "pm-2"]),
        "aggregates air.co2 1h": city.aggregates("air.co2", *w, resolution="1h", node="station-7"),
        "ward_occupancy": city.ward_occupancy(*w, resolution="1m", site="bach-mai", node="ward-3"),
        "hospital_occupancy": city.hospital_occupancy(*w, site="bach-mai"),
        "hospital_flow": city.hospital_flow(*w, site="bach-mai"),
        "door_flow": city.rollup("door_flow", *w, site="bach-mai"),
        "waiting_times": city.waiting_times(*w, site="bach-mai"),
        "waiting_times per_queue": city.waiting_times(*w, per_queue=True, node="kiosk-1"),
        "lane_traffic": city.lane_traffic(*w, sensor="lane-1"),
        "intersection_traffic": city.intersection_traffic(*w, resolution="1h", node="x-1"),
        "air_quality": city.air_quality(*w, site="hn-air"),
        "ledger": city.ledger(*w, site="bach-mai"),
        "events": city.events(*w, type=["stuck", "cut_cable"], kind="node"),
        "dead_letters": city.dead_letters(*w, reason="not_json"),
        "node_status": city.node_status(*w, node="ward-3"),
        "driver_status": city.driver_status(*w, node="station-7", sensor="pm-1"),
    }


def _iter_frames(city: CityData) -> dict[str, list[pd.DataFrame]]:
    w = (START, END)
    return {
        "readings air.pm": list(city.iter_readings("air.pm", *w)),
        "aggregates air.co2 1h": list(city.iter_aggregates("air.co2", *w, resolution="1h")),
        "hospital_flow": list(city.iter_rollup("hospital_flow", *w)),
        "waiting_times": list(city.iter_rollup("hospital_wait", *w)),
        "ledger": list(city.iter_ledger(*w)),
        "events": list(city.iter_events(*w)),
        "dead_letters": list(city.iter_dead_letters(*w)),
        "node_status": list(city.iter_node_status(*w)),
        "driver_status": list(city.iter_driver_status(*w)),
    }


def _columns(frame: pd.DataFrame) -> list[tuple[str, str]]:
    return [(str(c), str(t)) for c, t in frame.dtypes.items()]


@pytest.fixture(scope="module")
def never(limited_server: Server) -> str:
    return new_database(limited_server, "never")


@pytest.fixture(scope="module")
def written(limited_server: Server, tmp_path_factory: pytest.TempPathFactory
            ) -> tuple[str, pd.Timestamp, pd.Timestamp]:
    """A database holding one point of each shape the processor writes; its time span."""
    name = new_database(limited_server, "written")
    chosen = one_per_shape(processor_points(tmp_path_factory.mktemp("state")))
    stamps = [int(text.rsplit(" ", 1)[1]) for _, text in chosen]
    with limited_server.client("admin") as admin:
        for rp in ("raw", "agg_1m", "agg_1h"):
            body = "\n".join(text for r, text in chosen if r == rp)
            admin.write(body.encode(), db=name, rp=rp)
    return name, pd.Timestamp(min(stamps), tz="UTC"), pd.Timestamp(max(stamps) + 1, tz="UTC")


@pytest.fixture
def reader(limited_server: Server) -> Iterator[InfluxHTTP]:
    with limited_server.client("reader") as client:
        yield client


def test_each_measurement_never_written_has_the_columns_of_one_written(
        reader: InfluxHTTP, never: str, written: tuple[str, pd.Timestamp, pd.Timestamp]) -> None:
    name, lo, hi = written
    fresh = CityData(reader, never)
    stored = CityData(reader, name, chunk=timedelta(days=365))
    differ = {}
    for rp, measurement in WRITTEN:
        empty = fresh.measurement(measurement, START, END, rp=rp)
        full = stored.measurement(measurement, lo, hi, rp=rp)
        assert empty.empty, (rp, measurement)
        assert not full.empty, (rp, measurement)
        assert str(empty.index.dtype) == "datetime64[ns, UTC]"
        assert empty.index.name == "time"
        if _columns(empty) != _columns(full):
            differ[f"{rp}.{measurement}"] = (_columns(empty), _columns(full))
    assert differ == {}


def test_every_method_gives_the_documented_columns_where_nothing_was_written(
        reader: InfluxHTTP, never: str) -> None:
    city = CityData(reader, never)
    frames = _frames(city)
    assert set(frames) == set(DOCUMENTED)
    for what, frame in frames.items():
        assert frame.empty, what
        assert str(frame.index.dtype) == "datetime64[ns, UTC]", what
        assert _columns(frame) == DOCUMENTED[what], what
    for what, parts in _iter_frames(city).items():
        assert parts, what
        assert all(_columns(p) == DOCUMENTED[what] for p in parts), what
        assert all(p.empty for p in parts), what


def test_the_docs_snippets_on_empty_frames_run(reader: InfluxHTTP, never: str) -> None:
    city = CityData(reader, never)
    waits = city.waiting_times(START, END, site="bach-mai")
    minutes = waits[["median_s", "p90_s"]] / 60
    assert list(minutes.columns) == ["median_s", "p90_s"]
    assert minutes.empty
    beds = city.hospital_occupancy(START, END, site="bach-mai")
    assert beds["occupancy_pct"].resample("1D").max().dtype == "float64"
    assert city.node_status(START, END, node="ward-3")["outbox_depth"].empty
    faults = city.events(START, END, type=["stuck", "cut_cable"], site="bach-mai")
    assert faults.groupby(["node", "type"]).size().empty
    ledger = city.ledger(START, END, site="bach-mai")
    assert ledger[ledger["completeness"] < 0.99].empty
    assert list(ledger.groupby("node")[["expected", "missing"]].sum().columns) == ["expected", "missing"]


def test_a_filter_or_field_the_processor_never_writes_is_refused_where_nothing_is_stored(
        reader: InfluxHTTP, never: str) -> None:
    city = CityData(reader, never)
    with pytest.raises(BadArgument, match=r"^sensor: not a tag of agg_1h\.ward_occupancy, where "
                                          r"nothing is stored yet \(tags: site, node\)") as err:
        city.rollup("ward_occupancy", START, END, sensor="bed-1")
    assert err.value.argument == "sensor"
    with pytest.raises(TypeError, match="unexpected keyword argument 'sensor'"):
        city.ward_occupancy(START, END, sensor="bed-1")  # type: ignore[call-arg]  # as the doc says
    with pytest.raises(BadArgument, match=r"^fields: 'pm3' not a field of raw\.air_pm, where nothing"
                                          r" is stored yet \(the processor writes: flags, humidity_pct"):
        city.readings("air.pm", START, END, fields=["pm3"])
    chosen = city.readings("air.pm", START, END, fields=["pm25", "seq"])
    assert _columns(chosen) == [*SENSOR_TAGS, ("pm25", F), ("seq", N)]
    # a measurement the processor does not write, with nothing stored: no key to check against
    unknown = city.measurement("mine", START, END, tags={"anything": "x"}, fields=["v"])
    assert unknown.empty
    assert _columns(unknown) == [("v", S)]


def test_a_measurement_stored_in_another_policy_only_is_never_written_in_this_one(
        limited_server: Server, reader: InfluxHTTP) -> None:
    """InfluxDB 1.x answers SHOW TAG KEYS for every policy of the database: a kind whose raw
    points have aged out of `raw` (30 days) while its windows stay in agg_1m, or the ledger
    asked in `raw`, has tags there but no field: nothing is stored in that policy."""
    name = new_database(limited_server, "elsewhere")
    tags = "site=bach-mai,node=station-7,sensor=pm-1,kind=air.pm"
    at = int(START.timestamp()) * 10**9
    with limited_server.client("admin") as admin:
        admin.write(f"air_pm,{tags} count=3i,pm25_mean=12.5 {at}".encode(), db=name, rp="agg_1m")
        admin.write(f"ledger,site=bach-mai,node=ward-3 expected=5i {at}".encode(), db=name, rp="agg_1h")
    city = CityData(reader, name)
    readings = city.readings("air.pm", START, END)
    assert readings.empty
    assert _columns(readings) == DOCUMENTED["readings air.pm"]
    chosen = city.readings("air.pm", START, END, fields=["pm25", "seq"])
    assert _columns(chosen) == [*SENSOR_TAGS, ("pm25", F), ("seq", N)]
    with pytest.raises(BadArgument, match=r"^fields: 'pm3' not a field of raw\.air_pm, where nothing"):
        city.readings("air.pm", START, END, fields=["pm3"])
    # the policy that holds it: InfluxDB's own keys, as before
    windows = city.aggregates("air.pm", START, END, site="bach-mai")
    assert windows["pm25_mean"].tolist() == [12.5]
    assert _columns(windows) == [*SENSOR_TAGS, ("count", N), ("pm25_mean", F)]
    # a measurement the processor does not write in that policy: no columns but those named
    assert _columns(city.measurement("ledger", START, END, rp="raw")) == []
    assert _columns(city.measurement("ledger", START, END, rp="raw", fields=["expected"])) == \
        [("expected", S)]


@pytest.mark.parametrize(("argv", "what"), [
    (["dead-letters", "--reason", "not_json"], "dead_letters"),
    (["rollup", "hospital_wait", "--site", "bach-mai"], "waiting_times"),
    (["rollup", "ward_occupancy", "--resolution", "1m"], "ward_occupancy"),
    (["readings", "air.pm"], "readings air.pm"),
    (["aggregates", "air.co2", "--resolution", "1h"], "aggregates air.co2 1h"),
    (["ledger"], "ledger"),
    (["events", "--type", "stuck"], "events"),
    (["node-status"], "node_status"),
])
def test_the_command_writes_the_columns_and_their_dtypes(
        limited_server: Server, never: str, tmp_path: Path, argv: list[str], what: str) -> None:
    config = reader_config(limited_server, never, tmp_path / "cloud.toml")
    out = tmp_path / "out.csv"
    assert main([*argv, "--config", str(config), "--start", START.isoformat(),
                 "--end", END.isoformat(), "-o", str(out)]) == 0
    assert out.read_text().splitlines() == [",".join(["time", *(c for c, _ in DOCUMENTED[what])])]
    frame = read_csv(out)  # with the sidecar written beside it
    assert frame.empty
    assert _columns(frame) == DOCUMENTED[what]
    assert str(frame.index.dtype) == "datetime64[ns, UTC]"


def test_every_example_of_the_doc_runs_on_a_database_never_written(
        limited_server: Server, never: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = DOC.read_text(encoding="utf-8")
    config = reader_config(limited_server, never, tmp_path / "cloud.toml")
    local = {"/etc/urbanpulse/influx-reader.password":
             str(limited_server.layout.influx_password("reader")),
             "/etc/urbanpulse/cloud.toml": str(config),
             "http://127.0.0.1:8086": limited_server.url(),
             'CityData(client, "urbanpulse")': f'CityData(client, "{never}")'}
    monkeypatch.chdir(tmp_path)
    (command,) = [b for b in re.findall(r"```sh\n(.*?)```", text, flags=re.S) if "urbanpulse query" in b]
    argv = [local.get(a, a) for a in shlex.split(command.replace("\\\n", " "))[2:]]
    assert main(argv) == 0
    namespace: dict[str, object] = {}
    for block in re.findall(r"```python\n(.*?)```", text, flags=re.S):
        for doc_value, ours in local.items():
            block = block.replace(doc_value, ours)
        exec(compile(block, str(DOC), "exec"), namespace)
    city = namespace["city"]
    assert isinstance(city, CityData)
    assert city.database == never
    city.client.close()
    waits = namespace["waits"]
    assert isinstance(waits, pd.DataFrame)
    assert waits.empty
    assert _columns(waits) == DOCUMENTED["waiting_times"]
    ledger = namespace["ledger"]
    assert isinstance(ledger, pd.DataFrame)
    assert _columns(ledger) == DOCUMENTED["ledger"]
