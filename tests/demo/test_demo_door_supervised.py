"""The demo's live door counter is supervised as the lightweight readings assume: a cut
door cable from the simulator reaches its driver through the loopback pin, and the
readings carry `fault` = 1, which the cloud's fault rules raise as CUT_CABLE.

Run on the demo's own wiring (tests/demo/door_runs.py)."""

from __future__ import annotations

import asyncio

from cloud.detect.faults import FaultMonitor, FaultType
from edge.drivers.base import Driver, Sample
from tests.demo.door_runs import AT, DemoDoor, until
from urbanpulse.simulate import make_event

CUT = (2.0, 5.0)  # the cut, in seconds from the start of the test
INTERVAL_S = 1.0  # the demo's 10 s, shortened for the test


def test_a_cut_door_cable_in_the_demo_gives_fault_readings_and_a_cut_cable_event() -> None:
    door = DemoDoor.pick()
    sim = door.simulation([make_event("cut_cable", *door.key, AT + CUT[0], AT + CUT[1], {},
                                      "test")])

    def since_start(s: Sample) -> float:
        return (s.ts - sim.start).total_seconds() - AT

    async def watch(driver: Driver, task: asyncio.Task[None], samples: list[Sample]) -> None:
        # whole again: a reading of an interval wholly after the cut
        await until(lambda: task.done() or any(since_start(s) >= CUT[1] + 2 * INTERVAL_S
                                               for s in samples),
                    "readings after the cut", CUT[1] + 10)

    _, _, samples = door.run(sim, watch, interval_s=INTERVAL_S)
    flags = [(round(since_start(s), 1), s.values.get("fault")) for s in samples]
    assert all(f is not None for _, f in flags), flags  # supervised: every reading says
    # A cut lasting past the driver's fault delay (1 s) flags the intervals it touched...
    assert [t for t, f in flags if f == 1], flags
    assert all(f == 1 for t, f in flags if CUT[0] + 1.5 <= t <= CUT[1]), flags
    # ... and only those: whole before and after it.
    assert all(f == 0 for t, f in flags if t <= CUT[0] or t >= CUT[1] + INTERVAL_S + 0.5), flags
    # The cloud's rule for the door's `fault` field raises one CUT_CABLE.
    monitor = FaultMonitor("hospital.door", "fault")
    raised = [e.fault for i, s in enumerate(samples)
              for e in monitor.update(s.ts, float(s.values["fault"]), seq=i)]
    assert raised.count(FaultType.CUT_CABLE) == 1, raised
