""""Bed pads stale" on the real InfluxDB: a ward some of whose pads went silent for over
2 h 10 min (cloud/logic/domain/hospital.py, STALE_NS) fires, a healthy ward does not, a
ward whose pads report only hourly answers at every evaluation of the pending period (its
rows come an hour apart), a pad back clears it, and a ward whose pads all fell silent is
not this rule's (docs/runbook.md, "Bed pads stale").

The readings go the processor's way (journal records stamped on reception by the cloud's
clock, decoded, the node's state, the hospital's step on its site updates, the real sink's
writer). Grafana cannot run here: the rule's own query text is run as Grafana would send it
(`interpolate` puts in $timeFilter for the rule's relative time range), and the rule's
verdict is `AlertRule.fires` on the last value per series (its reduce B and threshold C);
Grafana's pending period (`for`) is shown by evaluating at every minute of it.
"""

from __future__ import annotations

import itertools
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from cloud.journal import JournalRecord
from cloud.logic.domain.hospital import STALE_NS
from cloud.logic.domain.hospital_site import HospitalSite
from cloud.logic.node import NodeState
from cloud.logic.records import NodeData, decode_record
from tests.dashboards.conftest import Store
from urbanpulse.clock import from_epoch_ns, to_epoch_ns
from urbanpulse.dashboards.alerts import RULES, AlertRule
from urbanpulse.dashboards.queries import TimeRange, interpolate
from urbanpulse.wire import Reading, data_topic, encode_batch

S = 10**9
MIN = 60 * S
HOUR = 60 * MIN
REPO = Path(__file__).resolve().parents[2]
UID = "urbanpulse-bed-pads-stale"
_runs = itertools.count()


def _rule() -> AlertRule:
    (rule,) = [r for r in RULES if r.uid == UID]
    return rule


def _beats(since: int, until: int, every: int, offset: int) -> list[int]:
    """A pad's stamps: every `every` from `since` + `offset`, before `until`."""
    return list(range(since + offset, until, every))


def _wards(now: int) -> dict[str, dict[str, list[int]]]:
    """ward -> pad -> its readings' stamps, over the 6 hours before `now`."""
    start, live = now - 6 * HOUR, (lambda offset: _beats(now - 6 * HOUR, now, MIN, offset))
    return {
        "ward-ok": {"bed-1": live(3 * S), "bed-2": live(7 * S), "bed-3": live(11 * S)},
        # bed-3 last heard 3 hours ago: stale for the last 50 minutes
        "ward-lost": {"bed-1": live(3 * S), "bed-2": live(7 * S),
                      "bed-3": _beats(start, now - 3 * HOUR, MIN, 11 * S)},
        # pads at the longest heartbeat, 3600 s, the last 55 minutes ago: a row an hour;
        # bed-3 last heard 5 hours ago
        "ward-hourly": {"bed-1": _beats(start, now, HOUR, 5 * MIN),
                        "bed-2": _beats(start, now, HOUR, 5 * MIN + 4 * S),
                        "bed-3": _beats(start, now - 5 * HOUR, HOUR, 5 * MIN + 9 * S)},
        # bed-3 silent from 4 hours ago until 10 minutes ago
        "ward-back": {"bed-1": live(3 * S), "bed-2": live(7 * S),
                      "bed-3": [t for t in live(11 * S) if not now - 4 * HOUR < t < now - 10 * MIN]},
        # the whole ward silent for 3 h 30 min (its node off, or every pad's driver gone): its
        # last hour began more than 3 h 10 min ago whatever the minute of `now` (at 3 h, the
        # first minutes of an hour put it between the runbook's two limits)
        "ward-gone": {f"bed-{k}": _beats(start, now - 3 * HOUR - 30 * MIN, MIN, k * S)
                      for k in (1, 2, 3)},
    }


