"""The GPIO test kit's own deadlines (tests/edge/gpio/conftest.py). A driver on a FakeClock
stopped while a change is still being decided settles on that clock, which nothing moves
any more: `running` awaited the driver's task without a deadline, so the test hung until
pytest's 300 s timeout, its own failure hidden and no driver frame in the timeout's dump.
A pin change stuck in its thread hung the same way (asyncio.to_thread has no deadline, and
asyncio.run waits for its executor's threads at shutdown, on Python 3.11 without a
deadline)."""

import asyncio
import threading
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from edge.drivers.base import DriverContext
from edge.drivers.traffic_loop.driver import build, parse_params
from urbanpulse.clock import FakeClock


@pytest.mark.timeout(60)
def test_a_driver_that_cannot_settle_its_stop_fails_the_test_instead_of_hanging(
        gpio: Any) -> None:
    clock = FakeClock(datetime(2026, 3, 2, 1, 0, 5, tzinfo=UTC))
    params = parse_params({"pin": 17, "interval_s": 60}, "sensors[0]")
    driver = build("loop-1", params, DriverContext(clock=clock, pin_factory=gpio.provider))
    pin = gpio.factory.pin(17)

    async def scenario() -> None:
        async with gpio.running(driver, stop_timeout=0.5):
            await gpio.in_thread(pin.drive_low)  # an onset, debounced on the FakeClock
            await gpio.wait_until(lambda: driver.describe()["edges"] == 1, "the edge")
            raise RuntimeError("the test failed here")  # the clock never moves past it

    started = time.monotonic()
    with pytest.raises(AssertionError, match=r"did not stop within 0\.5 s") as failed:
        asyncio.run(scenario())
    assert time.monotonic() - started < 30
    assert "_settle" in str(failed.value)  # where the driver's task was
    assert isinstance(failed.value.__context__, RuntimeError)  # the test's own failure
    assert driver.describe()["running"] is False  # the second cancel ended the run


@pytest.mark.timeout(60)
def test_a_pin_change_stuck_in_its_thread_fails_the_test_instead_of_hanging(
        gpio: Any) -> None:
    gate = threading.Event()

    async def scenario() -> None:
        await gpio.in_thread(gate.wait, timeout=0.5)

    started = time.monotonic()
    try:
        with pytest.raises(AssertionError, match=r"did not return within 0\.5 s") as failed:
            asyncio.run(scenario())
    finally:
        gate.set()
    assert time.monotonic() - started < 30  # asyncio.run did not wait for the thread
    assert "in wait" in str(failed.value)  # the stuck thread's stack


def test_a_pin_change_raising_fails_the_test_with_its_error(gpio: Any) -> None:
    def broken() -> None:
        raise ValueError("pin 17 is not an input")

    async def scenario() -> None:
        await gpio.in_thread(broken)

    with pytest.raises(ValueError, match="not an input"):
        asyncio.run(scenario())
