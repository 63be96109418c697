"""`urbanpulse bridge decode ... | head -1`: a reader that stops early ends the command
quietly (exit 1, nothing on stderr, as every `urbanpulse` command: urbanpulse.closed_stdout),
while a capture or port that cannot be read still says so. Real processes and real pipes."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

GoldenLoader = Callable[[str], dict[str, bytes]]
ROOT = Path(__file__).resolve().parents[2]
ENTRIES = {"urbanpulse bridge": ["urbanpulse.cli", "bridge"], "python -m": ["firmware_bridge.cli"]}


def _capture(tmp_path: Path, golden: GoldenLoader) -> Path:
    # ~1 MB of JSON lines: far more than a pipe holds, so the decoder writes on after the
    # reader has gone, whatever the buffering (PYTHONUNBUFFERED or not)
    capture = tmp_path / "capture.bin"
    capture.write_bytes(golden("sds011")["data_query_reply"] * 20_000)
    return capture


def _into_closed_pipe(entry: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    """The command with its stdout a pipe whose reader has already gone."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run([sys.executable, "-m", *entry, *args], cwd=ROOT, stdout=write_end,
                              stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              timeout=60, check=False)
    finally:
        os.close(write_end)


@pytest.mark.parametrize("entry", ENTRIES.values(), ids=ENTRIES.keys())
def test_decode_into_a_reader_that_stops_after_one_line_ends_quietly(
        entry: list[str], tmp_path: Path, golden: GoldenLoader) -> None:
    capture = _capture(tmp_path, golden)
    with subprocess.Popen([sys.executable, "-m", *entry, "decode", "--protocol", "sds011",
                           str(capture)], cwd=ROOT, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        assert proc.stderr is not None
        assert proc.stdout.readline().startswith('{"pm25": 123.6')  # `| head -1`
        proc.stdout.close()
        err = proc.stderr.read()
        code = proc.wait(timeout=60)
    # it used to catch the BrokenPipeError as an unreadable input: "cannot read input:
    # [Errno 32] Broken pipe" after the counters, exit 1
    assert err == ""
    assert code == 1


@pytest.mark.parametrize(("args", "message"), [
    (["{tmp}"], "cannot read input: [Errno 21] Is a directory"),
    (["--port", "{tmp}/ttyUSB9", "--duration", "1"], "cannot read input: {tmp}/ttyUSB9: cannot open"),
])
def test_an_input_that_cannot_be_read_is_still_said_with_stdout_closed(
        args: list[str], message: str, tmp_path: Path) -> None:
    argv = [a.format(tmp=tmp_path) for a in args]
    done = _into_closed_pipe(ENTRIES["urbanpulse bridge"], "decode", "--protocol", "sds011", *argv)
    assert message.format(tmp=tmp_path) in done.stderr
    assert done.returncode == 1


def test_emulate_into_a_closed_pipe_stops_its_device_and_ends_quietly(tmp_path: Path) -> None:
    link = tmp_path / "ttyUSB-sds011"
    done = _into_closed_pipe(ENTRIES["urbanpulse bridge"], "emulate", "--protocol", "sds011",
                             "--link", str(link), "--duration", "30")
    # it printed its port outside the block that stops the device, and ended with 0
    assert done.stderr == ""
    assert done.returncode == 1
    assert not link.is_symlink()  # (exists() follows it: the pty is gone with the process)
