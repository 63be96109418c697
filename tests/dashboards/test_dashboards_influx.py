"""Every dashboard, variable and alert query run against the real InfluxDB of the session.

Grafana cannot be installed here, so it is the one thing faked: `check` interpolates the
queries the way Grafana does ($timeFilter, $__interval, template variables) and sends them
to the real influxd started by the `stack` fixture, as the read-only `reader` user.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cloud.config import Retention
from cloud.initdb import init_db
from cloud.logic.domain.hospital_site import HospitalSite
from cloud.logic.domain.node import DomainNode
from cloud.logic.events import SensorWatch
from cloud.logic.lines import line
from cloud.logic.node import NodeState
from cloud.logic.records import NodeData
from urbanpulse.dashboards.alerts import RULES, AlertRule
from urbanpulse.dashboards.check import check_alerts, check_dashboards
from urbanpulse.dashboards.city import all_dashboards, hospitals
from urbanpulse.dashboards.cli import main
from urbanpulse.dashboards.queries import TimeRange, interpolate, regex_value
from urbanpulse.influx_http import InfluxHTTP
from urbanpulse.stack import StackInfo
from urbanpulse.wire import Reading

pytestmark = pytest.mark.stack

SITE = "dash-test"
SEEDED = {"hospital_bed", "hospital_door", "hospital_queue", "traffic_loop", "air_pm", "air_co2",
          "node_status", "dead_letter", "ledger", "hospital_occupancy", "hospital_flow",
          "queue_wait", "traffic_intersection", "traffic_lane", "air_quality", "events",
          "ward_occupancy", "driver_status"}
MINUTE = 60 * 10**9


@dataclass(frozen=True)
class Seeded:
    now: datetime
    reader: InfluxHTTP
    database: str


def _ns(moment: datetime) -> int:
    return int(moment.timestamp()) * 10**9


def _seed_lines(now: datetime) -> dict[str, list[str]]:
    t = _ns(now.replace(second=0, microsecond=0)) - 2 * MINUTE
    hour = _ns(now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=2))

    def reading(kind: str, node: str, sensor: str, values: dict[str, float | int | str | bool],
                ts: int) -> str:
        tags = {"site": SITE, "node": node, "sensor": sensor, "kind": kind}
        return line(kind.replace(".", "_"), tags, values, ts)

    raw = [
        reading("hospital.bed", "ward-1", "bed-1", {"occupied": 1.0, "seq": 1}, t),
        reading("hospital.bed", "ward-1", "bed-2", {"occupied": 0.0, "seq": 1}, t),
        reading("hospital.bed", "ward-2", "bed-3", {"occupied": 1.0, "seq": 1}, t),
        reading("hospital.door", "er-1", "door-er", {"count": 4.0, "interval_s": 60.0, "seq": 1}, t),
        reading("hospital.queue", "opd-1", "kiosk-1",
                {"ticket": 17.0, "called": 0.0, "counter": 0.0, "seq": 1}, t),
        reading("hospital.queue", "opd-1", "kiosk-1",
                {"ticket": 12.0, "called": 1.0, "counter": 2.0, "seq": 2}, t + 10**9),
        reading("traffic.loop", "x-001", "lane-1",
                {"count": 14.0, "occupancy_pct": 22.0, "interval_s": 60.0, "speed_kmh": 31.0,
                 "seq": 1}, t),
        line("dead_letter", {"site": SITE, "node": "x-001", "reason": "bad_seq"},
             {"detail": "readings[0].seq: must be an integer", "payload": "{}", "topic": "t",
              "truncated": False, "offset": 7, "partition": "i0"}, t),
    ]
    # "up" heartbeats every minute; "gone" stopped 20 minutes ago; "stuck" cannot deliver,
    # and its clock is 7 minutes ahead.
    for minute in range(12):
        ts = t + 2 * MINUTE - minute * MINUTE
        raw.append(line("node_status", {"site": SITE, "node": "up"},
                        {"state": "online", "online": True, "outbox_depth": 0.0,
                         "readings_per_s": 2.0, "uptime_s": 600.0, "clock_offset_s": -0.2}, ts))
        raw.append(line("node_status", {"site": SITE, "node": "stuck"},
                        {"state": "online", "online": True, "outbox_depth": 1000.0 - 80 * minute,
                         "readings_per_s": 2.0, "uptime_s": 600.0, "clock_offset_s": 420.0}, ts))
        raw.append(line("node_status", {"site": SITE, "node": "gone"},
                        {"state": "online", "online": True, "outbox_depth": 0.0,
                         "readings_per_s": 1.0, "uptime_s": 60.0, "clock_offset_s": -0.1},
                        ts - 20 * MINUTE))
        # the "up" node's drivers' counts: a PM sensor on a bad cable whose driver also emits
        # a NaN now and then (refused by the node), a kiosk's glitches
        n = 11 - minute
        raw.append(line("driver_status", {"site": SITE, "node": "up", "sensor": "pm-1"},
                        {"checksum_errors": 2 * n, "bytes_skipped": 30 * n, "malformed": 0,
                         "refused": n, "refused_bad_value": n}, ts))
        raw.append(line("driver_status", {"site": SITE, "node": "up", "sensor": "kiosk-1"},
                        {"glitches": n, "empty_calls": 0}, ts))
    agg_1m = [
        reading("traffic.loop", "x-001", "lane-1",
                {"count": 1, "count_mean": 14.0, "occupancy_pct_mean": 22.0, "interval_s_mean": 60.0,
                 "speed_kmh_mean": 31.0}, t),
        reading("air.pm", "aq-01", "pm-1", {"count": 60, "pm25_mean": 80.0, "pm10_mean": 110.0}, t),
        reading("air.pm", "aq-02", "pm-1", {"count": 60, "pm25_mean": 12.0, "pm10_mean": 20.0}, t),
        reading("air.co2", "aq-01", "co2-1", {"count": 60, "co2_mean": 640.0}, t),
    ]
    agg_1h = [
        line("ledger", {"site": SITE, "node": "x-001"},
             {"expected": 3600, "received": 3590, "duplicates": 2, "late": 1, "missing": 12}, hour),
    ]
    # A sensor fault as the dataflow raises it (CO2 beyond its range), and an anomaly event.
    raw += [text for _, text in SensorWatch().check(
        SITE, "aq-01", Reading("co2-1", "air.co2", t, 5, {"co2": 20000.0}))]
    raw.append(line("events", {"site": SITE, "node": "x-001", "sensor": "lane-1",
                               "kind": "traffic.loop", "type": "anomaly"},
                    {"field": "speed_kmh", "value": 95.0, "score": 0.93, "seq": 3,
                     "detail": "speed_kmh=95 scored 0.93"}, t))
    lines = {"raw": raw, "agg_1m": agg_1m, "agg_1h": agg_1h}
    for policy, point in _domain_points(t):
        lines[policy].append(point)
    return lines


def _domain_points(t: int) -> list[tuple[str, str]]:
    """The domain rollups (occupancy, flows, waits, intersections, AQI) as the dataflow
    makes them: the cloud's own rollup classes run over readings like the raw ones above."""
    def rd(sensor: str, kind: str, ts: int, **values: float) -> Reading:
        return Reading(sensor, kind, ts, 1, values)

    per_node = {
        "ward-1": [rd("bed-1", "hospital.bed", t, occupied=1), rd("bed-2", "hospital.bed", t, occupied=0)],
        "er-1": [rd("door-er", "hospital.door", t, count=4, interval_s=60)],
        "opd-1": [rd("kiosk-1", "hospital.queue", t - 9 * MINUTE, ticket=12, called=0),
                  rd("kiosk-1", "hospital.queue", t, ticket=12, called=1, counter=2)],
        "x-001": [rd("lane-1", "traffic.loop", t, count=14, occupancy_pct=22, interval_s=60,
                     speed_kmh=31)],
        # three hours: the NowCast behind the AQI needs two of the last three hours, whatever
        # the minute the test runs at (one hour of readings failed in the first minutes of an hour)
        "aq-01": [rd("pm-1", "air.pm", t - minute * MINUTE, pm25=80, pm10=110) for minute in range(180)],
    }
    points: list[tuple[str, str]] = []
    site = HospitalSite(6 * 60 * MINUTE)
    for node, readings in per_node.items():
        node_points, updates = DomainNode(6 * 60 * MINUTE).process(SITE, node, readings)
        points += node_points + site.process(SITE, updates)
    return points


