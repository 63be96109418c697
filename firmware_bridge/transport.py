"""Async serial links over pyserial-asyncio-fast.

Every wait is bounded: opening, reading, draining a write, closing. Foreign errors come
out as firmware_bridge errors (see errors.py). `ReconnectingLink` reopens a port that
vanished (a USB adapter pulled and plugged back, found again under its stable
`/dev/serial/by-id/...` name), with jittered exponential backoff.

Deadlines and answers: a read that reaches its deadline returns what had already arrived
rather than time out (an event loop held up past the deadline wakes to both the port's
bytes and the timer; the timer cancelled the read, and those bytes went to the next read,
after the next request was sent, as its answer). A poller listening between requests
(`listen_until`) finishes a frame whose first bytes it holds, up to FINISH_FRAME_S past
the next request's time, before it asks again. What arrives after a request is sent can
only be taken for its answer: the protocols carry no request number."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import random
from collections.abc import Callable
from typing import Any, TypeVar

import serial
import serial_asyncio_fast

from firmware_bridge.decoding import FrameDecoder
from firmware_bridge.errors import (
    LinkLostError,
    LinkTimeoutError,
    PortBusyError,
    PortNotFoundError,
    ProtocolError,
    SerialLinkError,
)

F = TypeVar("F")

_READ_CHUNK = 4096


def _translate(port: str, exc: BaseException, doing: str) -> SerialLinkError:
    code = getattr(exc, "errno", None)
    text = f"{doing}: {exc}"
    if code in (errno.ENOENT, errno.ENXIO, errno.ENODEV):
        return PortNotFoundError(port, text)
    if code in (errno.EAGAIN, errno.EBUSY) or "exclusively lock" in str(exc):
        return PortBusyError(port, text)
    return SerialLinkError(port, text)


class SerialLink:
    """An open serial port. Made by `open_link`; `timeout_s` bounds every wait."""

    def __init__(
        self,
        port: str,
        baudrate: int,
        timeout_s: float,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        coalesce_s: float = 0.0,
    ) -> None:
        self.port = port
        self.baudrate = baudrate
        self.timeout_s = timeout_s
        self._reader = reader
        self._writer = writer
        self._closed = False
        self.coalesce_s = coalesce_s

    @property
    def closed(self) -> bool:
        return self._closed

    async def read(self, max_bytes: int = _READ_CHUNK, timeout_s: float | None = None) -> bytes:
        """At least one byte, at most `max_bytes`. LinkTimeoutError if none came in time,
        LinkLostError if the port went away. A cancellation while the read rests after
        taking bytes (coalesce_s) does not drop them: they are returned, and the caller
        stops at raise_if_cancelled once it has handed them on, or at its next read or
        write, which re-raise it."""
        raise_if_cancelled()
        if self._closed:
            raise LinkLostError(self.port, "link is closed")
        wait = self.timeout_s if timeout_s is None else timeout_s
        try:
            # asyncio.timeout, not wait_for: on 3.11, wait_for can swallow a cancellation that
            # races with arriving data, and the driver would then hang until its timeout.
            async with asyncio.timeout(wait):
                data = await self._reader.read(max_bytes)
        except TimeoutError as exc:
            data = await self._arrived(max_bytes)
            if not data:
                raise LinkTimeoutError(self.port, f"nothing received in {wait:g} s") from exc
            return data  # the caller's time is up: no rest
        except (serial.SerialException, OSError) as exc:
            raise LinkLostError(self.port, f"read failed: {exc}") from exc
        if not data:
            raise LinkLostError(self.port, "port closed")
        if self.coalesce_s > 0:
            # Let the kernel gather the next bytes: a UART at 9600 baud otherwise wakes the
            # event loop once per byte, which is most of an edge node's CPU.
            transport = self._writer.transport
            transport.pause_reading()  # type: ignore[attr-defined]
            try:
                await asyncio.sleep(self.coalesce_s)
            except asyncio.CancelledError:
                pass  # stopped: what was taken is returned (a ticket, a vehicle), see above
            finally:
                if not transport.is_closing():
                    transport.resume_reading()  # type: ignore[attr-defined]
        return data

    async def _arrived(self, max_bytes: int) -> bytes:
        """What the stream already holds, without waiting (b"" if nothing). An event loop
        held up past a read's deadline (a loaded machine, other work on the loop) runs the
        port's callback, which takes the bytes, and then the timeout, which cancels the read
        before it wakes: the bytes came in time but stay in the stream, and were taken by
        the next read, after the next request was sent, as its answer."""
        try:
            async with asyncio.timeout(0):  # returns without suspending if bytes are there
                return await self._reader.read(max_bytes)
        except TimeoutError:
            return b""
        except (serial.SerialException, OSError) as exc:
            raise LinkLostError(self.port, f"read failed: {exc}") from exc

    async def write(self, data: bytes) -> None:
        raise_if_cancelled()  # a cancellation read() deferred: stop rather than ask again
        if self._closed or self._writer.is_closing():
            raise LinkLostError(self.port, "link is closed")
        try:
            self._writer.write(data)
            async with asyncio.timeout(self.timeout_s):
                await self._writer.drain()
        except TimeoutError as exc:
            raise LinkTimeoutError(self.port, f"write did not drain in {self.timeout_s:g} s") from exc
        except (serial.SerialException, OSError) as exc:
            raise LinkLostError(self.port, f"write failed: {exc}") from exc

    async def request(
        self,
        command: bytes,
        decoder: FrameDecoder[F],
        match: Callable[[F], bool],
        *,
        retries: int = 2,
        timeout_s: float | None = None,
        on_other: Callable[[F], None] | None = None,
    ) -> F:
        """Send `command` and wait for the first decoded frame that `match`es, resending
        up to `retries` times if none comes within the timeout. Frames that do not
        match (a reading that crossed the command on the line) go to `on_other`."""
        wait = self.timeout_s if timeout_s is None else timeout_s
        loop = asyncio.get_running_loop()
        for _ in range(retries + 1):
            await self.write(command)
            deadline = loop.time() + wait
            while (remaining := deadline - loop.time()) > 0:
                try:
                    data = await self.read(timeout_s=remaining)
                except LinkTimeoutError:
                    break
                found: F | None = None
                for frame in decoder.feed(data):
                    if found is None and match(frame):
                        found = frame
                    elif on_other is not None:
                        on_other(frame)
                if found is not None:
                    return found
        raise ProtocolError(f"{self.port}: no valid reply to {command.hex(' ')} after {retries + 1} attempts")

    async def listen_until(self, deadline: float, decoder: FrameDecoder[F],
                           on_frame: Callable[[F], None], *,
                           finish_s: float | None = None) -> None:
        """Until loop time `deadline`, feed what arrives to `decoder` and each frame to
        `on_frame`. A poller waits so between requests: an answer that came after its
        request gave up is taken when it comes, not as the answer to the next request
        (which would pair every later request with the answer before it). While the
        decoder holds a frame's first bytes, the wait runs to `deadline` + `finish_s`
        (FINISH_FRAME_S) instead, also for a read begun before `deadline`: asked over, the
        frame completed in the next request's window and was taken for its answer."""
        finish = FINISH_FRAME_S if finish_s is None else finish_s
        loop = asyncio.get_running_loop()
        while (remaining := (deadline + finish if decoder.buffered else deadline)
               - loop.time()) > 0:
            try:
                data = await self.read(timeout_s=remaining)
            except LinkTimeoutError:
                return
            for frame in decoder.feed(data):
                on_frame(frame)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._writer.close()
        try:
            async with asyncio.timeout(self.timeout_s):
                await self._writer.wait_closed()
        except TimeoutError as exc:
            raise LinkTimeoutError(self.port, "close did not finish") from exc
        except (serial.SerialException, OSError):
            pass  # the port is already gone: closed is what we wanted


