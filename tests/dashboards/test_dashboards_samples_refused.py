""""Samples refused" on the real InfluxDB: a driver whose samples its node refuses (the wire
contract refuses their values: a driver bug, the readings lost before the outbox) fires,
its summary naming the reason it refused most; a count that stays flat, an agent's restart
(its counts start again at 0) and a healthy driver do not.

The counts are counters since the agent's start, in each heartbeat's driver entry
(`refused`, 0 included, and `refused_reasons`), stored as `driver_status`. The heartbeats go
the processor's way (journal records stamped on reception by the cloud's clock, decoded, the
node's state, the real sink's writer). Grafana cannot run here: the rule's queries are run as
Grafana would send them (`interpolate` puts in $timeFilter for the rule's time range), its
reduce B and threshold C are `AlertRule.fires` on the last value per series, and the
summary's template is read for its thresholds and texts.
"""

from __future__ import annotations

import itertools
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
    REASON_NONE,
    REFUSAL_MEANING,
    REFUSAL_ORDER,
    REFUSED_REASON_QUERY,
    RULES,
    AlertRule,
)
from urbanpulse.dashboards.check import check_alerts
from urbanpulse.dashboards.queries import TimeRange, interpolate
from urbanpulse.wire import encode_status, status_topic
from urbanpulse.wire.values import REFUSAL_CODES

pytestmark = pytest.mark.stack

S = 10**9
BEAT = 30 * S
BEATS = 60  # 30 minutes of heartbeats, up to now
RESTART = 19  # the agent restarts at the 19th heartbeat before the last
BURST = 7  # a driver refuses its first samples at the 7th heartbeat before the last
PROVISIONING = Path(__file__).parents[2] / "dashboards" / "provisioning" / "alerting" / "urbanpulse.yaml"
_runs = itertools.count()


def _rule() -> AlertRule:
    (rule,) = [r for r in RULES if r.uid == "urbanpulse-samples-refused"]
    assert rule.note_influxql == REFUSED_REASON_QUERY
    return rule


def _entry(reasons: dict[str, int], *, older: bool = False) -> dict[str, Any]:
    """A driver's entry as the agent makes it: `refused` always (0 before any), its reasons
    once there are some; an agent before session 19 (`older`) sent neither before the first."""
    total = sum(reasons.values())
    entry: dict[str, Any] = {"driver": "x", "state": "running"}
    if total or not older:
        entry["refused"] = total
    if total:
        entry["refused_reasons"] = {code: n for code, n in reasons.items() if n}
    return entry


def _refused(k: int) -> dict[str, dict[str, int]]:
    """Each driver's refused samples by reason in the heartbeat k beats before the last."""
    n = BEATS - 1 - k  # heartbeats since the first
    since_restart = RESTART - k  # >= 0 from the restart on
    return {
        # 2.5 vehicles at every heartbeat
        "loop-bug": {"bad_count": n},
        # NaNs long ago, none since: the count stays where it was
        "pm-flat": {"bad_value": 40},
        # refused samples before the agent restarted, none since (0 again, and flat)
        "pm-restart": {"bad_value": 30, "unknown_field": 20} if since_restart < 0 else {},
        # the same, but the new run refused 3 before its first heartbeat, none after: that
        # first heartbeat's count is lost (the rule reads rises), so this does not fire
        "pm-restart-3": {"bad_value": 50} if since_restart < 0 else {"bad_value": 3},
        # a healthy driver, whose first refusals come late in its run, a burst of 4 NaNs
        "pm-burst": {"bad_value": 4} if k <= BURST else {},
        # the same burst from an agent that sent no count before the first refusal: the
        # burst is the counter's first point, no rise (its next refusal would fire)
        "older-burst": {"bad_value": 4} if k <= BURST else {},
        # two bugs: more unknown fields than NaNs
        "board-1": {"unknown_field": 2 * n, "bad_value": n},
        "pm-ok": {},
    }


