"""A door counter's reading with fault = 1 (a cut beam cable: its count "means nothing",
edge/drivers/door_counter/logic.py) leaves its hour undercounted: `door_flow` and
`hospital_flow` say how many such readings the hour holds (`faulty`, always written), live,
after a snapshot and in a replay from the raw points alike."""

from __future__ import annotations

import pickle
from typing import Any

from cloud.logic.domain.door_roles import DoorRoles
from cloud.logic.domain.hospital import HospitalNodeRollup
from cloud.logic.domain.hospital_site import HospitalSite
from cloud.logic.domain_replay import ReplaySpan, replay
from cloud.logic.node import NodeState
from cloud.logic.records import RP_RAW, NodeData
from tests.cloud.logic.domain_helpers import HOUR, MIN, T0, final, parse, rd, select
from urbanpulse.wire import Reading

DOOR = "hospital.door"


def _gate_hour() -> list[Reading]:
    """10 clean minutes of 10 people each, then 49 minutes with the beam's cable cut."""
    clean = [rd("gate-1", DOOR, T0 + m * MIN, count=10, interval_s=60, fault=0) for m in range(1, 11)]
    cut = [rd("gate-1", DOOR, T0 + m * MIN, count=0, interval_s=60, fault=1) for m in range(11, 60)]
    return clean + cut


def test_an_hour_with_faulty_door_readings_says_so_per_door_and_per_hospital() -> None:
    roll = HospitalNodeRollup(2 * HOUR)
    points, updates = roll.process("bv", "gate", _gate_hour())
    points += HospitalSite(2 * HOUR).process("bv", updates)
    row = {"er_arrivals": 0.0, "visits": 100.0, "faulty": 49}
    assert select(points, "agg_1h", "door_flow", site="bv", node="gate") == {T0: row}
    assert select(points, "agg_1h", "hospital_flow", site="bv") == {T0: row}


def test_faulty_is_always_written_and_summed_over_the_site_doors_that_count() -> None:
    roles = DoorRoles({"staff-1": "ignore"})
    er = HospitalNodeRollup(2 * HOUR, roles)
    p1, u1 = er.process("bv", "er", [
        rd("er-1", DOOR, T0 + MIN, count=2, interval_s=60),  # unsupervised: no fault field
        rd("er-1", DOOR, T0 + 2 * MIN, count=0, interval_s=60, fault=1),
        rd("staff-1", DOOR, T0 + 2 * MIN, count=0, interval_s=60, fault=1),  # ignored door
        rd("er-1", DOOR, T0 + HOUR + MIN, count=3, interval_s=60)])
    gate = HospitalNodeRollup(2 * HOUR, roles)
    p2, u2 = gate.process("bv", "gate", _gate_hour())
    points = p1 + p2 + HospitalSite(2 * HOUR).process("bv", u1 + u2)
    assert select(points, "agg_1h", "door_flow", site="bv", node="er") == {
        T0: {"er_arrivals": 2.0, "visits": 0.0, "faulty": 1},
        T0 + HOUR: {"er_arrivals": 3.0, "visits": 0.0, "faulty": 0}}
    assert select(points, "agg_1h", "hospital_flow", site="bv") == {
        T0: {"er_arrivals": 2.0, "visits": 100.0, "faulty": 50},
        T0 + HOUR: {"er_arrivals": 3.0, "visits": 0.0, "faulty": 0}}


def test_snapshots_from_before_the_fault_was_kept_resume() -> None:
    """Door entries and site flows pickled as (role, count) and (er, visits): taken as
    without faults, the hour's later readings counted."""
    readings = _gate_hour()
    roll = HospitalNodeRollup(2 * HOUR)
    site = HospitalSite(2 * HOUR)
    site.process("bv", roll.process("bv", "gate", readings[:20])[1])
    roll.doors = {h: {k: v[:2] for k, v in d.items()} for h, d in roll.doors.items()}  # type: ignore[misc]
    site.flow = {h: {n: v[:2] for n, v in f.items()} for h, f in site.flow.items()}  # type: ignore[misc]
    roll, site = pickle.loads(pickle.dumps((roll, site)))
    points, updates = roll.process("bv", "gate", readings[20:])
    points += site.process("bv", updates)
    row = {"er_arrivals": 0.0, "visits": 100.0, "faulty": 39}  # the 10 before the snapshot unseen
    assert select(points, "agg_1h", "door_flow", site="bv", node="gate") == {T0: row}
    assert select(points, "agg_1h", "hospital_flow", site="bv") == {T0: row}


def test_a_replay_from_the_raw_points_rebuilds_faulty_as_live() -> None:
    state = NodeState(6 * HOUR, detect=False)
    readings = [Reading(r.sensor, r.kind, r.ts_ns, i + 1, r.values) for i, r in enumerate(_gate_hour())]
    points = state.process(NodeData("bv/gate", "bv", "gate", T0 + HOUR, readings))
    points += HospitalSite(6 * HOUR).process("bv", state.take_site_updates())
    rows: list[dict[str, Any]] = []
    for rp, text in points:
        if rp == RP_RAW:
            _, tags, fields, ts = parse(text)
            rows.append({**tags, **fields, "time": ts})
    assert any(row.get("fault") == 1.0 for row in rows)
    replayed = replay(ReplaySpan("doors", "bv", "", T0, T0 + HOUR), rows)
    live = {k: v for k, v in final(points).items() if k[1] in ("door_flow", "hospital_flow")}
    assert final(replayed) == live
    assert {k[1]: v["faulty"] for k, v in live.items()} == {"door_flow": 49, "hospital_flow": 49}
