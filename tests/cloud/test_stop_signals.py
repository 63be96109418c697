"""`cloud run` and `cloud ingest` stop on SIGTERM/SIGINT however many come at once
(cloud/stop_signals.py). Their Python handlers set a threading.Event, whose lock is not
reentrant: a signal arriving while the handler held it ran the handler again inside it,
which waited for that lock for ever. Bursts are ordinary (a parent-death signal comes
again as each thread of a dying multithreaded parent ends): 1 run in 3 of 40 children
of a SIGKILLed 32-thread parent, each with the old ingest handler, left one hung.
The processor's last step (`interrupt_main`) sets its stop event and raises
KeyboardInterrupt in the handler, with nothing of the main thread between: the main thread
seeing the event first made the sink raise its own error, and the KeyboardInterrupt came
later, inside Bytewax's unwinding, which aborted the process.
Real signals, real processes; the re-entrance tests make a signal arrive at every line
the handler runs (a trace function calls the installed handler there, as the
interpreter does for a signal that arrives then)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from cloud.stop_signals import StopSignals
from urbanpulse.testing import wait_for

# A signal at every line the handler and what it calls run, once inside each: the old
# handler (`_on_signals(stop.set)`) hung here in Event.set.
REENTERED = """
import signal, sys, threading
from cloud.stop_signals import StopSignals
stop = threading.Event()
calls = []
StopSignals(lambda again: (calls.append(again), stop.set()))
handler = signal.getsignal(signal.SIGTERM)
inside = []

def trace(frame, event, arg):
    if event == "line" and not inside:
        inside.append(1)
        handler(signal.SIGTERM, None)
        inside.pop()
    return trace

sys.settrace(trace)
handler(signal.SIGTERM, None)
sys.settrace(None)
assert stop.wait(10), "the action never ran"
assert calls and not any(calls), calls  # one stop: none counted as a second signal
print("returned", len(calls), flush=True)
"""


# The processor's last step runs `before` in the handler, which takes a lock (the stop
# event's): a signal at every line that runs while that lock is held must not run `before`
# again (a handler that cleared the request after `before` hung here).
REENTERED_INTERRUPT = """
import signal, sys, threading
from cloud.stop_signals import StopSignals
calls = []
signals = StopSignals(calls.append)
lock = threading.Lock()  # as Event.set takes its condition's
stopped = []

def before():
    with lock:
        stopped.append(1)
        stopped.append(2)

signals._before = before  # interrupt_main's request, the handler not run yet
handler = signal.getsignal(signal.SIGTERM)
inside = []

def trace(frame, event, arg):
    if event == "line" and not inside and lock.locked():
        inside.append(1)
        handler(signal.SIGTERM, None)
        inside.pop()
    return trace

sys.settrace(trace)
try:
    handler(signal.SIGTERM, None)
except KeyboardInterrupt:
    sys.settrace(None)
    print("interrupted", flush=True)
sys.settrace(None)
assert stopped == [1, 2], stopped  # `before` ran once
print("returned", flush=True)
"""


@pytest.mark.parametrize("script", [REENTERED, REENTERED_INTERRUPT], ids=["stop", "interrupt"])
def test_a_signal_arriving_inside_the_handler_does_not_hang_it(script: str) -> None:
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].startswith("returned"), done.stdout
    if script is REENTERED_INTERRUPT:
        assert done.stdout.splitlines() == ["interrupted", "returned"], done.stdout


def _start_and_idle(thread: threading.Thread, seconds: float) -> None:
    thread.start()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.01)  # idles until the interrupt comes, under a deadline


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _signal_self_and_wait(calls: list[bool], n: int) -> None:
    os.kill(os.getpid(), signal.SIGTERM)
    wait_for(lambda: len(calls) >= n, 10, f"wake-up {n} of the signal thread")


def test_a_burst_is_one_stop_and_a_signal_after_repeat_s_a_second_one() -> None:
    clock = Clock()
    calls: list[bool] = []
    signals = StopSignals(calls.append, monotonic=clock)
    try:
        _signal_self_and_wait(calls, 1)
        clock.now += signals.repeat_s / 2  # still the same instant's burst
        _signal_self_and_wait(calls, 2)
        assert calls == [False, False]
        clock.now += signals.repeat_s  # a deliberate second signal
        _signal_self_and_wait(calls, 3)
        assert calls == [False, False, True]
        assert threading.current_thread() is threading.main_thread()
    finally:
        signals.close()
    assert signal.getsignal(signal.SIGTERM) is not signals._handler


def test_set_action_takes_the_next_signal() -> None:
    first: list[bool] = []
    then: list[bool] = []
    signals = StopSignals(first.append)
    try:
        signals.set_action(then.append)
        _signal_self_and_wait(then, 1)
        assert first == []
    finally:
        signals.close()


def test_interrupt_main_runs_before_and_raises_in_the_main_thread_once() -> None:
    ran_in: list[threading.Thread] = []
    signals = StopSignals(lambda again: None)
    try:
        asking = threading.Thread(
            target=signals.interrupt_main, args=(lambda: ran_in.append(threading.current_thread()),))
        with pytest.raises(KeyboardInterrupt):
            _start_and_idle(asking, 10)  # the handler raises it at a bytecode in there
        asking.join()
        assert ran_in == [threading.main_thread()]
        calls: list[bool] = []
        signals.set_action(calls.append)
        _signal_self_and_wait(calls, 1)  # a signal afterwards is a signal again, no interrupt
        assert ran_in == [threading.main_thread()]
    finally:
        signals.close()


def _start_and_watch(thread: threading.Thread, event: threading.Event, seen: list[bool],
                     seconds: float) -> None:
    """Starts `thread` and idles for `seconds` (a KeyboardInterrupt ends it), noting in `seen`
    whether `event` was found set."""
    thread.start()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not seen and event.is_set():
            seen.append(True)  # and idles on: the interrupt still comes, in here


def test_the_main_thread_never_sees_the_stop_event_before_the_keyboardinterrupt() -> None:
    # As the sink does in its waits: the event set and no KeyboardInterrupt yet, it raised
    # its own error, and the interrupt came later, inside Bytewax's unwinding (an abort).
    signals = StopSignals(lambda again: None)
    try:
        for _ in range(20):
            stopping = threading.Event()
            seen_first: list[bool] = []
            asking = threading.Thread(target=signals.interrupt_main, args=(stopping.set,))
            with pytest.raises(KeyboardInterrupt):
                _start_and_watch(asking, stopping, seen_first, 10)
            asking.join()
            assert stopping.is_set()
            assert not seen_first
    finally:
        signals.close()


def test_an_interrupt_cancelled_before_the_handler_ran_is_not_raised() -> None:
    calls: list[bool] = []
    ran: list[int] = []
    signals = StopSignals(calls.append)
    try:
        signals._before = lambda: ran.append(1)  # asked for, the handler not run yet
        signals.cancel_interrupt()
        _signal_self_and_wait(calls, 1)  # the handler runs: a signal, not a KeyboardInterrupt
        assert ran == []
    finally:
        signals.close()