def _take(store: Store, site: str, now: int) -> None:
    """One message per ward and minute (its pads' readings of that minute), received a
    second after the minute's last, all wards in order of reception."""
    messages: list[tuple[int, str, list[Reading]]] = []
    for ward, pads in _wards(now).items():
        by_minute: dict[int, list[tuple[int, str]]] = {}
        for pad, stamps in pads.items():
            for t in stamps:
                by_minute.setdefault(t // MIN, []).append((t, pad))
        seq = itertools.count(1)
        for minute in sorted(by_minute):
            readings = [Reading(pad, "hospital.bed", t, next(seq), {"occupied": float(int(pad[-1]) % 2)})
                        for t, pad in sorted(by_minute[minute])]
            messages.append((max(r.ts_ns for r in readings) + S, ward, readings))
    states = {ward: NodeState(6 * HOUR, detect=False) for ward in _wards(now)}
    hospital = HospitalSite(6 * HOUR)
    points = []
    for offset, (received, ward, readings) in enumerate(sorted(messages, key=lambda m: m[0]), 1):
        rec = JournalRecord("i0", offset, received, data_topic(site, ward),
                            encode_batch(site, ward, readings))
        data, dead = decode_record(rec, 4096)
        assert dead == []
        assert isinstance(data, NodeData)
        points += states[ward].process(data)
        points += hospital.process(site, states[ward].take_site_updates())
    store.writer.write(points)
    assert store.writer.stats.refused_requests == 0


def _values(store: Store, site: str, at_ns: int) -> dict[str, float]:
    """Per ward of `site`: the last value of the rule's query evaluated at `at_ns` (its reduce B)."""
    rule = _rule()
    window = TimeRange.last(from_epoch_ns(at_ns), timedelta(seconds=rule.window_s))
    query = interpolate(rule.influxql, window, {})
    return {s["tags"]["node"]: float(s["values"][-1][1])
            for s in store.client.query(query, db=store.database) if s["tags"]["site"] == site}


def _fired(store: Store, site: str, at_ns: int) -> dict[str, bool]:
    return {ward: _rule().fires(value) for ward, value in _values(store, site, at_ns).items()}


@pytest.mark.stack
def test_bed_pads_stale_fires_for_a_ward_with_a_silent_pad_and_not_a_healthy_one(store: Store) -> None:
    site = f"stale-pads-{to_epoch_ns(datetime.now(UTC)) % 10**6}-{next(_runs)}"
    now = to_epoch_ns(datetime.now(UTC).replace(microsecond=0))
    _take(store, site, now)

    assert _values(store, site, now) == {"ward-ok": 0, "ward-lost": 1, "ward-hourly": 1, "ward-back": 0}
    # the ward whose pads all fell silent has no row in the last 2 hours: not this rule's
    # (its node: "Node offline"); its hospital counts all its beds stale
    assert _fired(store, site, now) == {"ward-ok": False, "ward-lost": True, "ward-hourly": True,
                                        "ward-back": False}
    (hospital,) = store.client.query(
        f"SELECT last(\"stale\") FROM \"agg_1m\".\"hospital_occupancy\" WHERE \"site\" = '{site}'",
        db=store.database)
    assert hospital["values"][-1][1] == 1 + 1 + 3

    # Grafana's pending period: the rule answers, and fires, at each of its evaluations (every
    # minute of the last 15 and more), though the hourly ward wrote its last row 55 minutes ago
    # and the one before an hour earlier; a ward missing from one evaluation would start again
    pending = int(_rule().pending.removesuffix("m")) * MIN
    for at in range(now - pending - 30 * MIN, now + 1, MIN):
        fired = _fired(store, site, at)
        assert fired["ward-lost"] is True, at
        assert fired["ward-hourly"] is True, at
        assert fired["ward-ok"] is False, at
    # ward-back fired until its bed-3 came back (10 minutes ago), not since
    assert _fired(store, site, now - 11 * MIN)["ward-back"] is True
    assert _fired(store, site, now - 9 * MIN)["ward-back"] is False
    # the lost pad is stale from 2 h 10 min after its last reading on, not before
    last_of_lost = _wards(now)["ward-lost"]["bed-3"][-1]
    assert _fired(store, site, last_of_lost + STALE_NS - MIN)["ward-lost"] is False
    assert _fired(store, site, last_of_lost + STALE_NS + 2 * MIN)["ward-lost"] is True


# The runbook's query of each pad's last hour ("Bed pads stale", "Which pads, since when")
WHICH_PADS = ('SELECT last("count") FROM "agg_1h"."hospital_bed"\n'
              '  WHERE "site" = \'bach-mai\' AND "node" = \'ward-5\' AND time > now() - 30d '
              'GROUP BY "sensor"')


@pytest.mark.stack
def test_the_runbooks_query_tells_which_pads_are_stale(store: Store) -> None:
    """A pad whose last hour began 3 h 10 min ago or earlier is stale, one whose last hour
    began less than 2 h 10 min ago is not, as the runbook says."""
    assert WHICH_PADS in (REPO / "docs" / "runbook.md").read_text(encoding="utf-8")
    site = f"which-pads-{to_epoch_ns(datetime.now(UTC)) % 10**6}-{next(_runs)}"
    now = to_epoch_ns(datetime.now(UTC).replace(microsecond=0))
    _take(store, site, now)
    told: dict[tuple[str, str], bool] = {}
    for ward, pads in _wards(now).items():
        query = WHICH_PADS.replace("bach-mai", site).replace("ward-5", ward)
        last_hours = {s["tags"]["sensor"]: int(s["values"][-1][0])
                      for s in store.client.query(query, db=store.database, epoch="ns")}
        assert set(last_hours) == set(pads)
        for pad, hour in last_hours.items():
            stale = pads[pad][-1] < now - STALE_NS
            if hour <= now - STALE_NS - HOUR:
                told[ward, pad] = True
                assert stale, (ward, pad)
            elif hour > now - STALE_NS:
                told[ward, pad] = False
                assert not stale, (ward, pad)
    assert told[("ward-hourly", "bed-3")] is True
    assert told[("ward-gone", "bed-1")] is True
    assert told[("ward-ok", "bed-1")] is False
    assert told[("ward-back", "bed-3")] is False


def test_the_rule_in_the_alert_file_names_hospital_ward_and_its_runbook_section() -> None:
    """The committed provisioning file (what Grafana loads; it cannot run here), its
    runbook section and the dashboards README's list of rules."""
    text = (REPO / "dashboards" / "provisioning" / "alerting" / "urbanpulse.yaml").read_text(encoding="utf-8")
    (group,) = yaml.safe_load(text)["groups"]
    (rule,) = [r for r in group["rules"] if r["uid"] == UID]
    assert rule["title"] == "Bed pads stale"
    assert rule["for"] == "15m"
    assert rule["noDataState"] == "OK"
    assert rule["labels"] == {"severity": "warning", "team": "urbanpulse"}
    query, reduce, threshold = (d["model"] for d in rule["data"])
    assert query["query"] == ('SELECT last("stale") FROM "agg_1m"."ward_occupancy" WHERE $$timeFilter '
                              'GROUP BY "site", "node"')
    assert rule["data"][0]["relativeTimeRange"] == {"from": 7200, "to": 0}
    assert (reduce["reducer"], threshold["conditions"][0]["evaluator"]) == (
        "last", {"type": "gt", "params": [0]})
    summary = rule["annotations"]["summary"]
    assert "Hospital {{ $$labels.site }}, ward {{ $$labels.node }}" in summary
    assert "{{ $$values.B }}" in summary
    assert rule["annotations"]["description"].endswith('Runbook: docs/runbook.md, "Bed pads stale".')

    runbook = (REPO / "docs" / "runbook.md").read_text(encoding="utf-8")
    assert re.search(r"^## Bed pads stale$", runbook, flags=re.MULTILINE)
    # the hospitals dashboard's panels name this section
    assert re.search(r"^## A stale bed pad$", runbook, flags=re.MULTILINE)
    readme = (REPO / "dashboards" / "README.md").read_text(encoding="utf-8")
    assert "| Bed pads stale |" in readme
    assert "bed pads stale" in readme.split("`provisioning/alerting/urbanpulse.yaml`", 1)[1].split("\n")[0]
