"""The node's SD card full: the agent runs on, holds what it cannot commit, and commits it
once there is room again; nothing a driver read is lost.

The state directory is a real 4 MiB tmpfs (mounting needs root: skipped otherwise), filled
by a file as logs fill a card; the agent reads an SDS011 emulated on a real pseudo-terminal
and publishes to the session's real Mosquitto.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge import agent as agent_module
from edge import outbox as outbox_module
from edge.agent import Agent
from edge.config import load_config
from edge.drivers.base import Sample
from edge.mqtt_client import make_client as make_node_client
from edge.outbox import Outbox
from edge.publisher import Publisher
from firmware_bridge.protocols.sds011.emulator import Sds011Emulator
from tests.agent_thread import agent_in_thread
from tests.conftest import Collector
from tests.disks import fill, small_disk
from urbanpulse.cli import main
from urbanpulse.clock import FakeClock, to_epoch_ns
from urbanpulse.testing import wait_for

SITE = "hn-diskfull"
SAMPLE = Path(__file__).resolve().parents[2] / "edge/drivers/sds011/sample.toml"


def test_a_full_state_disk_holds_the_readings_until_there_is_room_again(
        steady_sds011: Sds011Emulator, make_node_config: Callable[..., Path],
        collector: Callable[[str, str], Collector], caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A disk that fills at once (logs), its WAL not checkpointed: its frames need the
    # database file to grow, and nothing can be written. (On a disk it sees low, the
    # outbox checkpoints after every write, WAL_ROOM_BYTES, and then commits on a full
    # disk as long as the acks free pages: tests/edge/test_outbox_upgrade.py.)
    monkeypatch.setattr(outbox_module, "WAL_ROOM_BYTES", 0)
    node = "aq-full"
    path = make_node_config(SITE, node, f'[[sensors]]\nid = "pm-1"\ndriver = "sds011"\n'
                            f'port = "{steady_sds011.port}"\nsilence_timeout_s = 3.0\n')
    seen = collector(SITE, node)
    with small_disk(load_config(path).node.state_dir) as disk, agent_in_thread(path) as agent:
        wait_for(lambda: len(seen.seqs("pm-1")) >= 10, 30, "readings before the disk fills")
        with caplog.at_level(logging.ERROR, logger="urbanpulse.edge.agent"):
            filler = fill(disk)
            emitted = agent.drivers["pm-1"].readings
            wait_for(lambda: agent.drivers["pm-1"].readings >= emitted + 40, 30,
                     "readings read while the disk is full")
            health = agent.health()
            assert health["outbox_uncommitted"] > 0, health
            assert "full" in (health["outbox_error"] or ""), health
            agent.write_state()  # no room for the state file either: logged, not fatal
        failing = [r for r in caplog.records if "cannot commit" in r.getMessage()]
        assert len(failing) == 1, [r.getMessage() for r in caplog.records]  # once per episode
        filler.unlink()
        wait_for(lambda: agent.health()["outbox_error"] is None, 10, "the held readings committed")
        assert agent.health()["outbox_uncommitted"] < 40  # those of the last flush interval
        committed = len(seen.seqs("pm-1"))
        wait_for(lambda: len(seen.seqs("pm-1")) > committed + 10, 30, "readings after the disk")
    assert agent.publisher is not None
    assert agent.publisher.failure is None
    # Every reading the driver read was committed (numbered) and reached the subscriber.
    read = agent.drivers["pm-1"].readings
    wait_for(lambda: seen.seqs("pm-1") == list(range(read)), 10,
             f"all {read} readings read at the subscriber, each once")


def test_past_what_memory_holds_the_oldest_rows_make_room_then_readings_are_dropped(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """While the outbox stays full (the network down too, nothing drains), the agent holds
    MAX_UNCOMMITTED readings, then evicts as many of the outbox's oldest rows (counted, as
    max_rows does, so the cloud's ledger sees them missing) and commits into their room.
    Where that cannot help (an empty outbox), the oldest held readings are dropped, counted.
    The outbox is made full by SQLite's own limit (`max_page_count`, "database or disk is
    full", as on a full disk whose WAL file still has room: a node that ran a while)."""
    monkeypatch.setattr(agent_module, "MAX_UNCOMMITTED", 200)
    clock = FakeClock(datetime(2026, 5, 1, tzinfo=UTC))
    text = SAMPLE.read_text().replace('state_dir = "/var/lib/urbanpulse"',
                                      f'state_dir = "{tmp_path / "state"}"')
    (tmp_path / "node.toml").write_text(text)

    def agent_on(outbox: str) -> tuple[Agent, Callable[[int], None], Callable[[int], None]]:
        agent = Agent(load_config(tmp_path / "node.toml"), clock=clock)
        agent.outbox.path = tmp_path / "state" / outbox
        agent.outbox.open()
        emit = agent.emitter(agent.drivers["pm-1"])

        def read(n: int) -> None:
            for _ in range(n):
                emit(Sample("pm-1", "air.pm", {"pm25": 12.0, "pm10": 20.0}, clock.now()))
                clock.advance(0.05)

        def limit(pages: int | None) -> None:  # this thread's connection: the agent's
            db = agent.outbox._db()
            if pages is None:
                (pages,) = db.execute("PRAGMA page_count").fetchone()
            db.execute(f"PRAGMA max_page_count = {pages}")

        return agent, read, limit

    agent, read, limit = agent_on("full.sqlite3")
    try:
        read(3000)
        assert agent.flush() == 3000
        limit(None)  # no room to grow
        read(150)
        assert agent.flush() == 0
        assert agent.health()["outbox_uncommitted"] == 150
        read(100)  # 250 held: past 200
        assert agent.flush() == 0
        assert agent.outbox.stats().evicted == 250  # the room for the 250 held
        assert agent.flush() == 250
        stats = agent.outbox.stats()
        assert (stats.depth, stats.evicted) == (3000, 250)
        assert agent.outbox.next_seq("pm-1") == 3250
        assert agent.health()["outbox_error"] is None
        assert agent.readings_dropped == 0
    finally:
        agent.outbox.close()

    agent, read, limit = agent_on("empty.sqlite3")
    try:
        limit(None)
        read(150)
        assert agent.flush() == 0
        read(100)
        assert agent.flush() == 0
        health = agent.health()
        assert (health["outbox_uncommitted"], health["readings_dropped"]) == (200, 50)
        assert health["outbox_evicted"] == 0  # nothing to evict
        assert "full" in health["outbox_error"]
        agent.write_state()  # what `edge status` shows of it
        assert main(["edge", "status", "--config", str(tmp_path / "node.toml")]) == 0
        line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("commits:"))
        assert line.startswith("commits:   FAILING (outbox append failed: database or disk is "
                               "full): 200 readings held in memory until the outbox commits "
                               "again; 50 readings dropped uncommitted (as of the state written ")
        limit(1_073_741_823)  # room again
        assert agent.flush() == 200
        assert agent.outbox.next_seq("pm-1") == 200  # the 50 dropped never got a number
    finally:
        agent.outbox.close()


