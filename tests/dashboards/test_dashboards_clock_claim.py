"""What a node says of its clock, beside its offset: the "Node clock off" alert's summary and
the "Nodes now" table, on the real InfluxDB.

A clock 10 minutes off may be a node that never synchronised (no NTP server reached: the
agent reads the kernel's STA_UNSYNC flag and says `synchronised: false`) or one synchronised
to a wrong server (`true`); the fixes differ (docs/runbook.md, "Node clock off"). Each
heartbeat's word is stored as `clock_synchronised` in `node_status`; the alert rule carries
a second query (D), reduced to its last value per node (E), that its summary reads
(`$values.E`), its firing still decided by A alone (tests/dashboards/test_dashboards_clock_off.py).

Grafana cannot run here: the rule's queries are run as Grafana would at the chosen moment
(`interpolate` puts in $timeFilter for the rule's time range), reducers and thresholds
applied as its expressions would, and the summary's template is read for its thresholds.
Statuses go the processor's way (`encode_status`, `decode_record`, the node's state, the
sink's writer), each test in a database of its own.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from cloud.journal import JournalRecord
from cloud.logic.node import NodeState
from cloud.logic.records import decode_record
from tests.dashboards.conftest import Store
from urbanpulse.clock import from_epoch_ns, to_epoch_ns
from urbanpulse.dashboards.alerts import (
    CLAIM_NONE,
    CLAIM_SYNCED,
    CLAIM_UNSYNCED,
    CLOCK_CLAIM_QUERY,
    RULES,
    AlertRule,
)
from urbanpulse.dashboards.check import check_alerts
from urbanpulse.dashboards.city import data_health
from urbanpulse.dashboards.queries import TimeRange, interpolate, regex_value
from urbanpulse.wire import encode_status, status_topic

pytestmark = pytest.mark.stack

S = 10**9
MIN = 60 * S
HEARTBEAT = 30 * S
TRANSIT = 300_000_000
SITE = "clock-claim"
PROVISIONING = Path(__file__).parents[2] / "dashboards" / "provisioning" / "alerting" / "urbanpulse.yaml"

SYNCED: dict[str, Any] = {"jumps": 0, "synchronised": True}
UNSYNCED: dict[str, Any] = {"jumps": 0, "synchronised": False}
UNCHECKED: dict[str, Any] = {"jumps": 0, "synchronised": None}  # clock_check off
OLDER: dict[str, Any] = {"jumps": 0}  # an agent from before the check


def _rule() -> AlertRule:
    (rule,) = [r for r in RULES if r.uid == "urbanpulse-node-clock-off"]
    assert rule.note_influxql == CLOCK_CLAIM_QUERY
    return rule


def _now() -> int:
    return to_epoch_ns(datetime.now(UTC).replace(microsecond=0))


def _take(store: Store, node: str, start: int, end: int, lead: int, clock: dict[str, Any],
          switch: tuple[int, dict[str, Any]] | None = None) -> None:
    """Heartbeats every 30 s received from `start` to `end`, stamped by a clock `lead` ahead
    of the cloud's, each saying `clock` of it (from `switch`'s time on, its clock)."""
    state = NodeState(6 * 60 * MIN, detect=True)
    points = []
    for k, received in enumerate(range(start, end + 1, HEARTBEAT)):
        said = switch[1] if switch is not None and received >= switch[0] else clock
        stamped = received - TRANSIT + lead
        health = {"uptime_s": (received - start) // S, "outbox_depth": 0, "clock": said}
        rec = JournalRecord("i0", k + 1, received, status_topic(SITE, node),
                            encode_status("online", from_epoch_ns(stamped), health))
        data, out = decode_record(rec, 4096)
        points += out
        if data is not None:
            points += state.process(data)
    store.writer.write(points)
    assert store.writer.stats.refused_requests == 0


def _last_values(store: Store, influxql: str, at_ns: int) -> dict[str, float]:
    """Per node: the last value of the query's series, evaluated over the rule's time range
    at `at_ns` (Grafana's reduce `last`, dropping nulls)."""
    rule = _rule()
    text = interpolate(influxql, TimeRange.last(from_epoch_ns(at_ns), timedelta(seconds=rule.window_s),
                                                timedelta(seconds=rule.window_end_s)), {})
    out = {}
    for series in store.client.query(text, db=store.database):
        values = [v for _, v in series["values"] if v is not None]
        if values:
            out[series["tags"]["node"]] = float(values[-1])
    return out


def _said(value: float | None) -> str:
    """The summary's template on a value of E (None: no series), as Grafana expands it: its
    branches and thresholds read from the rule, so a change of either is seen here."""
    summary = _rule().summary
    match = re.search(r"\{\{ with \$values\.E \}\}\{\{ if gt \.Value ([\d.]+) \}\}(.*?)"
                      r"\{\{ else if gt \.Value ([\d.]+) \}\}(.*?)\{\{ else \}\}(.*?)\{\{ end \}\}"
                      r"\{\{ else \}\}(.*?)\{\{ end \}\}$", summary)
    assert match is not None, summary
    high, synced, low, unsynced, silent, missing = match.groups()
    if value is None:
        return missing
    if value > float(high):
        return synced
    return unsynced if value > float(low) else silent


# node -> (its clock's lead on the cloud's, what its heartbeats say of it)
NODES: dict[str, tuple[int, dict[str, Any]]] = {
    "wrong-server": (-10 * MIN, SYNCED),
    "no-ntp": (10 * MIN, UNSYNCED),
    "older": (-10 * MIN, OLDER),
    "unchecked": (10 * MIN, UNCHECKED),
    "right": (0, SYNCED),
}


def test_the_alert_says_whether_the_nodes_clock_claims_to_be_synchronised(store: Store) -> None:
    end = _now()
    for node, (lead, clock) in NODES.items():
        _take(store, node, end - 20 * MIN, end, lead, clock)
    at = end + 5 * S
    rule = _rule()
    fired = {node: rule.fires(v) for node, v in _last_values(store, rule.influxql, at).items()}
    assert fired == {"wrong-server": True, "no-ntp": True, "older": True, "unchecked": True,
                     "right": False}
    claims = _last_values(store, rule.note_influxql, at)
    assert claims == {"wrong-server": CLAIM_SYNCED, "no-ntp": CLAIM_UNSYNCED, "older": CLAIM_NONE,
                      "unchecked": CLAIM_NONE, "right": CLAIM_SYNCED}
    said = {node: _said(claims.get(node)) for node, firing in fired.items() if firing}
    assert "says it is synchronised" in said["wrong-server"]
    assert "wrong NTP server" in said["wrong-server"]
    assert "says it is NOT synchronised" in said["no-ntp"]
    assert "no NTP server" in said["no-ntp"]
    assert "does not say" in said["older"]
    assert "does not say" in said["unchecked"]
    assert "does not say" in _said(None)
    # `urbanpulse dashboards check` runs it too
    (checked,) = [r for r in check_alerts(store.client, store.database, from_epoch_ns(at))
                  if r.where == "alert urbanpulse-node-clock-off / D (summary)"]
    assert checked.ok, checked.error
    assert checked.series == len(NODES)


def test_it_takes_what_the_last_minute_said(store: Store) -> None:
    """A node 10 minutes behind that said "not synchronised" for 17 minutes, then
    "synchronised" (its chrony found a server, a wrong one): the summary says what it
    says now, not what it said most of the window."""
    end = _now()
    _take(store, "pi", end - 20 * MIN, end, -10 * MIN, UNSYNCED, switch=(end - 3 * MIN, SYNCED))
    _take(store, "pi-2", end - 20 * MIN, end, -10 * MIN, SYNCED, switch=(end - 3 * MIN, UNSYNCED))
    assert _last_values(store, _rule().note_influxql, end + 5 * S) == {
        "pi": CLAIM_SYNCED, "pi-2": CLAIM_UNSYNCED}


def test_a_fleet_that_never_says_still_answers_the_summary_query(store: Store) -> None:
    """Grafana takes a rule any of whose queries answers nothing as "no data" as a whole (and
    resolves its firing alerts): with only agents older than the check (or clock_check off
    everywhere) the summary's query must still answer every node the rule's query does."""
    end = _now()
    _take(store, "old-1", end - 20 * MIN, end, -10 * MIN, OLDER)
    _take(store, "old-2", end - 20 * MIN, end, 0, UNCHECKED)
    rule = _rule()
    answered = _last_values(store, rule.influxql, end + 5 * S)
    assert {n: rule.fires(v) for n, v in answered.items()} == {"old-1": True, "old-2": False}
    assert _last_values(store, rule.note_influxql, end + 5 * S) == {"old-1": CLAIM_NONE,
                                                                     "old-2": CLAIM_NONE}


def test_the_provisioned_rule_fires_on_a_alone_and_reduces_d_for_its_summary() -> None:
    (provisioned,) = [r for r in yaml.safe_load(PROVISIONING.read_text())["groups"][0]["rules"]
                      if r["uid"] == "urbanpulse-node-clock-off"]
    assert provisioned["condition"] == "C"
    data = {d["refId"]: d for d in provisioned["data"]}
    assert list(data) == ["A", "B", "C", "D", "E"]
    assert data["B"]["model"]["expression"] == "A"
    assert data["C"]["model"]["expression"] == "B"
    assert data["D"]["relativeTimeRange"] == data["A"]["relativeTimeRange"]
    assert data["D"]["model"]["query"] == CLOCK_CLAIM_QUERY.replace("$", "$$")
    assert data["E"]["model"] | {"datasource": None} == {
        "refId": "E", "type": "reduce", "expression": "D", "reducer": "last",
        "settings": {"mode": "dropNN"}, "datasource": None}
    assert "$$values.E" in provisioned["annotations"]["summary"]
    # every other rule without a summary's query is as it was: A, B, C only
    noted = {r.uid for r in RULES if r.note_influxql}
    others = [r for r in yaml.safe_load(PROVISIONING.read_text())["groups"][0]["rules"]
              if r["uid"] not in noted]
    assert others
    assert all([d["refId"] for d in r["data"]] == ["A", "B", "C"] for r in others)


def test_nodes_now_shows_whether_each_nodes_clock_is_synchronised(store: Store) -> None:
    end = _now()
    for node, (lead, clock) in NODES.items():
        _take(store, node, end - 5 * MIN, end, lead, clock)
    (panel,) = [p for p in data_health().panels if p.title == "Nodes now"]
    (query,) = panel.queries
    text = interpolate(query.influxql, TimeRange.last(from_epoch_ns(end + 5 * S), timedelta(hours=1)),
                       {"site": regex_value(SITE), "node": ".*"})
    shown = {}
    for series in store.client.query(text, db=store.database):
        row = dict(zip(series["columns"], series["values"][0], strict=True))
        shown[series["tags"]["node"]] = row["clock synchronised"]
    assert shown == {"wrong-server": True, "no-ntp": False, "older": None, "unchecked": None,
                     "right": True}
