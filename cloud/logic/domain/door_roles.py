"""Door roles (er, visit, ignore): which of a hospital's door counters count ER arrivals,
visits, or nothing (docs/domain-rollups.md, "Doors"). Apart from the rollups so that the
cloud config can validate `flow.door_roles` without loading the dataflow's engine and its
extras (`urbanpulse cloud check-config` on a machine without them)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

ROLES = ("er", "visit", "ignore")
# A door whose id has one of these words (between -, _ and .) is an ER door: `door-er` (the
# door_counter sample's and the simulated city's ER door), `er-main`, upfw's `er-door-1`.
ER_WORDS = frozenset({"er"})
_ID_WORDS = re.compile(r"[-_.]")


@dataclass(frozen=True, slots=True)
class DoorRoles:
    """Which door counts ER arrivals: an explicit map wins, then the id's prefix or words
    (`ER_WORDS`); any other door counts visits."""

    by_sensor: Mapping[str, str] = field(default_factory=dict)
    er_prefixes: tuple[str, ...] = ("er-",)

    def __post_init__(self) -> None:
        bad = {s: r for s, r in self.by_sensor.items() if r not in ROLES}
        if bad:
            raise ValueError(f"door roles must be one of {ROLES}, got {bad}")

    def role(self, sensor: str) -> str:
        explicit = self.by_sensor.get(sensor)
        if explicit is not None:
            return explicit
        if sensor.startswith(self.er_prefixes) or not ER_WORDS.isdisjoint(_ID_WORDS.split(sensor)):
            return "er"
        return "visit"


DoorKey = tuple[str, str, str]  # (site, node, sensor): a sensor id is unique within its node only


@dataclass(frozen=True, slots=True)
class DoorRoleMap:
    """The door roles the cloud config gives (`flow.door_roles`), by (site, node, sensor);
    a door it does not name takes the role of its id (`DoorRoles.role`). The dataflow gives
    it at every start (`DomainNode.set_door_roles`): a node's rollup resumed from a snapshot
    takes its part then, in place of the roles pickled with it."""

    by_door: Mapping[DoorKey, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        bad = {k: r for k, r in self.by_door.items() if r not in ROLES}
        if bad:
            raise ValueError(f"door roles must be one of {ROLES}, got {bad}")

    def node(self, site: str, node: str) -> DoorRoles:
        """The roles of one node's doors."""
        return DoorRoles({sensor: role for (s, n, sensor), role in self.by_door.items()
                          if s == site and n == node})

    def role_of(self, door: DoorKey) -> tuple[str, str]:
        """The role a door gets and where it comes from: "config" (named here) or "id"."""
        explicit = self.by_door.get(door)
        if explicit is not None:
            return explicit, "config"
        return DoorRoles().role(door[2]), "id"

    def not_among(self, doors: set[DoorKey], sites: set[str] | None = None,
                  nodes: set[str] | None = None) -> list[DoorKey]:
        """The doors named here (of `sites` and `nodes`, when given) that are not among
        `doors`, sorted: a misspelt id, or a door that sent nothing."""
        return sorted(k for k in self.by_door if k not in doors
                      and (sites is None or k[0] in sites) and (nodes is None or k[1] in nodes))


NO_DOOR_ROLES = DoorRoleMap()
