"""A door's role changed in the config (`flow.door_roles`), then `urbanpulse cloud recompute`:
the hours already stored are written again with the new split, on the real InfluxDB. The
staff door left out of `door_flow` and `hospital_flow`, the ER entrance whose id lacks the
word `er` counted as ER arrivals; before the setting, both counted as visits for ever."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from cloud.cli import main as cloud_main
from cloud.config import load_cloud_config
from cloud.logic.node import NodeState
from cloud.logic.records import RP_1H, RP_RAW, NodeData, Point
from cloud.sink import make_writer
from cloud.stack_config import cloud_config_for_stack, to_toml
from urbanpulse.clock import SystemClock, from_epoch_ns, to_epoch_ns
from urbanpulse.influx_http import InfluxHTTP
from urbanpulse.stack import StackInfo
from urbanpulse.wire import Reading

S = 10**9
HOUR = 3600 * S
DOOR = "hospital.door"


def _raw_points(site: str, hour: int) -> list[Point]:
    """The raw points the processor writes for two door nodes' readings in `hour`."""
    doors = {"opd-hall": [("gate-1", 10.0), ("staff-1", 7.0)], "er-gate": [("main-entrance", 4.0)]}
    out: list[Point] = []
    for node, counts in doors.items():
        readings = [Reading(sensor, DOOR, hour + (i + 1) * 600 * S, i + 1,
                            {"count": count, "interval_s": 600.0})
                    for i, (sensor, count) in enumerate(counts)]
        data = NodeData(f"{site}/{node}", site, node, hour + HOUR, readings)
        out += [p for p in NodeState(6 * HOUR, detect=False).process(data) if p[0] == RP_RAW]
    return out


def _flows(reader: InfluxHTTP, db: str, site: str, hour: int) -> dict[str, dict[str, float]]:
    out = {}
    for name, by in (("hospital_flow", "site"), ("door_flow", "node")):
        rows = reader.query_points(f'SELECT * FROM "{RP_1H}"."{name}" WHERE "site" = \'{site}\' '
                                   f"AND time = {hour}", db=db)
        for row in rows:
            key = name if by == "site" else f"{name} {row['node']}"
            out[key] = {k: float(row[k]) for k in ("er_arrivals", "visits", "faulty")}
    return out


def test_recompute_after_a_role_change_rewrites_the_stored_hours(
        db_ready: StackInfo, reader: InfluxHTTP, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    site = f"bm-roles-{time.time_ns() % 10**9}"
    now = to_epoch_ns(SystemClock().now())
    hour = now - now % HOUR - 3 * HOUR  # within the raw policy's day
    config = tmp_path / "cloud.toml"
    config.write_text(to_toml(cloud_config_for_stack(db_ready, tmp_path / "state")))
    writer = make_writer(load_cloud_config(config).influx)
    writer.write(_raw_points(site, hour))
    writer.close()
    recompute = ["recompute", "--config", str(config), "--site", site,
                 "--from", from_epoch_ns(hour).isoformat(), "--to", from_epoch_ns(hour + HOUR).isoformat()]

    assert cloud_main(recompute) == 0  # the roles of the ids: every door counts visits
    before = _flows(reader, db_ready.database, site, hour)
    assert before == {"hospital_flow": {"er_arrivals": 0.0, "visits": 21.0, "faulty": 0.0},
                      "door_flow opd-hall": {"er_arrivals": 0.0, "visits": 17.0, "faulty": 0.0},
                      "door_flow er-gate": {"er_arrivals": 0.0, "visits": 4.0, "faulty": 0.0}}

    config.write_text(config.read_text() + f'\n[flow.door_roles]\n"{site}/opd-hall/staff-1" = "ignore"\n'
                      f'"{site}/er-gate/main-entrance" = "er"\n"other-site/opd-hall/gate-1" = "ignore"\n')
    assert cloud_main(recompute) == 0
    assert f"{site} doors [" in capsys.readouterr().out
    assert _flows(reader, db_ready.database, site, hour) == {
        "hospital_flow": {"er_arrivals": 4.0, "visits": 10.0, "faulty": 0.0},
        "door_flow opd-hall": {"er_arrivals": 0.0, "visits": 10.0, "faulty": 0.0},
        "door_flow er-gate": {"er_arrivals": 4.0, "visits": 0.0, "faulty": 0.0}}
