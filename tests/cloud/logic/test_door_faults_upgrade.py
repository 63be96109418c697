"""Door hours across the upgrade that brought `faulty` (3e64e6e): the recovery store of
the release before (263783f) holds door entries as (role, count) and site flows as
(er, visits), without the readings' faults. Resumed, an hour holding such entries must
not say `faulty = 0` (no reading of a cut cable) when the readings taken before the
upgrade may have been faulty: on the real pipeline's upgrade (tests/e2e/test_upgrade_resume.py)
bach-mai's hospital_flow said 0 for an hour with 7 such readings.

The fixture is the release's own pickle (made by its code, as
tests/cloud/logic/fixtures/README.md says): nodes `gate` (visit door gate-1, minutes 1-20
of the hour T0, 10 people each, minutes 11-20 with fault = 1) and `er` (er-1, minutes
1-20, 1 person each, clean), and their site."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from cloud.logic.domain.hospital import HospitalNodeRollup
from cloud.logic.domain.hospital_site import HospitalSite
from tests.cloud.logic.domain_helpers import HOUR, MIN, T0, rd, select

DOOR = "hospital.door"
FIXTURE = Path(__file__).parent / "fixtures" / "hospital_doors_263783f.pickle"


def _resumed() -> dict[str, Any]:
    state: dict[str, Any] = pickle.loads(FIXTURE.read_bytes())
    assert isinstance(state["gate"], HospitalNodeRollup)
    assert isinstance(state["site"], HospitalSite)
    return state


def test_an_hour_whose_readings_before_the_upgrade_may_be_faulty_does_not_say_none_were() -> None:
    state = _resumed()
    gate, er, site = state["gate"], state["er"], state["site"]
    points, updates = gate.process("bv", "gate", [
        rd("gate-1", DOOR, T0 + m * MIN, count=10, interval_s=60, fault=0) for m in range(21, 60)])
    points += site.process("bv", updates)
    assert select(points, "agg_1h", "door_flow", site="bv", node="gate") == {
        T0: {"er_arrivals": 0.0, "visits": 590.0}}  # faulty unknown: left out, not 0
    assert select(points, "agg_1h", "hospital_flow", site="bv") == {
        T0: {"er_arrivals": 20.0, "visits": 590.0}}
    # Another node's hour written again: the site's sum is unknown as well.
    points, updates = er.process("bv", "er", [
        rd("er-1", DOOR, T0 + m * MIN, count=1, interval_s=60, fault=0) for m in range(21, 60)])
    points += site.process("bv", updates)
    assert select(points, "agg_1h", "door_flow", site="bv", node="er") == {
        T0: {"er_arrivals": 59.0, "visits": 0.0}}
    assert select(points, "agg_1h", "hospital_flow", site="bv") == {
        T0: {"er_arrivals": 59.0, "visits": 590.0}}


def test_faulty_readings_taken_after_the_upgrade_are_counted_as_the_least_there_were() -> None:
    state = _resumed()
    gate, site = state["gate"], state["site"]
    points, updates = gate.process("bv", "gate", [
        rd("gate-1", DOOR, T0 + m * MIN, count=0, interval_s=60, fault=1) for m in range(21, 31)])
    points += site.process("bv", updates)
    row = {"er_arrivals": 0.0, "visits": 200.0, "faulty": 10}  # the hour is undercounted, said so
    assert select(points, "agg_1h", "door_flow", site="bv", node="gate") == {T0: row}
    assert select(points, "agg_1h", "hospital_flow", site="bv") == {
        T0: {**row, "er_arrivals": 20.0}}


def test_the_next_hour_holds_only_known_readings_and_says_faulty_again() -> None:
    state = _resumed()
    gate, site = state["gate"], state["site"]
    points, updates = gate.process("bv", "gate", [
        rd("gate-1", DOOR, T0 + HOUR + m * MIN, count=5, interval_s=60, fault=0) for m in range(1, 3)])
    points += site.process("bv", updates)
    assert select(points, "agg_1h", "door_flow", site="bv", node="gate") == {
        T0 + HOUR: {"er_arrivals": 0.0, "visits": 10.0, "faulty": 0}}
    assert select(points, "agg_1h", "hospital_flow", site="bv") == {
        T0 + HOUR: {"er_arrivals": 0.0, "visits": 10.0, "faulty": 0}}
    # a snapshot of the resumed state pickles and loads again as it is
    gate2, site2 = pickle.loads(pickle.dumps((gate, site)))
    assert gate2.doors == gate.doors
    assert site2.flow == site.flow
