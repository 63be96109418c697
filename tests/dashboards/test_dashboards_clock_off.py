"""The "Node clock off" alert and the "Clock offset per node" panel, on the real InfluxDB.

Aggregates, the ledger and the alerts reading them are in node time (docs/runbook.md, "A node
whose clock is off" under "Missing data" and "PM2.5 high"), and a clock_jump event flags a
clock that jumps while the agent runs, not one that was off from the start. Every status is
stamped when the cloud received it and carries `clock_offset_s`, its own stamp minus that
reception: the rule fires when every status of the last 15 minutes says the clock is off by
more than 5 minutes, either way, from a node heard in at least 3 of the window's 5-minute
buckets.

Statuses go out live, QoS 1 (edge/publisher.py, never through the outbox), yet some reach the
cloud late, each then "off" by its delay: the heartbeat published while the link was dying,
sent again by paho at the reconnect right after the fresh "online" (paho calls on_connect
before it resends); the backlog the broker keeps for the ingest's session through an ingest
outage, handed over at once; a stopped node's retained status, re-delivered at a
re-subscription (since session 17 the ingest subscribes with retain handling 2 and leaves
a status flagged retained out of the journal, docs/gateway.md "A node that moves"; the rule
must not depend on that). None of them may fire it.

The statuses go the processor's way: journal records stamped on reception by the cloud's
clock, payloads as the agent encodes them (`encode_status`), decoded by `decode_record`,
heartbeats through the node's state, written by the real sink's writer. The rule's own query
text (the shipped provisioning file's) is run as Grafana would at the chosen moment: Grafana
cannot run here, so `interpolate` puts in $timeFilter for the rule's relative time range, as
`urbanpulse dashboards check` does, and the threshold is applied as its expression C would.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cloud.journal import JournalRecord
from cloud.logic.node import NodeState
from cloud.logic.records import decode_record
from tests.dashboards.conftest import Store
from urbanpulse.clock import from_epoch_ns, to_epoch_ns
from urbanpulse.dashboards.alerts import CLOCK_OFF_S, RULES, AlertRule
from urbanpulse.dashboards.city import data_health
from urbanpulse.dashboards.queries import TimeRange, interpolate, regex_value
from urbanpulse.wire import encode_status, status_topic

pytestmark = pytest.mark.stack

S = 10**9
MIN = 60 * S
HEARTBEAT = 30 * S
TRANSIT = 300_000_000  # a live status reaches the cloud 0.3 s after the node stamped it
PROVISIONING = Path(__file__).parents[2] / "dashboards" / "provisioning" / "alerting" / "urbanpulse.yaml"
_runs = itertools.count()


def _rule() -> AlertRule:
    (rule,) = [r for r in RULES if r.uid == "urbanpulse-node-clock-off"]
    # the query Grafana is provisioned with ($ written $$ in the provisioning file)
    assert rule.influxql.replace("$", "$$").replace('"', '\\"') in PROVISIONING.read_text()
    assert rule.threshold == CLOCK_OFF_S == 300
    return rule


def _values(store: Store, site: str, at_ns: int) -> dict[str, float]:
    """Per node of `site`: the last value of the rule's query (Grafana's reducer B) evaluated
    at `at_ns`; a node left out of the answer has no series (the rule is OK for it)."""
    rule = _rule()
    query = interpolate(rule.influxql, TimeRange.last(from_epoch_ns(at_ns), timedelta(seconds=rule.window_s),
                                                      timedelta(seconds=rule.window_end_s)), {})
    return {s["tags"]["node"]: float(s["values"][-1][1])
            for s in store.client.query(query, db=store.database) if s["tags"]["site"] == site}


def _fired(store: Store, site: str, at_ns: int) -> dict[str, bool]:
    rule = _rule()
    return {node: rule.fires(value) for node, value in _values(store, site, at_ns).items()}


def _site() -> str:
    return f"clock-off-{to_epoch_ns(datetime.now(UTC)) % 10**6}-{next(_runs)}"


def _take(store: Store, site: str, node: str, statuses: list[tuple[int, int, str]],
          started_ns: int) -> None:
    """One status message per (reception by the cloud's clock, stamp by the node's, state),
    in reception order, as the processor takes them; the agent started at `started_ns` by
    its own clock."""
    state = NodeState(6 * 60 * MIN, detect=True)
    points = []
    for k, (received, stamped, status) in enumerate(statuses):
        health = {"uptime_s": max(0, stamped - started_ns) // S, "outbox_depth": 0,
                  "readings_per_s": 1.0, "clock": {"jumps": 0, "synchronised": True}}
        rec = JournalRecord("i0", k + 1, received, status_topic(site, node),
                            encode_status(status, from_epoch_ns(stamped), health))
        data, out = decode_record(rec, 4096)
        assert [p for p in out if p[1].startswith("dead_letter")] == []
        points += out
        if data is not None:
            points += state.process(data)
    store.writer.write(points)
    assert store.writer.stats.refused_requests == 0


def _live(start_ns: int, end_ns: int, lead_ns: int) -> list[tuple[int, int, str]]:
    """Heartbeats every 30 s received from `start_ns` to `end_ns`, stamped by a clock
    `lead_ns` ahead of the cloud's (behind when negative)."""
    return [(t, t - TRANSIT + lead_ns, "online") for t in range(start_ns, end_ns + 1, HEARTBEAT)]


def _now() -> int:
    return to_epoch_ns(datetime.now(UTC).replace(microsecond=0))


LEADS = {"behind-10m": -10 * MIN, "ahead-10m": 10 * MIN, "right": 0, "behind-4m": -4 * MIN}


