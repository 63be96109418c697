"""The door_counter driver end to end on gpiozero MockFactory pins (a Pi's GPIO chip
cannot run here), under asyncio with the real clock."""

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import pytest
from gpiozero import DigitalInputDevice, DigitalOutputDevice
from gpiozero.pins.mock import MockPin

from edge.agent import Agent
from edge.config import load_config
from edge.drivers.base import DriverContext
from edge.drivers.door_counter.driver import DoorCounterParams, build, parse_params
from edge.errors import DriverError


def test_two_beam_door_counts_entries_not_exits(gpio) -> None:
    params = parse_params({"pin": 5, "inner_pin": 6, "interval_s": 0.25,
                           "debounce_s": 0.003}, "sensors[0]")
    driver = build("door-er", params, DriverContext(pin_factory=gpio.provider))
    outer, inner = gpio.factory.pin(5), gpio.factory.pin(6)

    def broken() -> list[bool]:
        return driver.describe()["broken"]

    pins = [outer, inner]
    entry = [(0, True), (1, True), (0, False), (1, False)]
    exit_ = [(1, True), (0, True), (1, False), (0, False)]

    async def walk(steps: list[tuple[int, bool]]) -> None:
        for line, is_broken in steps:
            # beam broken = receiver output pulled low (pull-up, active low)
            pin = pins[line]
            await gpio.in_thread(pin.drive_low if is_broken else pin.drive_high)
            await gpio.wait_until(lambda line=line, b=is_broken: broken()[line] == b,
                                  f"beam {line} broken={is_broken}")

    async def scenario() -> None:
        async with gpio.running(driver) as samples:
            await walk(entry)
            await walk(exit_)
            await walk(entry)
            await gpio.wait_until(lambda: driver.describe()["exits"] == 1, "the exit seen")
            await gpio.wait_until(lambda: sum(s.values["count"] for s in samples) == 2,
                                  "two entries reported")
        assert all(s.kind == "hospital.door" and s.sensor == "door-er" for s in samples)
        assert driver.describe()["entries"] == 2
        gpio.assert_contract(samples)

    asyncio.run(scenario())


def test_one_beam_door_counts_every_break(gpio) -> None:
    params = parse_params({"pin": 12, "interval_s": 0.2, "debounce_s": 0.003}, "sensors[0]")
    driver = build("door-opd", params, DriverContext(pin_factory=gpio.provider))
    beam = gpio.factory.pin(12)

    async def scenario() -> None:
        async with gpio.running(driver) as samples:
            for _ in range(4):
                await gpio.in_thread(beam.drive_low)
                await gpio.wait_until(lambda: driver.describe()["broken"] == [True], "broken")
                await gpio.in_thread(beam.drive_high)
                await gpio.wait_until(lambda: driver.describe()["broken"] == [False], "clear")
            await gpio.wait_until(lambda: sum(s.values["count"] for s in samples) == 4,
                                  "four people reported")
        gpio.assert_contract(samples)

    asyncio.run(scenario())


def test_door_reports_breaks_too_short_for_a_person_as_glitches(gpio) -> None:
    params = parse_params({"pin": 12, "interval_s": 0.2, "debounce_s": 0.002,
                           "min_pulse_s": 0.5}, "sensors[0]")
    driver = build("door-1", params, DriverContext(pin_factory=gpio.provider))
    beam = gpio.factory.pin(12)

    async def scenario() -> None:
        async with gpio.running(driver) as samples:
            for i in range(1, 3):
                await gpio.in_thread(lambda: (beam.drive_low(), beam.drive_high()))
                await gpio.wait_until(lambda n=i: driver.describe()["glitches"] == n,
                                      f"glitch {i} seen")
            await gpio.wait_until(lambda: sum(s.values.get("glitches", 0) for s in samples) == 2,
                                  "two glitches reported")
        assert sum(s.values["count"] for s in samples) == 0
        gpio.assert_contract(samples)

    asyncio.run(scenario())


