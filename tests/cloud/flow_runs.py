"""One start of the real dataflow (build_flow under Bytewax, with a recovery store) for the
tests of what a resume carries over: the node's readings journaled first, then run until a
check on InfluxDB holds, then drained (the drain ends the run once the epoch under way,
with its snapshots, is committed)."""

from __future__ import annotations

import contextlib
import pickle
import sqlite3
import threading
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path

from bytewax.recovery import RecoveryConfig
from bytewax.testing import TestingSink, run_main

from cloud.config import CloudConfig
from cloud.flow import build_flow
from cloud.journal import Journal, journal_path, partition_names
from cloud.logic.node import NodeState
from urbanpulse.clock import SystemClock, to_epoch_ns
from urbanpulse.testing import wait_for
from urbanpulse.wire.payload import Reading, encode_batch
from urbanpulse.wire.topics import data_topic


def run_until(cfg: CloudConfig, site: str, node: str, readings: Sequence[Reading], rdir: Path,
              done: Callable[[], bool], what: str, timeout_s: float = 60) -> None:
    partition = partition_names(cfg.flow.ingest_instances)[0]
    now = to_epoch_ns(SystemClock().now())
    journal = Journal(journal_path(cfg.journal_dir, partition), partition).open()
    try:
        journal.append([(data_topic(site, node), encode_batch(site, node, readings))], now, arrived_ns=[now])
    finally:
        journal.close()
    drain = threading.Event()
    flow = build_flow(cfg, partition_names(cfg.flow.ingest_instances), alert_sink=TestingSink([]),
                      drain=drain)
    failed: list[BaseException] = []

    def run() -> None:
        try:
            run_main(flow, epoch_interval=timedelta(seconds=1), recovery_config=RecoveryConfig(str(rdir)))
        except Exception as exc:  # noqa: BLE001 (reported by the test's thread)
            failed.append(exc)

    runner = threading.Thread(target=run)
    runner.start()
    try:
        wait_for(lambda: failed or done(), timeout_s, what)
    finally:
        drain.set()
        runner.join(60)
    assert not runner.is_alive()
    assert not failed, failed


def newest_node_states(rdir: Path) -> dict[str, NodeState]:
    """Each node's newest snapshot in the recovery store `rdir`, unpickled, by node key."""
    newest: dict[str, tuple[int, bytes]] = {}
    for part in rdir.glob("part-*.sqlite3"):
        with contextlib.closing(sqlite3.connect(part)) as db:
            for key, epoch, ser in db.execute("SELECT state_key, snap_epoch, ser_change FROM snaps "
                                              "WHERE step_id = 'urbanpulse.node_state'"):
                if ser is not None and (key not in newest or epoch > newest[key][0]):
                    newest[key] = (epoch, ser)
    states = {key: pickle.loads(pickle.loads(ser)) for key, (_, ser) in newest.items()}
    assert all(isinstance(state, NodeState) for state in states.values())
    return states
