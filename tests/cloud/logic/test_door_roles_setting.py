"""Door roles from the cloud config (`flow.door_roles`, keyed "site/node/sensor"): a staff
door left out of the hospital's flows, an ER entrance whatever its id. Before, a door's
role came from its id alone (the `er` word): a counter on a staff door counted the staff as
visits, and an ER door named otherwise counted its arrivals as visits."""

from __future__ import annotations

import pickle
from pathlib import Path

from cloud.logic.domain.door_roles import DoorRoleMap, DoorRoles
from cloud.logic.domain.hospital import HospitalNodeRollup, SiteUpdate
from cloud.logic.domain.hospital_site import HospitalSite
from cloud.logic.domain.node import DomainNode
from cloud.logic.domain_replay import ReplaySpan, replay_readings
from tests.cloud.logic.domain_helpers import HOUR, MIN, T0, rd, select
from urbanpulse.wire import Reading

DOOR = "hospital.door"
UPGRADE = Path(__file__).parent / "fixtures" / "hospital_doors_263783f.pickle"
ROLES = DoorRoleMap({("bv", "opd", "staff-1"): "ignore", ("bv", "er-gate", "main-entrance"): "er",
                     ("hk", "opd", "gate-1"): "ignore"})  # another site's gate-1: not bv's


def opd() -> list[Reading]:
    return [rd("gate-1", DOOR, T0 + 10 * MIN, count=10, interval_s=60),
            rd("staff-1", DOOR, T0 + 20 * MIN, count=7, interval_s=60),
            rd("staff-1", DOOR, T0 + 30 * MIN, count=2, interval_s=60, fault=1)]


def er_gate() -> list[Reading]:
    return [rd("main-entrance", DOOR, T0 + 15 * MIN, count=4, interval_s=60, fault=1),
            rd("door-er", DOOR, T0 + 25 * MIN, count=1, interval_s=60)]


def _site(roles: DoorRoleMap | None) -> tuple[dict[int, dict[str, object]], list[tuple[str, str]]]:
    points: list[tuple[str, str]] = []
    updates: list[SiteUpdate] = []
    for node, readings in (("opd", opd()), ("er-gate", er_gate())):
        state = DomainNode(2 * HOUR)
        if roles is not None:
            state.set_door_roles(roles)
        p, u = state.process("bv", node, readings)
        points += p
        updates += u
    points += HospitalSite(2 * HOUR).process("bv", updates)
    return select(points, "agg_1h", "hospital_flow", site="bv"), points


def test_a_staff_door_set_to_ignore_is_left_out_and_an_oddly_named_er_door_counts_er() -> None:
    flow, points = _site(ROLES)
    assert select(points, "agg_1h", "door_flow", site="bv", node="opd") == {
        T0: {"er_arrivals": 0.0, "visits": 10.0, "faulty": 0}}  # staff-1's 9 and its fault left out
    assert select(points, "agg_1h", "door_flow", site="bv", node="er-gate") == {
        T0: {"er_arrivals": 5.0, "visits": 0.0, "faulty": 1}}
    assert flow == {T0: {"er_arrivals": 5.0, "visits": 10.0, "faulty": 1}}


def test_without_the_setting_the_roles_come_from_the_ids_as_before() -> None:
    expected = {T0: {"er_arrivals": 1.0, "visits": 23.0, "faulty": 2}}
    assert _site(None)[0] == expected
    assert _site(DoorRoleMap())[0] == expected


def test_a_replay_counts_by_the_same_roles_as_the_live_rollups() -> None:
    readings = {"opd": opd(), "er-gate": er_gate()}
    live = _site(ROLES)[1]
    replayed = replay_readings("bv", readings, T0, T0 + HOUR, ROLES)
    assert sorted(p for p in replayed if "flow" in p[1]) == sorted(p for p in live if "flow" in p[1])
    # the span the sink and `cloud recompute` replay carries them to its chunks, not in its text
    span = ReplaySpan("doors", "bv", "", T0, T0 + 3 * HOUR, ROLES)
    assert [c.door_roles for c in span.chunks(1)] == [ROLES] * 3
    assert ReplaySpan.decode(span.encode()) == span  # the roles are no part of a request
    assert ReplaySpan.decode(span.encode()).door_roles == DoorRoleMap()


def test_a_resumed_node_takes_changed_roles_and_writes_its_held_hours_again() -> None:
    """The dataflow gives the config's roles at every start (they are no part of the
    snapshot's meaning): a node resumed after a change counts by the new ones from its
    first message, and writes again every hour it holds whose split moved, with the site's
    total, without waiting for a reading of that hour."""
    state = DomainNode(3 * HOUR)
    _, updates = state.process("bv", "opd", opd())
    site = HospitalSite(3 * HOUR)
    site.process("bv", updates)
    resumed: DomainNode = pickle.loads(pickle.dumps(state))
    resumed.set_door_roles(ROLES)
    later = [rd("gate-1", DOOR, T0 + HOUR + 5 * MIN, count=3, interval_s=60)]
    points, updates = resumed.process("bv", "opd", later)
    assert select(points, "agg_1h", "door_flow", site="bv", node="opd") == {
        T0: {"er_arrivals": 0.0, "visits": 10.0, "faulty": 0},
        T0 + HOUR: {"er_arrivals": 0.0, "visits": 3.0, "faulty": 0}}
    assert select(site.process("bv", updates), "agg_1h", "hospital_flow", site="bv") == {
        T0: {"er_arrivals": 0.0, "visits": 10.0, "faulty": 0},
        T0 + HOUR: {"er_arrivals": 0.0, "visits": 3.0, "faulty": 0}}
    # the same roles given at the next start: nothing written again
    again: DomainNode = pickle.loads(pickle.dumps(resumed))
    again.set_door_roles(ROLES)
    points, _ = again.process("bv", "opd", [rd("gate-1", DOOR, T0 + HOUR + 6 * MIN, count=1,
                                               interval_s=60)])
    assert set(select(points, "agg_1h", "door_flow", site="bv", node="opd")) == {T0 + HOUR}


def test_a_snapshot_from_an_earlier_release_loads_and_takes_the_configured_roles() -> None:
    """hospital_doors_263783f.pickle (fixtures/README.md) pickled its rollups with the
    `DoorRoles` of that release: they load, and the roles given replace theirs."""
    old = pickle.loads(UPGRADE.read_bytes())
    gate: HospitalNodeRollup = old["gate"]
    assert gate.roles == DoorRoles()
    hours = gate.set_roles(DoorRoleMap({("bv", "gate", "gate-1"): "ignore"}).node("bv", "gate"))
    assert hours == [T0]
    points, _ = gate.process("bv", "gate", [], redo_doors=hours)
    # its readings' faults are not known (taken before they were kept), but none counts now
    assert select(points, "agg_1h", "door_flow", site="bv", node="gate") == {
        T0: {"er_arrivals": 0.0, "visits": 0.0, "faulty": 0}}
