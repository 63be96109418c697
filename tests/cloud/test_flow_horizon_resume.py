"""`flow.aggregate_horizon_s` changed between two starts reaches the states the recovery store
resumes (cloud.flow's builders call set_horizon): before, a known node's and site's states
kept the horizon pickled with them, and only nodes and sites new to the store got the new
one. Real Bytewax runs of the real dataflow on one recovery store, writing to the session's
InfluxDB; the stored snapshots are read only to see what a resume starts from."""

from __future__ import annotations

import contextlib
import pickle
import sqlite3
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from cloud.cli import prepare_recovery_dir
from cloud.config import CloudConfig, parse_cloud_config
from cloud.logic.records import RP_RAW
from cloud.stack_config import cloud_config_for_stack
from tests.cloud.flow_runs import run_until
from urbanpulse.clock import SystemClock, to_epoch_ns
from urbanpulse.influx_http import InfluxHTTP
from urbanpulse.stack import StackInfo
from urbanpulse.wire.payload import Reading

SITE, NODE = f"hn-horizon-{time.time_ns() % 10**9}", "ward-h1"
S = 1_000_000_000
STEPS = (("urbanpulse.node_state", f"{SITE}/{NODE}"), ("urbanpulse.site_state", SITE))


def _snapshots(rdir: Path, step: str, key: str) -> list[tuple[int, object]]:
    out: list[tuple[int, object]] = []
    for part in rdir.glob("part-*.sqlite3"):
        with contextlib.closing(sqlite3.connect(part)) as db:
            for epoch, blob in db.execute("SELECT snap_epoch, ser_change FROM snaps WHERE step_id = ? "
                                          "AND state_key = ?", (step, key)):
                out.append((epoch, None if blob is None else pickle.loads(blob)))
    return sorted(out, key=lambda e: e[0])


def _newest(rdir: Path, step: str, key: str) -> Any:
    found = _snapshots(rdir, step, key)
    assert found, f"no snapshot of {step} {key}"
    snapshot = found[-1][1]
    assert isinstance(snapshot, bytes)  # the logic's own pickle (NodeLogic, SiteLogic.snapshot)
    return pickle.loads(snapshot)


def _stored(reader: InfluxHTTP, db: str) -> int:
    rows = reader.query_points(f"SELECT count(\"occupied\") FROM \"{RP_RAW}\".\"hospital_bed\" "
                               f"WHERE \"site\" = '{SITE}'", db=db)
    return int(rows[0]["count"]) if rows else 0


def _run(cfg: CloudConfig, horizon_s: int, seq: int, rdir: Path, reader: InfluxHTTP) -> None:
    """One start with `horizon_s` and one more bed reading of the node, journaled before it,
    until the reading is written."""
    now = to_epoch_ns(SystemClock().now())
    bed = Reading("bed-01", "hospital.bed", now - 60 * S + seq * S, seq, {"occupied": 1.0})
    started = replace(cfg, flow=replace(cfg.flow, aggregate_horizon_s=horizon_s))
    run_until(started, SITE, NODE, [bed], rdir, lambda: _stored(reader, cfg.influx.database) == seq,
              f"bed reading {seq} written")


def test_a_changed_horizon_reaches_the_resumed_node_and_site_states(
        db_ready: StackInfo, reader: InfluxHTTP, tmp_path: Path) -> None:
    cfg = parse_cloud_config(cloud_config_for_stack(db_ready, tmp_path / "state"))
    cfg.journal_dir.mkdir(parents=True)
    rdir = tmp_path / "recovery"
    prepare_recovery_dir(rdir, 1)

    _run(cfg, 6 * 3600, 1, rdir, reader)
    node, site = (_newest(rdir, step, key) for step, key in STEPS)
    assert (node.horizon_ns, site.horizon_ns) == (6 * 3600 * S, 6 * 3600 * S)

    for horizon_s, seq in ((3 * 3600, 2), (9 * 3600, 3)):  # lowered, then raised
        _run(cfg, horizon_s, seq, rdir, reader)
        node, site = (_newest(rdir, step, key) for step, key in STEPS)
        assert node.horizon_ns == horizon_s * S
        assert node.domain.hospital.horizon_ns == horizon_s * S
        assert site.horizon_ns == horizon_s * S
