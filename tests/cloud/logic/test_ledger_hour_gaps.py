"""The delivery ledger counts a gap of sequence numbers that crosses an hour's start. Each
hour counted as missing only the numbers between its own first and last reading of a
sensor, so a gap touching an hour boundary (an outage, an eviction: nearly always longer
than the minutes to the next hour) was counted nowhere, and "Missing data" never fired for
it. Numbers missing before a sensor's first reading of an hour are now that hour's: a gap
counts in the hour of the first reading after it, whatever order the readings came in."""

from __future__ import annotations

import random
import re

import pytest

from cloud.logic.node import NodeState
from cloud.logic.records import RP_1H, NodeData
from urbanpulse.wire import Reading

MINUTE_NS = 60 * 10**9
HOUR_NS = 60 * MINUTE_NS
T0 = 1_795_000_000 * 10**9 - 1_795_000_000 * 10**9 % HOUR_NS  # an hour's start


def _reading(minute: int, sensor: str = "pm-1", seq: int | None = None) -> Reading:
    return Reading(sensor, "air.pm", T0 + minute * MINUTE_NS, minute if seq is None else seq,
                   {"pm25": 10.0, "pm10": 20.0})


class _Node:
    def __init__(self) -> None:
        self.state = NodeState(6 * HOUR_NS, detect=False)
        self.ledgers: dict[int, dict[str, int]] = {}  # hour (from T0) -> the last write

    def send(self, readings: list[Reading], received_ns: int) -> None:
        points = self.state.process(NodeData("hn/aq-1", "hn", "aq-1", received_ns, readings))
        for rp, ln in points:
            if rp == RP_1H and ln.startswith("ledger,"):
                hour = (int(ln.rsplit(" ", 1)[1]) - T0) // HOUR_NS
                self.ledgers[hour] = {k: int(v) for k, v in re.findall(r"(\w+)=(-?\d+)i", ln)}

    def missing(self) -> dict[int, int]:
        return {h: c["missing"] for h, c in sorted(self.ledgers.items()) if c["missing"]}


def _live(minutes: list[int]) -> _Node:
    """One message a reading, each received a second after it was taken."""
    node = _Node()
    for m in minutes:
        node.send([_reading(m)], T0 + m * MINUTE_NS + 10**9)
    return node


@pytest.mark.parametrize(("skipped", "charged"), [
    (range(45, 55), {0: 10}),  # within an hour: counted before too
    (range(50, 60), {1: 10}),  # up to the hour's end: counted nowhere before
    (range(50, 70), {1: 20}),  # across the boundary
    (range(40, 160), {2: 120}),  # two hours and more
])
def test_a_gap_counts_in_the_hour_of_the_first_reading_after_it(skipped: range,
                                                                charged: dict[int, int]) -> None:
    node = _live([m for m in range(180) if m not in skipped])
    assert node.missing() == charged
    assert sum(c["expected"] for c in node.ledgers.values()) == 180


def test_a_gap_filled_later_leaves_the_ledger_of_an_in_order_run() -> None:
    """The readings of the gap arrive after the ones that follow it (a backlog sent after
    the fresh readings): every hour ends as if they had come in order."""
    in_order = _live(list(range(180)))
    node = _Node()
    last = T0 + 180 * MINUTE_NS
    for m in range(180):
        if not 50 <= m < 70:
            node.send([_reading(m)], T0 + m * MINUTE_NS + 10**9)
    assert node.missing() == {1: 20}
    node.send([_reading(m) for m in range(50, 70)], last)
    assert node.missing() == {}
    for hour, counts in in_order.ledgers.items():
        assert {k: v for k, v in node.ledgers[hour].items() if k != "late"} == \
            {k: v for k, v in counts.items() if k != "late"}, hour


@pytest.mark.parametrize("seed", range(6))
def test_the_ledger_does_not_depend_on_the_order_messages_come_in(seed: int) -> None:
    rng = random.Random(seed)
    minutes = [m for m in range(300) if not (40 <= m < 75 or 170 <= m < 185 or m % 37 == 5)]
    messages: list[list[int]] = []
    i = 0
    while i < len(minutes):
        size = rng.randint(1, 12)
        messages.append(minutes[i:i + size])
        i += size
    reference = _Node()
    for i, part in enumerate(messages):
        reference.send([_reading(m) for m in part], T0 + 300 * MINUTE_NS + i * 10**9)
    rng.shuffle(messages)
    node = _Node()
    for i, part in enumerate(messages):
        node.send([_reading(m) for m in part], T0 + 300 * MINUTE_NS + i * 10**9)
    assert node.ledgers == reference.ledgers
    # 35 + 15 missing in the runs, 8 more every 37th minute (5, 42 is in a run, ..., 264)
    assert sum(reference.missing().values()) == 300 - len(minutes)


def test_a_numbering_that_starts_again_charges_no_gap_to_the_new_one() -> None:
    node = _Node()
    for m in range(100):
        node.send([_reading(m)], T0 + m * MINUTE_NS + 10**9)
    # the node's state was lost at minute 100: numbers from 0 again, from minute 110
    for m in range(110, 180):
        node.send([_reading(m, seq=m - 110)], T0 + m * MINUTE_NS + 10**9)
    assert node.missing() == {}
    assert node.ledgers[1]["restarts"] == 1
