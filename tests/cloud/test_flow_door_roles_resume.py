"""`flow.door_roles` set between two starts reaches the node state the recovery store resumes
(cloud.flow's node builder gives the config's roles at every start; the snapshot holds the
roles of the start that took it): the staff door is left out from the node's next message
on, and the hour the state holds is written again with the new split, its `hospital_flow`
too, without waiting for a reading of that hour. Real Bytewax runs of the real dataflow on
one recovery store, writing to the session's InfluxDB."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from bytewax.recovery import RecoveryConfig
from bytewax.testing import TestingSink, run_main

from cloud.cli import prepare_recovery_dir
from cloud.config import CloudConfig, parse_cloud_config
from cloud.flow import build_flow
from cloud.journal import Journal, journal_path, partition_names
from cloud.logic.domain.hospital import DoorRoleMap
from cloud.logic.records import RP_1H
from cloud.stack_config import cloud_config_for_stack
from urbanpulse.clock import SystemClock, to_epoch_ns
from urbanpulse.influx_http import InfluxHTTP
from urbanpulse.stack import StackInfo
from urbanpulse.testing import wait_for
from urbanpulse.wire.payload import Reading, encode_batch
from urbanpulse.wire.topics import data_topic

SITE, NODE = f"hn-roles-{time.time_ns() % 10**9}", "opd-hall"
S = 1_000_000_000
HOUR = 3600 * S


def _visits(reader: InfluxHTTP, db: str, hour: int) -> dict[str, float]:
    out = {}
    for name in ("hospital_flow", "door_flow"):
        rows = reader.query_points(f'SELECT "visits" FROM "{RP_1H}"."{name}" WHERE "site" = '
                                   f"'{SITE}' AND time = {hour}", db=db)
        if rows:
            out[name] = float(rows[0]["visits"])
    return out


def _run(cfg: CloudConfig, readings: list[Reading], done: object, rdir: Path, reader: InfluxHTTP,
         hour: int) -> None:
    """One start with `cfg`, the node's `readings` journaled before it, until the hour's
    visits are `done` (then the drain ends the run once its epoch is committed)."""
    partition = partition_names(cfg.flow.ingest_instances)[0]
    now = to_epoch_ns(SystemClock().now())
    journal = Journal(journal_path(cfg.journal_dir, partition), partition).open()
    try:
        journal.append([(data_topic(SITE, NODE), encode_batch(SITE, NODE, readings))], now, arrived_ns=[now])
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
        wait_for(lambda: failed or _visits(reader, cfg.influx.database, hour) == done, 60,
                 f"visits {done}")
    finally:
        drain.set()
        runner.join(60)
    assert not runner.is_alive()
    assert not failed, failed


def test_a_role_set_between_two_starts_reaches_the_resumed_node_and_its_held_hour(
        db_ready: StackInfo, reader: InfluxHTTP, tmp_path: Path) -> None:
    cfg = parse_cloud_config(cloud_config_for_stack(db_ready, tmp_path / "state"))
    cfg.journal_dir.mkdir(parents=True)
    rdir = tmp_path / "recovery"
    prepare_recovery_dir(rdir, 1)
    now = to_epoch_ns(SystemClock().now())
    hour = now - now % HOUR - HOUR  # the hour before this one: closed, held by the node
    door = {"interval_s": 600.0}
    _run(cfg, [Reading("gate-1", "hospital.door", hour + 10 * 60 * S, 1, {"count": 10.0, **door}),
               Reading("staff-1", "hospital.door", hour + 20 * 60 * S, 2, {"count": 7.0, **door})],
         {"hospital_flow": 17.0, "door_flow": 17.0}, rdir, reader, hour)

    roles = DoorRoleMap({(SITE, NODE, "staff-1"): "ignore"})
    later = Reading("gate-1", "hospital.door", now - S, 3, {"count": 1.0, **door})  # this hour
    _run(replace(cfg, flow=replace(cfg.flow, door_roles=roles)), [later],
         {"hospital_flow": 10.0, "door_flow": 10.0}, rdir, reader, hour)
