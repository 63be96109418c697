"""The delivery ledger when a node's clock steps out of an hour and comes back (found by the
chaos soak, bench/chaos/README.md). An hour's `expected` spanned its first to its last number
of each sensor, so the readings stamped meanwhile in another hour (numbers inside that span)
were counted missing in the hour left, though they came and were counted received in the
other: `python -m bench.chaos.soak --seed 5 --minutes 1.5 --clocks 2` counted 110 missing for
a node that lost nothing, and "Missing data" would fire on it. A number received in any hour
is missing in none; a gap of numbers still counts once, in the hour of the first reading
after it (test_ledger_hour_gaps.py), whichever hour that is."""

from __future__ import annotations

import base64
import pickle
import re
import zlib

import pytest

from cloud.logic.node import NodeState
from cloud.logic.records import RP_1H, NodeData
from cloud.logic.seqs import SeqRanges
from urbanpulse.wire import Reading

MINUTE_NS = 60 * 10**9
HOUR_NS = 60 * MINUTE_NS
T0 = 1_795_000_000 * 10**9 - 1_795_000_000 * 10**9 % HOUR_NS  # an hour's start
COUNTS = ("expected", "received", "duplicates", "missing")


def _reading(minute: int, step_h: int = 0, sensor: str = "pm-1") -> Reading:
    """The reading of `minute` (numbered by it), stamped by a clock `step_h` hours off."""
    return Reading(sensor, "air.pm", T0 + minute * MINUTE_NS + step_h * HOUR_NS, minute,
                   {"pm25": 10.0, "pm10": 20.0})


class _Node:
    def __init__(self) -> None:
        self.state = NodeState(6 * HOUR_NS, detect=False)
        self.ledgers: dict[int, dict[str, int]] = {}  # hour (from T0) -> what InfluxDB holds

    def send(self, readings: list[Reading], received_ns: int) -> None:
        points = self.state.process(NodeData("hn/aq-1", "hn", "aq-1", received_ns, readings))
        for rp, ln in points:
            if rp == RP_1H and ln.startswith("ledger,"):
                hour = (int(ln.rsplit(" ", 1)[1]) - T0) // HOUR_NS
                counts = {k: int(v) for k, v in re.findall(r"(\w+)=(-?\d+)i", ln)}
                self.ledgers[hour] = {k: counts[k] for k in COUNTS}

    def snapshot(self) -> None:
        """A snapshot and a restart, as the dataflow does (given its horizon again)."""
        self.state = pickle.loads(pickle.dumps(self.state, protocol=pickle.HIGHEST_PROTOCOL))
        self.state.set_horizon(6 * HOUR_NS)


def _counts(expected: int, received: int, missing: int = 0, duplicates: int = 0) -> dict[str, int]:
    return {"expected": expected, "received": received, "duplicates": duplicates, "missing": missing}


def _live(node: _Node, minutes: list[int], stepped: range, step_h: int) -> None:
    """One message a reading, received a second after the minute it was taken; the readings
    of `stepped` stamped by a clock `step_h` hours off."""
    for m in minutes:
        node.send([_reading(m, step_h if m in stepped else 0)], T0 + m * MINUTE_NS + 10**9)


@pytest.mark.parametrize("step_h", [8, -1])
def test_readings_stamped_in_another_hour_are_not_missing_in_the_hour_left(step_h: int) -> None:
    """Ten readings one a minute, numbered 0-9; 4-6 stamped 8 h ahead (or 1 h back), then
    the clock is corrected. Before: the hour left said expected 10, received 7, missing 3."""
    node = _Node()
    _live(node, list(range(10)), range(4, 7), step_h)
    assert node.ledgers == {0: _counts(7, 7), step_h: _counts(3, 3)}


def test_a_one_way_step_was_and_is_counted_right() -> None:
    node = _Node()
    _live(node, list(range(10)), range(4, 10), 8)
    assert node.ledgers == {0: _counts(4, 4), 8: _counts(6, 6)}


