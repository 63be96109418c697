"""A reader that stops early (`urbanpulse stack status | head -3`): the command ends quietly,
as Python's documentation recommends (exit code 1, nothing on stderr), instead of printing
`[Errno 32] Broken pipe` or the interpreter's "Exception ignored ... BrokenPipeError"."""

from __future__ import annotations

import importlib.machinery
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from urbanpulse import cli

ROOT = Path(__file__).resolve().parents[2]


def _run_into_closed_pipe(*args: str, unbuffered: bool | None = None
                          ) -> subprocess.CompletedProcess[str]:
    """`urbanpulse ARGS` with its stdout a pipe whose reader has already gone; `unbuffered`:
    with or without PYTHONUNBUFFERED (each print written at once), None: as inherited."""
    env = dict(os.environ)
    if unbuffered is not None:
        env.pop("PYTHONUNBUFFERED", None)
        if unbuffered:
            env["PYTHONUNBUFFERED"] = "1"
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run([sys.executable, "-m", "urbanpulse.cli", *args], cwd=ROOT,
                              stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=120,
                              check=False, env=env)
    finally:
        os.close(write_end)


def test_stack_status_into_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    # the stack's own `except OSError` used to catch the BrokenPipeError and print it
    done = _run_into_closed_pipe("stack", "--home", str(tmp_path / "home"), "status")
    assert done.stderr == ""
    assert done.returncode == 1


def test_a_group_without_its_own_handling_ends_quietly_too(tmp_path: Path) -> None:
    # `dashboards generate` prints the files it wrote; the output was flushed only by the
    # interpreter at exit: "Exception ignored ... BrokenPipeError", exit code 120
    done = _run_into_closed_pipe("dashboards", "generate", "--out", str(tmp_path / "out"))
    assert done.stderr == ""
    assert done.returncode == 1
    assert (tmp_path / "out").is_dir()  # it did its work


@pytest.mark.parametrize(("option", "unbuffered"), [("--help", False), ("--version", True)])
def test_the_dispatchers_own_output_into_a_closed_pipe_ends_quietly(option: str,
                                                                    unbuffered: bool) -> None:
    # printed outside the command's handling: "Exception ignored ... BrokenPipeError" and
    # exit code 120 (buffered), a BrokenPipeError traceback (unbuffered)
    done = _run_into_closed_pipe(option, unbuffered=unbuffered)
    assert done.stderr == ""
    assert done.returncode == 1


def test_a_command_that_catches_oserror_lets_a_closed_stdout_through() -> None:
    # `simulate` reports OSError itself: "urbanpulse simulate: [Errno 32] Broken pipe" when
    # each print is written at once
    done = _run_into_closed_pipe("simulate", "--check", unbuffered=True)
    assert done.stderr == ""
    assert done.returncode == 1


def test_a_broken_pipe_that_is_not_stdout_is_not_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    """A socket or a child's pipe failing is a real error: it goes on up (here stdout is
    pytest's capture, which is no closed pipe)."""
    module = types.ModuleType("urbanpulse_pipe_probe")
    module.__spec__ = importlib.machinery.ModuleSpec("urbanpulse_pipe_probe", None)

    def main(argv: list[str]) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    module.main = main  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "urbanpulse_pipe_probe", module)
    monkeypatch.setitem(cli.GROUPS, "probe", ("urbanpulse_pipe_probe", "a test group"))
    with pytest.raises(BrokenPipeError):
        cli.main(["probe"])
