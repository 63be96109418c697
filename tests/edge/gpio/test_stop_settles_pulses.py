"""A GPIO driver stopped (the agent stopping or restarting: an upgrade, a config change)
while a pulse is still being decided (debounced, or held for min_pulse_s) decides it
before it closes the pins: the pulse counts in the final partial interval (loops, doors)
or is numbered (a kiosk's ticket). Before, the run ended with the pulse undecided, and the
next run, starting on the level the pulse left, never saw its onset: a vehicle, a person
or a ticket lost at each stop. A change that settles back before the stop counts nothing."""

import asyncio
from typing import Any

from edge.drivers.base import DriverContext, Sample
from edge.drivers.door_counter.driver import build as build_door
from edge.drivers.door_counter.driver import parse_params as door_params
from edge.drivers.queue_kiosk.driver import build as build_kiosk
from edge.drivers.queue_kiosk.driver import parse_params as kiosk_params
from edge.drivers.traffic_loop.driver import build as build_loop
from edge.drivers.traffic_loop.driver import parse_params as loop_params

# long enough that the stop surely comes while the pulse is undecided
SLOW = {"debounce_s": 0.2, "min_pulse_s": 0.1}


async def _pulse_then_stop(gpio: Any, driver: Any, pin: int, *, settle_back: bool = False
                           ) -> list[Sample]:
    """Drive `pin` active (low), stop the driver as soon as it has the edge (with
    `settle_back`: drive it back first, a bounce), and return what the run emitted."""
    mock = gpio.factory.pin(pin)
    async with gpio.running(driver) as samples:
        await gpio.in_thread(mock.drive_low)
        await gpio.wait_until(lambda: driver.describe()["edges"] >= 1, "the edge")
        if settle_back:
            await gpio.in_thread(mock.drive_high)
            await gpio.wait_until(lambda: driver.describe()["edges"] >= 2, "the edge back")
        assert samples == []  # undecided yet
    assert not driver.describe()["running"]
    return samples


def test_a_vehicle_arriving_as_the_loop_driver_stops_is_counted(gpio) -> None:
    params = loop_params({"pin": 17, "interval_s": 3600, **SLOW}, "sensors[0]")
    driver = build_loop("loop-n1", params, DriverContext(pin_factory=gpio.provider))
    samples = asyncio.run(_pulse_then_stop(gpio, driver, 17))
    assert [s.values["count"] for s in samples] == [1]
    gpio.assert_contract(samples)


def test_a_person_passing_as_the_door_driver_stops_is_counted(gpio) -> None:
    params = door_params({"pin": 17, "interval_s": 3600, **SLOW}, "sensors[0]")
    driver = build_door("door-1", params, DriverContext(pin_factory=gpio.provider))
    samples = asyncio.run(_pulse_then_stop(gpio, driver, 17))
    assert [s.values["count"] for s in samples] == [1]
    gpio.assert_contract(samples)


def test_a_ticket_printed_as_the_kiosk_driver_stops_is_numbered(gpio) -> None:
    params = kiosk_params({"issue_pin": 16, "call_pins": [20], "debounce_s": 0.2},
                          "sensors[0]")
    driver = build_kiosk("kiosk-opd", params, DriverContext(pin_factory=gpio.provider))
    samples = asyncio.run(_pulse_then_stop(gpio, driver, 16))
    assert [dict(s.values) for s in samples] == [{"ticket": 1, "called": 0}]
    gpio.assert_contract(samples)


def test_a_bounce_settling_back_at_the_stop_counts_nothing(gpio) -> None:
    params = loop_params({"pin": 17, "interval_s": 3600, **SLOW}, "sensors[0]")
    driver = build_loop("loop-n1", params, DriverContext(pin_factory=gpio.provider))
    samples = asyncio.run(_pulse_then_stop(gpio, driver, 17, settle_back=True))
    assert [s.values["count"] for s in samples] == [0]
    kiosk = build_kiosk("kiosk-opd", kiosk_params({"issue_pin": 16, "call_pins": [20],
                                                   "debounce_s": 0.2}, "sensors[0]"),
                        DriverContext(pin_factory=gpio.provider))
    assert asyncio.run(_pulse_then_stop(gpio, kiosk, 16, settle_back=True)) == []


def test_a_failure_while_settling_still_ends_the_run_as_a_stop(gpio) -> None:
    """An error deciding the last pulse must not replace the stop: the agent would take it
    for a failed driver and start it again while it shuts down."""
    params = kiosk_params({"issue_pin": 16, "call_pins": [20], "debounce_s": 0.2},
                          "sensors[0]")
    driver = build_kiosk("kiosk-opd", params, DriverContext(pin_factory=gpio.provider))

    def broken(sample: Sample) -> None:
        raise ValueError("emit failed")

    async def scenario() -> asyncio.Task[None]:
        task = asyncio.create_task(driver.run(broken))
        await gpio.wait_until(lambda: driver.describe()["running"], "driver start")
        await gpio.in_thread(gpio.factory.pin(16).drive_low)
        await gpio.wait_until(lambda: driver.describe()["edges"] >= 1, "the edge")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return task

    task = asyncio.run(scenario())
    assert task.cancelled()