# Readings that come after readings numbered above them must be stamped before those
# (else the numbering started again: docs/delivery.md, "A node that lost its state"): the
# late excursions below are a step back, or a step ahead that came first.
@pytest.mark.parametrize(("order", "step_h"), [("stepped last", -1), ("stepped last, reversed", -1),
                                               ("stepped first", 8)])
def test_the_stepped_readings_arriving_late_or_out_of_order(order: str, step_h: int) -> None:
    """The readings of the excursion come after the ones that follow it (a backlog sent
    after the fresh readings), or before everything: each hour ends as in order, the hour
    left written again once they came."""
    node = _Node()
    stepped = [_reading(m, step_h) for m in range(4, 7)]
    others = [_reading(m) for m in (0, 1, 2, 3, 7, 8, 9)]
    late = T0 + 20 * MINUTE_NS
    if order == "stepped first":
        node.send(stepped, late)
        assert node.ledgers == {step_h: _counts(3, 3)}
    for i, r in enumerate(others):
        node.send([r], late + (i + 1) * 10**9)
    if order != "stepped first":
        # 4-6 not come yet: missing, as far as anyone knows
        assert node.ledgers == {0: _counts(10, 7, 3)}
        node.send(stepped[::-1] if order.endswith("reversed") else stepped, late + MINUTE_NS)
    assert node.ledgers == {0: _counts(7, 7), step_h: _counts(3, 3)}


def test_the_stepped_readings_one_message_each_after_the_rest() -> None:
    """Each gap left counts in the hour of the first reading after it, as they come: 5
    first (stamped in hour -1) leaves 4 missing before it (hour -1's) and 6 (hour 0's,
    before 7); then 4 and 6. The hour left is written again at each."""
    node = _Node()
    late = T0 + 20 * MINUTE_NS
    node.send([_reading(m) for m in (0, 1, 2, 3, 7, 8, 9)], late)
    assert node.ledgers == {0: _counts(10, 7, 3)}
    node.send([_reading(5, -1)], late + 10**9)
    assert node.ledgers == {0: _counts(8, 7, 1), -1: _counts(2, 1, 1)}
    node.send([_reading(4, -1)], late + 2 * 10**9)
    assert node.ledgers == {0: _counts(8, 7, 1), -1: _counts(2, 2)}
    node.send([_reading(6, -1)], late + 3 * 10**9)
    assert node.ledgers == {0: _counts(7, 7), -1: _counts(3, 3)}


@pytest.mark.parametrize("cut", range(1, 10))
def test_a_snapshot_cut_anywhere_in_the_excursion(cut: int) -> None:
    node = _Node()
    for m in range(10):
        if m == cut:
            node.snapshot()
        node.send([_reading(m, 8 if 4 <= m < 7 else 0)], T0 + m * MINUTE_NS + 10**9)
    assert node.ledgers == {0: _counts(7, 7), 8: _counts(3, 3)}


def test_a_snapshot_between_the_rest_and_the_late_excursion() -> None:
    node = _Node()
    late = T0 + 20 * MINUTE_NS
    node.send([_reading(m) for m in (0, 1, 2, 3, 7, 8, 9)], late)
    node.snapshot()
    node.send([_reading(m, -1) for m in range(4, 7)], late + 10**9)
    assert node.ledgers == {0: _counts(7, 7), -1: _counts(3, 3)}


@pytest.mark.parametrize(("lost", "charged"), [
    (3, 8),  # just before the excursion: the first reading after it (4) is stamped in hour 8
    (7, 0),  # just after it: the first reading after it (8) is back in hour 0
    (5, 8),  # inside it
])
def test_a_number_lost_around_the_excursion_counts_once_in_the_hour_after_it(
        lost: int, charged: int) -> None:
    node = _Node()
    _live(node, [m for m in range(10) if m != lost], range(4, 7), 8)
    assert {h: c["missing"] for h, c in node.ledgers.items() if c["missing"]} == {charged: 1}
    assert sum(c["expected"] for c in node.ledgers.values()) == 10


