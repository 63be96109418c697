"""A GPIO driver whose pins fail to close at the stop (the pin factory's release raising:
a GPIO chip gone, a driver bug) still hands over what its run counted: the edges queued
before the stop and the final partial interval. Before, the error skipped both, and a
door's people (a loop's vehicles) of the interval under way were lost."""

import asyncio
import gc
from typing import Any

import pytest

from edge.drivers.base import DriverContext, Sample
from edge.drivers.door_counter.driver import build as build_door
from edge.drivers.door_counter.driver import parse_params as door_params


def test_a_pin_failing_to_close_at_the_stop_loses_none_of_the_interval(gpio: Any) -> None:
    params = door_params({"pin": 17, "interval_s": 3600, "debounce_s": 0.005, "min_pulse_s": 0.0},
                         "sensors[0]")
    driver = build_door("door-1", params, DriverContext(pin_factory=gpio.provider))
    mock = gpio.factory.pin(17)
    samples: list[Sample] = []

    def close_fails() -> None:
        raise OSError("GPIO chip gone")

    async def scenario() -> None:
        task = asyncio.create_task(driver.run(samples.append))
        await gpio.wait_until(lambda: driver.describe()["running"], "driver start")
        for _ in range(2):
            # beam broken = receiver output pulled low (pull-up, active low)
            await gpio.in_thread(mock.drive_low)
            await gpio.wait_until(lambda: driver.describe()["broken"] == [True], "the beam broken")
            await gpio.in_thread(mock.drive_high)
            await gpio.wait_until(lambda: driver.describe()["broken"] == [False], "the beam whole")
        mock.close = close_fails  # type: ignore[method-assign]
        task.cancel()
        with pytest.raises((asyncio.CancelledError, OSError)):
            await task

    try:
        asyncio.run(scenario())
    finally:
        del mock.close  # the pin closes again, for the device's finaliser (else it raises
        gc.collect()    # in whichever test the garbage collector runs it)
    assert [s.values["count"] for s in samples] == [2]
    gpio.assert_contract(samples)
