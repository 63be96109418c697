"""The demo summary's queue lines, read back from the real InfluxDB of the session: a
department's kiosk readings from the simulator go through the cloud's own rollup classes
(as the dataflow runs them), are written to agg_1h, and `collect` + `render` show this
hour's exams and waits."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from cloud.config import Retention
from cloud.initdb import init_db
from cloud.logic.domain.node import DomainNode
from urbanpulse.demo.summary import QueueWait, Summary, collect, render
from urbanpulse.influx_http import InfluxHTTP
from urbanpulse.simulate import City, Simulation
from urbanpulse.stack import StackInfo

pytestmark = pytest.mark.stack

SITE = "summary-test"
HOUR_NS = 3600 * 10**9
FLAT = ", ".join(["1"] * 24)


def _city(utc_offset: int) -> City:
    # Open day and night, every day, so that the current hour always has exams: two
    # sampling desks at 1.1 min for 100 patients an hour, busy (92 %) but keeping up.
    return City.parse(f"""
[city]
name = "summary"
utc_offset_hours = {utc_offset}

[[district]]
id = "d"
name = "D"

[profiles]
outpatient_weekday = [{FLAT}]
outpatient_saturday = [{FLAT}]
outpatient_sunday = [{FLAT}]
outpatient_weekday_factors = [1, 1, 1, 1, 1, 1, 1]

[[hospital]]
site = "{SITE}"
name = "S"
district = "d"

[[hospital.paraclinical]]
node = "laboratory"
exams_per_day = 2400

[[hospital.paraclinical.kiosk]]
sensor = "kiosk-a"
share = 0.5
service_mean_min = 1.1
windows = [{{ start = "00:00", end = "24:00", counters = 1 }}]

[[hospital.paraclinical.kiosk]]
sensor = "kiosk-b"
share = 0.5
service_mean_min = 1.1
windows = [{{ start = "00:00", end = "24:00", counters = 1 }}]
""")


def test_summary_shows_this_hours_exams_and_waits_per_department(stack: StackInfo) -> None:
    now = datetime.now(UTC)
    hour_start = now.replace(minute=0, second=0, microsecond=0)
    # Local noon now, far from the day's end when tickets are renumbered; the run starts
    # at local midnight, so that every ticket called was issued within the run.
    sim = Simulation(_city(12 - now.hour), seed=2, start=hour_start - timedelta(hours=12))
    rollup = DomainNode(13 * HOUR_NS)
    points: list[str] = []
    hour_ns = int(hour_start.timestamp()) * 10**9
    issued: dict[tuple[str, int], int] = {}
    waits: list[float] = []
    for batch in sim.readings().run(sim.offset(now), step=600.0):
        new, _ = rollup.process(batch.site, batch.node, batch.readings)
        points += [line for policy, line in new if policy == "agg_1h"]
        for r in batch.readings:
            ticket = (r.sensor, int(r.values["ticket"]))
            if r.values["called"] == 0:
                issued[ticket] = r.ts_ns
            elif r.ts_ns >= hour_ns:
                waits.append((r.ts_ns - issued[ticket]) / 1e9)
    assert len(issued) > 1000  # twelve hours of 100 an hour

    admin = stack.influx("admin")
    with InfluxHTTP(admin.url, admin.username, admin.password()) as client:
        init_db(client, stack.database, Retention("30d", "400d", "INF"))
        client.write("\n".join(points).encode(), db=stack.database, rp="agg_1h")
    reader = stack.influx("reader")
    with InfluxHTTP(reader.url, reader.username, reader.password()) as client:
        summary = collect(client, stack.database)

    key = f"{SITE}/laboratory"
    if not waits:  # the hour began a moment ago: nothing called yet
        assert key not in summary.waits
        return
    wait = summary.waits[key]
    assert wait.served == len(waits)
    assert wait.median_s == pytest.approx(float(np.median(waits)), rel=1e-9)
    assert wait.p90_s == pytest.approx(float(np.quantile(waits, 0.9)), rel=1e-9)
    text = render(summary, 10.0, 30.0, departments={key})
    (row,) = [line for line in text.splitlines() if line.split()[:1] == [key]]
    assert row.split()[1:3] == ["exams", str(len(waits))]
    assert f"{np.median(waits) / 60:.1f} / " in row


def test_render_lists_queues_by_hospital_and_says_what_they_count() -> None:
    summary = Summary(waits={
        "bach-mai/opd-hall": QueueWait(412, 852.0, 1980.0),
        "bach-mai/imaging": QueueWait(95, 366.0, None),
        "viet-duc/laboratory": QueueWait(7, None, None),
    })
    text = render(summary, 5.0, None, departments={"bach-mai/imaging", "viet-duc/laboratory"})
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("hospital queues"))
    rows = [re.sub(r" +", " ", line.strip()) for line in lines[start + 1:start + 4]]
    assert rows == [
        "bach-mai/imaging exams 95 wait 6.1 / - min",
        "bach-mai/opd-hall patients 412 wait 14.2 / 33.0 min",
        "viet-duc/laboratory exams 7 wait - / - min",
    ]
    empty = render(Summary(), 5.0, None)
    assert "(no ticket called this hour)" in empty
