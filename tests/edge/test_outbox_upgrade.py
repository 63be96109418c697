"""An outbox from before the reserve (yesterday's agent, 263783f: the same schema, no
reserve file beside it) taken over by today's agent on a nearly full state disk, as the
Ansible role's upgrade leaves a node: the state dir is kept, and the disk has too little
room left for the reserve to be made (3 times its 8 MiB). Real tmpfs disks (mounting
needs root: skipped otherwise) filled by a file, as logs fill a card."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge.agent import OUTBOX_RESERVE_BYTES
from edge.drivers.base import Sample
from edge.errors import OutboxError
from edge.outbox import Outbox
from tests.disks import fill, small_disk

ROOM = 256 * 1024  # free on the disk after the upgrade: the outbox opens, no reserve is made


def _samples(n: int) -> list[Sample]:
    ts = datetime(2026, 5, 1, tzinfo=UTC)
    return [Sample("pm-1", "air.pm", {"pm25": 12.0, "pm10": 20.0}, ts) for _ in range(n)]


def test_an_outbox_without_a_reserve_on_a_nearly_full_disk_keeps_committing(tmp_path: Path) -> None:
    """The backlog yesterday's agent left is delivered and acked, and every new reading
    committed. SQLite checkpoints its WAL file only past 1000 pages (4 MiB): on a disk
    with less room than that the WAL filled up (the acks' deletions, then the commits)
    and was never checkpointed, so every commit and ack failed for as long as the disk
    stayed so (before: ack failed after 320 of 4000 rows, no commit at all; the agent
    held its readings, then dropped them), with no reserve to give up. Checkpointing
    when a write finds the disk full frees the WAL: its frames only rewrite pages the
    database file already has (deleted rows' pages are reused)."""
    with small_disk(tmp_path / "state", "16m") as disk:
        path = disk / "outbox.sqlite3"
        old = Outbox(path).open()  # yesterday's agent: no reserve
        for _ in range(100):
            old.append(_samples(40), 1)
        old.close()  # a clean stop: no WAL file left
        fill(disk, ROOM)

        outbox = Outbox(path, reserve_bytes=OUTBOX_RESERVE_BYTES).open()
        assert not outbox.reserve_path.exists()  # too little room to make one
        ids = [row.id for row in outbox.fetch(10_000)]
        assert len(ids) == 4000
        for i in range(0, len(ids), 40):  # the publisher's acks, batch by batch
            assert outbox.ack(ids[i:i + 40]) == len(ids[i:i + 40])
        committed = 0
        for _ in range(1000):  # 200 s of a node at 50 readings/s, delivered as it goes
            readings = outbox.append(_samples(10), 2)
            committed += len(readings)
            assert outbox.ack([row.id for row in outbox.fetch(100)]) == 10
        assert committed == 10_000
        assert outbox.stats().depth == 0
        assert outbox.stats().evicted == 0
        assert outbox.next_seq("pm-1") == 14_000  # numbering went on from yesterday's
        outbox.close()


def test_an_outbox_without_a_reserve_on_a_disk_full_to_the_last_block_says_the_disk_is_full(
        tmp_path: Path) -> None:
    """After a clean stop (no WAL or shared-memory file left) SQLite cannot open the outbox
    on such a disk, and an outbox from before the reserve has none to give up: the agent
    cannot start until room is freed (yesterday's agent could not either). It said only
    "disk I/O error", which reads as a failing SD card; it now says the disk is full."""
    with small_disk(tmp_path / "state", "16m") as disk:
        path = disk / "outbox.sqlite3"
        old = Outbox(path).open()
        old.append(_samples(40), 1)
        old.close()
        fill(disk)
        with pytest.raises(OutboxError, match=r"disk I/O error \(the disk of .* is full: "
                                              r"free room there\)"):
            Outbox(path, reserve_bytes=OUTBOX_RESERVE_BYTES).open()


def test_a_small_outbox_without_a_reserve_on_a_nearly_full_disk_keeps_committing(
        tmp_path: Path) -> None:
    """The same with a small backlog (a few pages): the live commits grow the database
    file a little while the acks come, and a WAL file that fills the disk's room before
    a checkpoint holds frames the database file must grow for. Then no checkpoint can be
    made (no room to grow into), nor any write (the WAL cannot grow): stuck for as long
    as the disk stays so (before: the 9th commit failed, and every one after it). On a
    disk with under WAL_ROOM_BYTES free the WAL is checkpointed after every write, so it
    never holds more than one write's frames."""
    with small_disk(tmp_path / "state", "16m") as disk:
        path = disk / "outbox.sqlite3"
        old = Outbox(path).open()
        for _ in range(33):
            old.append(_samples(10), 1)
        old.close()
        fill(disk, ROOM)

        outbox = Outbox(path, reserve_bytes=OUTBOX_RESERVE_BYTES).open()
        committed = 0
        for i in range(1000):  # commits every 0.2 s, the cloud's acks every second
            committed += len(outbox.append(_samples(8), 2))
            if i % 5 == 4:
                ids = [row.id for row in outbox.fetch(40)]
                assert outbox.ack(ids) == 40
        assert committed == 8000
        assert outbox.stats().depth == 330
        assert outbox.stats().evicted == 0
        outbox.close()