def test_supervised_door_reports_a_cut_cable(gpio) -> None:
    params = parse_params({"pin": 12, "supervision": "loopback", "supervision_pin": 13,
                           "interval_s": 0.2, "debounce_s": 0.002, "min_pulse_s": 0.01,
                           "fault_delay_s": 0.05}, "sensors[0]")
    driver = build("door-opd", params, DriverContext(pin_factory=gpio.provider))
    beam, loop = gpio.factory.pin(12), gpio.factory.pin(13)

    async def scenario() -> None:
        async with gpio.running(driver) as samples:
            # pull-up, nothing connected yet: the supervision line reads a fault
            assert driver.describe()["cable_whole"] is False
            await gpio.wait_until(lambda: any(s.values["fault"] for s in samples),
                                  "fault at start-up")
            await gpio.in_thread(loop.drive_low)  # cable plugged in: the pair shorts to GND
            await gpio.wait_until(lambda: driver.describe()["cable_whole"] is True, "whole")
            await gpio.wait_until(lambda: len(samples) >= 2 and samples[-1].values["fault"] == 0,
                                  "a whole interval")
            del samples[:]
            await gpio.in_thread(beam.drive_low)
            await gpio.wait_until(lambda: driver.describe()["broken"] == [True], "broken")
            await gpio.in_thread(beam.drive_high)
            await gpio.wait_until(lambda: any(s.values["count"] for s in samples), "a person")
            assert all(s.values["fault"] == 0 for s in samples)
            await gpio.in_thread(loop.drive_high)           # cable cut: the pull-up wins
            await gpio.wait_until(lambda: any(s.values["fault"] for s in samples), "fault")
            await gpio.in_thread(loop.drive_low)            # repaired
            n = len(samples)
            await gpio.wait_until(lambda: len(samples) > n + 1 and samples[-1].values["fault"] == 0,
                                  "fault cleared")
        assert driver.describe()["faults"] == 2  # at start-up, and the cut
        assert sum(s.values["count"] for s in samples) == 1
        gpio.assert_contract(samples)

    asyncio.run(scenario())


# The self-test and the blocked beam, on periods far shorter than a deployment's (which
# parse_params keeps to >= 10 s and >= 5 s), so the params are built directly.
def _tested(**kw: object) -> DoorCounterParams:
    base: dict[str, object] = dict(pin=12, interval_s=0.2, debounce_s=0.002, min_pulse_s=0.01,
                                   test_pin=17, test_active_high=False,
                                   self_test_every_s=0.15, self_test_s=0.02)
    base.update(kw)
    return DoorCounterParams(**base)  # type: ignore[arg-type]


class EmitterTestInput(MockPin):
    """A beam's emitter test input wired to the node's test output: the receiver
    (`receiver`, pull-up, active low) reads broken while the emitter is off (this pin
    driven low) or a body is in the beam (`body`)."""

    def __init__(self, factory: Any, info: Any, receiver: MockPin) -> None:
        super().__init__(factory, info)
        self.receiver = receiver
        self.body = False
        self.dark = False

    def _change_state(self, value: bool) -> bool:
        self.dark = not value
        self.update()
        return bool(super()._change_state(value))

    def update(self) -> None:
        if self.body or self.dark:
            self.receiver.drive_low()
        else:
            self.receiver.drive_high()

    def person(self, inside: bool) -> None:
        self.body = inside
        self.update()


def test_a_working_beam_passes_its_self_tests_without_counting_them(gpio) -> None:
    gpio.factory.pin(12)
    emitter = gpio.factory.pin(17, pin_class=EmitterTestInput, receiver=gpio.factory.pin(12))
    driver = build("door-opd", _tested(), DriverContext(pin_factory=gpio.provider))

    async def scenario() -> None:
        async with gpio.running(driver) as samples:
            assert gpio.factory.pin(17).state is True, "emitter on (test output inactive)"
            await gpio.wait_until(lambda: driver.describe()["self_tests"] >= 3, "three tests")
            assert driver.supervision() == {"blocked": False, "self_test": "ok"}
            await gpio.wait_until(lambda: len(samples) >= 2, "two intervals")
            n = driver.describe()["self_tests"]
            await gpio.in_thread(lambda: emitter.person(True))
            await gpio.wait_until(lambda: driver.describe()["broken"] == [True], "broken")
            await gpio.in_thread(lambda: emitter.person(False))
            await gpio.wait_until(lambda: driver.describe()["self_tests"] >= n + 3,
                                  "three more tests")
            await gpio.wait_until(lambda: driver.describe()["entries"] == 1, "the person")
        assert driver.describe()["self_test_failures"] == 0
        assert driver.describe()["entries"] == 1, "tests are not people"
        assert driver.describe()["glitches"] == 0
        assert driver.supervision() is None, "stopped"
        gpio.assert_contract(samples)

    asyncio.run(scenario())


