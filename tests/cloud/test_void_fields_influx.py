"""A recomputed aggregate with fewer fields than the stored one, on the real InfluxDB (issue 6).

InfluxDB merges the fields of two writes of one point (measurement, tag set, time, retention
policy): a field the second write lacks keeps the first write's value. The processor writes
every field of its aggregates each time, except a ratio or a statistic that is undefined for
that window (docs/influx-schema.md, "Fields that can be void"): a ward's occupancy_pct when
no bed has a valid state, a queue's median_s / p90_s / mean_s when no wait ended in the hour.
Such a field is void by the fields always written beside it (occupied + available = 0,
n = 0), whatever value a former write left in it; the analyst API and the dashboards read it
so. Every other field is written each time, so the stored point is the last write's.

Each test hands the points of the real node and site steps to the real sink, as the flow
does, then reads InfluxDB back through what operators and analysts use: `CityData` and the
generated dashboards' queries (interpolated as Grafana would; Grafana cannot run here).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloud.config import CloudInflux, parse_cloud_config
from cloud.logic.domain.hospital_site import HospitalSite
from cloud.logic.node import NodeState
from cloud.logic.records import NodeData, Point
from cloud.query.city_data import CityData
from cloud.sink import InfluxWriter, make_writer
from cloud.stack_config import cloud_config_for_stack
from urbanpulse.clock import SystemClock, from_epoch_ns, to_epoch_ns
from urbanpulse.dashboards.city import hospitals
from urbanpulse.dashboards.model import Panel
from urbanpulse.dashboards.queries import TimeRange, interpolate, regex_value
from urbanpulse.influx_http import InfluxHTTP
from urbanpulse.stack import StackInfo
from urbanpulse.wire import Reading

pytestmark = pytest.mark.stack

S = 10**9
MIN = 60 * S
HOUR = 60 * MIN
HORIZON = 6 * HOUR
_runs = itertools.count()
_seq = itertools.count()


def _site() -> str:
    return f"void-{to_epoch_ns(SystemClock().now()) % 10**6}-{next(_runs)}"


def _hour_ago(hours: int) -> int:
    """An hour's start `hours` before the current one: recent, as the policies keep it."""
    now = to_epoch_ns(SystemClock().now())
    return now - now % HOUR - hours * HOUR


def _reading(sensor: str, kind: str, ts: int, **values: float) -> Reading:
    return Reading(sensor, kind, ts, next(_seq), values)


class Flow:
    """The node and site steps of the dataflow, their points written by the real sink."""

    def __init__(self, writer: InfluxWriter) -> None:
        self.writer = writer
        self.nodes: dict[str, NodeState] = {}
        self.sites: dict[str, HospitalSite] = {}
        self.written: list[Point] = []

    def send(self, site: str, node: str, readings: list[Reading]) -> None:
        received = max(r.ts_ns for r in readings) + S
        data = NodeData(f"{site}/{node}", site, node, received, readings)
        state = self.nodes.setdefault(data.key, NodeState(HORIZON, detect=False))
        points = state.process(data)
        updates = state.take_site_updates()
        if updates:
            points += self.sites.setdefault(site, HospitalSite(HORIZON)).process(site, updates)
        self.written += points
        self.writer.write(points)
        assert self.writer.stats.refused_requests == 0


@pytest.fixture
def flow(db_ready: StackInfo) -> Iterator[Flow]:
    influx: CloudInflux = parse_cloud_config(
        cloud_config_for_stack(db_ready, Path("/nonexistent-state"))).influx
    writer = make_writer(influx)
    yield Flow(writer)
    writer.close()


def _stored(reader: InfluxHTTP, db: str, rp: str, measurement: str, site: str, ts: int,
            node: str | None = None) -> dict[str, object]:
    where = f"\"site\" = '{site}' AND time = {ts}"
    if node is not None:
        where += f" AND \"node\" = '{node}'"
    (row,) = reader.query_points(f'SELECT * FROM "{rp}"."{measurement}" WHERE {where}', db=db)
    return {k: v for k, v in row.items() if v is not None and k not in ("time", "site", "node")}


