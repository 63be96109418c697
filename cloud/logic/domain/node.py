"""All domain rollups of one node behind one call, for the dataflow's per-node step."""

from __future__ import annotations

from array import array
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING

from cloud.logic.domain.air import AirRollup
from cloud.logic.domain.common import Point
from cloud.logic.domain.door_roles import DoorRoleMap, DoorRoles
from cloud.logic.domain.hospital import HospitalNodeRollup, SiteReplayed, SiteUpdate
from cloud.logic.domain.late import Late, LateMarks, late_of
from cloud.logic.domain.traffic import TrafficRollup
from urbanpulse.wire import Reading

if TYPE_CHECKING:
    from cloud.frozen_store import FrozenStore


class DomainNode:
    """Traffic, air and hospital state of one node ("site/node" key). Picklable; the
    sub-rollups only keep state for the kinds the node actually sends."""

    def __init__(self, horizon_ns: int, roles: DoorRoles | None = None) -> None:
        self.traffic = TrafficRollup(horizon_ns)
        self.air = AirRollup(horizon_ns)
        self.hospital = HospitalNodeRollup(horizon_ns, roles)
        self.late: list[Late] = []  # to replay, for take_late
        self.marks = LateMarks()  # replayed, while the live rollups may write their windows
        # the config's door roles given at this start, taken at the next message (which
        # names the node): not pickled, given again at every start (`set_door_roles`)
        self.door_roles: DoorRoleMap | None = None

    def __getstate__(self) -> dict[str, object]:
        state = self.__dict__.copy()
        state.pop("door_roles", None)
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self.__dict__.setdefault("late", [])  # a snapshot from before they were kept
        self.__dict__.setdefault("marks", LateMarks())
        self.door_roles = None

    def use_store(self, store: FrozenStore | None, gone: array[int] | None) -> None:
        """Closed air hours, traffic hour windows and the beds' readings of closed hours
        freeze into `store` (`AirRollup.use_store`, `TrafficRollup.use_store`,
        `HospitalNodeRollup.use_store`)."""
        self.air.use_store(store, gone)
        self.traffic.use_store(store, gone)
        self.hospital.use_store(store, gone)

    def note_snapshot(self) -> None:
        """A snapshot of the node is being taken (`HospitalNodeRollup.note_snapshot`)."""
        self.hospital.note_snapshot()

    def set_door_roles(self, roles: DoorRoleMap) -> None:
        """The cloud config's door roles (`flow.door_roles`), given by the dataflow at every
        start, to a node new to the recovery store and to one it resumes alike (the roles
        its snapshot holds are those of the start that took it). A state does not know its
        node until a message comes: the node's roles are taken at the next `process`, and
        the hours it holds whose split they change are written again then."""
        self.door_roles = roles

    def process(self, site: str, node: str, readings: Sequence[Reading]
                ) -> tuple[list[Point], list[SiteUpdate]]:
        """Points to write now, and the updates to route to `HospitalSite` keyed by site.
        Pass the node's new, deduplicated readings (duplicates by (sensor, ts) are
        harmless: they overwrite themselves)."""
        kinds = {kind.split(".", 1)[0] for kind in {r.kind for r in readings}}
        points: list[Point] = []
        updates: list[SiteUpdate] = []
        redo: list[int] = []
        if self.door_roles is not None:  # the first message since a start
            redo = self.hospital.set_roles(self.door_roles.node(site, node))
            self.door_roles = None
            if redo:
                kinds.add("hospital")
        if "traffic" in kinds:
            late = self.traffic.too_late
            points += self.traffic.process(site, node, readings)
            if self.traffic.too_late != late:
                self._note_late("traffic", self.traffic.floor_ns(), readings,
                                self.traffic.lost_hours())
        if "air" in kinds:
            late = self.air.too_late
            points += self.air.process(site, node, readings)
            if self.air.too_late != late:
                self._note_late("air", self.air.floor_ns(), readings, self.air.lost_hours())
        if "hospital" in kinds:
            late = self.hospital.too_late
            p, updates = self.hospital.process(site, node, readings, redo)
            points += p
            if redo and self.marks:  # hours replayed for a late reading the state lacks
                marked = [m for m in self.marks.ends if m[0] == "doors" and m[1] in redo]
                self.late += marked  # the replay must be the last written again
            if self.hospital.too_late != late:
                replayed = self._note_late("hospital", self.hospital.floor_ns(), readings)
                if replayed:  # every hospital scope is site-wide
                    updates.append(SiteReplayed(site, node, tuple(sorted(replayed))))
        if self.marks:  # only after late readings: the live path pays nothing otherwise
            self.late += self.marks.touched(readings)
            self.marks.evict({"traffic": self.traffic.floor_ns(), "air": self.air.floor_ns(),
                              "hospital": self.hospital.floor_ns()})
        return points, updates

    def _note_late(self, family: str, floor_ns: int, readings: Sequence[Reading],
                   lost: Collection[int] = ()) -> set[Late]:
        """The hours of this call's readings of `family` older than the horizon now (before
        the family's rollup's `floor_ns`), or in its `lost` hours: those counted too late,
        and perhaps some taken before the newest moved on (replaying their hours too does no
        harm). Runs only when a reading was too late."""
        late = late_of(readings, family, floor_ns, lost)
        self.late += sorted(late)
        self.marks.add(late)
        return late

    @property
    def horizon_ns(self) -> int:
        return self.traffic.horizon_ns

    def set_horizon(self, horizon_ns: int) -> None:
        """A horizon given anew (`Horizon.set_horizon`) to every rollup of the node."""
        for rollup in (self.traffic, self.air, self.hospital):
            rollup.set_horizon(horizon_ns)

    def take_late(self) -> list[Late]:
        """(scope, hour start) to rebuild from the raw points (`cloud.logic.domain_replay`)
        since the last call: of readings left out as too late, and of marks a later reading
        touched (its live window would otherwise be the last written)."""
        late, self.late = self.late, []
        return sorted(set(late)) if late else late

    @property
    def too_late(self) -> int:
        return self.traffic.too_late + self.air.too_late + self.hospital.too_late