def test_a_duplicate_of_a_stepped_reading_counts_in_its_own_hour() -> None:
    """A redelivery carries the stamp it was sent with: its hour's duplicate."""
    node = _Node()
    _live(node, list(range(10)), range(4, 7), 8)
    node.send([_reading(5, 8)], T0 + 11 * MINUTE_NS)
    assert node.ledgers == {0: _counts(7, 7), 8: _counts(3, 4, duplicates=1)}


def test_two_sensors_one_stepped_the_other_not() -> None:
    """A second sensor of the node, stamped by another clock (its own board), numbers in
    order in hour 0: the node's hour 0 counts both, each by its own numbers."""
    node = _Node()
    for m in range(10):
        node.send([_reading(m, 8 if 4 <= m < 7 else 0), _reading(m, 0, "pm-2")],
                  T0 + m * MINUTE_NS + 10**9)
    assert node.ledgers == {0: _counts(17, 17), 8: _counts(3, 3)}


def test_back_and_forth_twice_in_one_hour() -> None:
    """Out to hour 8 twice (numbers 2-3 and 6-7), one number lost in each excursion (3's
    first reading after it is 4, back in hour 0; 7's is 8): hour 0 is charged with both,
    hour 8 with none."""
    node = _Node()
    for m in [0, 1, 2, 4, 5, 6, 8, 9]:
        node.send([_reading(m, 8 if m in (2, 3, 6, 7) else 0)], T0 + m * MINUTE_NS + 10**9)
    assert node.ledgers == {0: _counts(8, 6, 2), 8: _counts(2, 2)}


def _every_other(numbers: range, hour: int) -> list[Reading]:
    """Readings numbered `numbers`, one every 10 s from `hour`'s start (hours after T0)."""
    return [Reading("pm-1", "air.pm", T0 + hour * HOUR_NS + i * 10**10, n, {"pm25": 1.0, "pm10": 2.0})
            for i, n in enumerate(numbers)]


RANGES = SeqRanges().max_ranges  # the runs of numbers a sensor keeps; past them, gaps are given up


def test_gaps_given_up_stay_charged_to_the_hour_after_them() -> None:
    """Past 64 runs of numbers the oldest gap is given up (its numbers look seen to the
    ranges): it stays missing, in the hour of the first reading after it."""
    node = _Node()
    node.send(_every_other(range(0, 4, 2), 0), T0 + 2 * MINUTE_NS)  # 0, 2: 1 missing
    node.send(_every_other(range(4, 2 * RANGES + 4, 2), 1), T0 + 2 * HOUR_NS)
    assert node.state.seqs["pm-1"].given_up == 2  # 1 and 3
    assert node.ledgers == {0: _counts(3, 2, 1), 1: _counts(2 * RANGES, RANGES, RANGES)}
    # a reading of a gap given up: a duplicate (SeqRanges), the counts else the same
    node.send(_every_other(range(3, 4), 1), T0 + 2 * HOUR_NS)
    assert node.ledgers == {0: _counts(3, 2, 1), 1: _counts(2 * RANGES, RANGES + 1, RANGES, 1)}


def test_a_gap_given_up_below_everything_seen_is_charged_to_the_hour_above_it() -> None:
    node = _Node()
    node.send(_every_other(range(100, 100 + 2 * RANGES - 1, 2), 1), T0 + 2 * HOUR_NS)
    assert node.ledgers == {1: _counts(2 * RANGES - 1, RANGES, RANGES - 1)}
    node.send(_every_other(range(0, 1), 0), T0 + 2 * HOUR_NS)  # 1-99 missing before 100
    assert node.state.seqs["pm-1"].given_up == 99
    assert node.ledgers == {0: _counts(1, 1), 1: _counts(2 * RANGES - 1 + 99, RANGES, RANGES - 1 + 99)}


