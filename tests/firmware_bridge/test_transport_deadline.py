"""Serial reads and their deadlines, on a real pseudo-terminal. An answer that came in time
was taken for the next request's answer in two ways: a read whose event loop was held up
past its deadline timed out with the bytes already taken from the port (they went to the
next read, after the next request), and a poller listening between requests asked again
with a frame's first bytes in hand when the read that took them had returned before the
request's time (the mhz19b test of a late answer split across the next query failed
under load, 2 in 16 runs)."""

from __future__ import annotations

import asyncio
import os
import select
import time

import pytest
import serial_asyncio_fast

from firmware_bridge.errors import LinkTimeoutError
from firmware_bridge.protocols.mhz19b import Mhz19bDecoder
from firmware_bridge.protocols.mhz19b.frames import Mhz19bReading
from firmware_bridge.protocols.mhz19b.wire import encode_reading
from firmware_bridge.transport import SerialLink

ANSWER = encode_reading(812, 28)


async def _link(path: str) -> SerialLink:
    reader, writer = await serial_asyncio_fast.open_serial_connection(url=path, baudrate=9600)
    return SerialLink(path, 9600, 5.0, reader, writer, coalesce_s=0.0)


def _readable(path: str, timeout_s: float) -> bool:
    """The pty's slave side has bytes to read (looked at through a descriptor of its own)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
    try:
        return bool(select.select([fd], [], [], timeout_s)[0])
    finally:
        os.close(fd)


def test_bytes_that_came_before_a_held_up_loop_saw_the_deadline_are_returned(
        pty: tuple[int, str]) -> None:
    master, path = pty

    async def scenario() -> None:
        link = await _link(path)
        loop = asyncio.get_running_loop()
        read = asyncio.create_task(link.read(timeout_s=0.2))
        await asyncio.sleep(0)  # the read waits for bytes
        deadline = loop.time() + 0.2
        os.write(master, ANSWER)
        # The loop held up (by this blocking code; on a node, a loaded CPU or other work
        # on the loop) from before the bytes came until after the read's deadline: it then
        # wakes to both, runs the port's callback first, then the timeout.
        assert _readable(path, 5.0)
        while loop.time() <= deadline:
            time.sleep(0.02)  # the loop held past the deadline: the time itself, not a synchronisation
        try:
            assert await read == ANSWER  # before: LinkTimeoutError, the bytes left behind
        finally:
            await link.close()

    asyncio.run(scenario())


def test_a_read_with_nothing_come_still_times_out(pty: tuple[int, str]) -> None:
    _, path = pty

    async def scenario() -> None:
        link = await _link(path)
        started = time.monotonic()
        try:
            with pytest.raises(LinkTimeoutError):
                await link.read(timeout_s=0.1)
        finally:
            await link.close()
        assert time.monotonic() - started < 2.0

    asyncio.run(scenario())


def test_a_frame_begun_before_the_next_request_is_finished_before_it(
        pty: tuple[int, str]) -> None:
    """The first bytes are read well before the deadline, the rest comes just after it:
    listen_until waits for them (up to finish_s past the deadline, here wide)."""
    master, path = pty

    async def scenario() -> None:
        link = await _link(path)
        loop = asyncio.get_running_loop()
        frames: list[object] = []
        deadline = loop.time() + 0.3
        os.write(master, ANSWER[:3])
        loop.call_at(deadline + 0.05, os.write, master, ANSWER[3:])
        try:
            await link.listen_until(deadline, Mhz19bDecoder(), frames.append, finish_s=5.0)
        finally:
            await link.close()
        assert frames == [Mhz19bReading(812, 28)]  # before: [], the frame left half read
        assert loop.time() < deadline + 5.0  # returned once it was whole

    asyncio.run(scenario())
