"""Active mode, shared by the serial drivers whose sensor reports by itself."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from edge.errors import DriverError
from firmware_bridge.errors import LinkTimeoutError
from firmware_bridge.transport import SerialLink, raise_if_cancelled


async def listen(link: SerialLink, frames: Callable[[bytes], Iterable[object]],
                 take: Callable[[object], bool], silence_s: float,
                 fail: Callable[[str], DriverError]) -> None:
    """Read until cancelled or failed. Each decoded frame goes to `take`, which emits it if
    it is a measurement and says so. Only a measurement proves the sensor well: bytes that
    never make one (a wrong rate, a damaged cable) fail the driver as silence does."""
    loop = asyncio.get_running_loop()
    last_ok = loop.time()
    while True:
        remaining = last_ok + silence_s - loop.time()
        try:
            data = await link.read(timeout_s=max(remaining, 0.001))
        except LinkTimeoutError as exc:
            raise fail(f"no valid frame in {silence_s:g} s") from exc
        for frame in frames(data):
            if take(frame):
                last_ok = loop.time()
        raise_if_cancelled()  # only after what was read is emitted
        if loop.time() - last_ok >= silence_s:
            raise fail(f"no valid frame in {silence_s:g} s (garbage only)")
