"""`[flow.door_roles]`: "site/node/sensor" = "er" | "visit" | "ignore", checked at start, each
error naming the key and why (docs/cloud-config.md)."""

from __future__ import annotations

from typing import Any

import pytest

from cloud.config import parse_cloud_config
from cloud.logic.domain.door_roles import DoorRoleMap
from urbanpulse.errors import ConfigError


def _roles(value: Any) -> DoorRoleMap:
    return parse_cloud_config({"mqtt": {"password_file": "p", "tls": False},
                               "influx": {"password_file": "p"},
                               "flow": {"door_roles": value}}).flow.door_roles


def test_roles_by_site_node_and_sensor() -> None:
    roles = _roles({"bach-mai/opd-hall/staff-1": "ignore", "bach-mai/er-gate/main.door_2": "er",
                    "viet-duc/opd-hall/door-er": "visit"})
    assert roles == DoorRoleMap({("bach-mai", "opd-hall", "staff-1"): "ignore",
                                 ("bach-mai", "er-gate", "main.door_2"): "er",
                                 ("viet-duc", "opd-hall", "door-er"): "visit"})
    assert roles.node("bach-mai", "opd-hall").role("staff-1") == "ignore"
    assert roles.node("viet-duc", "opd-hall").role("staff-1") == "visit"  # its id's role
    assert roles.node("viet-duc", "opd-hall").role("door-er") == "visit"
    left_out = parse_cloud_config({"mqtt": {"password_file": "p", "tls": False},
                                   "influx": {"password_file": "p"}}).flow.door_roles
    assert left_out == DoorRoleMap() == _roles({})


@pytest.mark.parametrize(("value", "key", "why"), [
    ({"bach-mai/opd-hall/staff-1": "staff"}, "flow.door_roles.bach-mai/opd-hall/staff-1",
     "must be one of er, visit, ignore, got 'staff'"),
    ({"bach-mai/opd-hall/staff-1": 1}, "flow.door_roles.bach-mai/opd-hall/staff-1",
     "must be one of er, visit, ignore, got 1"),
    ({"bach-mai/staff-1": "ignore"}, "flow.door_roles.bach-mai/staff-1",
     'must be "site/node/sensor"'),
    ({"bach-mai/opd-hall/staff/1": "ignore"}, "flow.door_roles.bach-mai/opd-hall/staff/1",
     'must be "site/node/sensor"'),
    ({"Bach Mai/opd-hall/staff-1": "ignore"}, "flow.door_roles.Bach Mai/opd-hall/staff-1",
     "site 'Bach Mai' is not a valid id"),
    ({"bach-mai/opd_hall/staff-1": "ignore"}, "flow.door_roles.bach-mai/opd_hall/staff-1",
     "node 'opd_hall' is not a valid id"),
    ({"bach-mai/opd-hall/Staff 1": "ignore"}, "flow.door_roles.bach-mai/opd-hall/Staff 1",
     "sensor 'Staff 1' is not a valid id"),
    ({"bach-mai/opd-hall/": "ignore"}, "flow.door_roles.bach-mai/opd-hall/",
     "sensor '' is not a valid id"),
    ("bach-mai/opd-hall/staff-1=ignore", "flow.door_roles", "must be a table"),
])
def test_a_bad_entry_is_refused_naming_its_key(value: Any, key: str, why: str) -> None:
    with pytest.raises(ConfigError) as refused:
        _roles(value)
    assert refused.value.key == key
    assert why in refused.value.reason
