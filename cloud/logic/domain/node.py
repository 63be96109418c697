"""All domain rollups of one node behind one call, for the dataflow's per-node step."""

from __future__ import annotations

from collections.abc import Sequence

from cloud.logic.domain.air import AirRollup
from cloud.logic.domain.common import Point
from cloud.logic.domain.hospital import DoorRoles, HospitalNodeRollup, SiteUpdate
from cloud.logic.domain.traffic import TrafficRollup
from urbanpulse.wire import Reading


class DomainNode:
    """Traffic, air and hospital state of one node ("site/node" key). Picklable; the
    sub-rollups only keep state for the kinds the node actually sends."""

    def __init__(self, horizon_ns: int, roles: DoorRoles | None = None) -> None:
        self.traffic = TrafficRollup(horizon_ns)
        self.air = AirRollup(horizon_ns)
        self.hospital = HospitalNodeRollup(horizon_ns, roles)

    def process(self, site: str, node: str, readings: Sequence[Reading]
                ) -> tuple[list[Point], list[SiteUpdate]]:
        """Points to write now, and the updates to route to `HospitalSite` keyed by site.
        Pass the node's new, deduplicated readings (duplicates by (sensor, ts) are
        harmless: they overwrite themselves)."""
        kinds = {kind.split(".", 1)[0] for kind in {r.kind for r in readings}}
        points: list[Point] = []
        updates: list[SiteUpdate] = []
        if "traffic" in kinds:
            points += self.traffic.process(site, node, readings)
        if "air" in kinds:
            points += self.air.process(site, node, readings)
        if "hospital" in kinds:
            p, updates = self.hospital.process(site, node, readings)
            points += p
        return points, updates

    @property
    def too_late(self) -> int:
        return self.traffic.too_late + self.air.too_late + self.hospital.too_late
