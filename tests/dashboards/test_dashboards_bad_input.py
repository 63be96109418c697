""""Bad input per sensor" and "Sensor link errors" on the real InfluxDB: a sensor on a bad
serial link shows and fires, a healthy one does not, and a restart of the node's agent (its
counts start again at 0) neither shows as a negative rise nor fires. The samples a node
refused (a driver bug) show as their own series, and never fire the link's alert.

The drivers' counts of bad input are counters since the agent's start, in each heartbeat
(`driver_status`). The heartbeats go the processor's way (journal records stamped on
reception by the cloud's clock, decoded, the node's state, the real sink's writer). Grafana
cannot run here: the panel's and the rule's own query texts are run as Grafana would send
them (`interpolate` puts in $timeFilter, $__interval and the variables), and the rule's
verdict is `AlertRule.fires` on the last value per series (its reduce B and threshold C).
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cloud.journal import JournalRecord
from cloud.logic.node import NodeState
from cloud.logic.records import decode_record
from tests.dashboards.conftest import Store
from urbanpulse.clock import from_epoch_ns, to_epoch_ns
from urbanpulse.dashboards.alerts import LINK_ERRORS_MAX, RULES
from urbanpulse.dashboards.city import data_health
from urbanpulse.dashboards.queries import TimeRange, interpolate, regex_value
from urbanpulse.wire import encode_status, status_topic

pytestmark = pytest.mark.stack

S = 10**9
BEAT = 30 * S
BEATS = 60  # 30 minutes of heartbeats, up to now
RESTART = 19  # the agent restarts at the 19th heartbeat before the last
_runs = itertools.count()


def _counts(k: int) -> dict[str, dict[str, int]]:
    """Each driver's `bad_input` in the heartbeat k beats before the last."""
    n = BEATS - 1 - k  # heartbeats since the first
    since_restart = RESTART - k  # >= 0 from the restart on
    return {
        # a bad cable: a corrupt SDS011 frame per heartbeat (a checksum error, its 11 bytes)
        "pm-bad": {"checksum_errors": n, "bytes_skipped": 11 * n, "malformed": 0},
        "pm-ok": {"checksum_errors": 0, "bytes_skipped": 0, "malformed": 0},
        # a sensor whose link went bad long ago, its counts high and still; the agent restarts
        # and counts from 0 again, a byte now and then
        "pm-restart": ({"checksum_errors": 400, "bytes_skipped": 5000, "malformed": 2}
                       if since_restart < 0 else
                       {"checksum_errors": 0, "bytes_skipped": since_restart, "malformed": 0}),
        # a board losing 5 sentences per heartbeat
        "board-1": {"checksum_errors": 0, "bytes_skipped": 0, "malformed": 0,
                    "lost_sentences": 5 * n, "door_gaps": 0, "ignored": 0, "uneven_intervals": 0},
        # a kiosk's glitches: bad input, not the link's
        "kiosk-1": {"glitches": 10 * n, "empty_calls": 0},
    }


def _refused(k: int) -> dict[str, dict[str, Any]]:
    """The samples each driver emitted that its agent refused (a driver bug: the node drops
    them before its outbox, so no dead letter tells of them), in the heartbeat k beats before
    the last: counters since the agent's start, as `bad_input`."""
    n = BEATS - 1 - k
    since_restart = RESTART - k
    lost = 50 if since_restart < 0 else since_restart
    return {
        # a healthy link, a driver emitting a NaN twice per heartbeat
        "pm-ok": {"refused": 2 * n, "refused_reasons": {"bad_value": 2 * n}},
        # a loop's driver counting no bad input, emitting 2.5 vehicles now and then
        "loop-bug": {"refused": lost, "refused_reasons": {"bad_count": lost}},
    }


def _take(store: Store, site: str, now: int) -> None:
    state = NodeState(6 * 3600 * S, detect=True)
    points = []
    for k in range(BEATS - 1, -1, -1):
        received = now - k * BEAT
        run = "0a1b2c3d" if k > RESTART else "9f8e7d6c"
        uptime = (BEATS - k) * 30 if k > RESTART else (RESTART - k) * 30 + 5
        drivers: dict[str, dict[str, Any]] = {
            sensor: {"state": "running", "bad_input": counts} for sensor, counts in _counts(k).items()}
        for sensor, refused in _refused(k).items():
            drivers[sensor] = {"state": "running", **drivers.get(sensor, {}), **refused}
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


