"""A bed pad not heard for over 2 h 10 min is stale (docs/domain-rollups.md, "A bed that
stops reporting"): the hospitals dashboard shows it as such, per ward, and leaves it out of
the beds occupied and available, on the real InfluxDB (its own database, the sink's writer)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cloud.logic.domain.hospital_site import HospitalSite
from cloud.logic.domain.node import DomainNode
from tests.dashboards.conftest import Store
from urbanpulse.dashboards.city import hospitals
from urbanpulse.dashboards.queries import TimeRange, interpolate, regex_value
from urbanpulse.wire import Reading

pytestmark = pytest.mark.stack

SITE = "dash-stale"
MINUTE = 60 * 10**9
HORIZON = 6 * 60 * MINUTE


def _panel(store: Store, title: str, time_range: TimeRange) -> list[list[dict[str, object]]]:
    (panel,) = [p for p in hospitals().panels if p.title == title]
    values = {"site": regex_value(SITE), "node": ".*"}
    return [[dict(zip(s["columns"], row, strict=True)) for s in
             store.client.query(interpolate(q.influxql, time_range, values), db=store.database)
             for row in s["values"]] for q in panel.queries]


def test_a_pad_silent_for_hours_shows_stale_and_out_of_occupied(store: Store) -> None:
    now = datetime.now(UTC)
    t = int(now.timestamp()) * 10**9 - 5 * MINUTE
    # bed-2 (occupied) last heard 3 h ago, bed-1 (occupied) now: bed-2 is stale
    readings = [Reading("bed-2", "hospital.bed", t - 180 * MINUTE, 1, {"occupied": 1.0}),
                Reading("bed-1", "hospital.bed", t, 1, {"occupied": 1.0}),
                Reading("bed-3", "hospital.bed", t, 1, {"occupied": 0.0})]
    points, updates = DomainNode(HORIZON).process(SITE, "ward-5", readings)
    points += HospitalSite(HORIZON).process(SITE, updates)
    for policy in {rp for rp, _ in points}:
        store.client.write("\n".join(p for rp, p in points if rp == policy).encode(),
                           db=store.database, rp=policy)
    time_range = TimeRange.last(now + timedelta(minutes=1), timedelta(hours=6))

    ((ward,),) = _panel(store, "Beds per ward now", time_range)
    assert {k: ward.get(k) for k in ("occupied", "available", "faulty", "beds", "stale")} == \
        {"occupied": 1, "available": 1, "faulty": 0, "beds": 2, "stale": 1}
    ((occupied,),) = _panel(store, "Beds occupied", time_range)
    assert occupied["sum"] == 1
    (stale,) = _panel(store, "Stale bed pads per ward", time_range)
    assert [row["last"] for row in stale if row["last"] is not None][-1] == 1
    (pct,) = _panel(store, "Occupancy per hospital", time_range)
    assert [row["last"] for row in pct if row["last"] is not None][-1] == 50.0
