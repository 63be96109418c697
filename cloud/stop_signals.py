"""How `cloud run` and `cloud ingest` take SIGTERM and SIGINT: a Python handler that takes
no lock, and a thread of its own that does the rest.

A Python signal handler runs in the main thread between two bytecodes, wherever that
thread is, and again inside itself when another signal arrives while it runs. The
handlers set a `threading.Event` (and started threads), which takes a lock that is not
reentrant: a second SIGTERM arriving while the handler held it ran the handler again
inside it, which then waited for that lock for ever, and the process never stopped (so
did a single one arriving while the main thread was inside that event's `wait()`).
Several SIGTERMs at once are ordinary: a process started with a parent-death signal by
one thread of a multithreaded parent (the demo's processor, the chaos rig's) gets it again
each time it is handed to another of the dying parent's threads; here 1 run in 3 of 40
such `cloud ingest`-like children of a SIGKILLed 32-thread parent left one hung.

So the handler only writes the signal's number to a pipe; the thread "stop-signals" reads
the pipe and calls the action, which may take locks and start threads. Signals that
arrive within REPEAT_S of the first are one stop (a burst: the action is told
`again=False`); one that comes later is a second, deliberate signal (`again=True`).

The one thing the handler does besides is the processor's last step, asked for with
`interrupt_main(before)`: it calls `before()` and raises KeyboardInterrupt, in the main
thread, with no bytecode of that thread between the two. `before` sets the event that
ends the sink's waits for InfluxDB; set by another thread first, the sink raised its own
error, Bytewax began unwinding with it, and the KeyboardInterrupt, still to come, was
raised inside the sink's `close()` that Bytewax calls while unwinding: a panic in a
destructor, and the processor aborted (SIGABRT; 4 runs in 15 of the InfluxDB outage
stop, tests/e2e/test_cloud_influx_outage.py, session 19).
"""

from __future__ import annotations

import _thread
import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType

# Signals within this time of the first are the same stop (a parent-death burst lasts as
# long as the dying parent's threads take to end: milliseconds, more under load).
REPEAT_S = 1.0
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

Action = Callable[[bool], None]


class StopSignals:
    """SIGTERM and SIGINT handled as the module says. `action(again)`: called in the thread
    "stop-signals", once per wake-up (signals read together count once), never in the
    handler; replaced with `set_action`. Install from the main thread."""

    def __init__(self, action: Action, *, repeat_s: float = REPEAT_S,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.repeat_s = repeat_s
        self.received = 0  # wake-ups that called the action
        self._monotonic = monotonic
        self._action = action
        self._first_at: float | None = None
        # Read and written by the handler: plain attributes, no lock. `_before` is the
        # interrupt asked for and not raised yet (None: none).
        self._before: Callable[[], None] | None = None
        self._lock = threading.Lock()  # the action vs set_action; never taken by the handler
        self._read, self._write = os.pipe()
        os.set_blocking(self._write, False)
        self._previous = {sig: signal.signal(sig, self._handler) for sig in STOP_SIGNALS}
        self._thread = threading.Thread(target=self._watch, name="stop-signals", daemon=True)
        self._thread.start()

    def set_action(self, action: Action) -> None:
        """From now on `action`; a wake-up under way ends first with the old one."""
        with self._lock:
            self._action = action

    def interrupt_main(self, before: Callable[[], None]) -> None:
        """Raise KeyboardInterrupt in the main thread (from any thread but the handler),
        as Bytewax stops on: the handler runs there (as for a signal), calls `before()` and
        raises it. `before` runs inside a signal handler: it may take a lock only if the main
        thread takes that lock nowhere else, and is asked for once (a second request before
        the handler ran replaces the first)."""
        self._before = before
        _thread.interrupt_main(STOP_SIGNALS[0])

    def cancel_interrupt(self) -> None:
        """An interrupt asked for and not raised yet is not (the run ended meanwhile)."""
        self._before = None

    def close(self) -> None:
        """The handlers before these back, the pipe closed and its thread ended."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        os.close(self._write)  # EOF: the thread ends
        self._thread.join()
        os.close(self._read)

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        # Nothing here takes a lock but `before`, taken once: this may run inside itself.
        before, self._before = self._before, None
        if before is not None:
            before()
            raise KeyboardInterrupt
        with contextlib.suppress(BlockingIOError):  # full: the thread has a wake-up to read
            os.write(self._write, bytes((signum,)))

    def _watch(self) -> None:
        while os.read(self._read, 512):
            now = self._monotonic()
            with self._lock:
                if self._first_at is None:
                    self._first_at = now
                again = now - self._first_at >= self.repeat_s
                self.received += 1
                self._action(again)