@pytest.fixture(scope="module")
def seeded(stack: StackInfo) -> Iterator[Seeded]:
    admin_creds = stack.influx("admin")
    now = datetime.now(UTC)
    with InfluxHTTP(admin_creds.url, admin_creds.username, admin_creds.password()) as admin:
        init_db(admin, stack.database, Retention("30d", "400d", "INF"))
        for policy, lines in _seed_lines(now).items():
            admin.write("\n".join(lines).encode(), db=stack.database, rp=policy)
    reader_creds = stack.influx("reader")
    with InfluxHTTP(reader_creds.url, reader_creds.username, reader_creds.password()) as reader:
        yield Seeded(now, reader, stack.database)


def test_every_dashboard_query_runs_and_seeded_panels_return_rows(seeded: Seeded) -> None:
    results = check_dashboards(seeded.reader, seeded.database,
                               TimeRange.last(seeded.now + timedelta(minutes=1), timedelta(hours=6)))
    failures = [f"{r.where}: {r.error}\n{r.influxql}" for r in results if not r.ok]
    assert failures == []
    empty = [r.where for r in results
             if "[all]" in r.where and (r.measurement in SEEDED or r.measurement is None)
             and r.rows == 0]
    assert empty == []
    queries = sum(len(p.queries) for d in all_dashboards() for p in d.panels)
    assert sum("[first]" in r.where for r in results) == sum("[all]" in r.where for r in results) == queries


