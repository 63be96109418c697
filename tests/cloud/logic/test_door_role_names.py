"""The door ids the docs give as examples (edge/drivers/door_counter/README.md, "Door ids";
docs/domain-rollups.md, Doors) count in the role they say: a door the cloud config's
`flow.door_roles` does not name has the role of its id."""

from __future__ import annotations

import pytest

from cloud.logic.domain.door_roles import DoorRoles


@pytest.mark.parametrize("sensor", ["door-er", "er-main", "er_walkin", "ward-b.er", "er-door-1"])
def test_ids_with_the_word_er_count_er_arrivals(sensor: str) -> None:
    assert DoorRoles().role(sensor) == "er"


@pytest.mark.parametrize("sensor", ["door-main", "emergency-door", "door-ers", "er2", "staff-1"])
def test_other_ids_count_visits(sensor: str) -> None:
    assert DoorRoles().role(sensor) == "visit"
