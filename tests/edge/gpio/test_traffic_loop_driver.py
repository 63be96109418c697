"""The traffic_loop driver end to end on gpiozero MockFactory pins (a Pi's GPIO chip
cannot run here), under asyncio with the real clock."""

import asyncio
from datetime import UTC, datetime

import pytest

from edge.drivers.base import DriverContext
from edge.drivers.traffic_loop.driver import build, parse_params
from edge.errors import DriverError


def test_driver_counts_vehicles_and_reports_occupancy(gpio) -> None:
    params = parse_params({"pin": 17, "interval_s": 0.2, "debounce_s": 0.005}, "sensors[0]")
    driver = build("loop-n1", params, DriverContext(pin_factory=gpio.provider))
    pin = gpio.factory.pin(17)

    async def scenario() -> None:
        before = datetime.now(UTC)
        async with gpio.running(driver) as samples:
            for _ in range(3):
                # pull-up, active low: the detector's opto pulls the pin low for a vehicle
                await gpio.in_thread(pin.drive_low)
                await gpio.wait_until(lambda: driver.describe()["on"], "vehicle present")
                await gpio.in_thread(pin.drive_high)
                await gpio.wait_until(lambda: not driver.describe()["on"], "vehicle gone")
            await gpio.wait_until(lambda: sum(s.values["count"] for s in samples) == 3,
                             "three vehicles reported")
            # the last vehicle may straddle into the next interval; the one after is empty
            n = len(samples)
            await gpio.wait_until(lambda: len(samples) >= n + 2, "two more intervals")
        assert all(s.kind == "traffic.loop" and s.sensor == "loop-n1" for s in samples)
        assert samples[-1].values["count"] == 0
        assert samples[-1].values["occupancy_pct"] == 0.0
        assert any(s.values["occupancy_pct"] > 0 for s in samples)
        assert all(0 < s.values["interval_s"] <= 0.2 * 1.1 + 1e-9 for s in samples)
        assert all(before <= s.ts <= datetime.now(UTC) for s in samples)
        assert [s.ts for s in samples] == sorted(s.ts for s in samples)
        gpio.assert_contract(samples)

    asyncio.run(scenario())
    assert driver.describe()["running"] is False


def test_loop_pair_driver_reports_a_speed(gpio) -> None:
    # loops 0.1 m apart: any transit over 1.2 ms is under max_speed_kmh = 300, and the
    # downstream loop is only driven after the upstream onset has been debounced (2 ms)
    params = parse_params({"pin": 17, "downstream_pin": 27, "loop_distance_m": 0.1,
                           "min_speed_kmh": 0.1, "max_speed_kmh": 300,
                           "interval_s": 0.3, "debounce_s": 0.002}, "sensors[0]")
    driver = build("loop-n2", params, DriverContext(pin_factory=gpio.provider))
    up, down = gpio.factory.pin(17), gpio.factory.pin(27)

    def levels() -> list[bool]:
        return driver.describe()["levels"]

    async def scenario() -> None:
        async with gpio.running(driver) as samples:
            await gpio.in_thread(up.drive_low)
            await gpio.wait_until(lambda: levels() == [True, False], "upstream on")
            await gpio.in_thread(down.drive_low)
            await gpio.wait_until(lambda: levels() == [True, True], "downstream on")
            await gpio.in_thread(up.drive_high)
            await gpio.wait_until(lambda: levels() == [False, True], "upstream off")
            await gpio.in_thread(down.drive_high)
            await gpio.wait_until(lambda: any("speed_kmh" in s.values for s in samples),
                                  "a speed reading")
        speed = next(s.values["speed_kmh"] for s in samples if "speed_kmh" in s.values)
        assert 0 < speed <= 300
        assert sum(s.values["count"] for s in samples) == 1
        assert driver.describe()["measured"] == 1
        gpio.assert_contract(samples)

    asyncio.run(scenario())


def test_driver_reports_pulses_too_short_for_a_vehicle_as_glitches(gpio) -> None:
    # A minimum pulse of 0.5 s: a pin driven low and straight back high is a glitch.
    params = parse_params({"pin": 17, "interval_s": 0.2, "debounce_s": 0.002,
                           "min_pulse_s": 0.5}, "sensors[0]")
    driver = build("loop-n1", params, DriverContext(pin_factory=gpio.provider))
    pin = gpio.factory.pin(17)

    async def scenario() -> None:
        async with gpio.running(driver) as samples:
            for i in range(1, 4):
                await gpio.in_thread(lambda: (pin.drive_low(), pin.drive_high()))
                await gpio.wait_until(lambda n=i: driver.describe()["glitches"] == n,
                                      f"glitch {i} seen")
            await gpio.wait_until(lambda: sum(s.values.get("glitches", 0) for s in samples) == 3,
                                  "three glitches reported")
        assert sum(s.values["count"] for s in samples) == 0
        assert all(s.values["occupancy_pct"] == 0.0 for s in samples)
        assert driver.describe()["glitches"] == 3
        gpio.assert_contract(samples)

    asyncio.run(scenario())


def test_driver_without_pin_factory_fails_clearly() -> None:
    params = parse_params({"pin": 17}, "sensors[0]")
    driver = build("loop-n1", params, DriverContext())
    with pytest.raises(DriverError, match="no GPIO pin factory"):
        asyncio.run(driver.run(lambda s: None))


def test_pin_in_use_is_a_driver_error_and_releases_the_other_pins(gpio) -> None:
    from gpiozero import DigitalInputDevice

    holder = DigitalInputDevice(27, pin_factory=gpio.factory)
    params = parse_params({"pin": 17, "downstream_pin": 27, "loop_distance_m": 5.0},
                          "sensors[0]")
    driver = build("loop-n1", params, DriverContext(pin_factory=gpio.provider))
    with pytest.raises(DriverError, match="cannot open GPIO"):
        asyncio.run(driver.run(lambda s: None))
    holder.close()
    # pin 17 was released: another device can take it
    DigitalInputDevice(17, pin_factory=gpio.factory).close()
