"""Running a serial driver against an emulator on a real pseudo-terminal: the driver's
`run(emit)` as an asyncio task, and deadline-bounded waits for what it emitted."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from edge.drivers.base import Driver, Sample
from firmware_bridge.emulator.pty_device import PtyEmulator


def cpu_wait_s() -> float:
    """Seconds this process's threads (the event loop's, the emulator's) have spent runnable
    but waiting for a CPU: Linux's schedstat run_delay, summed; 0 where there is none.
    Summed, because the loop also waits for the GIL while the emulator's thread, holding it,
    waits for a CPU; two threads waiting at once count twice (a loaded machine only)."""
    total = 0
    for stat in Path("/proc/self/task").glob("*/schedstat"):
        try:
            total += int(stat.read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue  # a thread that ended meanwhile
    return total / 1e9


class Elapsed:
    """Seconds since it was made, less the time the machine kept this process from running
    in between (`cpu_wait_s`). A driver's deadline fires late by that on a loaded machine
    (other tests, other workers): a bound on how long the driver itself waits holds there
    too, and is as tight as on an idle machine, where nothing waits for a CPU."""

    def __init__(self) -> None:
        self._started = time.monotonic()
        self._cpu_wait = cpu_wait_s()

    def __call__(self) -> float:
        # a thread that ended meanwhile takes its wait with it: counted less
        return time.monotonic() - self._started - max(cpu_wait_s() - self._cpu_wait, 0.0)


class Noisy(PtyEmulator):
    """Mixed in before a sensor's emulator: once `noisy` is set, every frame is damaged (a
    wrong rate, a bad cable): bytes keep coming but none is a frame."""

    noisy = False

    def _send_frame(self, frame: bytes) -> None:
        if self.noisy:
            frame = bytes(b ^ 0x5A for b in frame)
        super()._send_frame(frame)


class DriverRun:
    """A driver running on the current event loop; `samples` holds what it emitted."""

    def __init__(self, driver: Driver) -> None:
        self.driver = driver
        self.samples: list[Sample] = []
        self.task: asyncio.Task[None] = asyncio.create_task(driver.run(self.samples.append))

    async def wait_for(self, check: Callable[[list[Sample]], bool], timeout_s: float, what: str) -> None:
        """Poll until `check(samples)` holds; fail at the deadline (or if the driver ended)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not check(self.samples):
            if self.task.done():
                self.task.result()  # re-raises the driver's error
                raise AssertionError(f"driver ended before {what}")
            if loop.time() > deadline:
                raise AssertionError(f"timed out after {timeout_s} s waiting for {what}; "
                                     f"got {len(self.samples)} samples: {self.samples[-3:]}")
            await asyncio.sleep(0.01)  # the poll's interval, under a deadline

    async def count(self, n: int, timeout_s: float = 5.0) -> list[Sample]:
        await self.wait_for(lambda s: len(s) >= n, timeout_s, f"{n} samples")
        return list(self.samples)

    async def failure(self, timeout_s: float) -> BaseException:
        """The exception `run` ended with, within `timeout_s`."""
        done, _ = await asyncio.wait({self.task}, timeout=timeout_s)
        assert done, f"run() did not fail within {timeout_s} s"
        exc = self.task.exception()
        assert exc is not None, "run() returned instead of failing"
        return exc

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


@pytest.fixture
def emulated() -> Iterator[Callable[[PtyEmulator], Any]]:
    """emulated(emulator) starts it and stops it at the end of the test."""
    started: list[PtyEmulator] = []

    def start(emu: PtyEmulator) -> Any:
        emu.start()
        started.append(emu)
        return emu

    yield start
    for emu in started:
        emu.stop()


async def one_late_answer(run: DriverRun, emu: PtyEmulator, made: list[float]) -> None:
    """Holds one answer back past the query's reply timeout (0.3 s) and before the next
    query (1 s after), with the driver querying every 1 s and the emulator numbering its
    measurements (pm25 = n, measured at `made[n - 1]`), and checks that each reading is
    stamped when it was measured: the reads' 0.1 s pauses that gather bytes (two when a
    frame comes in two reads), and 0.5 s more for the late answer alone (a query interval
    more, 1 s, when it was paired with the next query); one missed and one late reply."""
    await run.wait_for(lambda s: run.driver.describe().get("queries", 0) >= 3, 8, "3 queries")
    n, before = len(run.samples), run.driver.describe()
    emu.delay_next_frame(0.5)
    await run.count(n + 4, timeout_s=8.0)
    await run.stop()
    lags = sorted(s.ts.timestamp() - made[int(s.values["pm25"]) - 1] for s in run.samples[n:])
    assert lags[-1] < 0.5 + 0.45, lags
    assert all(-0.05 < lag < 0.45 for lag in lags[:-1]), lags
    after = run.driver.describe()
    assert [after[k] - before[k] for k in ("missed_replies", "late_replies")] == [1, 1]
