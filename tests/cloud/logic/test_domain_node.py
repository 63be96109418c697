"""The per-node facade routes each kind to its rollup and hands site updates on."""

from __future__ import annotations

import pickle

from cloud.logic.domain.hospital import SiteReplayed, WardSnapshot
from cloud.logic.domain.node import DomainNode
from tests.cloud.logic.domain_helpers import HOUR, MIN, T0, final, parse, rd


def test_mixed_node_routes_by_kind() -> None:
    readings = [
        rd("lane-1", "traffic.loop", T0, count=2, occupancy_pct=5, interval_s=60),
        rd("pm-1", "air.pm", T0, pm25=10, pm10=20),
        rd("bed-1", "hospital.bed", T0, occupied=1),
        rd("bed-2", "hospital.bed", T0 + 3 * HOUR, occupied=0),
    ]
    node = DomainNode(2 * HOUR)
    points, updates = node.process("s", "n1", readings)
    names = sorted({parse(p)[0] for _, p in points})
    assert names == ["air_quality", "traffic_intersection", "traffic_lane", "ward_occupancy"]
    assert all(isinstance(u, WardSnapshot) for u in updates)
    copy = pickle.loads(pickle.dumps(node))
    late = [rd("bed-1", "hospital.bed", T0 + MIN, occupied=0)]  # 3 h behind the newest bed
    # no window written; the site is told the hour is replayed (the site step keeps it)
    replayed = ([], [SiteReplayed("s", "n1", (("beds", T0),))])
    assert node.process("s", "n1", late) == copy.process("s", "n1", late) == replayed
    assert node.too_late == 1
    assert final(points)
