"""The demo's live door counter is supervised as the lightweight readings assume: a cut
door cable from the simulator reaches its driver through the loopback pin, and the
readings carry `fault` = 1, which the cloud's fault rules raise as CUT_CABLE.

Run on the demo's own wiring: the live node and agent config the demo picks
(`choose_live`, `node_config`), its gpiozero mock pins driven by its pin player from the
simulation, and the real door_counter driver opened on them."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cloud.detect.faults import FaultMonitor, FaultType
from edge.config import parse_config
from edge.drivers.base import DriverContext, Sample
from edge.drivers.door_counter.driver import build
from urbanpulse.demo.live import choose_live, node_config
from urbanpulse.demo.runner import _wire_pins
from urbanpulse.simulate import City, Simulation, make_event

AT = 300.0  # the demo's simulation starts this far back (runner.HISTORY_S)
CUT = (2.0, 5.0)  # the cut, in seconds from the start of the test
INTERVAL_S = 1.0  # the demo's 10 s, shortened for the test
MQTT = {"host": "127.0.0.1", "port": 8883, "ca_file": "/ca.pem",
        "password_file": "/node.password"}


async def _until(predicate: object, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.01)


def test_a_cut_door_cable_in_the_demo_gives_fault_readings_and_a_cut_cable_event() -> None:
    city = City.load()
    door = next(n for n in choose_live(city) if any(s.spec.driver == "door_counter"
                                                   for s in n.sensors))
    sensor = next(s for s in door.sensors if s.spec.driver == "door_counter")
    events = [make_event("cut_cable", door.site, door.node, sensor.id, AT + CUT[0], AT + CUT[1],
                         {}, "test")]
    sim = Simulation(city, seed=1, start=datetime.now(UTC) - timedelta(seconds=AT), speed=1.0,
                     events=events)
    clock = sim.clock(at_offset=AT)
    config = parse_config(node_config(door, MQTT, Path("/state"), {}))
    params = next(s.params for s in config.sensors if s.id == sensor.id)
    factories, player = _wire_pins(sim, clock, [door])
    factory = factories[door.key]
    driver = build(sensor.id, replace(params, interval_s=INTERVAL_S),
                   DriverContext(pin_factory=lambda: factory))
    samples: list[Sample] = []

    def since_start(s: Sample) -> float:
        return (s.ts - sim.start).total_seconds() - AT

    async def scenario() -> None:
        task = asyncio.create_task(driver.run(samples.append))
        try:
            # whole again: a reading of an interval wholly after the cut
            await _until(lambda: task.done() or any(since_start(s) >= CUT[1] + 2 * INTERVAL_S
                                                    for s in samples),
                         "readings after the cut", CUT[1] + 10)
            if task.done():
                task.result()
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    player.prime(clock.offset())
    player.start()
    try:
        asyncio.run(scenario())
    finally:
        player.stop()
        factory.close()

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