def test_variables_list_the_seeded_tag_values(seeded: Seeded) -> None:
    time_range = TimeRange.last(seeded.now + timedelta(minutes=1), timedelta(hours=6))
    results = check_dashboards(seeded.reader, seeded.database, time_range)
    variables = [r for r in results if "/ variable " in r.where]
    assert len(variables) == 10
    assert all(r.ok and r.rows > 0 for r in variables)
    # The checker lists the nodes of the first site; other tests' sites share the database
    # and may sort first: the seeded site's nodes, by the same variable query.
    (hospitals,) = [d for d in all_dashboards() if d.uid == "urbanpulse-hospitals"]
    (node_variable,) = [v for v in hospitals.variables if v.name == "node"]
    query = interpolate(node_variable.influxql, time_range, {"site": regex_value(SITE)})
    listed = {p["value"] for p in seeded.reader.query_points(query, db=seeded.database)}
    assert {"ward-1", "ward-2", "er-1", "opd-1"} <= listed  # beds, doors and kiosks alike


def _rule(uid: str) -> AlertRule:
    (rule,) = [r for r in RULES if r.uid == uid]
    return rule


def _alert_values(seeded: Seeded, rule: AlertRule) -> dict[str, float]:
    """Last value per series of the shipped rule's query: what Grafana's `last` reducer sees."""
    (result,) = [r for r in check_alerts(seeded.reader, seeded.database, seeded.now)
                 if r.where.endswith(rule.uid)]
    assert result.ok, result.error
    out = {}
    for series in seeded.reader.query(result.influxql, db=seeded.database):
        if series["tags"].get("site") == SITE:
            key = series["tags"].get("node") or series["tags"].get("reason", "")
            out[key] = float(series["values"][-1][1])
    return out


def _firing(seeded: Seeded, uid: str) -> dict[str, bool]:
    rule = _rule(uid)
    return {key: rule.fires(value) for key, value in _alert_values(seeded, rule).items()}


