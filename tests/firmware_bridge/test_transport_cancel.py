"""A serial read rests `coalesce_s` (0.1 s) after it took bytes, to let the next ones
gather. A stop (the driver's task cancelled) during that rest dropped the bytes it had
taken: a upfw ticket or vehicle sentence read just before an agent stop or upgrade was
never decoded. The read now returns them; the caller stops at raise_if_cancelled after
handing them on, or at its next read or write, which re-raise the cancellation."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import serial_asyncio_fast

from firmware_bridge.protocols.upfw import TicketIssued, UpfwDecoder
from firmware_bridge.protocols.upfw.wire import encode
from firmware_bridge.transport import SerialLink, raise_if_cancelled

SENTENCE = encode(TicketIssued(12, 305000, "A", 1042, 17))


class _Took:
    """The stream reader of the link, telling when a read has taken bytes from it."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self.reader = reader
        self.took = asyncio.Event()

    async def read(self, n: int) -> bytes:
        data = await self.reader.read(n)
        self.took.set()
        return data


async def _link(path: str) -> tuple[SerialLink, _Took]:
    reader, writer = await serial_asyncio_fast.open_serial_connection(url=path, baudrate=115200)
    took = _Took(reader)
    return SerialLink(path, 115200, 5.0, took, writer, coalesce_s=5.0), took  # type: ignore[arg-type]


def test_a_read_stopped_while_it_gathers_bytes_returns_them(pty: tuple[int, str]) -> None:
    master, path = pty

    async def scenario() -> None:
        link, took = await _link(path)
        frames: list[Any] = []
        decoder = UpfwDecoder()

        async def driver() -> None:
            while True:
                frames.extend(decoder.feed(await link.read()))
                raise_if_cancelled()

        task = asyncio.create_task(driver())
        await asyncio.sleep(0)  # the task waits for bytes
        os.write(master, SENTENCE)
        await asyncio.wait_for(took.took.wait(), 5.0)  # taken; now resting
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await link.close()
        assert task.cancelled()
        assert frames == [TicketIssued(12, 305000, "A", 1042, 17)]

    asyncio.run(scenario())


def test_the_next_read_after_such_a_stop_raises_at_once(pty: tuple[int, str]) -> None:
    master, path = pty

    async def scenario() -> None:
        link, took = await _link(path)
        got: list[bytes] = []

        async def caller() -> None:  # no raise_if_cancelled of its own
            got.append(await link.read())
            await link.read(timeout_s=5.0)

        task = asyncio.create_task(caller())
        await asyncio.sleep(0)  # the task waits for bytes
        os.write(master, SENTENCE)
        await asyncio.wait_for(took.took.wait(), 5.0)
        started = time.monotonic()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await link.close()
        assert task.cancelled()
        assert got == [SENTENCE]
        assert time.monotonic() - started < 1.0  # not after the second read's 5 s

    asyncio.run(scenario())
