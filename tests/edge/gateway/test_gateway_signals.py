"""The gateway stops on SIGTERM however many come. Its Python signal handler set a
threading.Event, which takes a lock; a SIGTERM arriving while the handler held it ran the
handler again inside it, on the same thread, which then waited for that lock for ever.
Several SIGTERMs at once are ordinary: a process started by one thread of a multithreaded
parent with a parent-death signal (the demo's gateway) gets it again each time it is handed
to another of the parent's threads as they exit. The demo test saw a gateway outlive its
SIGKILLed demo by 30 s (once in CI); 10 of 400 such children hung, their stacks the handler
inside Event.set() inside the handler.

The children are started as the demo starts its gateway (urbanpulse.stack.parent_death),
by the main thread of a parent with 32 threads, and report through files of their own. The
first version of this test read their "ready" lines from one pipe they all shared: with
PYTHONUNBUFFERED (set in this environment) print() writes "ready" and "\\n" in two writes, so the
25 writers' lines interleaved ("readyready", "pids 12396 ... 12403ready"), a "ready" was
lost and the test waited for it until pytest's timeout, before any signal was sent (1 run in
6 in session 19; 24 children printing at once lost a line in 8 runs of 30, none of 30
without PYTHONUNBUFFERED)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from urbanpulse.stack.process import is_alive
from urbanpulse.testing import wait_for

CHILDREN = 24
START_S = 60.0  # 24 Pythons importing the gateway on a loaded 2-core machine
STOP_S = 20.0

# As the gateway: the stop made by stop_on_signals, a loop that looks at it.
GATEWAY = """
import os, pathlib, signal, sys, time
from edge.gateway.cli import stop_on_signals
stop = stop_on_signals((signal.SIGTERM, signal.SIGINT))
out = pathlib.Path(sys.argv[1])
(out / f"ready-{os.getpid()}").touch()
while not stop.is_set():
    time.sleep(0.01)  # the child's own loop, not a synchronisation
(out / f"stopped-{os.getpid()}").touch()
"""

# As the demo: threads of its own, its children started by the main thread, each sent
# SIGTERM when that thread ends.
DEMO = """
import os, pathlib, subprocess, sys, threading, time
from urbanpulse.stack.parent_death import ends_with_parent
for _ in range(32):
    threading.Thread(target=time.sleep, args=(600,), daemon=True).start()  # idle threads, the child's body
gateway, out, count = sys.argv[1], pathlib.Path(sys.argv[2]), int(sys.argv[3])
children = [subprocess.Popen(ends_with_parent([sys.executable, "-c", gateway, str(out)]),
                             start_new_session=True) for _ in range(count)]
(out / "pids.tmp").write_text(" ".join(str(c.pid) for c in children))
(out / "pids.tmp").rename(out / "pids")
time.sleep(600)  # the child's body until it is killed, not a synchronisation
"""


def _all_ready(out: Path, pids: list[int]) -> bool:
    waiting = [p for p in pids if not (out / f"ready-{p}").exists()]
    ended = [p for p in waiting if not is_alive(p)]
    assert not ended, f"children ended before they were ready: {ended}"
    return not waiting


def test_gateways_whose_multithreaded_parent_is_killed_all_stop(tmp_path: Path) -> None:
    demo = subprocess.Popen([sys.executable, "-c", DEMO, GATEWAY, str(tmp_path), str(CHILDREN)])
    pids: list[int] = []
    try:
        wait_for(lambda: (tmp_path / "pids").exists() or demo.poll() is not None, START_S,
                 "the parent to start its children")
        assert demo.poll() is None, f"the parent ended: {demo.returncode}"
        pids = [int(p) for p in (tmp_path / "pids").read_text().split()]
        assert len(pids) == CHILDREN
        wait_for(lambda: _all_ready(tmp_path, pids), START_S,
                 "every child to take its stop signals")
        demo.kill()
        demo.wait(10)
        wait_for(lambda: not any(is_alive(p) for p in pids), STOP_S,
                 "every child to stop on its parent-death SIGTERMs")
        not_stopped = [p for p in pids if not (tmp_path / f"stopped-{p}").exists()]
        assert not not_stopped, f"ended without their stop (killed?): {not_stopped}"
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait(10)
        for pid in pids:
            if is_alive(pid):
                os.kill(pid, signal.SIGKILL)