def test_node_offline_fires_for_the_silent_node_only(seeded: Seeded) -> None:
    values = _alert_values(seeded, _rule("urbanpulse-node-offline"))
    assert values["up"] >= 4
    assert _firing(seeded, "urbanpulse-node-offline") == {"gone": True, "up": False, "stuck": False}


def test_outbox_growing_fires_for_the_stuck_node_only(seeded: Seeded) -> None:
    assert _firing(seeded, "urbanpulse-outbox-growing") == {"gone": False, "up": False, "stuck": True}


def test_node_clock_off_fires_for_the_node_whose_clock_is_off_only(seeded: Seeded) -> None:
    assert _alert_values(seeded, _rule("urbanpulse-node-clock-off")) == {"up": 0.2, "stuck": 420}
    assert _firing(seeded, "urbanpulse-node-clock-off") == {"up": False, "stuck": True}


def test_pm25_missing_data_and_dead_letter_rules_fire_on_the_seeded_data(seeded: Seeded) -> None:
    assert _firing(seeded, "urbanpulse-pm25-high") == {"aq-01": True, "aq-02": False}
    assert _alert_values(seeded, _rule("urbanpulse-missing-data")) == {"x-001": 12}
    assert _firing(seeded, "urbanpulse-missing-data") == {"x-001": True}
    assert _alert_values(seeded, _rule("urbanpulse-dead-letters")) == {"bad_seq": 1}
    assert _firing(seeded, "urbanpulse-dead-letters") == {"bad_seq": True}


def test_sensor_link_errors_fires_for_the_sensor_on_a_bad_cable(seeded: Seeded) -> None:
    """12 heartbeats a minute apart, within the 15 minutes: 11 rises of 32 (the kiosk's
    glitches are not the link's). tests/dashboards/test_dashboards_bad_input.py has more."""
    rule = _rule("urbanpulse-sensor-link-errors")
    (result,) = [r for r in check_alerts(seeded.reader, seeded.database, seeded.now)
                 if r.where.endswith(rule.uid)]
    assert result.ok, result.error
    values = {s["tags"]["sensor"]: float(s["values"][-1][1])
              for s in seeded.reader.query(result.influxql, db=seeded.database)
              if s["tags"]["site"] == SITE}
    assert values == {"pm-1": 11 * 32}
    assert rule.fires(values["pm-1"])


def test_sensor_fault_fires_for_the_faulty_sensor_and_not_for_an_anomaly(seeded: Seeded) -> None:
    assert _alert_values(seeded, _rule("urbanpulse-sensor-fault")) == {"aq-01": 1}
    assert _firing(seeded, "urbanpulse-sensor-fault") == {"aq-01": True}