# A node's state pickled by the code before (989b1cc; zlib, base64), whose ledger hours kept
# [min, max] of each numbering and the gap below min: pm-1 0, 1, 2, 5, 6, 7 (hour 0) and
# 70, 72 (hour 1); pm-2 0, 2, 5, 6, 7 (hour 0).
LEGACY_SNAPSHOT = (
    "eNrdV91rHFUU32wysx/pF61oW6kfpWAi7ZLUFZQ+NNqSbDttHhJBBeM4O3uzd5LZmc3M3KYVAinYbZte/MBb8EVa"
    "rOKb+OiDD/4ZPgpCoRShD4rVB/Wce+/ObpLpiuKTIbDnnrm/e879nXPPuXfduMl35+Qf3+P6IWtU/LDpuZUgbBDB"
    "S7PwM584CREfi/HLYk2M8TINI+/dMLCDWGyYue/mj3yxj5sNkhA3Ede5seokLhWnjHVjTVQEL+NKtlK+yodyuXXj"
    "5uUhbXJvv0lygQRJrI2+LgGp0UIrDLwkjATfpyDKXmXRYT5i9tSIEyV14iTn9cQUOmJHLBCzvIy/dpzAPBgVbNZO"
    "vBYB0bSXWKsdgzRiuywRHwhu2I1wNUDJBARzl1Es2JHjxaQh+Kgb+j6Y90LggBsNssIkQdZUR8wJXrQXw4h4TWlV"
    "GiQN20GrRuIskwBYKtjxpcCFtdAvFG1KfBwZdtMBX+j+cauEi7E6N5R71OS7kJlTfugun5WqdI9m2CaBXM2QLOJe"
    "YgKWFsAb8KDVxmhZOV5wqRM0YeZ1Vmd1CM8uRaR9gUQxbEfwoUnYdCNsOR4MnuiPj1LqzCifliN0qC9KSeQsLnqu"
    "4AczgOnHna8paQ5YZO0UTo00nUoBWSVxop0uJmFo+5iEuINVL4DgxGrfTrNpT7bEhpF7Y+bhzg4otY5ibt7+ZmJ6"
    "GJUMaBx2PEifxzMckx9Kr3jRIx2iBzaKudvFXe8fvrefHgQvRpBwnAP6H359+fZT9/bLXGu3jr8otHRsUvS+dsTM"
    "1BGd9fjtePY3WgH1SyePf5Wh/rDz/Ldb1BPZapz9yVv77mbMzlDj7Ad3Rn/OmJ2hxtm1+8P5p7fP3q5muNfJCUlm"
    "ZfOGq33ADPUWHqrZPFSzeahm81DN5qGazUM1m4dqNg/VbB60mjFQr3+9dPdZmSf0aJeQB5cORYe3E6xTrZ9JeiID"
    "U83GpFYZNyHfsWatYSUp0jBue4njC/5kxjnofd1b0yKe70cfUyMKfQKVaY6XTochHh+ii9KCGIOjOEyiY+KKIHU+"
    "2nIuQhPwEt011r+snX2OHrBy6jTVSQMPNB8Fwe474PTQgqDPLAgGRRYMyDmmF8eMSNFwHd+XUhklm4ZMzdkNBZkR"
    "e5m0E3sxCltiFnY/IksIVESj5UTLcXZ1k3N46Rz8nJez9Lb5CAmkjzHUTb4j9hICHaQB02Jc0nR8EiVShMK7opyv"
    "bG6pUs9L82RlDmuwXnoWq0UJGkYzTBKoKeO82PSghsPqWO7KSFyk5ltT/XUIOqsqkrCusGpQM1mrTiIvaEL1L7Yj"
    "csELmXJO4yEo8G/lrGGCv4ZVlL/T1oz8rVlnCIF20XYCYO4ScNYRdTpBL2sv6Xvj9ApErKP90GlOr1oFem2WXodQ"
    "3UhNDMkl832mCP1IrgixXPYUl0iRCdW30m4JMPQppGvLCxhEQH3bdD2IVBryHfMkiMNNtXqMF9XXYy90W0E3R3t8"
    "9erMNSsHTvWVbmtoTWwq5PRo7zye6J0nK3dVJLLm69KkgXo0ADjUBeoqpYF6NACY7wJ1wdJAPRoANLpAXbs0UI8G"
    "AM0uUMdXA/VoALCQWlQFqmtRjQYAp7tAHSkN1KMBwBoCSSKz9DPMA/r59vBrx//T8P/fo4icQu/GeqqOYkqvvlT9"
    "/fHqo9eU5rAOmDNTs8pQajwVet6lKqtA6AmNe7s7vbpF6MdVUxy7Knot18qnHuT7FsjwQG+m50FNewC40wM8SHHV"
    "FAcebEnN7dxl52YfdUbquDEzdebfUAe4N/8xdY6Mv+mTRpNEm6+5FHrSOamvYXb0elgxIi6BztUQ1igvN1jb91zZ"
    "HqFlhHiLhz5lY3NRGaXaBHg50ZUYLiGfS/LWX05C5lK4D+CNoZjb2zmJjnJj0YebAN5noJf0Qkx/6Xaph1ae/qZs"
    "0t/XhLI0DQGJ6R+g+hMwS3fOYLSWcvAOxRlWMVadaafasa0vTfh6ovCw7PqgcdxcYR6R3X5sozB161b+xjsmCN//"
    "9CMIHZGKINx97L7UEb4jIBcTO/HcZVwNH2geXjXyFN5ZI+pRNeKswKMB3mV/AU8vGYU="
)


