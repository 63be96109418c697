"""The age eviction (`outbox.max_age_days`) of a large backlog, when the wall clock is first
synchronised while the agent runs (a Raspberry Pi boots on a stale clock, and NTP answers
minutes after the agent started). A real tmpfs disk (mounting needs root: skipped
otherwise) filled by a file, as logs fill a card."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from edge.agent import Agent
from edge.clock_sync import FixedClockSync
from edge.config import load_config
from edge.drivers.base import Sample
from edge.outbox import AGE_EVICT_BATCH
from tests.disks import fill, small_disk
from urbanpulse.clock import FakeClock, to_epoch_ns

SAMPLE = Path(__file__).resolve().parents[2] / "edge/drivers/sds011/sample.toml"
NOW = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
OLD = 300_000  # rows committed ten days ago: 21 MiB of database file


def test_the_age_eviction_goes_in_batches_that_the_disk_has_room_for_between_commits(
        tmp_path: Path) -> None:
    """A node back after ten days offline with 300,000 rows, on a card with 6 MiB free.
    Before, the eviction was one transaction: a WAL file as big as the rows it deleted
    (140 MiB for max_rows' 2,000,000), which the disk refused; it was logged and tried
    again every minute, for ever, filling the disk each time (and blocking the agent's
    loop for the whole deletion: 1 s for 2,000,000 rows on a desktop CPU, its drivers and
    the publisher's acks waiting). Now it deletes AGE_EVICT_BATCH rows a flush interval,
    each batch a transaction of its own, and the agent commits between them."""
    clock = FakeClock(NOW)
    probe = FixedClockSync(False)
    with small_disk(tmp_path / "state", "40m") as disk:
        text = SAMPLE.read_text().replace('state_dir = "/var/lib/urbanpulse"',
                                          f'state_dir = "{disk}"')
        (tmp_path / "node.toml").write_text(text)
        agent = Agent(load_config(tmp_path / "node.toml"), clock=clock, clock_sync=probe)
        agent.clock_sync.start()
        agent.outbox.open()
        try:
            old_ns = to_epoch_ns(NOW - timedelta(days=10))
            sample = Sample("pm-1", "air.pm", {"pm25": 12.0, "pm10": 20.0}, NOW)
            for i in range(0, OLD, 20_000):
                agent.outbox.append([sample] * 20_000, old_ns + i)
            fill(disk, 6 * 1024 * 1024)
            emit = agent.emitter(agent.drivers["pm-1"])

            def tick() -> None:  # what the agent's loop does every FLUSH_INTERVAL_S
                emit(Sample("pm-1", "air.pm", {"pm25": 12.0, "pm10": 20.0}, clock.now()))
                clock.advance(0.2)
                assert agent.flush() == 1
                agent.clock_sync.refresh()
                agent._evict_aged()

            tick()
            assert agent.outbox.stats().evicted == 0  # the clock is not synchronised yet
            probe.set(True)
            clock.advance(2.0)
            tick()
            assert 0 < agent.outbox.stats().evicted <= AGE_EVICT_BATCH
            for _ in range(OLD // AGE_EVICT_BATCH + 1):
                tick()
            stats = agent.outbox.stats()
            assert (stats.depth, stats.evicted) == (OLD // AGE_EVICT_BATCH + 3, OLD)
            assert agent.readings_dropped == 0
        finally:
            agent.outbox.close()