def test_a_receiver_stuck_clear_fails_its_self_test(gpio) -> None:
    gpio.factory.pin(12)  # the receiver ignores the test output: it stays clear
    driver = build("door-opd", _tested(), DriverContext(pin_factory=gpio.provider))

    async def scenario() -> None:
        async with gpio.running(driver):
            await gpio.wait_until(lambda: (driver.supervision() or {}).get("self_test")
                                  == "failed", "a failed self-test")
            test_pin = gpio.factory.pin(17)
            await gpio.wait_until(lambda: driver.describe()["self_tests"] >= 2, "two tests")
            assert driver.describe()["self_test_failed_beams"] == [0]
            # between tests the emitter is on again
            await gpio.wait_until(lambda: test_pin.state is True, "emitter back on")
        # the output is released with the driver: the pin can be opened again
        DigitalOutputDevice(17, pin_factory=gpio.factory).close()

    asyncio.run(scenario())


def test_a_beam_held_broken_is_reported_blocked(gpio) -> None:
    beam = gpio.factory.pin(12)
    params = DoorCounterParams(pin=12, interval_s=0.2, debounce_s=0.002, min_pulse_s=0.01,
                               blocked_after_s=0.15)
    driver = build("door-opd", params, DriverContext(pin_factory=gpio.provider))

    async def scenario() -> None:
        async with gpio.running(driver) as samples:
            assert driver.supervision() == {"blocked": False}
            await gpio.in_thread(beam.drive_low)
            await gpio.wait_until(lambda: driver.describe()["broken"] == [True], "broken")
            assert driver.supervision() == {"blocked": False}, "not yet"
            await gpio.wait_until(lambda: driver.supervision() == {"blocked": True}, "blocked")
            await gpio.in_thread(beam.drive_high)
            await gpio.wait_until(lambda: driver.supervision() == {"blocked": False}, "clear")
            await gpio.wait_until(lambda: sum(s.values["count"] for s in samples) == 1,
                                  "counted once")

    asyncio.run(scenario())


def test_the_agent_puts_a_running_door_s_supervision_in_its_heartbeat(gpio,
                                                                     tmp_path: Path) -> None:
    sample = Path(__file__).resolve().parents[3] / "edge/drivers/door_counter/sample.toml"
    text = sample.read_text().replace('state_dir = "/var/lib/urbanpulse"',
                                      f'state_dir = "{tmp_path}"')
    (tmp_path / "node.toml").write_text(text)
    agent = Agent(load_config(tmp_path / "node.toml"), pin_factory=gpio.provider)
    agent.outbox.open()
    [sensor] = agent.config.sensors

    async def scenario() -> None:
        assert "supervision" not in agent.health()["drivers"]["door-er"]
        # The agent's own driver supervision (run() would also need a broker).
        task = asyncio.create_task(agent._supervise(
            sensor, DriverContext(clock=agent.clock, pin_factory=gpio.provider)))
        try:
            await gpio.wait_until(
                lambda: agent.health()["drivers"]["door-er"].get("supervision")
                == {"blocked": False}, "the heartbeat's supervision (no test run yet)")
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        assert "supervision" not in agent.health()["drivers"]["door-er"]

    asyncio.run(scenario())
    agent.outbox.close()


def test_a_test_output_in_use_is_a_driver_error_and_releases_the_beams(gpio) -> None:
    holder = DigitalOutputDevice(17, pin_factory=gpio.factory)
    driver = build("door-opd", _tested(), DriverContext(pin_factory=gpio.provider))
    with pytest.raises(DriverError, match=r"cannot open the test output GPIO 17: GPIOPinInUse"):
        asyncio.run(driver.run(lambda s: None))
    holder.close()
    # the beam's input was released with the failed start: it can be opened again
    DigitalInputDevice(12, pin_factory=gpio.factory).close()
