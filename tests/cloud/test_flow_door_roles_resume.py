"""`flow.door_roles` set between two starts reaches the node state the recovery store resumes
(cloud.flow's node builder gives the config's roles at every start; the snapshot holds the
roles of the start that took it): the staff door is left out from the node's next message
on, and the hour the state holds is written again with the new split, its `hospital_flow`
too, without waiting for a reading of that hour. Real Bytewax runs of the real dataflow on
one recovery store, writing to the session's InfluxDB."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from cloud.cli import prepare_recovery_dir
from cloud.config import CloudConfig, parse_cloud_config
from cloud.logic.domain.door_roles import DoorRoleMap
from cloud.logic.records import RP_1H
from cloud.stack_config import cloud_config_for_stack
from tests.cloud.flow_runs import run_until
from urbanpulse.clock import SystemClock, to_epoch_ns
from urbanpulse.influx_http import InfluxHTTP
from urbanpulse.stack import StackInfo
from urbanpulse.wire.payload import Reading

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
    visits are `done`."""
    run_until(cfg, SITE, NODE, readings, rdir, lambda: _visits(reader, cfg.influx.database, hour) == done,
              f"visits {done}")


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