def _take(store: Store, site: str, now: int) -> None:
    state = NodeState(6 * 3600 * S, detect=True)
    points = []
    for k in range(BEATS - 1, -1, -1):
        received = now - k * BEAT
        run = "0a1b2c3d" if k > RESTART else "9f8e7d6c"
        uptime = (BEATS - k) * 30 if k > RESTART else (RESTART - k) * 30 + 5
        drivers = {sensor: _entry(reasons, older=sensor.startswith("older-"))
                   for sensor, reasons in _refused(k).items()}
        health: dict[str, Any] = {
            "run_id": run, "uptime_s": uptime, "clock": {"jumps": 0}, "drivers": drivers}
        rec = JournalRecord("i0", BEATS - k, received, status_topic(site, "pi"),
                            encode_status("online", from_epoch_ns(received - S // 4), health))
        data, out = decode_record(rec, 4096)
        assert not [text for _, text in out if text.startswith("dead_letter")]
        points += out
        if data is not None:
            points += state.process(data)
    store.writer.write(points)
    assert store.writer.stats.refused_requests == 0


def _last_values(store: Store, site: str, influxql: str, now: int) -> dict[str, float]:
    """Per driver: the last value of the query's series over the rule's time range at
    `now` (Grafana's reduce `last`, dropping nulls)."""
    rule = _rule()
    window = TimeRange.last(from_epoch_ns(now), timedelta(seconds=rule.window_s))
    out = {}
    for series in store.client.query(interpolate(influxql, window, {}), db=store.database):
        values = [v for _, v in series["values"] if v is not None]
        if values and series["tags"]["site"] == site:
            out[series["tags"]["sensor"]] = float(values[-1])
    return out


def _said(value: float | None) -> str:
    """The summary's reason as Grafana expands its template on a value of E (None: no
    series): the `lt` chain's thresholds and texts read from the rule."""
    summary = _rule().summary
    match = re.search(r"\{\{ with \$values\.E \}\}(.*)\{\{ else \}\}(.*?)\{\{ end \}\}"
                      r"\{\{ else \}\}(.*?)\{\{ end \}\}$", summary)
    assert match is not None, summary
    chain, otherwise, missing = match.groups()
    if value is None:
        return missing
    branches = re.findall(r"\{\{ (?:else )?if lt \.Value ([\d.]+) \}\}([^{]*)", chain)
    assert len(branches) == len(REFUSAL_ORDER), chain
    for threshold, text in branches:
        if value < float(threshold):
            return text
    return otherwise


def test_fires_for_rising_refusals_not_for_a_flat_count_or_a_restart(store: Store) -> None:
    site = f"refused-{to_epoch_ns(datetime.now(UTC)) % 10**6}-{next(_runs)}"
    now = to_epoch_ns(datetime.now(UTC).replace(microsecond=0))
    _take(store, site, now)
    rule = _rule()
    values = _last_values(store, site, rule.influxql, now)
    # 15 minutes hold 31 heartbeats (both ends included): 30 rises. Only the drivers whose
    # count rose answer: a flat count, the restarts, an older agent's first burst and the
    # healthy driver are no series (no alert instance in Grafana)
    assert values == {"loop-bug": 30, "pm-burst": 4, "board-1": 30 * 3}
    fired = {sensor: rule.fires(v) for sensor, v in values.items()}
    assert fired == {"loop-bug": True, "pm-burst": True, "board-1": True}
    # the summary's query answers every driver the rule's does (else Grafana: no data)
    reasons = _last_values(store, site, rule.note_influxql, now)
    assert set(reasons) == set(_refused(0))
    said = {sensor: _said(reasons[sensor]) for sensor, firing in fired.items() if firing}
    assert said == {"loop-bug": f"bad_count: {REFUSAL_MEANING['bad_count']}",
                    "pm-burst": f"bad_value: {REFUSAL_MEANING['bad_value']}",
                    "board-1": f"unknown_field: {REFUSAL_MEANING['unknown_field']}"}
    assert reasons["pm-ok"] == REASON_NONE
    assert _said(REASON_NONE).startswith("no reason stored")
    assert _said(None) == "no reason stored"
    # `urbanpulse dashboards check` runs both queries too
    checked = {r.where: r for r in check_alerts(store.client, store.database, from_epoch_ns(now))
               if r.where.startswith("alert urbanpulse-samples-refused")}
    assert set(checked) == {"alert urbanpulse-samples-refused",
                            "alert urbanpulse-samples-refused / D (summary)"}
    assert all(r.ok for r in checked.values()), checked


def test_the_summary_reads_each_code_back_from_its_number() -> None:
    """Every refusal code the node counts by has its place in the reason's number and its
    text in the template, read back from the place the query gives it."""
    assert set(REFUSAL_ORDER) == REFUSAL_CODES == set(REFUSAL_MEANING)
    for place, code in enumerate(REFUSAL_ORDER, start=1):
        assert f'last("refused_{code}") * {len(REFUSAL_ORDER) + 1} + {place} AS' in REFUSED_REASON_QUERY
        assert _said(float(place)) == f"{code}: {REFUSAL_MEANING[code]}"


def test_the_provisioned_rule_names_node_driver_and_reason_and_its_runbook_section() -> None:
    (provisioned,) = [r for r in yaml.safe_load(PROVISIONING.read_text())["groups"][0]["rules"]
                      if r["uid"] == "urbanpulse-samples-refused"]
    assert provisioned["condition"] == "C"
    data = {d["refId"]: d for d in provisioned["data"]}
    assert list(data) == ["A", "B", "C", "D", "E"]
    assert data["C"]["model"]["conditions"][0]["evaluator"] == {"type": "gt", "params": [0]}
    assert data["D"]["relativeTimeRange"] == data["A"]["relativeTimeRange"] == {"from": 900, "to": 0}
    assert data["E"]["model"]["expression"] == "D"
    summary = provisioned["annotations"]["summary"]
    for part in ("$$labels.site", "$$labels.node", "$$labels.sensor", "$$values.B", "$$values.E"):
        assert part in summary
    assert 'docs/runbook.md, "Samples refused"' in provisioned["annotations"]["description"]
