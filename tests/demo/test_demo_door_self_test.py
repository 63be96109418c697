"""The demo's live door counter runs the beam self-test the fault bench assumes: its
driver blanks the emitters through its test output, the demo's pin player makes the
beam read "broken" meanwhile unless a `stuck` (or `cut_cable`) fault holds the
receiver, so a clean door passes its tests and a door stuck clear fails them and the
cloud's heartbeat rule raises STUCK.

Run on the demo's own wiring: the live node and agent config the demo picks
(`choose_live`, `node_config`), its gpiozero mock pins driven by its pin player from the
simulation, and the real door_counter driver opened on them."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cloud.detect.faults import FaultType, Heartbeat, HeartbeatMonitor, Supervision
from edge.config import parse_config
from edge.drivers.base import DriverContext, Sample
from edge.drivers.door_counter.driver import build
from edge.drivers.door_counter.self_test import FIRST_TEST_S
from urbanpulse.demo.live import choose_live, node_config
from urbanpulse.demo.runner import _wire_pins
from urbanpulse.simulate import City, Simulation, make_event

AT = 300.0  # the demo's simulation starts this far back (runner.HISTORY_S)
MQTT = {"host": "127.0.0.1", "port": 8883, "ca_file": "/ca.pem",
        "password_file": "/node.password"}


async def _until(predicate: Callable[[], bool], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.01)


def _clear_moment(sim: Simulation, key: tuple[str, str, str], t: float) -> float:
    """The first moment from `t` at which the door's beam is clear (a `stuck` fault
    starting then holds it clear)."""
    while sim.pin_tracks(*key, t, t + 0.001)["beam"].initial:
        t += 0.5
    return t


@pytest.mark.parametrize("fault", [None, "stuck"])
def test_the_demo_door_self_test_passes_when_clean_and_fails_when_stuck(
        fault: str | None) -> None:
    city = City.load()
    door = next(n for n in choose_live(city) if any(s.spec.driver == "door_counter"
                                                   for s in n.sensors))
    sensor = next(s for s in door.sensors if s.spec.driver == "door_counter")
    key = (door.site, door.node, sensor.id)
    start = datetime.now(UTC) - timedelta(seconds=AT)
    events = []
    if fault is not None:
        # From before the driver starts to well after its first test: stuck clear.
        at = _clear_moment(Simulation(city, seed=1, start=start, speed=1.0), key, AT - 60)
        events.append(make_event(fault, *key, at, AT + 120, {}, "test"))
    sim = Simulation(city, seed=1, start=start, speed=1.0, events=events)
    clock = sim.clock(at_offset=AT)
    config = parse_config(node_config(door, MQTT, Path("/state"), {}))
    params = next(s.params for s in config.sensors if s.id == sensor.id)
    factories, player = _wire_pins(sim, clock, [door])
    factory = factories[door.key]
    driver = build(sensor.id, params, DriverContext(pin_factory=lambda: factory))
    samples: list[Sample] = []
    reports: list[dict[str, str | bool] | None] = []

    async def scenario() -> None:
        task = asyncio.create_task(driver.run(samples.append))
        try:
            await _until(lambda: task.done() or driver.supervision() is not None,
                         "the driver running", 5)
            reports.append(driver.supervision())  # the heartbeat before the first test
            await _until(lambda: task.done() or "self_test" in (driver.supervision() or {}),
                         "the first self-test's result", FIRST_TEST_S + 10)
            if task.done():
                task.result()
            reports.append(driver.supervision())
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

    assert params.test_pin is not None  # the demo's door has the self-test
    # The cloud's heartbeat rule on the reports, as the agent's heartbeats carry them.
    monitor = HeartbeatMonitor()
    raised = []
    t0 = datetime.now(UTC)
    for i, report in enumerate(reports):
        assert report is not None
        hb = Heartbeat(ts=t0 + timedelta(seconds=10 * i), uptime_s=10.0 * (i + 1),
                       clock_jumps=0, supervision={sensor.id: Supervision.from_report(report)},
                       run="demo", drivers=frozenset({sensor.id}))
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