COALESCE_S = 0.1
# How long a poller waits past its next request's time for the rest of a frame whose first
# bytes it holds: a 32-byte frame takes 33 ms at 9600 baud, a read rests COALESCE_S, and a
# USB adapter sends what it holds within its latency timer (16 ms by default).
FINISH_FRAME_S = 0.25


def raise_if_cancelled() -> None:
    """Re-raise a cancellation that arrived while a read was completing: the read returned
    its data, and the task must still stop rather than send its next request."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def open_link(port: str, baudrate: int, timeout_s: float, *, exclusive: bool = True,
                    coalesce_s: float = COALESCE_S) -> SerialLink:
    """Open `port` at `baudrate`, 8N1, exclusively (flock) unless told otherwise. After each
    read the port rests `coalesce_s` so that bytes arrive in chunks (0: no pause)."""
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be positive, got {timeout_s}")
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await serial_asyncio_fast.open_serial_connection(
                url=port, baudrate=baudrate, exclusive=exclusive)
    except TimeoutError as exc:
        raise LinkTimeoutError(port, f"open did not finish in {timeout_s:g} s") from exc
    except (serial.SerialException, OSError, ValueError) as exc:
        raise _translate(port, exc, "cannot open") from exc
    return SerialLink(port, baudrate, timeout_s, reader, writer, coalesce_s)


class ReconnectingLink:
    """A link that survives the port vanishing. `read`, `write` and `request` reopen the
    port as needed; while it stays absent they raise the last open error once their
    timeout has passed, and the next call keeps trying. `opens` counts successful opens
    (a sensor that was unplugged has lost power and warms up again)."""

    def __init__(
        self,
        port: str,
        baudrate: int,
        timeout_s: float,
        *,
        exclusive: bool = True,
        backoff_initial_s: float = 0.05,
        backoff_max_s: float = 5.0,
        rng: random.Random | None = None,
    ) -> None:
        self.port = port
        self.baudrate = baudrate
        self.timeout_s = timeout_s
        self.exclusive = exclusive
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.opens = 0
        self.losses = 0
        self._rng = rng or random.Random()
        self._link: SerialLink | None = None
        self._failures = 0

    @property
    def connected(self) -> bool:
        return self._link is not None

    async def _ensure(self) -> SerialLink:
        if self._link is not None:
            return self._link
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        while True:
            try:
                self._link = await open_link(
                    self.port, self.baudrate, self.timeout_s, exclusive=self.exclusive
                )
            except SerialLinkError as exc:
                self._failures += 1
                delay = min(self.backoff_max_s, self.backoff_initial_s * 2 ** (self._failures - 1))
                delay *= self._rng.uniform(0.5, 1.0)
                if loop.time() + delay > deadline:
                    raise exc
                await asyncio.sleep(delay)
                continue
            self._failures = 0
            self.opens += 1
            return self._link

    async def _lost(self) -> None:
        link, self._link = self._link, None
        self.losses += 1
        if link is not None:
            with contextlib.suppress(SerialLinkError):
                await link.close()

    async def _with_link(self, op: Callable[[SerialLink], Any]) -> Any:
        link = await self._ensure()
        try:
            return await op(link)
        except LinkLostError:
            await self._lost()
            raise

    async def read(self, max_bytes: int = _READ_CHUNK) -> bytes:
        """Bytes from the port; LinkLostError once when it vanishes (the caller learns
        that the stream broke), then the next call reopens it."""
        data: bytes = await self._with_link(lambda link: link.read(max_bytes))
        return data

    async def write(self, data: bytes) -> None:
        await self._with_link(lambda link: link.write(data))

    async def request(
        self,
        command: bytes,
        decoder: FrameDecoder[F],
        match: Callable[[F], bool],
        *,
        retries: int = 2,
        on_other: Callable[[F], None] | None = None,
    ) -> F:
        frame: F = await self._with_link(
            lambda link: link.request(command, decoder, match, retries=retries, on_other=on_other)
        )
        return frame

    async def close(self) -> None:
        link, self._link = self._link, None
        if link is not None:
            await link.close()
