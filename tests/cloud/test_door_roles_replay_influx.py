"""The processor's own replays of late door readings (a DOMAIN_REPLAY request the node
state hands the sink, run by InfluxWriter.run_replays) count the doors by the config's
roles (`flow.door_roles`), as the live rollups and `cloud recompute` do: they counted by
the ids alone, so a late reading on a site with roles set rewrote its hour with the old
split (a staff door's people as visits). On the real InfluxDB."""

from __future__ import annotations

import time
from pathlib import Path

from cloud.config import load_cloud_config
from cloud.logic.domain_replay import ReplaySpan
from cloud.sink import make_writer
from cloud.stack_config import cloud_config_for_stack, to_toml
from tests.cloud.test_door_roles_recompute_influx import HOUR, _flows, _raw_points
from urbanpulse.clock import SystemClock, to_epoch_ns
from urbanpulse.influx_http import InfluxHTTP
from urbanpulse.stack import StackInfo


def test_the_sinks_replays_count_doors_by_the_configured_roles(
        db_ready: StackInfo, reader: InfluxHTTP, tmp_path: Path) -> None:
    site = f"bm-replay-roles-{time.time_ns() % 10**9}"
    now = to_epoch_ns(SystemClock().now())
    hour = now - now % HOUR - 3 * HOUR
    config = tmp_path / "cloud.toml"
    config.write_text(to_toml(cloud_config_for_stack(db_ready, tmp_path / "state"))
                      + f'\n[flow.door_roles]\n"{site}/opd-hall/staff-1" = "ignore"\n'
                      f'"{site}/er-gate/main-entrance" = "er"\n')
    cfg = load_cloud_config(config)
    writer = make_writer(cfg.influx, door_roles=cfg.flow.door_roles)
    try:
        writer.write(_raw_points(site, hour))
        refused = writer.run_replays([ReplaySpan("doors", site, "", hour, hour + HOUR).encode()])
    finally:
        writer.close()
    assert not refused.spans
    assert _flows(reader, db_ready.database, site, hour) == {
        "hospital_flow": {"er_arrivals": 4.0, "visits": 10.0, "faulty": 0.0},
        "door_flow opd-hall": {"er_arrivals": 0.0, "visits": 10.0, "faulty": 0.0},
        "door_flow er-gate": {"er_arrivals": 4.0, "visits": 0.0, "faulty": 0.0}}
