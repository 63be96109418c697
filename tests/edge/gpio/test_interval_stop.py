"""An interval driver stopped between two interval ends (the agent stopped or restarted:
an upgrade, a config change) reports what its interval so far counted, instead of
dropping it: the agent commits what drivers emit while they are cancelled."""

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

from edge.drivers.base import DriverContext
from edge.drivers.door_counter.driver import build as build_door
from edge.drivers.door_counter.driver import parse_params as door_params
from edge.drivers.traffic_loop.driver import build as build_loop
from edge.drivers.traffic_loop.driver import parse_params as loop_params
from urbanpulse.testing import wait_for


def test_a_stopped_traffic_loop_reports_its_partial_interval(gpio) -> None:
    params = loop_params({"pin": 17, "interval_s": 3600, "debounce_s": 0.002,
                          "min_pulse_s": 0.01}, "sensors[0]")
    driver = build_loop("loop-n1", params, DriverContext(pin_factory=gpio.provider))
    pin = gpio.factory.pin(17)

    async def scenario() -> list:
        started = datetime.now(UTC)
        async with gpio.running(driver) as samples:
            for _ in range(2):
                await gpio.in_thread(pin.drive_low)
                await gpio.wait_until(lambda: driver.describe()["on"], "vehicle present")
                await gpio.in_thread(pin.drive_high)
                await gpio.wait_until(lambda: not driver.describe()["on"], "vehicle gone")
            assert samples == []  # an hour's interval: nothing due yet
        stopped = datetime.now(UTC)
        assert len(samples) == 1, samples
        (s,) = samples
        assert s.values["count"] == 2
        assert 0 < s.values["interval_s"] < 60
        assert 0 < s.values["occupancy_pct"] < 100
        assert started <= s.ts <= stopped
        gpio.assert_contract(samples)
        return samples

    asyncio.run(scenario())


def test_a_stopped_door_counter_reports_its_partial_interval(gpio) -> None:
    params = door_params({"pin": 17, "interval_s": 3600, "debounce_s": 0.002,
                          "min_pulse_s": 0.01}, "sensors[0]")
    driver = build_door("door-1", params, DriverContext(pin_factory=gpio.provider))
    pin = gpio.factory.pin(17)

    async def scenario() -> None:
        async with gpio.running(driver) as samples:
            for _ in range(3):
                await gpio.in_thread(pin.drive_low)
                await gpio.wait_until(lambda: driver.describe()["broken"] == [True], "beam broken")
                await gpio.in_thread(pin.drive_high)
                await gpio.wait_until(lambda: driver.describe()["broken"] == [False], "beam clear")
            assert samples == []
        assert [s.values["count"] for s in samples] == [3]
        assert 0 < samples[0].values["interval_s"] < 60
        gpio.assert_contract(samples)

    asyncio.run(scenario())


def test_a_stop_right_after_start_sends_nothing_empty(gpio) -> None:
    """No edge and no time: nothing to report (a stop during start-up is no interval)."""
    params = door_params({"pin": 17, "interval_s": 3600}, "sensors[0]")
    driver = build_door("door-1", params, DriverContext(pin_factory=gpio.provider))

    async def scenario() -> None:
        async with gpio.running(driver) as samples:
            pass
        assert all(s.values["interval_s"] > 0 for s in samples)

    asyncio.run(scenario())


def test_the_agent_commits_what_a_stopped_door_counter_reports(
        gpio, make_node_config, collector) -> None:  # type: ignore[no-untyped-def]
    """End to end: people counted in the interval under way when the agent stops reach the
    cloud's topic, or wait in the outbox for the next start; they are not lost."""
    from edge.agent import OUTBOX_FILE, Agent
    from edge.config import load_config
    from edge.outbox import Outbox
    from tests.agent_thread import agent_in_thread

    sensors = ('[[sensors]]\nid = "door-1"\ndriver = "door_counter"\npin = 17\n'
               'interval_s = 3600\ndebounce_s = 0.002\nmin_pulse_s = 0.01\n')
    path = make_node_config("hn-edge", "door-stop", sensors)
    seen = collector("hn-edge", "door-stop")
    agent = Agent(load_config(path), pin_factory=gpio.provider)
    pin = gpio.factory.pin(17)

    def broken() -> list[bool]:
        return agent._running["door-1"].describe().get("broken", [])

    def wait(predicate: Callable[[], bool], what: str) -> None:
        wait_for(predicate, 5, what, every_s=0.005)

    with agent_in_thread(agent):
        wait(lambda: "door-1" in agent._running and broken() == [False], "the driver")
        for _ in range(2):
            pin.drive_low()
            wait(lambda: broken() == [True], "beam broken")
            pin.drive_high()
            wait(lambda: broken() == [False], "beam clear")
    outbox = Outbox(load_config(path).node.state_dir / OUTBOX_FILE).open()
    try:
        waiting = [r.reading for r in outbox.fetch(100)]
    finally:
        outbox.close()
    sent = [r for r in seen.readings if r.sensor == "door-1"]
    assert sum(r.values["count"] for r in sent + waiting if r.sensor == "door-1") == 2


def test_a_stop_within_the_settle_time_closes_the_interval_then_the_partial() -> None:
    """Stopped 10 ms after an interval's end, before its close (its settle time): the
    interval goes out stamped with its end, the 10 ms after it on their own."""
    from datetime import timedelta

    from edge.drivers.traffic_loop.logic import TrafficLoopLogic
    from edge.gpio.intervals import IntervalReactor
    from urbanpulse.clock import FakeClock

    clock = FakeClock(datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC))
    logic = TrafficLoopLogic(mode="presence", bounce_s=0.02, levels=[False],
                             t0=clock.monotonic(), min_pulse_s=0.1)
    samples: list = []
    reactor = IntervalReactor(logic, sensor_id="loop-1", kind="traffic.loop", interval_s=60,
                              clock=clock, now=clock.monotonic(), emit=samples.append)
    t0 = clock.monotonic()
    logic.feed(0, True, t0 + 10.0)
    logic.feed(0, False, t0 + 11.0)
    clock.advance(60.01)
    assert clock.monotonic() < reactor.schedule.close_at
    reactor.on_stop(clock.monotonic())
    assert [(dict(s.values), s.ts) for s in samples] == [
        ({"count": 1, "interval_s": 60.0, "occupancy_pct": 1.67},
         datetime(2026, 1, 1, 12, 1, tzinfo=UTC)),
        ({"count": 0, "interval_s": 0.01, "occupancy_pct": 0.0}, clock.now()),
    ]
    assert clock.now() - samples[0].ts == timedelta(seconds=0.01)
