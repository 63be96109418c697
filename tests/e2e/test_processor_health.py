"""`urbanpulse cloud run` reports on itself: started behind a journal that already holds a
backlog (as after an outage of the processor), its `processor` points show the backlog
draining to 0 and the read lag falling once it has caught up. Real processor, journal and
InfluxDB; the journal is filled the way the ingest fills it (cloud.journal.Journal.append)
before the processor starts, so that the backlog is known exactly."""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import signal
import sqlite3
import subprocess
import sys
import tarfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cloud.journal import Journal, journal_path
from tests.conftest import CloudProcess
from urbanpulse.clock import to_epoch_ns
from urbanpulse.influx_http import InfluxHTTP
from urbanpulse.stack.process import free_ports
from urbanpulse.testing import wait_for
from urbanpulse.wire import Reading, data_topic, encode_batch

pytestmark = [pytest.mark.stack, pytest.mark.slow]

SITE, NODE = "hn-health", "aq-health"
RECORDS, PER_SENSOR = 400, 100  # 3 sensors: 120,000 readings, several seconds of work
T0 = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
RECEIVED_AGO_S = 120  # the backlog was journaled this long before the processor starts


def _batches() -> list[tuple[str, bytes]]:
    out = []
    for k in range(RECORDS):
        readings = [Reading(f"pm-{s}", "air.pm", to_epoch_ns(T0 + timedelta(seconds=k * PER_SENSOR + i)),
                            k * PER_SENSOR + i, {"pm25": 10.0 + i % 7, "pm10": 20.0 + i % 5})
                    for s in range(3) for i in range(PER_SENSOR)]
        out.append((data_topic(SITE, NODE), encode_batch(SITE, NODE, readings)))
    return out


def _reports(reader: InfluxHTTP, since: datetime, process: int = 0) -> list[dict[str, Any]]:
    return reader.query_points(
        f'SELECT * FROM "raw"."processor" WHERE "process" = \'{process}\' '
        f"AND time >= {to_epoch_ns(since)} ORDER BY time", db="urbanpulse")


def test_processor_points_show_the_backlog_draining_and_the_lag_falling_once_caught_up(
        cloud_factory: Callable[..., CloudProcess], reader: InfluxHTTP) -> None:
    cloud = cloud_factory("health", extra_args=("--no-ingest",), health_every_s=1.0)
    journal_dir = cloud.config_path.parent / "health" / "journal"
    journal = Journal(journal_path(journal_dir, "i0"), "i0").open()
    filled_ns = to_epoch_ns(datetime.now(UTC)) - RECEIVED_AGO_S * 1_000_000_000
    journal.append(_batches(), filled_ns)
    journal.close()
    since = datetime.now(UTC)
    cloud.start()

    readings = 3 * PER_SENSOR * RECORDS

    def drained() -> list[dict[str, Any]] | None:
        # Every record read and nothing waiting at the writer is not yet everything written:
        # the last records read may still be in the dataflow, not yet handed to the writer
        # (a loaded machine took two reports a second apart in that state). Their raw points
        # written too, then.
        reports = _reports(reader, since)
        done = [r for r in reports if r.get("records_read") == RECORDS and r["points_pending"] == 0
                and r["points_written"] > readings]
        return reports if len(done) >= 2 else None

    reports = wait_for(drained, 120, "reports of a drained backlog", every_s=0.5)
    journal_reports = [r for r in reports if r.get("records_read") is not None]
    behind = [r for r in journal_reports if r["journal_backlog"] > 0]
    assert behind, f"no report while behind: {journal_reports}"
    backlogs = [r["journal_backlog"] for r in journal_reports]
    assert max(backlogs) < RECORDS
    assert backlogs == sorted(backlogs, reverse=True)  # nothing new is journaled: it only drains
    read = [r["records_read"] for r in journal_reports]
    assert read == sorted(read)
    # Behind, the lag is the newest read record's age: at least how long ago it was journaled.
    assert all(r["read_lag_s"] >= RECEIVED_AGO_S for r in behind)
    caught_up = [r for r in journal_reports if r["journal_backlog"] == 0 and r["records_read"] == RECORDS]
    assert caught_up
    assert all(r["read_lag_s"] < 5 for r in caught_up)
    assert caught_up[0]["read_lag_s"] < behind[-1]["read_lag_s"]
    last = reports[-1]
    assert readings < last["points_written"] < 2 * readings  # a raw point per reading, windows
    assert (last["write_retries"], last["write_refused"]) == (0, 0)
    stamps = [r["time"] for r in reports]
    assert stamps == sorted(stamps)
    assert [r["uptime_s"] for r in reports] == sorted(r["uptime_s"] for r in reports)
    cloud.stop()
    assert cloud.proc is not None
    assert cloud.proc.returncode == 0, cloud.log()


