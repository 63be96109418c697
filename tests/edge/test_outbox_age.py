"""`outbox.max_age_days` judged by a clock that was wrong when rows were committed, or is
wrong at start-up: a Raspberry Pi has no real-time clock, boots on the time it last shut
down at (fake-hwclock) or on 1970, and keeps it until NTP answers. The rows it commits
meanwhile carry that time; their age cannot be read from it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edge import outbox as outbox_module
from edge.agent import Agent
from edge.clock_sync import CLOCK_UNSYNCED, FixedClockSync
from edge.config import load_config
from edge.drivers.base import Sample
from edge.outbox import Outbox
from tests.agent_thread import agent_in_thread
from tests.conftest import Collector
from tests.disks import fill, small_disk
from urbanpulse.clock import FakeClock, to_epoch_ns
from urbanpulse.testing import wait_for

SITE = "hn-outboxage"
SENSOR = '[[sensors]]\nid = "pm-1"\ndriver = "sds011"\nport = "/dev/null"\n'
NOW = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)  # the true time
DAY = 86400.0


def _read(agent: Agent, clock: FakeClock, n: int) -> None:
    emit = agent.emitter(agent.drivers["pm-1"])
    for _ in range(n):
        emit(Sample("pm-1", "air.pm", {"pm25": 12.0, "pm10": 20.0}, clock.now()))
        clock.advance(1.0)
    assert agent.flush() == n


def test_rows_committed_on_a_stale_boot_clock_are_not_evicted_as_old_once_ntp_corrects_it(
        make_node_config: Callable[..., Path], collector: Callable[[str, str], Collector]) -> None:
    """A node that was off for 14 days (max_age_days = 7) boots on the time it shut down at,
    with the network down: its readings are committed under that time, flagged
    clock_unsynced. NTP answers, and the agent restarts (a power cut, an upgrade): the rows
    committed before the shutdown are 14 days old and go; those of this boot are minutes
    old and must stay. Before, the start-up eviction judged every row by its commit stamp
    and evicted the readings of this boot with the old ones."""
    node = "aq-staleboot"
    path = make_node_config(SITE, node, SENSOR)
    seen = collector(SITE, node)
    shutdown = NOW - timedelta(days=14)
    clock = FakeClock(shutdown - timedelta(hours=1))
    probe = FixedClockSync(True)
    first = Agent(load_config(path), clock=clock, clock_sync=probe)
    first.clock_sync.start()
    first.outbox.open()
    try:
        _read(first, clock, 3)  # truly 14 days old: the network was down then too
        probe.set(False)
        clock.jump((shutdown - clock.now()).total_seconds())  # the boot: fake-hwclock's saved time, unsynced
        _read(first, clock, 10)
        flags = [r.reading.flags for r in first.outbox.fetch(100)]
        assert flags == [()] * 3 + [(CLOCK_UNSYNCED,)] * 10
    finally:
        first.outbox.close()

    clock.jump((NOW - clock.now()).total_seconds())  # NTP steps the clock 14 days forward
    probe.set(True)
    again = Agent(load_config(path), clock=clock, clock_sync=probe)
    with agent_in_thread(again):
        wait_for(lambda: seen.seqs("pm-1") == list(range(3, 13)), 15,
                 "the readings of the stale boot at the broker")
        assert again.outbox.stats().evicted == 3  # the truly old ones only


def test_a_clock_ahead_at_start_up_evicts_nothing_until_it_is_synchronised(
        make_node_config: Callable[..., Path], collector: Callable[[str, str], Collector]) -> None:
    """A node whose clock comes up 30 days ahead (a bad RTC) and not synchronised: its
    outbox's rows, committed yesterday on a good clock, look 31 days old. Before, the
    start-up eviction took them all; now it waits for a synchronised clock, and judges
    them then."""
    node = "aq-aheadboot"
    path = make_node_config(SITE, node, SENSOR)
    seen = collector(SITE, node)
    clock = FakeClock(NOW - timedelta(days=1))
    probe = FixedClockSync(True)
    first = Agent(load_config(path), clock=clock, clock_sync=probe)
    first.clock_sync.start()
    first.outbox.open()
    try:
        _read(first, clock, 5)
    finally:
        first.outbox.close()

    clock.jump(31 * DAY)
    probe.set(False)
    again = Agent(load_config(path), clock=clock, clock_sync=probe)
    with agent_in_thread(again):
        wait_for(lambda: seen.seqs("pm-1") == list(range(5)), 15, "yesterday's readings")
        assert again.outbox.stats().evicted == 0
        clock.jump(-30 * DAY)  # NTP corrects it
        probe.set(True)
        clock.advance(2.0)  # the agent's next probe
        wait_for(lambda: again.clock_sync.state is True, 10, "the agent to see the clock synchronised")
        assert again.outbox.stats().evicted == 0


def test_the_age_eviction_takes_the_oldest_rows_up_to_the_last_one_made_on_a_good_clock(
        tmp_path: Path) -> None:
    """The outbox alone: rows leave by age only as a prefix in commit order that ends in a
    row committed on a synchronised clock before the cut; a row flagged clock_unsynced is
    taken only when such a row was committed after it (it is older still), and no row is
    taken from behind a row a good clock says is young."""
    outbox = Outbox(tmp_path / "outbox.sqlite3").open()
    try:
        def commit(at_days: float, *flags: str) -> None:
            t = NOW + timedelta(days=at_days)
            outbox.append([Sample("pm-1", "air.pm", {"pm25": 1.0}, t, flags)], to_epoch_ns(t))

        commit(-20, CLOCK_UNSYNCED)  # id 1: committed before id 2, which is old: old
        commit(-10)                  # id 2: old
        commit(-40, CLOCK_UNSYNCED)  # id 3: its stamp says nothing: kept
        commit(-1)                   # id 4: young
        commit(-30)                  # id 5: committed after a young row (a clock set back)
        commit(-9, CLOCK_UNSYNCED)   # id 6
        cut = to_epoch_ns(NOW - timedelta(days=7))
        assert outbox.evict_aged(cut) == 2
        assert [r.id for r in outbox.fetch(10)] == [3, 4, 5, 6]
        assert outbox.evict_aged(cut) == 0
        assert outbox.stats().evicted == 2
    finally:
        outbox.close()


def test_an_age_eviction_the_full_disk_refuses_does_not_stop_the_agent_from_starting(
        make_node_config: Callable[..., Path], collector: Callable[[str, str], Collector],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A node whose SD card filled while it was offline for more than max_age_days, and
    that restarts (a power cut): the eviction of its old rows needs room in SQLite's WAL
    file, which the full disk refuses. Before, that error stopped the agent at start-up
    (exit 3, and so at every restart by systemd while the disk stayed full: no reading
    read); now it is logged and tried again a minute later, and the agent runs."""
    # A disk that filled at once (logs): the first run did not see it low and left its
    # WAL un-checkpointed, so the eviction needs the database file to grow and is refused
    # (on a disk it sees low the outbox checkpoints after every write: WAL_ROOM_BYTES).
    monkeypatch.setattr(outbox_module, "WAL_ROOM_BYTES", 0)
    node = "aq-agefull"
    path = make_node_config(SITE, node, SENSOR)
    seen = collector(SITE, node)
    clock = FakeClock(NOW - timedelta(days=10))
    probe = FixedClockSync(True)
    with small_disk(load_config(path).node.state_dir) as disk:
        first = Agent(load_config(path), clock=clock, clock_sync=probe)
        first.clock_sync.start()
        first.outbox.open()
        _read(first, clock, 2000)
        # The first run's connection stays open until the agent has opened the outbox: its
        # WAL and shared-memory files stay (a power cut leaves them so; a clean stop deletes
        # them, and SQLite cannot make them again on a full disk).
        filler = fill(disk)
        clock.jump((NOW - clock.now()).total_seconds())
        again = Agent(load_config(path), clock=clock, clock_sync=probe)
        with agent_in_thread(again):
            wait_for(lambda: again.publisher is not None and again.publisher.state.connected,
                     15, "the agent started and connected")
            first.outbox.close()
            assert again.outbox.stats().evicted == 0  # refused for now
            assert not again._aged
            filler.unlink()
            clock.advance(60.0)
            # (rows sent meanwhile, whose deletion the full disk refused, are evicted but
            # not counted once their deletion goes through: the evicted count may be 0)
            wait_for(lambda: again._aged, 10, "the eviction tried again")
        assert again.publisher is not None
        assert again.publisher.failure is None
    # every row was either delivered or evicted, none both unaccounted
    assert seen.seqs("pm-1") == sorted(set(seen.seqs("pm-1")))