def test_fires_for_a_node_10_minutes_behind_or_ahead_not_for_a_right_clock(store: Store) -> None:
    """Four nodes started 20 minutes ago, each on its clock, heartbeats every 30 s."""
    site = _site()
    end = _now()
    start = end - 20 * MIN
    for node, lead in LEADS.items():
        _take(store, site, node, _live(start, end, lead), start + lead)

    assert _fired(store, site, end + 5 * S) == {"behind-10m": True, "ahead-10m": True, "right": False,
                                               "behind-4m": False}
    values = _values(store, site, end + 5 * S)
    # the smallest absolute offset: the clock's error, the transit less behind, more ahead
    assert values["behind-10m"] == pytest.approx(600.3)
    assert values["ahead-10m"] == pytest.approx(599.7)
    assert values["right"] == pytest.approx(0.3)
    assert values["behind-4m"] == pytest.approx(240.3)
    # Its price: statuses received over more than 5 minutes are needed (3 of the 5-minute
    # buckets): 4 minutes after the start none fires yet; by 15 minutes every one has.
    assert _fired(store, site, start + 4 * MIN) == {}
    assert _fired(store, site, start + 15 * MIN) == {
        "behind-10m": True, "ahead-10m": True, "right": False, "behind-4m": False}


def test_a_status_delivered_late_at_a_reconnect_does_not_fire_it(store: Store) -> None:
    """A node with a right clock whose link died 14 minutes ago: the heartbeat it published
    then (paho had it in flight, unacknowledged) is sent again at the reconnect 2 minutes
    ago, right after the fresh "online" of on_connect, and the cloud stamps it 12 minutes
    after its own stamp. The last status received says "12 minutes behind"; the rule looks
    at the smallest offset of the window and never fires."""
    site = _site()
    end = _now()
    start, lost, back = end - 40 * MIN, end - 14 * MIN, end - 2 * MIN
    statuses = _live(start, lost - HEARTBEAT, 0)
    statuses += [(back, back - TRANSIT, "online"), (back + 50_000_000, lost - TRANSIT, "online")]
    statuses += _live(back + HEARTBEAT, end, 0)
    _take(store, site, "reconnected", statuses, start)

    last = store.client.query(
        f"SELECT last(\"clock_offset_s\") FROM \"raw\".\"node_status\" WHERE \"site\" = '{site}' "
        f"AND time <= {back + S}", db=store.database)
    assert last[0]["values"][0][1] == pytest.approx(-720.35)  # what a `last` rule would take
    for at in range(start + 5 * MIN, end + 16 * MIN, MIN):
        assert not any(_fired(store, site, at).values()), from_epoch_ns(at)


def test_a_backlog_of_statuses_handed_over_at_once_does_not_fire_it(store: Store) -> None:
    """The ingest was down for 25 minutes (the broker kept its session) and is catching up:
    in the last minute it received the statuses a node with a right clock sent from 25 to 10
    minutes ago, all of them "off" by 10 to 24 minutes, 3 or more of them, and none on
    time yet. They came within a minute: not a clock that stays off."""
    site = _site()
    end = _now()
    sent = range(end - 25 * MIN, end - 10 * MIN + 1, HEARTBEAT)
    statuses = [(end - MIN + k * 2 * S, t - TRANSIT, "online") for k, t in enumerate(sent)]
    _take(store, site, "backlog", statuses, end - 25 * MIN)
    for at in (end - MIN + 5 * S, end, end + 5 * MIN):
        assert _values(store, site, at) == {}, from_epoch_ns(at)
    # a rule over the same statuses without the buckets would have fired
    (series,) = store.client.query(
        f"SELECT min(\"a\"), count(\"a\") FROM (SELECT abs(\"clock_offset_s\") AS \"a\" FROM "
        f"\"raw\".\"node_status\" WHERE \"site\" = '{site}')", db=store.database)
    assert series["values"][0][1:] == [pytest.approx(600.3), 31]


def test_a_stopped_nodes_retained_status_delivered_again_does_not_fire_it(store: Store) -> None:
    """A node stopped cleanly 2 days ago: its last status ("offline", with its health) is
    retained. Should a broker hand it to the ingest again anyway (the ingest asks for no
    retained messages and leaves flagged statuses out, but the rule must not rely on it),
    it is one status 2 days "behind"."""
    site = _site()
    end = _now()
    stopped = end - 2 * 24 * 60 * MIN
    _take(store, site, "stopped", [(end - MIN, stopped, "offline")], stopped - 3600 * S)
    assert _values(store, site, end) == {}


def test_clock_offset_panel_shows_each_nodes_offset_with_its_sign(store: Store) -> None:
    """The data-health dashboard's "Clock offset per node", its query as generated, run as
    Grafana would for the site over the last hour: each node's offset, below 0 behind."""
    site = _site()
    end = _now()
    for node, lead in LEADS.items():
        _take(store, site, node, _live(end - 20 * MIN, end, lead), end - 20 * MIN + lead)
    (panel,) = [p for p in data_health().panels if p.title == "Clock offset per node"]
    (query,) = panel.queries
    text = interpolate(query.influxql, TimeRange.last(from_epoch_ns(end + 5 * S), timedelta(hours=1)),
                       {"site": regex_value(site), "node": ".*"})
    shown = {s["tags"]["node"]: {round(v, 1) for _, v in s["values"] if v is not None}
             for s in store.client.query(text, db=store.database)}
    assert shown == {"behind-10m": {-600.3}, "ahead-10m": {599.7}, "right": {-0.3}, "behind-4m": {-240.3}}