def _fired(store: Store, site: str, now: int) -> tuple[dict[str, float], dict[str, bool]]:
    (rule,) = [r for r in RULES if r.title == "Sensor link errors"]
    window = TimeRange.last(from_epoch_ns(now), timedelta(seconds=rule.window_s))
    query = interpolate(rule.influxql, window, {})
    values = {s["tags"]["sensor"]: float(s["values"][-1][1])
              for s in store.client.query(query, db=store.database) if s["tags"]["site"] == site}
    return values, {sensor: rule.fires(v) for sensor, v in values.items()}


def test_sensor_link_errors_fires_for_a_bad_link_only_and_not_at_a_restart(store: Store) -> None:
    site = f"link-{to_epoch_ns(datetime.now(UTC)) % 10**6}-{next(_runs)}"
    now = to_epoch_ns(datetime.now(UTC).replace(microsecond=0))
    _take(store, site, now)
    values, fired = _fired(store, site, now)
    # 15 minutes hold 31 heartbeats (both ends included): 30 rises
    assert values == {"pm-bad": 30 * 12, "pm-ok": 0, "board-1": 30 * 5,
                      # the restart's fall left out: only what it counted since
                      "pm-restart": RESTART}
    assert fired == {"pm-bad": True, "pm-ok": False, "board-1": True, "pm-restart": False}
    assert RESTART < LINK_ERRORS_MAX < 30 * 5


def _panel(store: Store, site: str, time_range: TimeRange) -> list[dict[str, dict[int, float]]]:
    """Each query of "Bad input per sensor" (data health) for `site`: sensor -> {ms: value}."""
    (panel,) = [p for p in data_health().panels if p.title == "Bad input per sensor"]
    out = []
    for query in panel.queries:
        text = interpolate(query.influxql, time_range, {"site": regex_value(site), "node": ".*"})
        out.append({s["tags"]["sensor"]: {int(t): float(v) for t, v in s["values"]}
                    for s in store.client.query(text, db=store.database, epoch="ms")})
    return out


def test_bad_input_per_sensor_shows_rises_never_a_restarts_fall(store: Store) -> None:
    site = f"bad-{to_epoch_ns(datetime.now(UTC)) % 10**6}-{next(_runs)}"
    now = to_epoch_ns(datetime.now(UTC).replace(microsecond=0))
    _take(store, site, now)
    time_range = TimeRange.last(from_epoch_ns(now + S), timedelta(hours=1))
    assert time_range.interval() == "10s"  # one heartbeat per bucket at most
    link, other, refused = _panel(store, site, time_range)
    # every heartbeat after the first: its rise, at its bucket; the healthy sensor not shown
    assert set(link) == {"pm-bad", "board-1", "pm-restart"}
    assert sum(link["pm-bad"].values()) == (BEATS - 1) * 12
    assert sum(link["board-1"].values()) == (BEATS - 1) * 5
    assert sum(link["pm-restart"].values()) == RESTART
    assert all(v >= 0 for series in link.values() for v in series.values())
    assert max(link["pm-bad"].values()) == 12
    assert other == {"kiosk-1": other["kiosk-1"]}
    assert sum(other["kiosk-1"].values()) == (BEATS - 1) * 10
    # the samples the node refused, a series of their own: a healthy link's driver among them
    assert set(refused) == {"pm-ok", "loop-bug"}
    assert sum(refused["pm-ok"].values()) == (BEATS - 1) * 2
    assert sum(refused["loop-bug"].values()) == RESTART
    assert all(v >= 0 for series in refused.values() for v in series.values())
    # a sensor filter of the dashboard's node variable: another node's shows nothing
    (panel,) = [p for p in data_health().panels if p.title == "Bad input per sensor"]
    text = interpolate(panel.queries[0].influxql, time_range,
                       {"site": regex_value(site), "node": regex_value("another")})
    assert store.client.query(text, db=store.database) == []