def test_each_process_of_a_cluster_reports_and_only_the_journal_reader_reports_the_journal(
        cloud_factory: Callable[..., CloudProcess], reader: InfluxHTTP) -> None:
    addresses = [f"127.0.0.1:{port}" for port in free_ports(2)]
    cluster = [cloud_factory("health-cluster", extra_args=("--no-ingest", "--process-id", str(pid)),
                             log_name=f"health-p{pid}", addresses=addresses, process_id=0,
                             health_every_s=1.0, epoch_interval_s=0.2)
               for pid in (0, 1)]
    journal = Journal(journal_path(cluster[0].config_path.parent / "health-cluster" / "journal", "i0"),
                      "i0").open()
    journal.append(_batches()[:20], to_epoch_ns(datetime.now(UTC)))
    journal.close()
    since = datetime.now(UTC)
    for proc in cluster:
        proc.start()

    def both() -> tuple[list[dict[str, Any]], list[dict[str, Any]]] | None:
        reports = _reports(reader, since, 0), _reports(reader, since, 1)
        read = [r.get("records_read") for rs in reports for r in rs]
        return reports if all(reports) and 20 in read else None

    zero, one = wait_for(both, 90, "reports of both processes, one having read the journal", every_s=0.5)
    readers = [rs for rs in (zero, one) if any(r.get("records_read") is not None for r in rs)]
    assert len(readers) == 1  # one source partition reads every journal, on one process
    (other,) = [rs for rs in (zero, one) if rs is not readers[0]]
    assert all(r.get("records_read") is None and r.get("read_lag_s") is None for r in other)
    assert all(r["uptime_s"] >= 0 for r in other)
    for proc in cluster:  # a cluster's processes stop together
        assert proc.proc is not None
        os.killpg(proc.proc.pid, signal.SIGTERM)
    for proc in cluster:
        assert proc.proc is not None
        assert proc.proc.wait(20) == 0, proc.log()[-3000:]


# The last commit before the `process_start` input and the health wiring: a recovery store
# its processor wrote must resume under the present flow, which has one input step more.
BEFORE_PROCESS_START = "990598e"
RESUME_NODE = "aq-resume"
RESUME_RECORDS, RESUME_PER_RECORD = 12, 45  # 45 s of readings each: a minute spans the restart


def _resume_batches() -> list[tuple[str, bytes]]:
    out = []
    for k in range(RESUME_RECORDS):
        readings = [Reading(f"pm-{s}", "air.pm",
                            to_epoch_ns(T0 + timedelta(seconds=k * RESUME_PER_RECORD + i)),
                            k * RESUME_PER_RECORD + i, {"pm25": 10.0 + (i * 3 + s) % 11, "pm10": 20.0})
                    for s in range(2) for i in range(RESUME_PER_RECORD)]
        out.append((data_topic(SITE, RESUME_NODE), encode_batch(SITE, RESUME_NODE, readings)))
    return out


def old_tree(dest: Path, rev: str) -> Path:
    """The processor's sources at `rev`, from this repository's history."""
    root = Path(__file__).resolve().parents[2]
    try:
        archive = subprocess.run(["git", "-C", str(root), "archive", rev,
                                  "cloud", "urbanpulse", "firmware_bridge", "edge"],
                                 capture_output=True, check=True, timeout=60).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"the sources of {rev} are not at hand (no git history): {exc}")
    dest.mkdir()
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")
    return dest


def committed_offset(recovery_dir: Path, partition: str) -> int | None:
    """The journal offset of the newest snapshot of the journal input whose epoch is
    committed in Bytewax's store (read here only to know where a resume starts)."""
    best: tuple[int, int] | None = None
    for part in recovery_dir.glob("part-*.sqlite3"):
        with contextlib.closing(sqlite3.connect(part)) as db:
            commits = db.execute("SELECT commit_epoch FROM commits").fetchall()
            if not commits:
                continue
            committed = min(c for (c,) in commits)
            for epoch, blob in db.execute(
                    "SELECT snap_epoch, ser_change FROM snaps WHERE step_id LIKE '%.journal' "
                    "AND state_key = ? AND snap_epoch <= ? AND ser_change IS NOT NULL",
                    (partition, committed)):
                if best is None or epoch > best[0]:
                    best = (epoch, pickle.loads(blob)[partition])
    return None if best is None else best[1]


