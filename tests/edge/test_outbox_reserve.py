"""The outbox's reserve: room held back on the state disk so that, on an SD card filled to
the last block, the outbox can still delete rows (evictions for room, the cloud's acks)
and be opened after a clean stop. Real tmpfs disks (mounting needs root: skipped
otherwise) filled by a file, as logs fill a card."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge import agent as agent_module
from edge import outbox as outbox_module
from edge.agent import OUTBOX_FILE, OUTBOX_RESERVE_BYTES, Agent
from edge.clock_sync import FixedClockSync
from edge.config import load_config
from edge.drivers.base import Sample
from edge.outbox import RESERVE_OPEN_BYTES, RESERVE_SUFFIX, Outbox
from tests.agent_thread import agent_in_thread
from tests.conftest import Collector
from tests.disks import fill, small_disk
from urbanpulse.clock import FakeClock
from urbanpulse.testing import wait_for

SITE = "hn-reserve"
SENSOR = '[[sensors]]\nid = "pm-1"\ndriver = "sds011"\nport = "/dev/null"\n'
SAMPLE = Path(__file__).resolve().parents[2] / "edge/drivers/sds011/sample.toml"
DISK = "40m"  # room for the 8 MiB reserve, which is made only with 3 times that free


def _reader(agent: Agent, clock: FakeClock) -> Callable[[int], None]:
    emit = agent.emitter(agent.drivers["pm-1"])

    def read(n: int) -> None:
        for _ in range(n):
            emit(Sample("pm-1", "air.pm", {"pm25": 12.0, "pm10": 20.0}, clock.now()))
            clock.advance(0.05)

    return read


def test_on_a_full_disk_the_reserve_makes_room_for_the_held_readings_instead_of_dropping_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A node that ran a little since its start (its WAL never checkpointed: every row in
    the WAL file, none in the database file yet) on a card that logs then fill to the last
    block, the network down. Past MAX_UNCOMMITTED held readings the agent evicts the
    outbox's oldest rows to commit them, but on such a disk no deletion can be written
    (WAL growth) nor any checkpoint (the database file must grow): every checkpoint mode
    fails there too. Before, the eviction failed and the held readings were dropped from
    then on, every one; now the reserve is given up, the eviction goes through, and the
    agent keeps committing its newest readings at the cost of its oldest rows (counted as
    evicted), for as long as the disk stays full."""
    monkeypatch.setattr(agent_module, "MAX_UNCOMMITTED", 200)
    clock = FakeClock(datetime(2026, 5, 1, tzinfo=UTC))
    with small_disk(tmp_path / "state", DISK) as disk:
        text = SAMPLE.read_text().replace('state_dir = "/var/lib/urbanpulse"', f'state_dir = "{disk}"')
        (tmp_path / "node.toml").write_text(text)
        agent = Agent(load_config(tmp_path / "node.toml"), clock=clock,
                      clock_sync=FixedClockSync(True))
        agent.outbox.open()
        try:
            assert (disk / (OUTBOX_FILE + RESERVE_SUFFIX)).stat().st_size == OUTBOX_RESERVE_BYTES
            read = _reader(agent, clock)
            read(3000)
            assert agent.flush() == 3000
            fill(disk)
            read(150)
            assert agent.flush() == 0
            assert "full" in (agent.health()["outbox_error"] or "")
            read(100)  # 250 held: past 200, the oldest 250 rows make room
            assert agent.flush() == 0
            # all of it but the opening's part, kept for the next start
            assert (disk / (OUTBOX_FILE + RESERVE_SUFFIX)).stat().st_size == RESERVE_OPEN_BYTES
            assert agent.outbox.reserves_given_up == 1
            assert agent.outbox.stats().evicted == 250
            assert agent.flush() == 250
            # The disk stays full: a day of readings at 1 a second, committed 100 at a
            # time; the oldest rows go to make room, no reading is dropped.
            for _ in range(864):
                read(100)
                agent.flush()
            agent.flush()
            health = agent.health()
            assert health["readings_dropped"] == 0, health
            assert agent.outbox.next_seq("pm-1") == 3250 + 86400 - health["outbox_uncommitted"]
            stats = agent.outbox.stats()
            assert stats.depth + stats.evicted == agent.outbox.next_seq("pm-1")
        finally:
            agent.outbox.close()


def test_an_agent_restarted_on_a_full_disk_opens_its_outbox_and_runs(
        make_node_config: Callable[..., Path], collector: Callable[[str, str], Collector]) -> None:
    """A clean stop (systemd's SIGTERM: a restart, an upgrade, a reboot) deletes SQLite's
    WAL and shared-memory files, and on a full disk SQLite cannot make the latter again
    (SQLITE_IOERR_SHMSIZE, "disk I/O error"). Before, `edge run` stopped at start-up with
    exit code 3, and so at every restart by systemd while the disk stayed full: no reading
    read; now the reserve is given up and the agent runs and sends its backlog."""
    node = "aq-fullstart"
    path = make_node_config(SITE, node, SENSOR)
    seen = collector(SITE, node)
    clock = FakeClock(datetime(2026, 5, 1, tzinfo=UTC))
    with small_disk(load_config(path).node.state_dir, DISK) as disk:
        first = Agent(load_config(path), clock=clock, clock_sync=FixedClockSync(True))
        first.outbox.open()
        try:
            _reader(first, clock)(20)
            assert first.flush() == 20
        finally:
            first.outbox.close()
        assert sorted(p.name for p in disk.iterdir()) == [OUTBOX_FILE, OUTBOX_FILE + RESERVE_SUFFIX]
        fill(disk)
        clock.advance(120.0)  # the 20 are a backlog: sent without waiting for more
        again = Agent(load_config(path), clock=clock, clock_sync=FixedClockSync(True))
        with agent_in_thread(again):
            wait_for(lambda: seen.seqs("pm-1") == list(range(20)), 15,
                     "the outbox's readings at the broker")
        assert again.publisher is not None
        assert again.publisher.failure is None
        assert again.outbox.reserves_given_up == 1


def test_the_reserve_is_made_again_only_when_the_disk_has_room_to_spare(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outbox_module, "RESERVE_CHECK_S", 0.0)
    reserve = 4 * 1024 * 1024
    clock = FakeClock(datetime(2026, 5, 1, tzinfo=UTC))
    with small_disk(tmp_path / "disk", "20m") as disk:
        outbox = Outbox(disk / OUTBOX_FILE, reserve_bytes=reserve).open()
        try:
            def commit() -> None:
                outbox.append([Sample("pm-1", "air.pm", {"pm25": 1.0}, clock.now())], 1)

            outbox.append([Sample("pm-1", "air.pm", {"pm25": 1.0}, clock.now())
                           for _ in range(100)], 1)
            assert outbox.reserve_path.stat().st_size == reserve
            filler = fill(disk)
            assert outbox.evict_oldest(50) == 50
            assert outbox.reserves_given_up == 1  # the deletion needed it
            assert outbox.reserve_path.stat().st_size == RESERVE_OPEN_BYTES  # the opening's
            filler.unlink()
            fill(disk, room=2 * reserve)  # room, but not 3 times the reserve: not taken
            commit()
            assert outbox.reserve_path.stat().st_size == RESERVE_OPEN_BYTES
            (disk / "filler").unlink()
            commit()
            assert outbox.reserve_path.stat().st_size == reserve
            assert outbox.reserve_path.stat().st_mode & 0o777 == 0o600
        finally:
            outbox.close()