def _panel(title: str) -> Panel:
    (panel,) = [p for p in hospitals().panels if p.title == title]
    return panel


def _panel_values(reader: InfluxHTTP, db: str, panel: Panel, site: str, start: int, end: int
                  ) -> dict[int, list[float]]:
    """Each timestamp's non-null values of the panel's queries for `site` and every node,
    over [start, end), as Grafana would ask for them."""
    span = TimeRange(from_epoch_ns(start), from_epoch_ns(end))
    out: dict[int, list[float]] = {}
    for query in panel.queries:
        text = interpolate(query.influxql, span, {"site": regex_value(site), "node": ".*"})
        for series in reader.query(text, db=db, epoch="ns"):
            for time, *values in series["values"]:
                out.setdefault(int(time), []).extend(v for v in values if v is not None)
    return out


def test_a_ward_whose_beds_all_turn_faulty_has_no_occupancy_pct_left_from_before(
        flow: Flow, reader: InfluxHTTP, db_ready: StackInfo) -> None:
    site, minute = _site(), _hour_ago(2) + 7 * MIN
    flow.send(site, "ward-a", [_reading("bed-1", "hospital.bed", minute + 5 * S, occupied=1),
                               _reading("bed-2", "hospital.bed", minute + 6 * S, occupied=0)])
    # later in the same minute both pads report a cut cable: no bed has a valid state
    flow.send(site, "ward-a", [_reading("bed-1", "hospital.bed", minute + 30 * S, occupied=0, fault=1),
                               _reading("bed-2", "hospital.bed", minute + 31 * S, occupied=0, fault=1)])
    db = db_ready.database
    ward = _stored(reader, db, "agg_1m", "ward_occupancy", site, minute, "ward-a")
    assert (ward["beds"], ward["occupied"], ward["available"], ward["faulty"]) == (2, 0, 0, 2)
    # InfluxDB kept the first write's ratio beside the second write's counts: what the
    # readers below must not show
    assert ward.get("occupancy_pct") in (None, 50.0)

    data = CityData(reader, db)
    start, end = from_epoch_ns(minute), from_epoch_ns(minute + MIN)
    for frame in (data.ward_occupancy(start, end, resolution="1m", site=site),
                  data.hospital_occupancy(start, end, resolution="1m", site=site)):
        assert len(frame) == 1
        row = frame.iloc[0]
        assert (row["occupied"], row["available"], row["faulty"]) == (0, 0, 2)
        assert math.isnan(row["occupancy_pct"])
    # the ratio alone: its counts are read for it, and left out again
    alone = data.rollup("ward_occupancy", start, end, resolution="1m", site=site, fields=["occupancy_pct"])
    assert list(alone.columns) == ["site", "node", "occupancy_pct"]
    assert alone["occupancy_pct"].isna().tolist() == [True]

    # the next minute bed-1's cable is mended: a valid state, shown again
    flow.send(site, "ward-a", [_reading("bed-1", "hospital.bed", minute + MIN + 5 * S, occupied=1)])
    shown = _panel_values(reader, db, _panel("Occupancy per hospital"), site, minute - MIN,
                          minute + 2 * MIN)
    assert shown == {minute + MIN: [100.0]}


