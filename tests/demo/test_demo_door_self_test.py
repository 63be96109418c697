"""The demo's live door counter runs the beam self-test the fault bench assumes: its
driver blanks the emitters through its test output, the demo's pin player makes the
beam read "broken" meanwhile unless a `stuck` (or `cut_cable`) fault holds the
receiver, so a clean door passes its tests and a door stuck clear fails them and the
cloud's heartbeat rule raises STUCK.

Run on the demo's own wiring (tests/demo/door_runs.py)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from cloud.detect.faults import FaultType, Heartbeat, HeartbeatMonitor, Supervision
from edge.drivers.base import Driver, Sample
from edge.drivers.door_counter.self_test import FIRST_TEST_S
from tests.demo.door_runs import AT, DemoDoor, until
from urbanpulse.simulate import Simulation, make_event


def _clear_moment(sim: Simulation, key: tuple[str, str, str], t: float) -> float:
    """The first moment from `t` at which the door's beam is clear (a `stuck` fault
    starting then holds it clear)."""
    while sim.pin_tracks(*key, t, t + 0.001)["beam"].initial:
        t += 0.5
    return t


@pytest.mark.parametrize("fault", [None, "stuck"])
def test_the_demo_door_self_test_passes_when_clean_and_fails_when_stuck(
        fault: str | None) -> None:
    door = DemoDoor.pick()
    events = []
    if fault is not None:
        # From before the driver starts to well after its first test: stuck clear.
        at = _clear_moment(door.simulation(), door.key, AT - 60)
        events.append(make_event(fault, *door.key, at, AT + 120, {}, "test"))
    reports: list[dict[str, str | bool] | None] = []

    async def watch(driver: Driver, task: asyncio.Task[None], samples: list[Sample]) -> None:
        await until(lambda: task.done() or driver.supervision() is not None,
                    "the driver running", 5)
        reports.append(driver.supervision())  # the heartbeat before the first test
        await until(lambda: task.done() or "self_test" in (driver.supervision() or {}),
                    "the first self-test's result", FIRST_TEST_S + 10)
        reports.append(driver.supervision())

    driver, params, _ = door.run(door.simulation(events), watch)
    assert params.test_pin is not None  # the demo's door has the self-test
    # The cloud's heartbeat rule on the reports, as the agent's heartbeats carry them.
    monitor = HeartbeatMonitor()
    raised = []
    t0 = datetime.now(UTC)
    for i, report in enumerate(reports):
        assert report is not None
        hb = Heartbeat(ts=t0 + timedelta(seconds=10 * i), uptime_s=10.0 * (i + 1),
                       clock_jumps=0, supervision={door.sensor: Supervision.from_report(report)},
                       run="demo", drivers=frozenset({door.sensor}))
        raised += [(e.fault, e.field) for e in monitor.update(hb)]
    described = driver.describe()
    if fault is None:
        assert reports[-1] == {"blocked": False, "self_test": "ok"}, described
        assert (described["self_tests"], described["self_test_failures"]) == (1, 0), described
        assert raised == [], raised
    else:
        assert reports[-1] == {"blocked": False, "self_test": "failed"}, described
        assert described["self_test_failed_beams"] == [0], described
        assert raised == [(FaultType.STUCK, "self_test")], raised
