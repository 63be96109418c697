"""The outage benchmark: its messages are the edge's (same readings on time and as a backlog,
fresh first, then the backlog oldest first in full messages), and one tiny case runs
through the real sink on its own InfluxDB. No timing is asserted."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

from bench.pipeline.backlog import compare, run_case
from bench.pipeline.outage import OutagePlan, Sent, messages
from urbanpulse.wire import decode_batch

PLAN = OutagePlan(datetime(2026, 10, 1, tzinfo=UTC), before_h=1, outage_h=8, after_h=1)


def _readings(sent: list[Sent]) -> dict[str, list[tuple[str, int]]]:
    """(sensor, seq) of every reading, per topic, in the order sent."""
    out: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for m in sent:
        node = m.topic.split("/")[3]
        site = m.topic.split("/")[2]
        batch = decode_batch(m.payload, site=site, node=node, now_ns=m.received_ns + 10**15)
        out[m.topic] += [(r.sensor, r.seq) for r in batch.readings]
    return out


def test_backlog_sends_the_same_readings_fresh_first_then_oldest_first_in_full_messages() -> None:
    on_time, backlog = messages(PLAN, backlog=False), messages(PLAN, backlog=True)
    assert on_time.warmup == backlog.warmup
    assert on_time.measured_readings == backlog.measured_readings > 0
    assert {t: sorted(rs) for t, rs in _readings(on_time.measured).items()} == \
        {t: sorted(rs) for t, rs in _readings(backlog.measured).items()}
    assert [m.received_ns for m in backlog.measured] == sorted(m.received_ns for m in backlog.measured)
    assert max(m.readings for m in on_time.measured) < 500  # a second's readings at a time
    for topic in {m.topic for m in backlog.measured}:
        mine = [m for m in backlog.measured if m.topic == topic]
        held = [m for m in mine if m.received_ns < backlog.back_ns + 10**9 * 60 and m.readings == 500]
        if not held:
            continue
        fresh = [m for m in mine if m.received_ns == backlog.back_ns]  # the live window's readings
        assert mine[:len(fresh)] == fresh  # go first
        stamps = [json.loads(m.payload)["readings"][0]["ts"] for m in held]
        assert stamps == sorted(stamps)  # oldest first


def test_a_tiny_outage_runs_through_the_real_sink_and_ends_as_on_time(tmp_path: Path) -> None:
    plan = OutagePlan(PLAN.start, before_h=1, outage_h=7, after_h=0)
    outcomes = {}
    for backlog in (False, True):
        name = "backlog" if backlog else "on-time"
        outcomes[name] = run_case(plan, backlog, 0.5, tmp_path / name, 120.0, tmp_path / f"{name}.json")
    assert all(o.complete for o in outcomes.values())
    assert outcomes["on-time"].domain_replays == outcomes["on-time"].reads == 0
    late = outcomes["backlog"]
    assert late.domain_replays > 0
    assert late.windows_rebuilt > 0
    assert late.rows_read > 0
    diff = compare(tmp_path / "on-time.json", tmp_path / "backlog.json")
    assert {k: v for k, v in diff.items() if k != "rounding"} == \
        {"differ": 0, "only_on_time": 0, "only_backlog": 0}
