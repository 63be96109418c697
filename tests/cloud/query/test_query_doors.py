"""`CityData.doors` and `urbanpulse query doors` on the session's real InfluxDB: every door
counter that sent readings, the role the processor gives it ([flow.door_roles], or its id),
and a warning for each configured door role that names no door (a misspelt id)."""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from cloud.logic.domain.door_roles import DoorRoleMap
from cloud.logic.node import NodeState
from cloud.logic.records import NodeData
from cloud.query import CityData, read_csv
from cloud.query.cli import main
from cloud.stack_config import cloud_config_for_stack, to_toml
from urbanpulse.clock import to_epoch_ns
from urbanpulse.influx_http import InfluxHTTP
from urbanpulse.stack import StackInfo
from urbanpulse.wire import Reading

from .conftest import write_points
from .scratch_influx import HORIZON_NS

pytestmark = pytest.mark.stack

DOOR = "hospital.door"


def _door(sensor: str, at: datetime, seq: int, count: float) -> Reading:
    return Reading(sensor, DOOR, to_epoch_ns(at), seq, {"count": count, "interval_s": 3600.0})


@pytest.fixture(scope="module")
def site(db_ready: StackInfo) -> tuple[str, datetime]:
    """A site of its own: an ER door (by its id), a main door and a staff door (visits by
    their ids) on one node, and a door on a second node; written by the processor's code."""
    name = f"d-{uuid.uuid4().hex[:10]}"
    base = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=4)
    points = []
    for node, readings in {
        "doors-1": [_door("door-er", base + timedelta(hours=1), 0, 4.0),
                    _door("door-er", base + timedelta(hours=2), 1, 6.0),
                    _door("main", base + timedelta(hours=2), 0, 120.0),
                    _door("staff", base + timedelta(hours=1), 0, 30.0)],
        "doors-2": [_door("north", base + timedelta(hours=1), 0, 15.0)],
    }.items():
        state = NodeState(HORIZON_NS, detect=False)
        received = to_epoch_ns(base + timedelta(hours=3))
        points += state.process(NodeData(f"{name}/{node}", name, node, received, readings))
    write_points(db_ready, points)
    return name, base


def test_every_door_with_its_role_and_where_it_comes_from(
        db_ready: StackInfo, reader: InfluxHTTP, site: tuple[str, datetime]) -> None:
    name, base = site
    roles = DoorRoleMap({(name, "doors-1", "staff"): "ignore", (name, "doors-2", "north"): "er",
                         (name, "doors-1", "stafff"): "ignore", ("other", "doors-1", "x"): "er"})
    data = CityData(reader, db_ready.database, door_roles=roles)
    doors = data.doors(base, base + timedelta(hours=4), site=name)
    got = [(t, r["node"], r["sensor"], r["readings"], r["people"], r["role"], r["role_from"])
           for t, r in zip(doors.index, doors.to_dict("records"), strict=True)]
    # stamped with its last reading as stored raw: its ts + (seq mod 1000) ns
    hour = lambda h, seq=0: pd.Timestamp(base + timedelta(hours=h)) + pd.Timedelta(seq, "ns")  # noqa: E731
    assert got == [
        (hour(2, seq=1), "doors-1", "door-er", 2, 10.0, "er", "id"),
        (hour(2), "doors-1", "main", 1, 120.0, "visit", "id"),
        (hour(1), "doors-1", "staff", 1, 30.0, "ignore", "config"),
        (hour(1), "doors-2", "north", 1, 15.0, "er", "config"),
    ]
    assert set(doors["site"]) == {name}
    # the misspelt key; the other site's key is outside the question
    assert data.unmatched_door_roles(doors, site=name) == [f"{name}/doors-1/stafff"]
    # a range where only the 1st hour's readings are: main sent nothing then
    early = data.doors(base, base + timedelta(hours=1, seconds=1), site=name, node="doors-1")
    assert list(early["sensor"]) == ["door-er", "staff"]
    assert data.unmatched_door_roles(early, site=name, node="doors-1") == [f"{name}/doors-1/stafff"]


def test_no_doors_gives_an_empty_frame_and_every_key_unmatched(
        db_ready: StackInfo, reader: InfluxHTTP, site: tuple[str, datetime]) -> None:
    name, base = site
    data = CityData(reader, db_ready.database,
                    door_roles=DoorRoleMap({(name, "doors-1", "staff"): "ignore"}))
    doors = data.doors(base - timedelta(days=2), base - timedelta(days=1), site=name)
    assert len(doors) == 0
    assert list(doors.columns) == ["site", "node", "sensor", "readings", "people", "role", "role_from"]
    assert data.unmatched_door_roles(doors, site=name) == [f"{name}/doors-1/staff"]


def test_the_command_writes_the_frame_and_warns_of_a_misspelt_door(
        db_ready: StackInfo, reader: InfluxHTTP, site: tuple[str, datetime], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    name, base = site
    config = cloud_config_for_stack(db_ready, tmp_path / "state")
    path = tmp_path / "cloud.toml"
    path.write_text(to_toml(config) + f'\n[flow.door_roles]\n"{name}/doors-1/staff" = "ignore"\n'
                    f'"{name}/doors-1/stafff" = "ignore"\n')
    span = ["--start", base.isoformat(), "--end", (base + timedelta(hours=4)).isoformat()]
    sidecar = tmp_path / "doors.dtypes.json"
    assert main(["doors", "--config", str(path), *span, "--site", name, "--dtypes", str(sidecar)]) == 0
    out, err = capsys.readouterr()
    frame = read_csv(io.StringIO(out), sidecar)
    with CityData.from_config(path) as data:
        expected = data.doors(base, base + timedelta(hours=4), site=name)
    pd.testing.assert_frame_equal(frame, expected, check_exact=True)
    assert list(frame["role"]) == ["er", "visit", "ignore", "visit"]
    assert err.count("warning:") == 1
    assert f'flow.door_roles."{name}/doors-1/stafff" names no door' in err
