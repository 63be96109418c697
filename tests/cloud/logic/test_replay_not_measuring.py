"""A replay from the raw points leaves out what the live domain rollups leave out: readings
flagged `calibrating` as well as `warmup` (cloud.logic.domain.common.NOT_MEASURING; their
values are placeholders) and `clock_unsynced`. A bed's last state before a replayed span
is its last reading the live rollups took: a calibrating reading after it is no state."""

from __future__ import annotations

from cloud.logic.domain.node import DomainNode
from cloud.logic.domain_replay import ReplaySpan, reading_of, replay
from cloud.logic.records import RP_1M
from tests.cloud.logic.domain_helpers import HOUR, MIN, T0, select
from urbanpulse.wire import Reading

HORIZON = 6 * HOUR


def _row(r: Reading) -> dict[str, object]:
    row: dict[str, object] = {"time": r.ts_ns + r.seq % 1000, "site": "bv", "node": "ward-a",
                              "sensor": r.sensor, "kind": r.kind, "seq": r.seq, **r.values}
    if r.flags:
        row["flags"] = ",".join(r.flags)
    return row


def test_a_calibrating_reading_is_no_reading_of_the_replay() -> None:
    bed = Reading("bed-1", "hospital.bed", T0, 1, {"occupied": 1.0}, ("calibrating",))
    assert reading_of(_row(bed)) is None
    assert reading_of(_row(Reading("bed-1", "hospital.bed", T0, 1, {"occupied": 1.0}, ("backlog",)))) \
        is not None


def test_a_bed_whose_last_reading_before_the_span_was_calibrating_keeps_its_state_before() -> None:
    """As the live rollups keep it: the replayed ward held bed-1 as unknown (one bed, none
    occupied) until its next reading."""
    readings = [Reading("bed-1", "hospital.bed", T0, 1, {"occupied": 1.0}),
                Reading("bed-1", "hospital.bed", T0 + 50 * MIN, 2, {"occupied": 0.0}, ("calibrating",)),
                Reading("bed-2", "hospital.bed", T0 + HOUR + MIN, 1, {"occupied": 0.0}),
                Reading("bed-1", "hospital.bed", T0 + HOUR + 5 * MIN, 3, {"occupied": 1.0})]
    live, _ = DomainNode(HORIZON).process("bv", "ward-a", readings)
    replayed = replay(ReplaySpan("beds", "bv", "", T0 + HOUR, T0 + 3 * HOUR), [_row(r) for r in readings])
    want = select(live, RP_1M, "ward_occupancy", site="bv", node="ward-a")
    got = select(replayed, RP_1M, "ward_occupancy", site="bv", node="ward-a")
    # bed-1's state at bed-2's reading: the calibrating reading's placeholder is no state
    assert (want[T0 + HOUR + MIN]["beds"], want[T0 + HOUR + MIN]["occupied"]) == (2, 1)
    assert {t: got.get(t) for t in want if t >= T0 + HOUR and got.get(t) != want[t]} == {}
