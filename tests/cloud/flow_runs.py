"""One start of the real dataflow (build_flow under Bytewax, with a recovery store) for the
tests of what a resume carries over: the node's readings journaled first, then run until a
check on InfluxDB holds, then drained (the drain ends the run once the epoch under way,
with its snapshots, is committed)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path

from bytewax.recovery import RecoveryConfig
from bytewax.testing import TestingSink, run_main

from cloud.config import CloudConfig
from cloud.flow import build_flow
from cloud.journal import Journal, journal_path, partition_names
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
