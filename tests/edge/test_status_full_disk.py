"""`urbanpulse edge status` on a state disk filled to the last block, the agent stopped: it
reads the outbox without writing to it, and leaves the agent's reserve alone. Before, it
opened the outbox as the agent does (its schema written, its WAL and shared-memory files
made) and stopped on an unhandled OutboxError traceback (`disk I/O error`: SQLite could
not size its shared-memory file). Real tmpfs disks (mounting needs root: skipped
otherwise)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edge.agent import OUTBOX_FILE
from edge.drivers.base import Sample
from edge.outbox import RESERVE_SUFFIX, Outbox
from tests.disks import fill, small_disk
from urbanpulse.cli import main

SAMPLE = Path(__file__).resolve().parents[2] / "edge/drivers/sds011/sample.toml"
RESERVE = 8 * 1024 * 1024


def _node(tmp_path: Path, state_dir: Path) -> Path:
    text = SAMPLE.read_text().replace('state_dir = "/var/lib/urbanpulse"',
                                      f'state_dir = "{state_dir}"')
    (tmp_path / "node.toml").write_text(text)
    return tmp_path / "node.toml"


def _outbox_of_a_stopped_agent(disk: Path, n: int) -> None:
    """An outbox the agent committed `n` readings to and closed (a clean stop: its WAL
    and shared-memory files deleted), its reserve beside it."""
    outbox = Outbox(disk / OUTBOX_FILE, reserve_bytes=RESERVE).open()
    try:
        t0 = datetime(2026, 5, 1, tzinfo=UTC)
        outbox.append([Sample("pm-1", "air.pm", {"pm25": 12.0}, t0 + timedelta(seconds=i))
                       for i in range(n)], now_ns=1_777_593_600_000_000_000)
    finally:
        outbox.close()
    assert sorted(p.name for p in disk.iterdir()) == [OUTBOX_FILE, OUTBOX_FILE + RESERVE_SUFFIX]


def test_status_reads_the_outbox_of_a_stopped_agent_on_a_full_disk(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with small_disk(tmp_path / "state", "40m") as disk:
        _outbox_of_a_stopped_agent(disk, 20)
        fill(disk)
        before = {p.name: p.stat().st_size for p in disk.iterdir()}
        assert main(["edge", "status", "--config", str(_node(tmp_path, disk)), "--json"]) == 0
        body = json.loads(capsys.readouterr().out)
        assert body["outbox"]["depth"] == 20
        assert body["outbox"]["evicted"] == 0
        # nothing written, nothing given up: the reserve is the agent's
        assert {p.name: p.stat().st_size for p in disk.iterdir()} == before


def test_status_reads_the_outbox_of_a_running_agent_on_a_full_disk(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The agent's connection open (its WAL and shared-memory files there), the disk full."""
    with small_disk(tmp_path / "state", "40m") as disk:
        _outbox_of_a_stopped_agent(disk, 20)
        running = Outbox(disk / OUTBOX_FILE, reserve_bytes=RESERVE).open()
        try:
            running.append([Sample("pm-1", "air.pm", {"pm25": 1.0},
                                   datetime(2026, 5, 2, tzinfo=UTC))], now_ns=1)
            fill(disk)
            assert main(["edge", "status", "--config", str(_node(tmp_path, disk)), "--json"]) == 0
            assert json.loads(capsys.readouterr().out)["outbox"]["depth"] == 21
        finally:
            running.close()


def test_status_reads_the_outbox_of_a_killed_agent_on_a_full_disk(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """SIGKILL (or power loss): the WAL and shared-memory files left, the committed rows
    in the WAL only; status reads them there."""
    killed = ("import os, sys\nfrom datetime import UTC, datetime\nfrom pathlib import Path\n"
              "from edge.drivers.base import Sample\nfrom edge.outbox import Outbox\n"
              "o = Outbox(Path(sys.argv[1]), reserve_bytes=8 << 20).open()\n"
              "o.append([Sample('pm-1', 'air.pm', {'pm25': 1.0}, datetime(2026, 5, 1, tzinfo=UTC))]"
              " * 30, now_ns=1)\nos._exit(0)\n")
    with small_disk(tmp_path / "state", "40m") as disk:
        subprocess.run([sys.executable, "-c", killed, str(disk / OUTBOX_FILE)], check=True,
                       cwd=Path(__file__).resolve().parents[2], timeout=60)
        assert (disk / (OUTBOX_FILE + "-wal")).stat().st_size > 0
        fill(disk)
        assert main(["edge", "status", "--config", str(_node(tmp_path, disk)), "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["outbox"]["depth"] == 30


def test_status_says_what_is_wrong_when_it_cannot_read_the_outbox(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """No traceback: the path and the reason, and a non-zero exit."""
    state = tmp_path / "state"
    state.mkdir()
    (state / OUTBOX_FILE).write_bytes(os.urandom(4096))  # not a database
    assert main(["edge", "status", "--config", str(_node(tmp_path, state))]) == 3
    err = capsys.readouterr().err
    assert err.startswith(f"urbanpulse edge status: cannot read the outbox {state / OUTBOX_FILE}: ")
    assert "Traceback" not in err
