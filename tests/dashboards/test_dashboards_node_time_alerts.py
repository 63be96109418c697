""""PM2.5 high" and "Missing data" on a node whose clock is off, on the real InfluxDB: what
docs/runbook.md says of them under those alerts.

Both rules read what is stamped in event time (the node's clock): the 1-minute aggregates of
the last hour, the ledger's hours from 3 to 1 hours back. Unlike a fault event (stamped at
its reception when its reading comes out of the Sensor fault rule's reach), an aggregate or
a ledger hour is the hour the air was measured or the readings were numbered in, and stays
so. So a node whose clock is behind by more than the rule's window never shows in it, and
one ahead shows in it only when the cloud's clock reaches its stamps: the rule fires that
much late.

The messages go the processor's way (journal records stamped on reception by the cloud's
clock, decoded, the node's state, the real sink's writer); the rules' own query texts are
run as Grafana would at the cloud's clock (Grafana cannot run here: `interpolate` puts in
$timeFilter for the rule's relative time range). "Missing data" has `now()` in its text too,
InfluxDB's own: it is evaluated at the present only.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from cloud.journal import JournalRecord
from cloud.logic.node import NodeState
from cloud.logic.records import NodeData, decode_record
from tests.dashboards.conftest import Store
from urbanpulse.clock import from_epoch_ns, to_epoch_ns
from urbanpulse.dashboards.alerts import RULES
from urbanpulse.dashboards.queries import TimeRange, interpolate
from urbanpulse.wire import Reading, data_topic, encode_batch

pytestmark = pytest.mark.stack

S = 10**9
MIN = 60 * S
HOUR = 60 * MIN
_runs = itertools.count()


def _fired(store: Store, uid: str, site: str, at_ns: int) -> dict[str, bool]:
    """Per node of `site`: whether the rule `uid` fires, evaluated at `at_ns`."""
    (rule,) = [r for r in RULES if r.uid == uid]
    query = interpolate(rule.influxql, TimeRange.last(from_epoch_ns(at_ns), timedelta(seconds=rule.window_s),
                                                      timedelta(seconds=rule.window_end_s)), {})
    return {s["tags"]["node"]: rule.fires(float(s["values"][-1][1]))
            for s in store.client.query(query, db=store.database) if s["tags"]["site"] == site}


def _take(store: Store, site: str, node: str, readings: list[tuple[int, Reading]]) -> None:
    """One message per (reception, reading), through the node's state to the sink."""
    state = NodeState(6 * HOUR, detect=False)
    points = []
    for k, (received, reading) in enumerate(readings):
        rec = JournalRecord("i0", k + 1, received, data_topic(site, node),
                            encode_batch(site, node, [reading]))
        data, dead = decode_record(rec, 4096)
        assert dead == []
        assert isinstance(data, NodeData)
        points += state.process(data)
    store.writer.write(points)
    assert store.writer.stats.refused_requests == 0


LEADS = {"behind-2h": -2 * HOUR, "behind-30m": -30 * MIN, "right": 0, "ahead-2h": 2 * HOUR}


def test_pm25_high_never_fires_for_a_node_over_an_hour_behind_and_fires_late_for_one_ahead(
        store: Store) -> None:
    """PM2.5 clean (10) for 2 hours, then 80 for 2 hours up to now, every minute."""
    site = f"pm-clock-{to_epoch_ns(datetime.now(UTC)) % 10**6}-{next(_runs)}"
    now = to_epoch_ns(datetime.now(UTC).replace(microsecond=0))
    for node, lead in LEADS.items():
        _take(store, site, node, [
            (t + 2 * S, Reading("pm-1", "air.pm", t + lead, k, {"pm25": 10.0 if t < now - 2 * HOUR else 80.0,
                                                                 "pm10": 20.0}))
            for k, t in enumerate(range(now - 4 * HOUR, now, MIN))])
    # behind by 30 min: the last half hour of readings, high; behind by 2 h: none yet (their
    # stamps reach this hour in an hour's time, when the node has moved on); 2 h ahead:
    # the clean readings of 2 hours ago
    assert _fired(store, "urbanpulse-pm25-high", site, now) == {
        "right": True, "behind-30m": True, "ahead-2h": False}
    # the rule sees the node ahead's high hour 2 hours late (its stamps are stored already)
    assert _fired(store, "urbanpulse-pm25-high", site, now + 2 * HOUR)["ahead-2h"] is True


def test_missing_data_never_fires_for_a_node_3_hours_behind(store: Store) -> None:
    """Readings every minute for 5 hours up to now, 10 numbers skipped in the middle of an
    hour of each node's clock (a gap at an hour's edge counts in no hour of the ledger): on
    the nodes right and 30 min behind, the hour that began 2 to 3 hours ago; on the node 3
    hours behind, the hour its clock showed then. Evaluated now: the hours 3 to 1 back."""
    site = f"ledger-clock-{to_epoch_ns(datetime.now(UTC)) % 10**6}-{next(_runs)}"
    now = to_epoch_ns(datetime.now(UTC).replace(microsecond=0))
    hour = (now - 2 * HOUR) // HOUR * HOUR  # within [now - 3h, now - 1h] whatever the minute
    for node, lead, gap in (("right", 0, hour), ("behind-30m", -30 * MIN, hour),
                            ("behind-3h", -3 * HOUR, hour - 3 * HOUR)):
        _take(store, site, node, [
            (t + 2 * S, Reading("pm-1", "air.pm", t + lead, k, {"pm25": 10.0 + k % 7, "pm10": 20.0}))
            for k, t in enumerate(range(now - 5 * HOUR, now, MIN))
            if not gap + 20 * MIN <= t + lead < gap + 30 * MIN])
    fired = _fired(store, "urbanpulse-missing-data", site, now)
    assert fired.get("right") is True
    assert fired.get("behind-30m") is True
    # its ledger has the 10 missing, in an hour before the window now, and every later
    # window starts later still
    assert fired.get("behind-3h") is not True
    (series,) = store.client.query(
        f"SELECT \"missing\" FROM \"agg_1h\".\"ledger\" WHERE \"site\" = '{site}' "
        "AND \"node\" = 'behind-3h' AND \"missing\" > 0", db=store.database, epoch="ns")
    assert series["values"] == [[hour - 3 * HOUR, 10]]
