"""A reading that arrives into a sequence gap given up (past 64 open gaps per sensor) is
stored raw, as docs/delivery.md ("Sequence-number gaps given up") says, but not aggregated
and counted as a duplicate. It was dropped like a redelivery, its raw point never written:
a reading the node had sent and the cloud confirmed, lost."""

from __future__ import annotations

from cloud.logic.node import NodeState
from cloud.logic.records import RP_RAW, NodeData
from cloud.logic.seqs import SeqRanges
from tests.cloud.logic.domain_helpers import HOUR, T0, S, parse
from urbanpulse.wire import Reading

RANGES = SeqRanges().max_ranges + 1  # one range more than a sensor keeps


def _co2(seq: int) -> Reading:
    return Reading("co2-1", "air.co2", T0 + seq * S, seq, {"co2": 400.0 + seq})


def _message(readings: list[Reading]) -> NodeData:
    return NodeData("hk/aq-1", "hk", "aq-1", readings[-1].ts_ns + S, readings)


def test_a_reading_into_a_given_up_gap_is_stored_raw_and_not_aggregated() -> None:
    state = NodeState(HOUR, detect=False)
    # every other number: 0, 2, 4, ...: a gap at each odd number, the oldest (1) given up
    first = state.process(_message([_co2(2 * i) for i in range(RANGES)]))
    assert state.seqs["co2-1"].given_up == 1
    late = _co2(1)
    points = state.process(_message([late]))
    raw = [parse(text) for rp, text in points if rp == RP_RAW]
    assert [(name, fields["seq"], fields["co2"]) for name, _, fields, _ in raw] == [("air_co2", 1, 401.0)]
    assert raw[0][3] == T0 + S + 1  # its raw time: the stamp plus seq mod 1000 ns
    assert not [text for rp, text in points if rp == "agg_1m"]  # in no window
    ledger = [parse(text)[2] for rp, text in points if text.startswith("ledger,")]
    assert ledger[0]["duplicates"] == 1
    # a redelivery there cannot be told from such a reading: its raw point is written as it
    # was (InfluxDB keeps one), and it is counted as a duplicate again, in no window
    again = state.process(_message([_co2(0)]))
    assert [p for p in again if p[0] == RP_RAW] == [p for p in first if p[0] == RP_RAW][:1]
    assert not [text for rp, text in again if rp == "agg_1m"]
    # above the gaps given up, a redelivery is dropped as before
    assert not [p for p in state.process(_message([_co2(2 * RANGES - 2)])) if p[0] == RP_RAW]