def _air(reader: InfluxHTTP, rp: str, what: str) -> list[dict[str, Any]]:
    return reader.query_points(f"SELECT {what} FROM {rp}.air_pm WHERE node = '{RESUME_NODE}' "
                               "GROUP BY sensor", db="urbanpulse")


def test_a_recovery_store_written_before_process_start_resumes_with_nothing_lost_or_doubled(
        cloud_factory: Callable[..., CloudProcess], reader: InfluxHTTP, tmp_path: Path) -> None:
    old_src = old_tree(tmp_path / "old-src", BEFORE_PROCESS_START)
    batches = _resume_batches()
    half = RESUME_RECORDS // 2
    old = cloud_factory("resume", extra_args=("--no-ingest",), log_name="resume-old", epoch_interval_s=0.2)
    state_dir = old.config_path.parent / "resume"
    journal_dir = state_dir / "journal"
    journal_dir.mkdir(parents=True)
    journal = Journal(journal_path(journal_dir, "i0"), "i0").open()
    journal.append(batches[:half], to_epoch_ns(datetime.now(UTC)))
    journal.close()
    since = datetime.now(UTC)
    with old.log_path.open("ab") as log:  # as CloudProcess.start, on the old sources
        old.proc = subprocess.Popen(
            [sys.executable, "-m", "urbanpulse.cli", "cloud", "run", "--config", str(old.config_path),
             *old.extra_args],
            cwd=old_src, env={**os.environ, "PYTHONPATH": str(old_src)},
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    readings_a = half * RESUME_PER_RECORD * 2
    wait_for(lambda: (_air(reader, "raw", "count(pm25)") or None), 60, "the old processor's first points")
    # Every record of the first half in a committed epoch: the resume must not read them again.
    wait_for(lambda: committed_offset(state_dir / "recovery", "i0") == half, 60,
             "the first half's journal offset in a committed epoch")
    assert sum(r["count"] for r in _air(reader, "raw", "count(pm25)")) == readings_a
    old.stop()
    assert old.proc.returncode == 0, old.log()[-3000:]
    assert not _reports(reader, since), "the old sources wrote processor points: they did not run"

    journal = Journal(journal_path(journal_dir, "i0"), "i0").open()
    journal.append(batches[half:], to_epoch_ns(datetime.now(UTC)))
    journal.close()
    new = cloud_factory("resume", extra_args=("--no-ingest",), log_name="resume-new",
                        epoch_interval_s=0.2, health_every_s=1.0)
    new.start()
    total = RESUME_RECORDS * RESUME_PER_RECORD * 2

    def all_read() -> list[dict[str, Any]] | None:
        done = [r for r in _reports(reader, since) if r.get("journal_backlog") == 0
                and r["points_pending"] == 0 and r.get("records_read", 0) > 0]
        return done or None

    report = wait_for(all_read, 90, "a report of the resumed processor having read everything")[-1]
    assert report["records_read"] == RESUME_RECORDS - half  # the first half is not read again
    # The report can come while the last records read are still in the dataflow, on their
    # way to the writer (not yet pending): wait for their points, then check none is doubled.
    raw = wait_for(lambda: (lambda rows: rows if sum(r["count"] for r in rows) >= total else None)(
        _air(reader, "raw", "count(pm25)")), 60, "every raw point of the resumed processor")
    assert sorted(r["count"] for r in raw) == [total // 2, total // 2]
    # Each minute's count: the node state of the first half went on (nothing lost across the
    # restart, in the minute that spans it too) and took nothing twice.
    minutes = wait_for(lambda: (lambda rows: rows if sum(r["count"] for r in rows) == total else None)(
        _air(reader, "agg_1m", '"count"')), 60, "every reading in the minute aggregates")
    assert all(r["count"] == 60 for r in minutes), minutes
    assert len(minutes) == 2 * RESUME_RECORDS * RESUME_PER_RECORD // 60
    assert new.proc is not None
    assert new.proc.poll() is None, new.log()[-2000:]
