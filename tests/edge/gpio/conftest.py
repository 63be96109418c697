"""Fixtures for the GPIO driver tests: run a driver under asyncio on gpiozero's
MockFactory pins and wait for what it emits, polling with a deadline.

A Raspberry Pi's GPIO chip cannot run here; MockFactory is gpiozero's own stand-in and
drives the same DigitalInputDevice code paths (pull resistors, active state, callbacks).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory

from edge.drivers.base import Driver, Sample
from urbanpulse.clock import to_epoch_ns
from urbanpulse.wire.payload import Reading, decode_batch, encode_batch

DEADLINE_S = 5.0


class GpioKit:
    """What a driver test needs: fresh mock pins and the helpers below."""

    def __init__(self) -> None:
        self.factory = MockFactory()

    def provider(self) -> Any:
        return self.factory

    @staticmethod
    async def wait_until(predicate: Callable[[], bool], what: str,
                         timeout: float = DEADLINE_S) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}")
            await asyncio.sleep(0.002)

    @staticmethod
    @contextlib.asynccontextmanager
    async def running(driver: Driver) -> AsyncIterator[list[Sample]]:
        """Run `driver` in a task; yields the list it emits into; cancels it at the end and
        re-raises anything the driver raised."""
        samples: list[Sample] = []
        task = asyncio.create_task(driver.run(samples.append))
        try:
            await GpioKit.wait_until(lambda: task.done() or driver.describe()["running"],
                                     "driver start")
            if task.done():
                task.result()
            yield samples
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @staticmethod
    async def in_thread(fn: Callable[[], Any]) -> None:
        """Change a mock pin from another thread, as lgpio's callback thread would."""
        await asyncio.to_thread(fn)

    @staticmethod
    def assert_contract(samples: list[Sample]) -> None:
        """Every sample is a valid reading of contract v1 (each in its own batch)."""
        for i, s in enumerate(samples):
            assert s.ts.tzinfo is not None
            assert s.ts.utcoffset() == UTC.utcoffset(None)
            reading = Reading(s.sensor, s.kind, to_epoch_ns(s.ts), i, dict(s.values), s.flags)
            parsed = decode_batch(encode_batch("hn-test", "node-1", [reading]))
            assert parsed.rejected == [], parsed.rejected


@pytest.fixture
def gpio() -> GpioKit:
    return GpioKit()
