"""The door_counter driver end to end on gpiozero MockFactory pins (a Pi's GPIO chip
cannot run here), under asyncio with the real clock."""

import asyncio

from edge.drivers.base import DriverContext
from edge.drivers.door_counter.driver import build, parse_params


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