def test_an_ack_the_full_disk_cannot_commit_is_committed_later_and_the_publisher_runs_on(
        make_node_config: Callable[..., Path], collector: Callable[[str, str], Collector],
        tmp_path: Path) -> None:
    """The broker's PUBACK deletes the batch's rows, which a full disk refuses too (the
    deletion needs room in SQLite's WAL file): the publisher keeps the rows as done, does
    not send them again, deletes them once there is room, and goes on publishing. Before,
    the error ended the publisher's thread, and with it the agent (exit 3, and what the
    agent held uncommitted lost at each restart while the disk stayed full)."""
    node = "aq-ackfull"
    path = make_node_config(SITE, node, '[[sensors]]\nid = "pm-1"\ndriver = "sds011"\n'
                            'port = "/dev/null"\n')
    config = load_config(path)
    seen = collector(SITE, node)
    clock = FakeClock(datetime(2026, 11, 29, 6, 0, tzinfo=UTC))
    with small_disk(tmp_path / "disk") as disk:
        outbox = Outbox(disk / "outbox.sqlite3").open()
        publisher = Publisher(config, outbox, lambda: make_node_client(f"edge-{SITE}.{node}",
                                                                       config.mqtt),
                              clock, lambda: {})
        publisher.start()
        try:
            wait_for(lambda: publisher.state.connected, 15, "the publisher to connect")
            outbox.append([Sample("pm-1", "air.pm", {"pm25": 12.0, "pm10": 20.0}, clock.now())
                           for _ in range(5)], to_epoch_ns(clock.now()))
            filler = fill(disk)
            clock.advance(1.0)  # the batch is due
            wait_for(lambda: seen.seqs("pm-1") == list(range(5)), 10, "the batch at the broker")
            wait_for(lambda: publisher.state.readings_acked == 5 or publisher.failure, 10,
                     "the broker's PUBACK")
            assert publisher.failure is None, repr(publisher.failure)
            for _ in range(10):  # 2 s: the rows are not sent again
                clock.advance(0.2)
                now = clock.monotonic()
                wait_for(lambda n=now: (publisher.state.pumped_at or 0) >= n, 10, "a pump")
            assert outbox.stats().depth == 5, "the disk refused the deletion"
            assert "full" in (publisher.state.last_error or "")
            filler.unlink()
            clock.advance(1.0)
            wait_for(lambda: outbox.stats().depth == 0, 10, "the rows deleted once there is room")
            outbox.append([Sample("pm-1", "air.pm", {"pm25": 12.0, "pm10": 20.0}, clock.now())],
                          to_epoch_ns(clock.now()))
            clock.advance(1.0)
            wait_for(lambda: seen.seqs("pm-1") == list(range(6)), 10, "the next batch")
            assert publisher.failure is None
        finally:
            publisher.stop()
            outbox.close()
    assert publisher.failure is None
