"""A replay (and a per-sensor window's rebuild) takes a node's readings in the order the
live rollups took them: by stamp, then by sequence number. The raw point's time is the
stamp plus the sequence number mod 1000 (cloud.logic.node.raw_time), so two readings of
one sensor stamped alike (a door counter the simulator reads twice in its second)
numbered 999 and 1000 have their raw times the other way round; ordered by raw time, the
replay kept the other one's count."""

from __future__ import annotations

from cloud.logic.domain.node import DomainNode
from cloud.logic.domain_replay import ReplaySpan, replay
from cloud.logic.lines import line
from cloud.logic.recompute import Recompute
from cloud.logic.rollup import Window, window_ts
from tests.cloud.logic.domain_helpers import HOUR, T0
from urbanpulse.wire import Reading

TS = T0 + 10 * 60 * 10**9


def _door(seq: int, count: float) -> Reading:
    return Reading("door-main", "hospital.door", TS, seq, {"count": count, "interval_s": 60.0, "fault": 0.0})


def _row(r: Reading) -> dict[str, object]:
    return {"time": r.ts_ns + r.seq % 1000, "site": "s", "node": "opd", "sensor": r.sensor,
            "kind": r.kind, "seq": r.seq, **r.values}


def test_readings_stamped_alike_are_replayed_in_sequence_order() -> None:
    readings = [_door(999, 2.0), _door(1000, 5.0)]  # as the node sent them
    live, _ = DomainNode(6 * HOUR).process("s", "opd", readings)
    [flow] = [p for p in live if p[1].startswith("door_flow")]
    assert "visits=7.0" in flow[1]  # both counts (the later one alone before, 5.0)
    rows = sorted((_row(r) for r in readings), key=lambda row: int(str(row["time"])))
    replayed = replay(ReplaySpan("doors", "s", "", T0, T0 + HOUR), rows)
    assert [p for p in replayed if p[1].startswith("door_flow")] == [flow]


def test_a_rebuilt_window_takes_readings_stamped_alike_in_sequence_order() -> None:
    """The per-sensor window's `last` is the last reading taken at the newest stamp: in the
    live rollup, the one numbered 1000 after 999."""
    readings = [_door(999, 2.0), _door(1000, 5.0)]
    start = window_ts("hospital.door", TS) - window_ts("hospital.door", TS) % 60_000_000_000
    assert start == TS - 60_000_000_000  # the minute before the stamp: its interval's
    live = Window(start, 0, {})
    for r in readings:
        live.add(r.ts_ns, r.values)
    rows = sorted((_row(r) for r in readings), key=lambda row: int(str(row["time"])))
    request = Recompute("agg_1m", "hospital_door", "s", "opd", "door-main", "hospital.door", 60_000_000_000,
                        start)
    assert live.as_fields()["count_last"] == 5.0
    assert request.rebuild(rows) == line("hospital_door", {"site": "s", "node": "opd", "sensor": "door-main",
                                                           "kind": "hospital.door"},
                                         live.as_fields(), request.start_ns)
