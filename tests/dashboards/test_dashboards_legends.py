"""Every series of a dashboard panel has its own legend name, when two sites have nodes and
sensors of the same ids.

Node ids are unique within a site only, sensor ids within a node (docs/wire-contract.md,
docs/edge-config.md), and the shipped Hanoi city repeats them: every intersection's node is
`cabinet`, every hospital has an `er-gate` and an `opd-hall`, two air stations are `aq-1`.
A panel's series are told apart in Grafana by their alias only: an alias without
`$tag_site` gave the three hospitals' registration halls one name ("opd-hall") in the same
panel (found running the panels on the demo's data). The points here are made by the
processor's own classes (NodeState, HospitalSite) and written by its writer; Grafana cannot
run here, so the alias is expanded as Grafana's InfluxQL datasource does.
"""

from __future__ import annotations

import re
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cloud.logic.domain.hospital_site import HospitalSite
from cloud.logic.lines import line
from cloud.logic.node import NodeState
from cloud.logic.records import RP_RAW, NodeData, Point
from cloud.sink import InfluxWriter
from urbanpulse.clock import to_epoch_ns
from urbanpulse.dashboards.city import all_dashboards
from urbanpulse.dashboards.model import Query
from urbanpulse.dashboards.queries import TimeRange, interpolate, regex_value
from urbanpulse.influx_http import InfluxHTTP
from urbanpulse.stack import StackInfo
from urbanpulse.wire import Reading

pytestmark = pytest.mark.stack

MINUTE = 60 * 10**9
HORIZON_NS = 6 * 60 * MINUTE
# Panels whose series were named alike for two sites before their aliases named the site.
ONCE_ALIKE = {
    "Entrances and ER arrivals per hour", "Queue tickets per hour",
    "Waiting time per queue (median and 90th percentile)", "Patients served per hour per queue",
    "Air-quality index per station: US EPA and VN_AQI", "Readings stored per node per minute",
    "Vehicles per minute per lane", "Vehicles per minute per lane (1-minute aggregates)",
    "Occupancy per lane", "Speed per lane", "Busiest lanes now (occupancy, last minute)",
}


@dataclass(frozen=True)
class TwoSites:
    sites: tuple[str, str]
    now: datetime
    reader: InfluxHTTP
    database: str


def _readings(t: int) -> dict[str, list[Reading]]:
    """One site's nodes, as the Hanoi city names them (the same ids at every site)."""
    seqs: Counter[str] = Counter()

    def rd(sensor: str, kind: str, ts: int, **values: float) -> Reading:
        seqs[sensor] += 1
        return Reading(sensor, kind, ts, seqs[sensor], values)

    # three hours of dust: the NowCast behind the AQI needs two of the last three hours
    start = t - 180 * MINUTE
    return {
        "ward-1": [rd("bed-1", "hospital.bed", t, occupied=1), rd("bed-2", "hospital.bed", t, occupied=0)],
        "er-gate": [rd("er-door", "hospital.door", t, count=4, interval_s=60)],
        "opd-hall": [rd("kiosk-reg", "hospital.queue", t - 9 * MINUTE, ticket=12, called=0),
                     rd("kiosk-reg", "hospital.queue", t, ticket=12, called=1, counter=2)],
        "cabinet": [rd("north-in", "traffic.loop", t, count=14, occupancy_pct=22, interval_s=60,
                       speed_kmh=31)],
        "aq-1": [r for m in range(180) for r in (
            rd("sds011", "air.pm", start + m * MINUTE, pm25=40, pm10=60),
            rd("mhz19b", "air.co2", start + m * MINUTE, co2=650))],
    }


def _points(site: str, t: int) -> list[Point]:
    points: list[Point] = []
    hospital = HospitalSite(HORIZON_NS)
    for node, readings in _readings(t).items():
        state = NodeState(HORIZON_NS, detect=False)
        points += state.process(NodeData(f"{site}/{node}", site, node, t + 10**9, readings))
        points += hospital.process(site, state.take_site_updates())
        points.append((RP_RAW, line("node_status", {"site": site, "node": node},
                                    {"state": "online", "online": True, "outbox_depth": 0.0,
                                     "readings_per_s": 1.0, "uptime_s": 600.0}, t)))
    return points


@pytest.fixture(scope="module")
def two_sites(db_ready: StackInfo) -> Iterator[TwoSites]:
    run = uuid.uuid4().hex[:8]
    sites = (f"lg-{run}-a", f"lg-{run}-b")
    now = datetime.now(UTC)
    t = to_epoch_ns(now.replace(second=0, microsecond=0)) - 2 * MINUTE
    creds = db_ready.influx("writer")
    with InfluxHTTP(creds.url, creds.username, creds.password()) as client:
        writer = InfluxWriter(client, db_ready.database, 5000)
        writer.write([p for site in sites for p in _points(site, t)])
        assert writer.stats.refused_requests == 0, writer.stats.last_error
    reader = db_ready.influx("reader")
    with InfluxHTTP(reader.url, reader.username, reader.password()) as client:
        yield TwoSites(sites, now, client, db_ready.database)


_ALIAS = re.compile(r"\$(\w+)")


def legend(query: Query, series: dict[str, Any], column: str) -> str:
    """A series' name in Grafana's InfluxQL datasource: the alias with `$m` / `$measurement`,
    `$col` and `$tag_<key>` replaced; without an alias, measurement, column and tags."""
    tags = series.get("tags") or {}
    if not query.alias:
        return f"{series['name']}.{column} {sorted(tags.items())}"

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in ("m", "measurement"):
            return str(series["name"])
        if name == "col":
            return column
        if name.startswith("tag_"):
            return str(tags.get(name[4:], ""))
        return match.group(0)

    return _ALIAS.sub(replace, query.alias)


def test_two_sites_with_the_same_node_and_sensor_ids_get_distinct_legends(two_sites: TwoSites) -> None:
    time_range = TimeRange.last(two_sites.now + timedelta(minutes=1), timedelta(hours=3))
    # Grafana's multi-value variable inside /^...$/: the chosen values as alternatives
    values = {"site": "(" + "|".join(regex_value(s) for s in two_sites.sites) + ")", "node": ".*"}
    alike: dict[str, dict[str, int]] = {}
    named: dict[str, int] = {}
    for dashboard in all_dashboards():
        for panel in dashboard.panels:
            if panel.kind == "table" or not any("$site" in q.influxql for q in panel.queries):
                continue  # a table shows the tags as columns; the processor's panels have no site
            names = [legend(query, series, column)
                     for query in panel.queries
                     for series in two_sites.reader.query(interpolate(query.influxql, time_range, values),
                                                          db=two_sites.database)
                     for column in series["columns"][1:]]
            named[panel.title] = len(names)
            counts = {name: k for name, k in Counter(names).items() if k > 1}
            if counts:
                alike[f"{dashboard.uid} / {panel.title}"] = counts
    assert alike == {}
    assert all(named[title] >= 2 for title in ONCE_ALIKE), named
