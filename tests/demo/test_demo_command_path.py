"""The demo's last line names the command that stops the stack as the user can type it: the
virtualenv's `.venv/bin/urbanpulse` after scripts/demo (not on PATH), plain `urbanpulse`
only when that is the same command on PATH."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from urbanpulse.demo.runner import _command

BIN = Path(sys.executable).parent


@pytest.mark.skipif(not (BIN / "urbanpulse").exists(), reason="no installed urbanpulse script")
def test_the_virtualenvs_command_relative_to_where_the_demo_runs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.chdir(BIN.parent.parent)  # the clone, for a virtualenv `.venv` in it
    assert _command() == str(Path(BIN.parent.name) / "bin" / "urbanpulse")
    assert Path(_command()).resolve() == (BIN / "urbanpulse").resolve()
    monkeypatch.chdir(tmp_path)  # elsewhere: the whole path
    assert _command() == str(BIN / "urbanpulse")
    monkeypatch.setenv("PATH", f"{BIN}:/usr/bin:/bin")  # an activated virtualenv
    assert _command() == "urbanpulse"
