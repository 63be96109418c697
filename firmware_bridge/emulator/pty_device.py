"""A serial device behind a pseudo-terminal, run by a background thread.

The client opens the slave side like a real port (`/dev/pts/N`, or a stable symlink the
emulator manages, like `/dev/serial/by-id/...`). The emulator owns only the master side.

A client that may open the port again after the emulator stopped or was unplugged (an
agent restarting its driver) must be given the link (`link_path`), which goes with the
emulator. The kernel gives a new pty the lowest free number, often the one just freed: the
client's retry of a raw `/dev/pts/N` opens the next emulator made on the machine (another
test's, with tests in parallel), and its exclusive lock keeps that emulator's own client
out (PortBusyError at every restart).

Knowing when a client is there: the emulator does not keep the slave open, so the
master reports POLLHUP while nobody has the port open. The master runs in packet mode
(TIOCPKT), so when the client flushes its input queue (pyserial does on open) the master
reads a TIOCPKT_FLUSHREAD control byte: output starts right then and is not lost to that
flush. A client that never flushes is served after `attach_grace_s`.

Bytes leave at the UART rate (10 bits per byte at 8N1: about 1.04 ms at 9600 baud), so
clients see partial frames as they would on a real line."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import math
import os
import queue
import random
import select
import struct
import termios
import threading
import time
import tty
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TypeVar

from firmware_bridge.errors import BridgeError

T = TypeVar("T")

_TIOCPKT_FLUSHREAD = 0x01
_DETACHED_RECHECK_S = 0.02
_ACTION_TIMEOUT_S = 5.0


class EmulatorError(BridgeError):
    """The emulator could not start, or its device logic failed."""


class PtyEmulator(ABC):
    """Base of the protocol emulators. Subclasses implement the device; the base owns
    the pty, the thread, pacing, attach detection, faults and unplug/replug."""

    def __init__(
        self,
        *,
        baudrate: int,
        link_path: str | None = None,
        pace: bool = True,
        attach_grace_s: float = 0.2,
        seed: int | None = None,
    ) -> None:
        if baudrate <= 0:
            raise ValueError(f"baudrate must be positive, got {baudrate}")
        self.baudrate = baudrate
        self.link_path = link_path
        self.pace = pace
        self.attach_grace_s = attach_grace_s
        self.byte_time_s = 10.0 / baudrate
        self.bytes_written = 0  # reached the client
        self.bytes_dropped = 0  # the client's input buffer was full
        self.bytes_unheard = 0  # sent while no client had the port open
        self.bytes_heard = 0  # written by the client
        self.rng = random.Random(seed)
        self._master: int | None = None
        self._pty_path: str | None = None
        self._thread: threading.Thread | None = None
        self._wake_r = -1
        self._wake_w = -1
        self._actions: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._stopping = False
        self._failure: BaseException | None = None
        self._attached = threading.Event()
        self._pending_since: float | None = None
        self._out = bytearray()
        self._next_byte_at = 0.0
        self._truncate_next = False
        self._corrupt_next = False
        self._delay_next_s = 0.0
        self._delayed: list[tuple[float, bytes]] = []  # (due, frame) delayed by delay_next_frame

    # -- public control, from any thread ---------------------------------------------

    def start(self) -> str:
        """Open the pty, power the device on, start the thread; returns `port`."""
        if self._thread is not None:
            raise EmulatorError("emulator already started")
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        try:
            self._open_pty()
        except OSError as exc:
            os.close(self._wake_r)
            os.close(self._wake_w)
            raise EmulatorError(f"cannot open a pseudo-terminal: {exc}") from exc
        self._power_on(time.monotonic())
        self._thread = threading.Thread(target=self._run, name=f"{type(self).__name__}-pty", daemon=True)
        self._thread.start()
        return self.port

    def stop(self) -> None:
        """Close the pty and end the thread; re-raises a failure of the device logic."""
        thread = self._thread
        if thread is None:
            return
        self._stopping = True
        self._wake()
        thread.join(timeout=_ACTION_TIMEOUT_S)
        self._thread = None
        self._close_pty()
        os.close(self._wake_r)
        os.close(self._wake_w)
        if self._failure is not None:
            raise EmulatorError(f"device logic failed: {self._failure!r}") from self._failure

    def __enter__(self) -> PtyEmulator:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> str:
        """The path clients open: the stable link if one was asked for, else the pty."""
        if self.link_path is not None:
            return self.link_path
        if self._pty_path is None:
            raise EmulatorError("emulator not started or unplugged")
        return self._pty_path

    @property
    def pty_path(self) -> str | None:
        """The current /dev/pts/N, None while unplugged."""
        return self._pty_path

    @property
    def attached(self) -> bool:
        return self._attached.is_set()

    def wait_attached(self, timeout_s: float) -> bool:
        return self._attached.wait(timeout_s)

    def unplug(self) -> None:
        """The USB adapter is pulled: the pty (and the stable link) vanish, the device
        loses power. Clients reading the port get an I/O error."""
        self._call(self._do_unplug)

    def replug(self) -> str:
        """The adapter comes back: a new pty (the stable link points at it), the device
        powers up again (warm-up restarts). Returns `port`."""
        self._call(self._do_replug)
        return self.port

    def inject_garbage(self, size: int = 64) -> None:
        """A burst of random bytes on the line, as from a loose connector."""
        data = bytes(self.rng.getrandbits(8) for _ in range(size))
        self._call(lambda: self._send(data))

    def inject_truncated_frame(self) -> None:
        """The next frame is cut after half its bytes."""
        self._call(lambda: setattr(self, "_truncate_next", True))

    def inject_bad_checksum(self) -> None:
        """The next frame carries a wrong checksum."""
        self._call(lambda: setattr(self, "_corrupt_next", True))

    def delay_next_frame(self, seconds: float) -> None:
        """The next frame leaves `seconds` later than the device made it (a slow answer,
        as from a busy clone): a reply that comes after the host's wait has ended. Frames
        made meanwhile leave on time."""
        if seconds <= 0:
            raise ValueError(f"seconds must be positive, got {seconds}")
        self._call(lambda: setattr(self, "_delay_next_s", seconds))

    def call(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the emulator thread (to read or change device state safely)."""
        box: list[T] = []
        self._call(lambda: box.append(fn()))
        return box[0]

    # -- what subclasses implement (called on the emulator thread) ---------------------

    @abstractmethod
    def _power_on(self, now: float) -> None:
        """Reset the state a power cycle resets; start the warm-up."""

    @abstractmethod
    def _on_bytes(self, data: bytes, now: float) -> None:
        """Bytes the host wrote."""

    @abstractmethod
    def _tick(self, now: float) -> float:
        """Do what is due at `now`; return the monotonic time of the next thing due."""

    @abstractmethod
    def _corrupt_checksum(self, frame: bytes) -> bytes:
        """`frame` with a checksum that does not match."""

    @abstractmethod
    def _on_detach(self) -> None:
        """The client closed the port (partial commands are gone with it)."""

    # -- helpers for subclasses ----------------------------------------------------------

    def _send(self, data: bytes) -> None:
        """Queue bytes for the line; dropped if no client has the port open."""
        if not self._attached.is_set() or self._master is None:
            self.bytes_unheard += len(data)
            return
        if not self._out:
            self._next_byte_at = max(self._next_byte_at, time.monotonic())
        self._out += data

    def _send_frame(self, frame: bytes) -> None:
        """Queue a frame, applying a pending truncation or checksum fault."""
        if self._corrupt_next:
            self._corrupt_next = False
            frame = self._corrupt_checksum(frame)
        if self._truncate_next:
            self._truncate_next = False
            frame = frame[: len(frame) // 2]
        if self._delay_next_s > 0:
            self._delayed.append((time.monotonic() + self._delay_next_s, frame))
            self._delay_next_s = 0.0
            return
        self._send(frame)

    def _release_delayed(self, now: float) -> float:
        """Send the delayed frames that are due; the time the next one is due."""
        due = [(at, frame) for at, frame in self._delayed if at <= now]
        self._delayed = [(at, frame) for at, frame in self._delayed if at > now]
        for _, frame in due:
            self._send(frame)
        return min((at for at, _ in self._delayed), default=math.inf)

    # -- internals -----------------------------------------------------------------------

    def _call(self, fn: Callable[[], None]) -> None:
        if self._thread is None:
            raise EmulatorError("emulator not started")
        done = threading.Event()
        failure: list[BaseException] = []

        def action() -> None:
            try:
                fn()
            except BaseException as exc:
                failure.append(exc)
                raise
            finally:
                done.set()

        self._actions.put(action)
        self._wake()
        deadline = time.monotonic() + _ACTION_TIMEOUT_S
        while not done.wait(0.05):
            thread = self._thread
            if thread is None or not thread.is_alive():
                raise EmulatorError(f"emulator thread has ended: {self._failure!r}")
            if time.monotonic() > deadline:
                raise EmulatorError("emulator thread did not answer")
        if failure:
            raise EmulatorError(f"emulator action failed: {failure[0]!r}") from failure[0]

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake_w, b"\x00")

    def _open_pty(self) -> None:
        master, slave = os.openpty()
        try:
            tty.setraw(slave)
            path = os.ttyname(slave)
        finally:
            os.close(slave)
        fcntl.ioctl(master, termios.TIOCPKT, struct.pack("i", 1))
        os.set_blocking(master, False)
        self._master = master
        self._pty_path = path
        self._pending_since = None
        self._attached.clear()
        if self.link_path is not None:
            tmp = f"{self.link_path}.{os.getpid()}.tmp"
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            os.symlink(path, tmp)
            os.replace(tmp, self.link_path)

    def _close_pty(self) -> None:
        if self.link_path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.link_path)
        if self._master is not None:
            os.close(self._master)
        self._master = None
        self._pty_path = None
        self._attached.clear()
        self._out.clear()
        self._delayed.clear()

    def _do_unplug(self) -> None:
        self._close_pty()

    def _do_replug(self) -> None:
        if self._master is None:
            self._open_pty()
            self._power_on(time.monotonic())

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:
            self._failure = exc
            raise

    def _loop(self) -> None:
        while True:
            # Drain the wake-ups before taking the actions, not after: an action queued
            # between the two would lose its wake-up, and the select below waits forever
            # while the device is unplugged (a replug right after an unplug hung so).
            with contextlib.suppress(BlockingIOError):
                os.read(self._wake_r, 4096)
            while True:
                try:
                    action = self._actions.get_nowait()
                except queue.Empty:
                    break
                action()
            if self._stopping:
                return
            master = self._master
            if master is None:
                select.select([self._wake_r], [], [])
                continue
            now = time.monotonic()
            hung_up = self._watch_line(master, now)
            due = min(self._tick(time.monotonic()), self._release_delayed(time.monotonic()))
            self._write_due(master, time.monotonic())
            now = time.monotonic()
            if self._out and self._attached.is_set():
                due = min(due, self._next_byte_at if self.pace else now)
            if self._pending_since is not None:
                due = min(due, self._pending_since + self.attach_grace_s)
            timeout = max(0.0, due - now)
            if hung_up:
                select.select([self._wake_r], [], [], min(timeout, _DETACHED_RECHECK_S))
            else:
                select.select([self._wake_r, master], [], [], timeout)

    def _watch_line(self, master: int, now: float) -> bool:
        """Read what the host sent; track attach/detach. True while nobody has the port."""
        poller = select.poll()
        poller.register(master, select.POLLIN | select.POLLPRI)
        events = poller.poll(0)
        flags = events[0][1] if events else 0
        if flags & select.POLLHUP and not flags & select.POLLIN:
            self._detach()
            return True
        if not self._attached.is_set() and self._pending_since is None:
            self._pending_since = now
        while True:
            try:
                packet = os.read(master, 4096)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno.EIO:
                    self._detach()
                    return True
                raise
            if not packet:
                break
            if packet[0] == 0:
                self._attach()
                self.bytes_heard += len(packet) - 1
                self._on_bytes(packet[1:], now)
            elif packet[0] & _TIOCPKT_FLUSHREAD:
                self._out.clear()
                self._attach()
        if self._pending_since is not None and now - self._pending_since >= self.attach_grace_s:
            self._attach()
        return False

    def _attach(self) -> None:
        self._pending_since = None
        self._attached.set()

    def _detach(self) -> None:
        self._pending_since = None
        if self._attached.is_set():
            self._attached.clear()
            self._out.clear()
            self._delayed.clear()
            self._on_detach()

    def _write_due(self, master: int, now: float) -> None:
        if not self._out or not self._attached.is_set():
            return
        if self.pace:
            if now < self._next_byte_at:
                return
            count = min(len(self._out), math.floor((now - self._next_byte_at) / self.byte_time_s) + 1)
            self._next_byte_at += count * self.byte_time_s
        else:
            count = len(self._out)
        chunk = bytes(self._out[:count])
        del self._out[:count]
        try:
            written = os.write(master, chunk)
        except BlockingIOError:
            written = 0
        except OSError as exc:
            if exc.errno == errno.EIO:
                self._detach()
                return
            raise
        self.bytes_written += written
        self.bytes_dropped += len(chunk) - written