def test_check_command_against_the_real_influxdb(seeded: Seeded, stack: StackInfo,
                                                  tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    creds = stack.influx("reader")
    argv = ["check", "--influx-url", creds.url, "--user", creds.username,
            "--password-file", str(creds.password_file), "--db", stack.database]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "FAIL" not in out
    assert main([*argv[:-1], "no-such-db"]) == 1
    assert "FAIL" in capsys.readouterr().out
    assert main([*argv[:5], "--password-file", str(tmp_path / "absent"), "--db", stack.database]) == 2


BEDS_SITE = "dash-beds"
HORIZON_NS = 6 * 60 * MINUTE


def _panel_series(seeded: Seeded, title: str, time_range: TimeRange) -> list[list[dict[str, object]]]:
    """Each query's series of a hospitals panel for BEDS_SITE (every node), as rows."""
    (panel,) = [p for p in hospitals().panels if p.title == title]
    values = {"site": regex_value(BEDS_SITE), "node": ".*"}
    return [[dict(zip(s["columns"], row, strict=True)) for s in
             seeded.reader.query(interpolate(q.influxql, time_range, values), db=seeded.database)
             for row in s["values"]] for q in panel.queries]


def test_bed_panels_count_a_cut_cable_as_neither_occupied_nor_available(
        seeded: Seeded, stack: StackInfo) -> None:
    """A bed pad whose cable is cut (fault = 1) keeps sending the state it read last: it is
    unknown, not free or taken. The ward rollup counts it as faulty; the panels agree."""
    t = _ns(seeded.now) - 5 * MINUTE
    beds = [Reading("bed-1", "hospital.bed", t, 1, {"occupied": 1.0}),
            Reading("bed-2", "hospital.bed", t, 1, {"occupied": 0.0}),
            Reading("bed-3", "hospital.bed", t, 1, {"occupied": 0.0, "fault": 1.0}),
            Reading("bed-4", "hospital.bed", t, 1, {"occupied": 1.0, "fault": 1.0})]
    state = NodeState(HORIZON_NS, detect=False)
    points = state.process(NodeData(f"{BEDS_SITE}/ward-9", BEDS_SITE, "ward-9", t + 10**9, beds))
    points += HospitalSite(HORIZON_NS).process(BEDS_SITE, state.take_site_updates())
    creds = stack.influx("writer")
    with InfluxHTTP(creds.url, creds.username, creds.password()) as writer:
        for policy in {rp for rp, _ in points}:
            text = "\n".join(p for rp, p in points if rp == policy)
            writer.write(text.encode(), db=seeded.database, rp=policy)
    time_range = TimeRange.last(seeded.now + timedelta(minutes=1), timedelta(hours=6))

    ((ward,),) = _panel_series(seeded, "Beds per ward now", time_range)
    assert {k: ward.get(k) for k in ("occupied", "available", "faulty", "beds")} == \
        {"occupied": 1, "available": 1, "faulty": 2, "beds": 4}
    ((occupied,),) = _panel_series(seeded, "Beds occupied", time_range)
    ((available,),) = _panel_series(seeded, "Beds available", time_range)
    assert (occupied["sum"], available["sum"]) == (1, 1)
    (over_time,) = _panel_series(seeded, "Beds occupied per ward", time_range)
    assert [row["last"] for row in over_time if row["last"] is not None][-1] == 1


def test_missing_data_evaluated_on_the_hour_sums_two_hours_not_three(
        stack: StackInfo, seeded: Seeded) -> None:
    """Ledger points are stamped at hour starts and $timeFilter is inclusive at both ends:
    evaluated exactly on the hour, [now - 3h, now - 1h] held three of them (found by the
    dashboard review). Here $timeFilter is interpolated for an evaluation on the current
    hour, and InfluxDB's now() is at or after it, as when Grafana evaluates."""
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    admin_creds = stack.influx("admin")
    with InfluxHTTP(admin_creds.url, admin_creds.username, admin_creds.password()) as admin:
        admin.write("\n".join(line("ledger", {"site": SITE, "node": "on-the-hour"},
                                   {"missing": 1, "expected": 60}, _ns(hour - timedelta(hours=k)))
                              for k in (1, 2, 3)).encode(), db=seeded.database, rp="agg_1h")
    rule = _rule("urbanpulse-missing-data")
    query = interpolate(rule.influxql, TimeRange.last(hour, timedelta(seconds=rule.window_s),
                                                      timedelta(seconds=rule.window_end_s)), {})
    sums = {s["tags"]["node"]: s["values"][-1][1]
            for s in seeded.reader.query(query, db=seeded.database) if s["tags"]["site"] == SITE}
    assert sums["on-the-hour"] == 2


INTERVALS_SITE = "dash-intervals"


def _write_pipeline_output(seeded: Seeded, stack: StackInfo, site: str,
                           nodes: dict[str, list[Reading]]) -> None:
    """The points the processor writes for these readings (node state, per-sensor windows,
    domain rollups, site totals), written to the seeded database."""
    points = []
    hospital = HospitalSite(HORIZON_NS)
    for node, readings in nodes.items():
        state = NodeState(HORIZON_NS, detect=False)
        received = max(r.ts_ns for r in readings) + 10**9
        points += state.process(NodeData(f"{site}/{node}", site, node, received, readings))
        points += hospital.process(site, state.take_site_updates())
    creds = stack.influx("writer")
    with InfluxHTTP(creds.url, creds.username, creds.password()) as writer:
        for policy in ("raw", "agg_1m", "agg_1h"):
            text = "\n".join(p for rp, p in points if rp == policy)
            if text:
                writer.write(text.encode(), db=seeded.database, rp=policy)


def _series_ms(seeded: Seeded, dashboard_uid: str, title: str, time_range: TimeRange,
               site: str) -> list[dict[tuple[str, ...], dict[int, float]]]:
    """Each query's series of a panel for `site` (every node), as Grafana gets them (epoch
    ms): tags -> {time: value}, null and 0-filled buckets left out."""
    (dashboard,) = [d for d in all_dashboards() if d.uid == dashboard_uid]
    (panel,) = [p for p in dashboard.panels if p.title == title]
    values = {"site": regex_value(site), "node": ".*"}
    out = []
    for q in panel.queries:
        series: dict[tuple[str, ...], dict[int, float]] = {}
        for s in seeded.reader.query(interpolate(q.influxql, time_range, values),
                                     db=seeded.database, epoch="ms"):
            key = tuple(str(v) for _, v in sorted(s.get("tags", {}).items()))
            series[key] = {int(t): float(v) for t, v in s["values"] if v}
        out.append(series)
    return out


def test_door_and_loop_panels_put_each_interval_in_the_window_the_aggregates_do(
        seeded: Seeded, stack: StackInfo) -> None:
    """A door's or a loop's reading is stamped at the end of its interval and counts in the
    window the interval ends in (ts - 1 ns). The panels grouping raw door and loop points by
    their stamps showed each interval one window late: a 3600 s door's hour in the next
    hour's bar, beside the per-hospital flows that have it in its own."""
    hour = _ns(seeded.now.replace(minute=0, second=0, microsecond=0))
    minute = _ns(seeded.now.replace(second=0, microsecond=0))
    doors = [Reading("gate-1", "hospital.door", hour - k * 60 * MINUTE, 10 - k,
                     {"count": float(c), "interval_s": 3600.0})
             for k, c in ((3, 7), (2, 11), (1, 13), (0, 17))]
    loops = [Reading("lane-1", "traffic.loop", minute - k * MINUTE, 100 - k,
                     {"count": float(3 + k % 4), "interval_s": 60.0}) for k in range(40, -1, -1)]
    _write_pipeline_output(seeded, stack, INTERVALS_SITE, {"doors-1": doors, "x-009": loops})

    for span in (timedelta(hours=6), timedelta(hours=12)):  # $__interval 30 s, 60 s
        time_range = TimeRange.last(seeded.now + timedelta(minutes=1), span)
        (per_door,) = _series_ms(seeded, "urbanpulse-hospitals", "Entrances and ER arrivals per hour",
                                 time_range, INTERVALS_SITE)
        _, visits, _ = _series_ms(seeded, "urbanpulse-hospitals",
                                  "ER arrivals and visits per hour, per hospital", time_range,
                                  INTERVALS_SITE)
        ms_hour = hour // 10**6
        expected = {ms_hour - h * 3600_000: c for h, c in ((4, 7), (3, 11), (2, 13), (1, 17))}
        assert visits == {(INTERVALS_SITE,): expected}
        assert per_door == {("doors-1", "gate-1", INTERVALS_SITE): expected}

        (rate_lane,) = _series_ms(seeded, "urbanpulse-traffic", "Vehicles per minute per lane",
                                 time_range, INTERVALS_SITE)
        (agg_lane,) = _series_ms(seeded, "urbanpulse-traffic",
                                 "Vehicles per minute per lane (1-minute aggregates)", time_range,
                                 INTERVALS_SITE)
        (lane,) = agg_lane.values()
        assert lane == {minute // 10**6 - (k + 1) * 60_000: 3 + k % 4 for k in range(40, -1, -1)}
        assert rate_lane == agg_lane
