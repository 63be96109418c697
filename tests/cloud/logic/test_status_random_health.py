"""Status messages whose health is any JSON at all, built from the keys the agent's health
has (drivers, supervision, clock, uptime...) and values of every type: decoding them and
feeding them to a node's state (detection on, a tick after) raises nothing, each gives one
point (its `node_status`, or a dead letter), a `node_status` carries no NaN or infinity,
and no line a newline or an event's sensor tag that is no sensor id. test_status_input.py
has the crafted cases; this draws the shapes nobody thought of."""

from __future__ import annotations

import json
import math
from datetime import timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.journal import JournalRecord
from cloud.logic.node import NodeState
from cloud.logic.records import decode_record
from urbanpulse.clock import from_epoch_ns
from urbanpulse.wire.payload import SENSOR_ID

SITE, NODE = "hn-bachmai", "ward-1"
RECEIVED_NS = 1_795_000_000_000_000_000  # 2026-11-18T11:06:40Z
KEYS = ["uptime_s", "run_id", "clock", "jumps", "drivers", "supervision", "cable", "ready",
        "self_test", "blocked", "hours", "state", "outbox_depth", "outbox_oldest_age_s",
        "outbox_evicted", "readings_per_s", "cpu_temp_c", "pm-1", "door-main", "x", "since",
        "ts", "error", "bad_input", "bad_input_error", "glitches", "checksum_errors"]
ATOMS = (st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=8)
         | st.sampled_from(["ok", "cut", "online", "dead", "closed", "ready", "failed", "0a1b2c3d",
                            1e308, -0.0, 2**31, 10**400]))
HEALTH = st.recursive(ATOMS, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), inner, max_size=5),
                      max_leaves=30)
NUMBERS = st.sampled_from([math.nan, math.inf, -math.inf, 1e308, 10**400, -1, 2**31, 0.5, True])
# Mostly an object of the health's own keys, so that the odd values reach the fields read.
HEALTH_OBJECT = st.dictionaries(st.sampled_from(KEYS), NUMBERS | HEALTH, max_size=8)
STAMPS = st.sampled_from(["2026-11-18T09:00:01Z", "2026-11-18T09:00:31Z", "2020-01-01T00:00:00Z",
                          "2019-12-31T23:59:59Z", "2026-11-18T09Z"])


def _fields_are_finite(text: str) -> bool:
    """The numeric fields of a line with no string field holding a space or comma."""
    fields = text.split(" ")[1]
    for item in fields.split(","):
        value = item.split("=", 1)[1]
        if value.startswith('"') or value in ("true", "false"):
            continue
        if not math.isfinite(float(value.removesuffix("i"))):
            return False
    return True


@settings(max_examples=150, deadline=None, database=None)
@given(healths=st.lists(st.tuples(HEALTH_OBJECT | HEALTH, STAMPS), min_size=1, max_size=4))
def test_any_health_decodes_and_runs_through_a_node_state_without_harm(
        healths: list[tuple[Any, str]]) -> None:
    state = NodeState(600 * 10**9)
    lines: list[str] = []
    for i, (health, ts) in enumerate(healths):
        payload = json.dumps({"v": 1, "state": "online", "ts": ts, "health": health}).encode()
        received = RECEIVED_NS + i * 30 * 10**9
        data, points = decode_record(JournalRecord("i0", i, received,
                                                   f"urbanpulse/v1/{SITE}/{NODE}/status", payload), 4096)
        # its node_status (or a dead letter), then its drivers' counts, each a driver_status
        # point of a sensor id, and a dead letter if some were left out
        assert points[0][1].startswith(("node_status,", "dead_letter,"))
        if points[0][1].startswith("node_status,"):
            assert _fields_are_finite(points[0][1]), points[0][1]
        drivers = [text for _, text in points[1:] if text.startswith("driver_status,")]
        left_out = len(points) > 1 and points[-1][1].startswith("dead_letter,")
        assert len(drivers) + left_out == len(points) - 1
        for text in drivers:
            tags = dict(t.split("=", 1) for t in text.split(" ")[0].split(",")[1:])
            assert SENSOR_ID.fullmatch(tags["sensor"]), text
            assert all(v.endswith("i") for v in (f.split("=")[1] for f in text.split(" ")[1].split(",")))
        if data is not None:
            points += state.process(data)
        lines.extend(text for _, text in points)
    lines.extend(text for _, text in state.tick(from_epoch_ns(RECEIVED_NS) + timedelta(hours=2)))
    state.take_alerts()
    for text in lines:
        assert "\n" not in text
        if text.startswith("events,"):
            tags = dict(t.split("=", 1) for t in text.split(" ")[0].split(",")[1:])
            assert "sensor" not in tags or SENSOR_ID.fullmatch(tags["sensor"]), text
