"""A panel that says "now" shows no value of a lane whose node stopped hours ago.

"Busiest lanes now (occupancy, last minute)" took each lane's last 1-minute window of the
dashboard's range (6 hours by default, days when widened): a loop that died at rush hour
kept its 90 % among the busiest lanes now for the rest of the range, beside the lanes
measured this minute. Loops report every interval, an empty road too (count 0), so a lane
with no window for minutes is not reporting. The points are made by the processor's own
NodeState and written by its writer; the query is the panel's, as Grafana would send it.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from cloud.logic.node import NodeState
from cloud.logic.records import NodeData, Point
from cloud.sink import InfluxWriter
from urbanpulse.clock import to_epoch_ns
from urbanpulse.dashboards.city import traffic
from urbanpulse.dashboards.queries import TimeRange, interpolate, regex_value
from urbanpulse.influx_http import InfluxHTTP
from urbanpulse.stack import StackInfo
from urbanpulse.wire import Reading

pytestmark = pytest.mark.stack

MINUTE = 60 * 10**9
HORIZON_NS = 6 * 60 * MINUTE


def _lane(site: str, node: str, lane: str, ts: int, occupancy: float) -> list[Point]:
    reading = Reading(lane, "traffic.loop", ts, 1,
                      {"count": 12.0, "interval_s": 60.0, "occupancy_pct": occupancy})
    return NodeState(HORIZON_NS, detect=False).process(
        NodeData(f"{site}/{node}", site, node, ts + 10**9, [reading]))


def test_busiest_lanes_now_leaves_out_a_lane_that_stopped_hours_ago(db_ready: StackInfo) -> None:
    site = f"now-{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    minute = to_epoch_ns(now.replace(second=0, microsecond=0))
    points = (_lane(site, "cabinet", "fresh-in", minute - MINUTE, 35.0)
              + _lane(site, "cabinet-2", "died-in", minute - 180 * MINUTE, 92.0))
    creds = db_ready.influx("writer")
    with InfluxHTTP(creds.url, creds.username, creds.password()) as client:
        writer = InfluxWriter(client, db_ready.database, 5000)
        writer.write(points)
        assert writer.stats.refused_requests == 0, writer.stats.last_error
    (panel,) = [p for p in traffic().panels if p.title.startswith("Busiest lanes now")]
    (query,) = panel.queries
    text = interpolate(query.influxql, TimeRange.last(now + timedelta(seconds=1), timedelta(hours=6)),
                       {"site": regex_value(site), "node": ".*"})
    reader = db_ready.influx("reader")
    with InfluxHTTP(reader.url, reader.username, reader.password()) as client:
        shown = {s["tags"]["sensor"]: s["values"][-1][1] for s in client.query(text, db=db_ready.database)}
    assert shown == {"fresh-in": 35.0}
