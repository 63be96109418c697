"""The demo's closing summary of its injected events: which of them the cloud found, read
back from `raw.events` on the session's real InfluxDB; and the demo's events timed so that
a fresh stack's detectors can find them."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from cloud.detect.profiles import settings_for
from urbanpulse.demo.demo_events import LATE_INCIDENT_S, demo_events
from urbanpulse.demo.found import findings, read_cloud_events, render
from urbanpulse.demo.live import COUNTER_INTERVAL_S, choose_live
from urbanpulse.influx_http import InfluxHTTP
from urbanpulse.simulate import City, make_event
from urbanpulse.simulate.timebase import TimeBase
from urbanpulse.stack import StackInfo

S = 10**9


def test_the_late_incident_starts_after_a_fresh_lanes_warm_up() -> None:
    city = City.load()
    live = choose_live(city)
    incidents = [e for e in demo_events(city, live, 300.0) if e.type == "incident"]
    assert len(incidents) == 2
    early, late = sorted(incidents, key=lambda e: e.start_s)
    assert late.start_s - 300.0 == LATE_INCIDENT_S
    # every scored field of a live lane: no score before its warm-up'th value
    warmup = max(settings_for("traffic.loop", f).warmup for f in ("occupancy_pct", "speed_kmh"))
    assert warmup * COUNTER_INTERVAL_S + 60 <= LATE_INCIDENT_S
    # not the lane that learnt the first incident as its usual traffic
    assert (late.site, late.node) != (early.site, early.node)


def test_matching_by_type_target_and_time() -> None:
    tb = TimeBase.create(datetime(2026, 1, 1, tzinfo=UTC), 7)
    t0 = tb.start_ns
    stuck = make_event("stuck", "s", "opd", "co2", 60, 3660, {}, "t")
    spike = make_event("pollution_spike", "s", "aq", None, 320, 2720, {}, "t")
    spikes = make_event("spikes", "s", "aq", "pm", 310, 2110, {}, "t")
    rain = make_event("rain", None, None, None, 0, 3600, {}, "t")
    rows = [
        # stuck found by its rule, nine minutes in; an anomaly on it does not count for it
        {"time": t0 + 600 * S, "site": "s", "node": "opd", "sensor": "co2", "type": "stuck"},
        {"time": t0 + 100 * S, "site": "s", "node": "opd", "sensor": "co2", "type": "anomaly"},
        # the pollution spike (a node's event): an anomaly of any sensor of the node
        {"time": t0 + 650 * S, "site": "s", "node": "aq", "sensor": "pm", "type": "anomaly"},
        # a spike of another sensor, and one before the event began: not it
        {"time": t0 + 400 * S, "site": "s", "node": "aq", "sensor": "pm-b", "type": "spike"},
        {"time": t0 + 300 * S, "site": "s", "node": "aq", "sensor": "pm", "type": "spike"},
    ]
    found = findings([stuck, spike, spikes, rain], tb, rows)
    assert [(f.event.type, f.found_ns) for f in found] == [
        ("stuck", t0 + 600 * S), ("pollution_spike", t0 + 650 * S), ("spikes", None)]
    lines = render(found, [make_event("incident", "s", "x", "lane", 1920, 2820, {}, "t")], tb, 300)
    assert lines[0].split() == ["stuck", "s/opd/co2", "from", "-4:00", "found", "at", "5:00",
                                "(stuck)"]
    assert lines[2].split()[-3:] == ["not", "found", "(yet)"]
    assert lines[3].split() == ["incident", "s/x/lane", "from", "27:00", "not", "begun:", "a",
                                "longer", "run"]


@pytest.mark.stack
def test_the_cloud_events_are_read_back_from_influxdb(db_ready: StackInfo) -> None:
    site = f"found-{time.monotonic_ns()}"
    start = datetime.now(UTC) - timedelta(minutes=10)
    tb = TimeBase.create(start, 7)
    stamp = tb.start_ns + 540 * S
    admin = db_ready.influx("admin")
    with InfluxHTTP(admin.url, admin.username, admin.password()) as client:
        client.write(f'events,site={site},node=opd,sensor=co2,kind=air.co2,type=stuck '
                     f'field="co2",value=493,delay_s=540 {stamp}'.encode(),
                     db=db_ready.database, rp="raw")
    reader = db_ready.influx("reader")
    with InfluxHTTP(reader.url, reader.username, reader.password()) as client:
        rows = read_cloud_events(client, db_ready.database, start)
    event = make_event("stuck", site, "opd", "co2", 60, 3660, {}, "t")
    (found,) = findings([event], tb, rows)
    assert found.found_ns == stamp
    (missed,) = findings([make_event("stuck", site, "opd", "pm", 60, 3660, {}, "t")], tb, rows)
    assert missed.found_ns is None
