"""The delivery ledger's gaps and the hours it has let go (older than the horizon and idle).

A gap of sequence numbers counts in the hour of the first reading after it
(test_ledger_hour_gaps.py). Readings that come for an hour already let go are counted in
no hour (the stored hour keeps its last write, test_ledger_backlog.py), but they did come:
the gap a held hour was charged with must shrink by them. It did only while the state held
some other hour besides: with one hour held (a node back from an outage longer than the
horizon and 6 hours, its fresh readings sent first, then a backlog whose oldest hours the
state had let go), that hour stayed charged with every reading of the backlog, and Missing
data judged it so."""

from __future__ import annotations

import re

from cloud.logic.node import NodeState
from cloud.logic.records import RP_1H, NodeData
from urbanpulse.wire import Reading

MINUTE_NS = 60 * 10**9
HOUR_NS = 60 * MINUTE_NS
T0 = 1_795_000_000 * 10**9 - 1_795_000_000 * 10**9 % HOUR_NS  # an hour's start


def _readings(minutes: range) -> list[Reading]:
    """One reading a minute (minutes after T0), numbered by its minute."""
    return [Reading("pm-1", "air.pm", T0 + m * MINUTE_NS, m, {"pm25": 10.0, "pm10": 20.0})
            for m in minutes]


class _Node:
    def __init__(self) -> None:
        self.state = NodeState(6 * HOUR_NS, detect=False)
        self.ledgers: dict[int, dict[str, int]] = {}  # hour (from T0) -> what InfluxDB holds

    def send(self, minutes: range, received_ns: int) -> None:
        points = self.state.process(NodeData("hn/aq-1", "hn", "aq-1", received_ns, _readings(minutes)))
        for rp, ln in points:
            if rp == RP_1H and ln.startswith("ledger,"):
                hour = (int(ln.rsplit(" ", 1)[1]) - T0) // HOUR_NS
                self.ledgers[hour] = {k: int(v) for k, v in re.findall(r"(\w+)=(-?\d+)i", ln)}


def test_readings_of_an_hour_let_go_shrink_the_gap_charged_to_the_one_hour_held() -> None:
    node = _Node()
    node.send(range(0, 30), T0 + 30 * MINUTE_NS)  # live until 00:30, then offline
    back = T0 + 14 * HOUR_NS + MINUTE_NS
    node.send(range(840, 841), back)  # back at 14:00: its fresh reading first
    assert T0 not in node.state.ledger  # hour 0 let go: 14 h old, idle for 13.5 h
    assert sorted(node.state.ledger) == [T0 + 14 * HOUR_NS]
    assert node.ledgers[14]["missing"] == 810  # numbers 30..839, not seen (yet)
    # then what its outbox kept of the outage, oldest first: the rest of hour 0 only (the
    # later hours were lost: evicted from a full card)
    node.send(range(30, 60), back + 10**9)
    # counted in no hour (hour 0 stays as written), but hour 14 lacks 60..839 only
    assert node.ledgers[0]["received"] == 30
    assert node.ledgers[14]["missing"] == 780, node.ledgers[14]
    assert node.ledgers[14]["expected"] == 781


def test_the_hour_held_ends_as_if_the_readings_had_come_in_order() -> None:
    """The same readings in order (hour 0 whole, then hour 14): hour 14's counts alike."""
    in_order = _Node()
    in_order.send(range(0, 60), T0 + HOUR_NS)
    in_order.send(range(840, 841), T0 + 14 * HOUR_NS + MINUTE_NS)
    node = _Node()
    node.send(range(0, 30), T0 + 30 * MINUTE_NS)
    node.send(range(840, 841), T0 + 14 * HOUR_NS + MINUTE_NS)
    for part in (range(30, 40), range(40, 60)):
        node.send(part, T0 + 14 * HOUR_NS + 2 * MINUTE_NS)
    assert {k: v for k, v in node.ledgers[14].items() if k != "late"} == \
        {k: v for k, v in in_order.ledgers[14].items() if k != "late"}