def test_a_snapshot_of_the_ledger_before_the_runs_resumes_alike() -> None:
    """Its hours keep, of each [min, max], the numbers their numbering received: its gaps
    as before, filled as a state of this code's fills them."""
    old: NodeState = pickle.loads(zlib.decompress(base64.b64decode("".join(LEGACY_SNAPSHOT))))
    old.set_horizon(6 * HOUR_NS)
    fresh = _Node()
    for m in (0, 1, 2, 5, 6, 7):
        fresh.send([_reading(m)] + ([_reading(m, 0, "pm-2")] if m != 1 else []),
                   T0 + m * MINUTE_NS + 10**9)
    for m in (70, 72):
        fresh.send([_reading(m)], T0 + m * MINUTE_NS + 10**9)
    resumed = _Node()
    resumed.state = old
    for i, readings in enumerate([[_reading(73)], [_reading(3), _reading(71)], [_reading(4)],
                                  [_reading(1, 0, "pm-2"), _reading(3, 0, "pm-2")]]):
        data = NodeData("hn/aq-1", "hn", "aq-1", T0 + (80 + i) * MINUTE_NS, readings)
        assert old.process(data) == fresh.state.process(data), i
    assert {h: held.seq_ranges for h, held in old.ledger.items()} == \
        {h: held.seq_ranges for h, held in fresh.state.ledger.items()}


def test_the_gaps_of_a_numbering_forgotten_stay_charged() -> None:
    """A sensor whose node lost its state more than 8 times has its oldest numbering's
    numbers forgotten: the gap it charged to an hour held stays that hour's."""
    node = _Node()
    first = [_reading(0), _reading(2)]  # 1 missing, in hour 0
    node.state.process(NodeData("hn/aq-1", "hn", "aq-1", T0 + 3 * MINUTE_NS, first, None, f"{0:016x}"))
    for n in range(1, 10):  # nine cards after it, one reading each (hour 1)
        node.state.process(NodeData("hn/aq-1", "hn", "aq-1", T0 + (60 + n) * MINUTE_NS,
                                    [_reading(60 + n)], None, f"{n:016x}"))
    assert f"{0:016x}" in node.state.seqs["pm-1"].forgotten
    node.send([_reading(5, 0, "pm-2")], T0 + 70 * MINUTE_NS)  # hour 0 written again
    assert node.ledgers[0] == _counts(4, 3, 1)
