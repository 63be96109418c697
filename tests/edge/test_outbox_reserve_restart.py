"""The outbox opened again on a state disk full to the last block: after a clean stop (a
restart, an upgrade, a reboot) SQLite must make its shared-memory file to open it, and
only the reserve beside the outbox can give it the room. Nodes that had lost theirs, or
never had one, or had one's leftover half: real tmpfs disks (mounting needs root: skipped
otherwise) filled by a file, as logs fill a card."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge.agent import OUTBOX_FILE, OUTBOX_RESERVE_BYTES
from edge.drivers.base import Sample
from edge.outbox import RESERVE_OPEN_BYTES, RESERVE_SUFFIX, Outbox
from tests.disks import fill, small_disk

ROOT = Path(__file__).resolve().parents[2]


def _samples(n: int) -> list[Sample]:
    ts = datetime(2026, 5, 1, tzinfo=UTC)
    return [Sample("pm-1", "air.pm", {"pm25": 12.0, "pm10": 20.0}, ts) for _ in range(n)]


def _fill_again(disk: Path) -> None:
    """What the logs do with any room the node frees: take it."""
    logs = disk / f"logs{len(list(disk.glob('logs*')))}"
    logs.mkdir()
    fill(logs)


def _runs_on(path: Path) -> None:
    """Opens the outbox at `path` as the agent's start does, on the full disk, and checks
    that it reads its rows and deletes the ones the cloud confirms."""
    outbox = Outbox(path, reserve_bytes=OUTBOX_RESERVE_BYTES).open()
    try:
        rows = outbox.fetch(40)
        assert len(rows) == 40
        assert outbox.ack([r.id for r in rows]) == 40
    finally:
        outbox.close()


@pytest.mark.parametrize("stop", ["clean", "killed"])
def test_a_node_whose_reserve_was_used_up_by_a_deletion_opens_its_outbox_on_the_still_full_disk(
        tmp_path: Path, stop: str) -> None:
    """The disk filled to the last block; an eviction (or an ack) gave up the reserve to
    make room, the logs took what it left, and the agent stopped (systemd's SIGTERM: a
    restart, an upgrade; or a power cut) with the disk still full. Before, the reserve was
    given up whole: the next start found none, SQLite could not make its shared-memory
    file, and `edge run` exited 3 at every restart by systemd until someone freed room,
    reading nothing meanwhile. Now a deletion gives up all but RESERVE_OPEN_BYTES of it,
    which is left for the opening; and a start that gave that up too, stopped cleanly,
    makes it again out of the room the stop frees (SQLite's WAL and shared-memory files),
    so the start after that opens too."""
    (tmp_path / "state").mkdir()
    with small_disk(tmp_path / "state" / "disk", "40m") as disk:
        path = disk / OUTBOX_FILE
        script = textwrap.dedent(f"""
            import os, sys
            from datetime import UTC, datetime
            from pathlib import Path
            sys.path.insert(0, {str(ROOT)!r})
            from edge.drivers.base import Sample
            from edge.outbox import Outbox
            from tests.disks import fill
            disk = Path({str(disk)!r})
            outbox = Outbox(disk / {OUTBOX_FILE!r}, reserve_bytes={OUTBOX_RESERVE_BYTES}).open()
            ts = datetime(2026, 5, 1, tzinfo=UTC)
            for _ in range(100):
                outbox.append([Sample("pm-1", "air.pm", {{"pm25": 12.0}}, ts)] * 40, 1)
            fill(disk)
            assert outbox.evict_oldest(100) == 100, "the eviction"
            assert outbox.reserves_given_up == 1
            (disk / "logs").mkdir()
            fill(disk / "logs")
            if {stop!r} == "killed":
                os._exit(0)
            outbox.close()
        """)
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                              check=False, timeout=120)
        assert done.returncode == 0, done.stderr
        _fill_again(disk)  # the room the clean stop freed (the WAL file): the logs'
        assert os.statvfs(disk).f_bavail == 0
        _runs_on(path)
        assert 0 < (disk / (OUTBOX_FILE + RESERVE_SUFFIX)).stat().st_size <= RESERVE_OPEN_BYTES
        _fill_again(disk)
        _runs_on(path)


def test_a_node_upgraded_with_little_room_gets_a_small_reserve_and_opens_when_the_disk_fills(
        tmp_path: Path) -> None:
    """Yesterday's agent made no reserve; today's makes one only with three times its 8 MiB
    free, and the node was upgraded with 4 MiB free. Before, it ran without one: once the
    disk filled to the last block, the next restart found none, and `edge run` exited 3
    at every restart by systemd. Now the opening's part of it (RESERVE_OPEN_BYTES) is
    made where there is room for that (three times it)."""
    with small_disk(tmp_path / "state", "20m") as disk:
        path = disk / OUTBOX_FILE
        old = Outbox(path).open()  # yesterday's agent: no reserve
        for _ in range(100):
            old.append(_samples(40), 1)
        old.close()
        fill(disk, 4 * 1024 * 1024)

        outbox = Outbox(path, reserve_bytes=OUTBOX_RESERVE_BYTES).open()
        assert outbox.reserve_path.stat().st_size == RESERVE_OPEN_BYTES
        outbox.append(_samples(40), 2)
        _fill_again(disk)
        outbox.close()
        _fill_again(disk)
        _runs_on(path)


def test_a_reserve_left_half_made_by_a_killed_agent_is_room_again_at_the_next_start(
        tmp_path: Path) -> None:
    """An agent killed while it made its reserve (fallocate and fsync of 8 MiB on an SD
    card) leaves `outbox.sqlite3.reserve.tmp`. Before, it stayed: its 8 MiB were neither
    the reserve (never given up for room) nor the disk's (the reserve was not made again
    while they were taken, on a disk with under 24 MiB free otherwise), and on a disk full
    to the last block the next start exited 3. Now the start deletes it first."""
    with small_disk(tmp_path / "state", "20m") as disk:
        path = disk / OUTBOX_FILE
        Outbox(path).open().close()
        tmp = disk / (OUTBOX_FILE + ".reserve.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            os.posix_fallocate(fd, 0, OUTBOX_RESERVE_BYTES)
        finally:
            os.close(fd)
        fill(disk)
        outbox = Outbox(path, reserve_bytes=OUTBOX_RESERVE_BYTES).open()
        try:
            assert not tmp.exists()
            outbox.append(_samples(40), 1)
        finally:
            outbox.close()
