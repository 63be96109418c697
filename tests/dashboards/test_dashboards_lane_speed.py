""""Speed per lane" shows the lane rollup's speed: each reading's speed weighted by the
vehicles it is the mean of (`speed_count`, or its `count` from agents that do not send it).

The panel averaged the 1-minute aggregates' `speed_kmh_mean`, every reading alike: a lane
whose 10 vehicles passed at 50 km/h and whose 2 crawling ones were measured in the next
interval (count 0, speed 5) showed 27.5 km/h for the minute, not 42.5. The points are made
by the processor's own NodeState and written by its writer to the real InfluxDB; the query
is the panel's, interpolated as Grafana would send it (Grafana itself cannot run here).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from cloud.logic.node import NodeState
from cloud.logic.records import NodeData
from cloud.sink import InfluxWriter
from urbanpulse.clock import to_epoch_ns
from urbanpulse.dashboards.city import traffic
from urbanpulse.dashboards.queries import TimeRange, interpolate, regex_value
from urbanpulse.influx_http import InfluxHTTP
from urbanpulse.stack import StackInfo
from urbanpulse.wire import Reading

pytestmark = pytest.mark.stack

S = 10**9
MINUTE = 60 * S
HORIZON_NS = 6 * 60 * MINUTE
# The panel's query before: the per-sensor aggregates' mean of the readings' speeds.
BEFORE = ('SELECT mean("speed_kmh_mean") FROM "agg_1m"."traffic_loop" WHERE $timeFilter AND '
          '"site" =~ /^$site$/ AND "node" =~ /^$node$/ GROUP BY time($__interval), "site", '
          '"node", "sensor" fill(none)')


def test_speed_per_lane_weights_each_reading_by_the_vehicles_it_measured(db_ready: StackInfo) -> None:
    site = f"speed-{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    window = to_epoch_ns(now.replace(second=0, microsecond=0)) - 3 * MINUTE

    def loop(lane: str, end_s: int, seq: int, **values: float) -> Reading:
        return Reading(lane, "traffic.loop", window + end_s * S, seq, {"interval_s": 30.0, **values})

    readings = [  # two 30 s intervals ending in one window, per lane
        loop("crawl-in", 30, 1, count=10.0, speed_kmh=50.0, speed_count=10.0),
        loop("crawl-in", 60, 2, count=0.0, speed_kmh=5.0, speed_count=2.0),  # measured late
        loop("old-agent-in", 30, 1, count=8.0, speed_kmh=60.0),  # no speed_count: by count
        loop("old-agent-in", 60, 2, count=2.0, speed_kmh=10.0),
        loop("single-in", 30, 1, count=6.0),  # a single loop: no speed, no row
        loop("single-in", 60, 2, count=4.0),
    ]
    points = NodeState(HORIZON_NS, detect=False).process(
        NodeData(f"{site}/cabinet", site, "cabinet", window + 61 * S, readings))
    creds = db_ready.influx("writer")
    with InfluxHTTP(creds.url, creds.username, creds.password()) as client:
        writer = InfluxWriter(client, db_ready.database, 5000)
        writer.write(points)
        assert writer.stats.refused_requests == 0, writer.stats.last_error

    (panel,) = [p for p in traffic().panels if p.title == "Speed per lane"]
    (query,) = panel.queries
    values = {"site": regex_value(site), "node": ".*"}
    reader = db_ready.influx("reader")
    with InfluxHTTP(reader.url, reader.username, reader.password()) as client:
        for span in (timedelta(hours=6), timedelta(hours=24)):  # $__interval 30 s, 2 min
            time_range = TimeRange.last(now + timedelta(minutes=1), span)

            def shown(influxql: str, tr: TimeRange = time_range) -> dict[str, float]:
                return {s["tags"]["sensor"]: v for s in client.query(
                            interpolate(influxql, tr, values), db=db_ready.database)
                        for _, v in s["values"] if v is not None}

            assert shown(query.influxql) == {"crawl-in": 42.5, "old-agent-in": 50.0}
            assert shown(BEFORE) == {"crawl-in": 27.5, "old-agent-in": 35.0}
