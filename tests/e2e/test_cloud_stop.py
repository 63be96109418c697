"""A processor stopped while data flows (systemd's SIGTERM): the journal source ends the
run, and it ends cleanly: exit 0, no Bytewax panic in the log (operators read it after
every upgrade), and after a restart every reading is in InfluxDB exactly once with minute
aggregates of exactly those readings. By an abort (flow.stop's default) the epoch under way
is not committed and the restart reads it again from the journal; by a drain it is written
and committed."""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cloud.journal import Journal, journal_path
from tests.e2e.counts import minute_count, raw_count
from urbanpulse.clock import to_epoch_ns
from urbanpulse.influx_http import InfluxHTTP
from urbanpulse.mqtt import close_client, connect_and_wait, make_client
from urbanpulse.testing import wait_for
from urbanpulse.wire import Reading, data_topic, encode_batch

T0 = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)


def _counts(reader: InfluxHTTP, node: str) -> tuple[int, int]:
    return raw_count(reader, "air_co2", "co2", node), minute_count(reader, "air_co2", node)


STOPPED = {"abort": "stopped on a signal by an abort: the epoch under way is not committed",
           "drain": "stopped on a signal, the last epoch written and committed"}


@pytest.mark.parametrize("stop", ["abort", "drain"])
def test_sigterm_while_data_flows_ends_the_run_cleanly_and_loses_nothing(
        cloud_factory, add_stack_node, reader, stop) -> None:  # type: ignore[no-untyped-def]
    site, node = "hn-e2e", f"co2-stop-{stop}"
    creds = add_stack_node(site, node)
    cloud = cloud_factory(f"stop-{stop}", stop=stop)
    cloud.start()
    wait_for(lambda: "ingest subscribed" in cloud.log(), 30, "the ingest to subscribe")
    readings = [Reading("co2-1", "air.co2", to_epoch_ns(T0 + timedelta(seconds=i)), i,
                        {"co2": 410.0 + i % 30}) for i in range(2000)]
    client = make_client(f"pub-{node}", creds, clean_start=True)
    connect_and_wait(client)
    try:
        for i in range(0, 1000, 50):
            client.publish(data_topic(site, node), encode_batch(site, node, readings[i:i + 50]),
                           qos=1).wait_for_publish(10)
        wait_for(lambda: _counts(reader, node)[0] > 0, 30, "the first points")
        assert cloud.proc is not None
        os.killpg(cloud.proc.pid, signal.SIGTERM)  # as systemd stops the unit
        assert cloud.proc.wait(30) == 0, cloud.log()[-3000:]
        log = cloud.log()
        assert STOPPED[stop] in log, log[-3000:]
        assert "panicked" not in log, log[-3000:]
        assert "Traceback" not in log, log[-3000:]
        for i in range(1000, len(readings), 50):  # the broker keeps them for the ingest
            client.publish(data_topic(site, node), encode_batch(site, node, readings[i:i + 50]),
                           qos=1).wait_for_publish(10)
        cloud.start()
        wait_for(lambda: _counts(reader, node) == (len(readings), len(readings)), 60,
                 "every reading, raw and in the minute aggregates, once")
    finally:
        close_client(client)


def _committed_journal_offset(recovery: Path) -> int:
    """The journal offset of the last epoch the recovery store committed (0: none)."""
    offset = 0
    for part in recovery.glob("part-*.sqlite3"):
        with contextlib.closing(sqlite3.connect(part)) as db:
            (epoch,) = db.execute("SELECT MAX(commit_epoch) FROM commits").fetchone()
            row = db.execute("SELECT ser_change FROM snaps WHERE step_id = 'urbanpulse.journal' "
                             "AND state_key = 'i0' AND snap_epoch <= ? ORDER BY snap_epoch DESC "
                             "LIMIT 1", (epoch or 0,)).fetchone()
            if row is not None and row[0] is not None:
                state: dict[str, Any] = pickle.loads(row[0])
                offset = max(offset, state["i0"])
    return offset


def _journaled(state: Path) -> int:
    journal = Journal(journal_path(state / "journal", "i0"), "i0").open(create=False)
    try:
        return journal.last_offset()
    finally:
        journal.close()


def test_a_stop_by_abort_leaves_its_epoch_to_the_journal_and_the_restart_writes_it_once(
        cloud_factory, add_stack_node, reader, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Deterministic where the test above depends on where the SIGTERM lands: a first run
    drains (its data committed), a second one, whose epoch cannot end within the test
    (60 s), is stopped by an abort after its data are in InfluxDB: the store still holds the
    first run's journal offset, the journal the second run's records, and the third run
    writes every reading exactly once, its minute aggregates too."""
    site, node = "hn-e2e", "co2-abort-left"
    creds = add_stack_node(site, node)
    state, recovery = tmp_path / "left", tmp_path / "left" / "recovery"
    readings = [Reading("co2-1", "air.co2", to_epoch_ns(T0 + timedelta(seconds=i)), i,
                        {"co2": 415.0 + i % 25}) for i in range(1500)]
    client = make_client(f"pub-{node}", creds, clean_start=True)
    connect_and_wait(client)

    def publish(lo: int, hi: int) -> None:
        for i in range(lo, hi, 50):
            client.publish(data_topic(site, node), encode_batch(site, node, readings[i:i + 50]),
                           qos=1).wait_for_publish(10)

    def run(stop: str, log_name: str, upto: int, **flow: Any) -> str:
        cloud = cloud_factory("left", log_name=log_name, stop=stop, **flow)
        cloud.start()
        wait_for(lambda: "ingest subscribed" in cloud.log(), 30, "the ingest to subscribe")
        publish(upto - 500, upto)
        wait_for(lambda: _counts(reader, node)[0] == upto, 30, f"{upto} raw points")
        assert cloud.proc is not None
        os.killpg(cloud.proc.pid, signal.SIGTERM)
        assert cloud.proc.wait(30) == 0, cloud.log()[-3000:]
        log = cloud.log()
        assert STOPPED[stop] in log, log[-3000:]
        assert "panicked" not in log, log[-3000:]
        assert "Traceback" not in log, log[-3000:]
        return log

    try:
        run("drain", "drained", 500, epoch_interval_s=60)
        committed = _committed_journal_offset(recovery)
        assert committed == _journaled(state) > 0  # the drain committed every record read
        run("abort", "aborted", 1000, epoch_interval_s=60)
        assert _committed_journal_offset(recovery) == committed  # nothing of it committed...
        assert _journaled(state) > committed  # ...and its records wait in the journal
        publish(1000, 1500)  # the broker keeps them for the ingest
        cloud = cloud_factory("left", log_name="restarted")  # the default: 2 s epochs, abort
        cloud.start()
        wait_for(lambda: _counts(reader, node) == (len(readings), len(readings)), 60,
                 "every reading, raw and in the minute aggregates, once")
        wait_for(lambda: _committed_journal_offset(recovery) == _journaled(state), 30,
                 "the restart to commit every record")
        assert _counts(reader, node) == (len(readings), len(readings))
    finally:
        close_client(client)
