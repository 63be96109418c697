"""The frozen store in the real dataflow: a node's closed minute windows are written to the
store beside the recovery partitions and its snapshot holds their row ids, not their bytes;
a restart resumes that snapshot and a late reading of a frozen window reads it back from the
store and writes the whole window's point. Real Bytewax runs on one recovery store, writing
to the session's InfluxDB."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from pathlib import Path

from cloud.cli import prepare_recovery_dir
from cloud.config import parse_cloud_config
from cloud.frozen_store import file_name
from cloud.logic.node import NodeState
from cloud.logic.records import RP_1M
from cloud.stack_config import cloud_config_for_stack
from tests.cloud.flow_runs import newest_node_states, run_until
from urbanpulse.clock import SystemClock, to_epoch_ns
from urbanpulse.influx_http import InfluxHTTP
from urbanpulse.stack import StackInfo
from urbanpulse.wire.payload import Reading

SITE, NODE = f"hn-frozen-{time.time_ns() % 10**9}", "ward-f1"
S = 1_000_000_000
MINUTE = 60 * S


def _newest_node(rdir: Path) -> NodeState:
    return newest_node_states(rdir)[f"{SITE}/{NODE}"]


def _minute(reader: InfluxHTTP, db: str, start_ns: int) -> tuple[int, float] | None:
    rows = reader.query_points(f"SELECT \"count\", \"occupied_mean\" FROM \"{RP_1M}\".\"hospital_bed\" "
                               f"WHERE \"site\" = '{SITE}' AND time = {start_ns}", db=db)
    return (int(rows[0]["count"]), float(rows[0]["occupied_mean"])) if rows else None


def _minutes(reader: InfluxHTTP, db: str) -> int:
    rows = reader.query_points(f"SELECT count(\"count\") FROM \"{RP_1M}\".\"hospital_bed\" "
                               f"WHERE \"site\" = '{SITE}'", db=db)
    return int(rows[0]["count"]) if rows else 0


def test_frozen_windows_go_to_the_store_and_a_resumed_late_reading_reads_them_back(
        db_ready: StackInfo, reader: InfluxHTTP, tmp_path: Path) -> None:
    cfg = parse_cloud_config(cloud_config_for_stack(db_ready, tmp_path / "state"))
    cfg.journal_dir.mkdir(parents=True)
    rdir = cfg.recovery_dir
    prepare_recovery_dir(rdir, 1)
    db = cfg.influx.database
    now = to_epoch_ns(SystemClock().now())
    first = now - now % MINUTE - 40 * MINUTE
    beds = [Reading("bed-01", "hospital.bed", first + i * MINUTE + 5 * S, i + 1, {"occupied": 1.0})
            for i in range(31)]
    run_until(cfg, SITE, NODE, beds, rdir, lambda: _minutes(reader, db) == 31, "31 minute points")

    state = _newest_node(rdir)
    frozen = state.minute["bed-01"].frozen
    assert len(frozen) >= 25
    assert all(type(ref) is int for ref in frozen.values())  # ids in the snapshot, not bytes
    with contextlib.closing(sqlite3.connect(rdir / file_name(0))) as store:
        rows = {row[0] for row in store.execute("SELECT id FROM frozen")}
    assert set(frozen.values()) <= rows

    late = Reading("bed-01", "hospital.bed", first + 3 * MINUTE + 40 * S, 100, {"occupied": 0.0})
    assert first + 3 * MINUTE in frozen
    run_until(cfg, SITE, NODE, [late], rdir,
              lambda: _minute(reader, db, first + 3 * MINUTE) == (2, 0.5), "the late reading's minute")
    resumed = _newest_node(rdir).minute["bed-01"]
    assert first + 3 * MINUTE not in resumed.frozen  # thawed: live, as it changed
    assert resumed.window_at(first + 3 * MINUTE) is not None
