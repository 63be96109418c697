"""A pad removed (or given another id), and a silent ward in its hospital's totals, count
with their last state until the staleness limit (`STALE_NS`, 2 h 10 min), then as `stale`
alone (docs/domain-rollups.md, "A bed that stops reporting"; before, for ever). A pad whose
last reading is a fault (unplugged while its node runs, the operator's way out before the
limit existed) counts in `beds` and `faulty` until the limit, then as stale too."""

from __future__ import annotations

from cloud.logic.domain.hospital import HospitalNodeRollup
from cloud.logic.domain.hospital_site import HospitalSite
from cloud.logic.records import RP_1H
from tests.cloud.logic.domain_helpers import HOUR, MIN, T0, rd, select

BED = "hospital.bed"


def _ward_rows(last_of_bed_2: dict[str, float]) -> tuple[dict[int, dict[str, object]],
                                                           dict[int, dict[str, object]]]:
    """bed-2 sends its last reading at 00:10 and is taken out; bed-1 (free) goes on every
    10 min for 10 h; ward-b (one bed, occupied) is heard at 00:10 only (a silent ward)."""
    roll, other, site = HospitalNodeRollup(6 * HOUR), HospitalNodeRollup(6 * HOUR), HospitalSite(6 * HOUR)
    points = []
    p, u = roll.process("bv", "ward-a", [rd("bed-2", BED, T0 + 10 * MIN, **last_of_bed_2)])
    points += p + site.process("bv", u)
    p, u = other.process("bv", "ward-b", [rd("bed-1", BED, T0 + 10 * MIN, occupied=1)])
    points += p + site.process("bv", u)
    for t in range(T0, T0 + 10 * HOUR, 10 * MIN):
        p, u = roll.process("bv", "ward-a", [rd("bed-1", BED, t, occupied=0)])
        points += p + site.process("bv", u)
    return (select(points, RP_1H, "ward_occupancy", site="bv", node="ward-a"),
            select(points, RP_1H, "hospital_occupancy", site="bv"))


def test_a_removed_pad_counts_with_its_last_state_until_the_limit_then_as_stale() -> None:
    ward, hospital = _ward_rows({"occupied": 1})
    # 01:00-02:00 ends 1 h 50 min after bed-2's last reading: counted as it was
    assert ward[T0 + HOUR] == {"beds": 2, "occupied": 1, "available": 1, "faulty": 0, "stale": 0,
                               "occupancy_pct": 50.0}
    assert ward[T0 + 9 * HOUR] == {"beds": 1, "occupied": 0, "available": 1, "faulty": 0, "stale": 1,
                                   "occupancy_pct": 0.0}
    assert hospital[T0 + HOUR] == {"beds": 3, "occupied": 2, "available": 1, "faulty": 0, "stale": 0,
                                   "occupancy_pct": 200 / 3}
    # ward-b, silent since 00:10, is stale in the hospital's totals too
    assert hospital[T0 + 9 * HOUR] == {"beds": 1, "occupied": 0, "available": 1, "faulty": 0,
                                       "stale": 2, "occupancy_pct": 0.0}


def test_a_pad_whose_last_reading_is_a_fault_counts_in_beds_and_faulty_until_the_limit() -> None:
    ward, _ = _ward_rows({"occupied": 1, "fault": 1})
    assert ward[T0 + HOUR] == {"beds": 2, "occupied": 0, "available": 1, "faulty": 1, "stale": 0,
                               "occupancy_pct": 0.0}
    assert ward[T0 + 9 * HOUR] == {"beds": 1, "occupied": 0, "available": 1, "faulty": 0, "stale": 1,
                                   "occupancy_pct": 0.0}
