"""urbanpulse.stack.parent_death: a child started through setpriv gets its signal when the
thread that started it ends, runs the command under its own pid, and does not run it when
its parent ended before the prctl. Real processes; the demo's SIGKILL case with a burst of
signals is tests/edge/gateway/test_gateway_signals.py."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from urbanpulse.stack import parent_death
from urbanpulse.stack.errors import BinaryMissing
from urbanpulse.stack.parent_death import PARENT_GONE, ends_with_parent
from urbanpulse.stack.process import command_line
from urbanpulse.testing import wait_for

SLEEPER = ["sleep", "60"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_the_child_gets_its_signal_when_the_thread_that_started_it_ends(
        sig: signal.Signals) -> None:
    started: list[subprocess.Popen[bytes]] = []

    def start() -> None:
        proc = subprocess.Popen(ends_with_parent(SLEEPER, sig=sig), start_new_session=True)
        started.append(proc)
        # The prctl is done once the command runs (setpriv and sh exec'd into it, same pid):
        # a thread ending before it would leave the child unsignalled (see the module).
        wait_for(lambda: command_line(proc.pid) == SLEEPER, 30, "the command to run")

    thread = threading.Thread(target=start)
    thread.start()
    thread.join(60)
    (proc,) = started
    try:
        assert proc.wait(10) == -sig
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_a_child_whose_parent_ended_before_the_prctl_does_not_run_its_command(
        tmp_path: Path) -> None:
    # The parent it checks for is a process that ended: as if the demo had died between the
    # fork and setpriv's prctl, the child's parent now being someone else.
    gone = subprocess.Popen(["true"])
    gone.wait(10)
    marker = tmp_path / "ran"
    proc = subprocess.run(ends_with_parent(["touch", str(marker)], parent=gone.pid),
                          timeout=30, check=False)
    assert proc.returncode == PARENT_GONE
    assert not marker.exists()


def test_the_command_runs_with_its_arguments_unchanged(tmp_path: Path) -> None:
    odd = ["a b", "$PPID", "'\"", "-c", ""]
    out = subprocess.run(ends_with_parent([sys.executable, "-c",
                                           "import sys; print(repr(sys.argv[1:]))", *odd]),
                         capture_output=True, text=True, timeout=30, check=True)
    assert out.stdout.strip() == repr(odd)


def test_without_setpriv_the_error_names_its_package(monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path) -> None:
    monkeypatch.setattr(parent_death, "SETPRIV", tmp_path / "setpriv")
    with pytest.raises(BinaryMissing, match="util-linux"):
        ends_with_parent(SLEEPER)


def test_an_empty_command_is_refused() -> None:
    with pytest.raises(ValueError, match="empty command"):
        ends_with_parent([])
