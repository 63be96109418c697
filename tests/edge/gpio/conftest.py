"""Fixtures for the GPIO driver tests: run a driver under asyncio on gpiozero's
MockFactory pins and wait for what it emits, polling with a deadline.

A Raspberry Pi's GPIO chip cannot run here; MockFactory is gpiozero's own stand-in and
drives the same DigitalInputDevice code paths (pull resistors, active state, callbacks).

Every wait here has a deadline, the driver's stop and the pin change in another thread
included: a driver on a FakeClock stopped while a change is still being decided settles on
that clock (GpioDriver._settle, up to STOP_SETTLE_MAX_S of its time), which no one moves
any more, so an unbounded `await task` waited forever and hid whatever the test had
failed on (pytest-timeout's dump then shows only the event loop's select). Such a stop
now fails with where the driver's task was; a pin change stuck in its thread, with that
thread's stack.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
import time
import traceback
from collections.abc import AsyncIterator, Callable
from datetime import UTC
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory

from edge.drivers.base import Driver, Sample
from edge.gpio.runtime import STOP_SETTLE_MAX_S
from urbanpulse.clock import to_epoch_ns
from urbanpulse.wire.payload import Reading, decode_batch, encode_batch

DEADLINE_S = 5.0
# A stopping driver may keep its pins open STOP_SETTLE_MAX_S to decide a change under way.
STOP_DEADLINE_S = STOP_SETTLE_MAX_S + DEADLINE_S


def _awaiting(task: asyncio.Task[Any]) -> str:
    """Where a suspended task is, down its chain of awaited coroutines (Task.get_stack
    stops at the task's own coroutine)."""
    frames = []
    awaited: Any = task.get_coro()
    while awaited is not None and getattr(awaited, "cr_frame", None) is not None:
        frames.append((awaited.cr_frame, awaited.cr_frame.f_lineno))
        awaited = awaited.cr_await
    return "".join(traceback.StackSummary.extract(frames).format())


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
            await asyncio.sleep(0.002)  # the poll's interval, under a deadline

    @staticmethod
    @contextlib.asynccontextmanager
    async def running(driver: Driver, stop_timeout: float = STOP_DEADLINE_S
                      ) -> AsyncIterator[list[Sample]]:
        """Run `driver` in a task; yields the list it emits into; cancels it at the end and
        re-raises anything the driver raised (`stop`)."""
        samples: list[Sample] = []
        task = asyncio.create_task(driver.run(samples.append))
        try:
            await GpioKit.wait_until(lambda: task.done() or driver.describe()["running"],
                                     "driver start")
            if task.done():
                task.result()
            yield samples
        finally:
            await GpioKit.stop(task, stop_timeout)

    @staticmethod
    async def stop(task: asyncio.Task[None], timeout: float = STOP_DEADLINE_S) -> None:
        """Cancel a driver's task and wait for it to end, at most `timeout` s; re-raises
        what the driver raised. A driver still running then (settling on a FakeClock that
        the test no longer moves) is cancelled again, which ends its settle, and the stop
        fails with where it was."""
        task.cancel()
        await asyncio.wait({task}, timeout=timeout)
        if not task.done():
            where = _awaiting(task)
            task.cancel()
            await asyncio.wait({task}, timeout=DEADLINE_S)
            raise AssertionError(
                f"the driver did not stop within {timeout} s of its cancellation (a change "
                f"still being decided on a clock that no longer moves?); its task was at:\n"
                f"{where}")
        with contextlib.suppress(asyncio.CancelledError):
            task.result()

    @staticmethod
    async def in_thread(fn: Callable[[], Any], timeout: float = DEADLINE_S) -> None:
        """Change a mock pin from another thread, as lgpio's callback thread would. A
        thread of its own, not asyncio's executor: one stuck past `timeout` fails the test
        with its stack and is left behind (daemon), where asyncio.run would have waited
        for the executor's thread at its shutdown (on Python 3.11 without a deadline)."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def finish(error: BaseException | None) -> None:
            if done.done():
                return
            if error is None:
                done.set_result(None)
            else:
                done.set_exception(error)

        def call() -> None:
            try:
                fn()
            except BaseException as exc:  # noqa: BLE001 - re-raised in the test's task
                error: BaseException | None = exc
            else:
                error = None
            with contextlib.suppress(RuntimeError):  # the loop closed: the test is gone
                loop.call_soon_threadsafe(finish, error)

        thread = threading.Thread(target=call, name=f"pin change {fn!r}", daemon=True)
        thread.start()
        try:
            await asyncio.wait_for(done, timeout)
        except TimeoutError:
            frame = sys._current_frames().get(thread.ident or -1)
            where = "".join(traceback.format_stack(frame)) if frame is not None else ""
            raise AssertionError(f"the pin change {fn!r} did not return within {timeout} s; "
                                 f"its thread is at:\n{where}") from None

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