def test_a_late_call_that_takes_a_wait_from_another_hour_leaves_that_hour_with_none(
        flow: Flow, reader: InfluxHTTP, db_ready: StackInfo) -> None:
    """Ticket 5 issued at 0:10, called at 1:10 (a wait of an hour, in hour 1); the kiosk's
    earlier call of it at 0:30 arrives late: the wait is 20 minutes, in hour 0, and hour 1
    has none (a repeated call is no new wait)."""
    site, hour = _site(), _hour_ago(4)
    flow.send(site, "hall", [_reading("kiosk-1", "hospital.queue", hour + 10 * MIN, ticket=5, called=0)])
    flow.send(site, "hall", [_reading("kiosk-1", "hospital.queue", hour + HOUR + 10 * MIN,
                                      ticket=5, called=1)])
    flow.send(site, "hall", [_reading("kiosk-1", "hospital.queue", hour + 30 * MIN, ticket=5, called=1)])
    db = db_ready.database
    first = _stored(reader, db, "agg_1h", "queue_wait", site, hour, "hall")
    assert (first["n"], first["median_s"], first["mean_s"]) == (1, 1200.0, 1200.0)
    second = _stored(reader, db, "agg_1h", "queue_wait", site, hour + HOUR, "hall")
    assert second["n"] == 0
    assert _stored(reader, db, "agg_1h", "hospital_wait", site, hour + HOUR)["n"] == 0

    data = CityData(reader, db)
    start, end = from_epoch_ns(hour), from_epoch_ns(hour + 2 * HOUR)
    for frame in (data.waiting_times(start, end, site=site, per_queue=True),
                  data.waiting_times(start, end, site=site)):
        assert list(frame["n"]) == [1, 0]
        assert list(frame["median_s"].iloc[:1]) == [1200.0]
        assert frame[["median_s", "p90_s", "mean_s"]].iloc[1].isna().all()

    shown = _panel_values(reader, db, _panel("Waiting time per queue (median and 90th percentile)"),
                          site, hour, hour + 2 * HOUR)
    assert shown == {hour: [1200.0, 1200.0]}


def test_a_ledger_hour_let_go_is_not_written_again_from_a_straggler(
        flow: Flow, reader: InfluxHTTP, db_ready: StackInfo) -> None:
    """A reading of an hour the node state has let go (older than the horizon, and no
    message with its readings for a horizon of receive time: here the receive clock moves
    9 h) is counted nowhere: the stored hour keeps every count of its last write, its
    restart too (it was replaced by the straggler's counts alone before,
    tests/cloud/logic/test_ledger_backlog.py), and all its fields."""
    site, hour = _site(), _hour_ago(12)
    flow.send(site, "ward-b", [_reading("bed-1", "hospital.bed", hour + MIN, occupied=1)])
    # numbered from 0 again, stamped after: the sensor's numbering started again
    flow.send(site, "ward-b", [Reading("bed-1", "hospital.bed", hour + 2 * MIN, 0, {"occupied": 0})])
    db = db_ready.database
    assert _stored(reader, db, "agg_1h", "ledger", site, hour)["restarts"] == 1
    flow.send(site, "ward-b", [_reading("bed-1", "hospital.bed", hour + 9 * HOUR, occupied=1)])
    flow.send(site, "ward-b", [_reading("bed-1", "hospital.bed", hour + 3 * MIN, occupied=1)])
    (last,) = [ln for _, ln in flow.written if ln.startswith("ledger,") and ln.endswith(f" {hour}")][-1:]
    stored = _stored(reader, db, "agg_1h", "ledger", site, hour)
    assert (stored["restarts"], stored["received"], stored["expected"]) == (1, 2, 2), last
    assert last.split(" ")[1].count("=") == len(stored)



def test_events_of_one_type_on_two_fields_of_one_reading_are_two_points(
        flow: Flow, reader: InfluxHTTP, db_ready: StackInfo) -> None:
    """A dust reading with PM2.5 and PM10 both outside the contract's range raises two
    out_of_range events; stamped alike they were one point, the second write's."""
    site, start = _site(), _hour_ago(3)
    state = flow.nodes.setdefault(f"{site}/station", NodeState(HORIZON, detect=True))
    assert state.detect
    normal = [_reading("pm-1", "air.pm", start + i * MIN, pm25=12.0 + i % 3, pm10=20.0 + i % 2)
              for i in range(20)]
    flow.send(site, "station", normal)
    bad = _reading("pm-1", "air.pm", start + 20 * MIN, pm25=5000.0, pm10=9000.0)
    flow.send(site, "station", [bad])
    rows = reader.query_points(
        f"SELECT \"field\", \"value\", \"seq\" FROM \"raw\".\"events\" WHERE \"site\" = '{site}' "
        "AND \"type\" = 'out_of_range'", db=db_ready.database)
    assert [(r["field"], r["value"], r["seq"]) for r in rows] == [("pm25", 5000, bad.seq),
                                                                  ("pm10", 9000, bad.seq)]
    assert [int(r["time"]) - bad.ts_ns for r in rows] == [0, 1]  # the field's place in the reading
