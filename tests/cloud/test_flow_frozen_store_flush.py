"""The frozen store is flushed once a worker's round of snapshots, not once a node: Bytewax
0.21 snapshots every node it woke in an epoch in one loop and writes none of them before the
loop ends (its source, as read), so the last snapshot's flush puts every row the round
references on disk first (cloud/snapshot_round.py). A real Bytewax run with a recovery store
over many nodes, writing to the session's InfluxDB; and the round's bookkeeping alone, per
worker thread."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from cloud import flow as cloud_flow
from cloud.cli import prepare_recovery_dir
from cloud.config import parse_cloud_config
from cloud.frozen_store import file_name
from cloud.journal import Journal, journal_path, partition_names
from cloud.logic.records import RP_1M
from cloud.snapshot_round import SnapshotRound
from cloud.stack_config import cloud_config_for_stack
from tests.cloud.flow_runs import newest_node_states, run_until
from urbanpulse.clock import SystemClock, to_epoch_ns
from urbanpulse.influx_http import InfluxHTTP
from urbanpulse.stack import StackInfo
from urbanpulse.wire.payload import Reading, encode_batch
from urbanpulse.wire.topics import data_topic

SITE = f"hn-flush-{time.time_ns() % 10**9}"
NODES = 40
MINUTES = 12
S = 1_000_000_000
MINUTE = 60 * S


def _beds(first: int, node: int) -> list[Reading]:
    occupied = {"occupied": float(node % 2)}
    return [Reading("bed-01", "hospital.bed", first + i * MINUTE + 5 * S, i + 1, occupied)
            for i in range(MINUTES)]


def test_a_round_of_node_snapshots_flushes_the_store_at_its_last_and_its_rows_are_on_disk(
        db_ready: StackInfo, reader: InfluxHTTP, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The store is flushed at a round's last snapshot only, that flush writes the round's
    frozen rows, and every frozen row the committed snapshots reference is on disk. (That
    Bytewax writes none of a round's snapshots before its last is taken is read from its
    source, not checked here: its recovery store, read from inside the process that runs
    it, showed nothing written until the run ended.)"""
    cfg = parse_cloud_config(cloud_config_for_stack(db_ready, tmp_path / "state"))
    cfg.journal_dir.mkdir(parents=True)
    rdir = cfg.recovery_dir
    prepare_recovery_dir(rdir, 1)
    # each snapshot call: (whether the round asks it to flush, the frozen store's commits
    # after it)
    calls: list[tuple[bool, int]] = []
    snapshot = cloud_flow.NodeLogic.snapshot

    def watched(self: cloud_flow.NodeLogic) -> bytes:
        rnd, store = self.snapshot_round, self.state._frozen_store
        assert rnd is not None
        assert store is not None
        last = rnd.waiting() == 1
        data = snapshot(self)
        calls.append((last, store.commits))
        return data

    monkeypatch.setattr(cloud_flow.NodeLogic, "snapshot", watched)

    now = to_epoch_ns(SystemClock().now())
    first = now - now % MINUTE - 30 * MINUTE
    partition = partition_names(cfg.flow.ingest_instances)[0]
    journal = Journal(journal_path(cfg.journal_dir, partition), partition).open()
    try:  # every node's readings journaled before the run: all woken in its first epochs
        for n in range(1, NODES):
            node = f"ward-{n}"
            journal.append([(data_topic(SITE, node), encode_batch(SITE, node, _beds(first, n)))],
                           now, arrived_ns=[now])
    finally:
        journal.close()

    def minutes() -> int:
        rows = reader.query_points(f"SELECT count(\"count\") FROM \"{RP_1M}\".\"hospital_bed\" "
                                   f"WHERE \"site\" = '{SITE}'", db=cfg.influx.database)
        return int(rows[0]["count"]) if rows else 0

    run_until(cfg, SITE, "ward-0", _beds(first, 0), rdir, lambda: minutes() == NODES * MINUTES,
              "every node's minute points")

    rounds: list[list[tuple[bool, int]]] = [[]]
    for call in calls:
        rounds[-1].append(call)
        if call[0]:
            rounds.append([])
    assert rounds.pop() == []  # every round ended with a last snapshot
    assert len(rounds[-1]) == NODES  # the drain's round: every node
    for taken in rounds:
        commits = [c for _, c in taken]
        assert len(set(commits[:-1])) == 1  # no flush but the last's...
        assert commits[-1] >= commits[0]
    assert rounds[0][-1][1] > rounds[0][0][1]  # ...which wrote the round's frozen rows

    nodes = newest_node_states(rdir)
    assert len(nodes) == NODES
    with contextlib.closing(sqlite3.connect(rdir / file_name(0))) as db:
        rows = {row[0] for row in db.execute("SELECT id FROM frozen")}
    referenced = {ref for state in nodes.values() for ref in state.minute["bed-01"].frozen.values()}
    assert len(referenced) >= NODES * (MINUTES - 3)  # most windows frozen, each by its row's id
    assert all(type(ref) is int for ref in referenced)
    assert referenced <= rows


def test_the_round_s_last_snapshot_is_the_one_that_empties_it_per_worker_thread() -> None:
    rnd = SnapshotRound()
    a, b, c = object(), object(), object()
    rnd.woke(a)
    rnd.woke(b)
    rnd.woke(a)  # woken twice in the epoch: snapshotted once
    assert rnd.waiting() == 2
    other: list[bool] = []
    # another worker's thread has a round of its own: its snapshots do not count here
    worker = threading.Thread(target=lambda: (rnd.woke(c), other.append(rnd.snapshotted(c))))
    worker.start()
    worker.join()
    assert other == [True]
    assert rnd.snapshotted(a) is False
    assert rnd.snapshotted(b) is True  # the last: it flushes
    assert rnd.waiting() == 0
    assert rnd.snapshotted(c) is True  # not seen woken here: flushed at once, never left out
