"""bench.faults.drift_trace: the pair rule's bins as it judged them, the trace
docs/anomaly-detection.md explains the missed drifts by ("The misses, session 20")."""

from __future__ import annotations

import math

import pytest

from bench.faults.drift_trace import Judged, TracedPairDrift, summarise
from cloud.detect.pair_drift import PairDrift

BIN_NS = 900_000_000_000
MINUTE_NS = 60_000_000_000
KEY = ("site", "node", "pm25")
RAMP_FROM = 80  # bin where the first module starts drifting, +2 % a bin


def _feed(rule: PairDrift, bins: int) -> list[int]:
    """Two modules read once a minute, the second at 0.9 x the first, the first drifting
    from `RAMP_FROM` on; the bins of the readings that raised the pair's drift."""
    fired: list[int] = []
    for index in range(bins):
        gain = 1.0 + 0.02 * max(0, index - RAMP_FROM)
        for k in range(15):
            ts = index * BIN_NS + k * MINUTE_NS
            air = 40.0 + (k % 4)  # never one value in over half the readings
            for module, value in (("pm", air * gain), ("pm-b", 0.9 * air)):
                if rule.update(KEY, module, ts + (module == "pm-b"), value):
                    fired.append(index)
    return fired


def test_the_traced_rule_raises_what_the_rule_raises_and_its_d_crosses_the_threshold_there() -> None:
    traced, plain = TracedPairDrift(), PairDrift()
    fired = _feed(traced, 110)
    assert fired == _feed(plain, 110)
    assert len(fired) == 1
    rows = traced.trace[(KEY, "pm")]
    assert [j.index for j in rows] == list(range(len(rows)))  # every bin judged, in order
    # (bin 0 lacks the first module's first reading, read before its partner was seen)
    assert all(j.ratio == pytest.approx(math.log(1 / 0.9)) for j in rows[1:RAMP_FROM + 1])
    raised = [j for j in rows if j.fired]
    assert [j.index + 1 for j in raised] == fired  # judged on the next bin's first readings
    crossing = next(j for j in rows if j.d is not None and j.d > j.limit)
    assert crossing == raised[0]
    assert crossing.limit == pytest.approx(0.12)  # a steady pair: the threshold's floor
    # the usual ratio is the pair's own until the drift's bins reach it (1 h later)
    assert crossing.usual == pytest.approx(math.log(1 / 0.9), abs=0.01)
    assert all(j.d is None for j in rows[:32])  # learning: nothing judged


def _row(index: int, ratio: float, usual: float, d: float | None) -> Judged:
    return Judged(index, ratio, usual, d, 0.12, False)


def test_the_summary_takes_apart_the_largest_d_within_the_fault() -> None:
    rows = [_row(i, 0.0, 0.03, 0.0) for i in range(10)]
    rows += [_row(10, 0.05, 0.03, 0.01), _row(11, 0.10, 0.03, 0.04),
             _row(12, 0.15, 0.03, 0.07), _row(13, 0.00, 0.03, 0.09)]  # 13: after the fault
    alone = {i: -0.01 for i in range(14)}
    s = summarise(rows, alone, first=10, last=12, sign=+1, smooth_bins=3)
    assert s.peak == rows[12]
    assert s.own_part == pytest.approx((0.05 + 0.10 + 0.15) / 3 + 0.01)
    assert s.pair_departure == pytest.approx(-0.01 - 0.03)  # own level less the usual
    assert s.own_part is not None
    assert s.pair_departure is not None
    assert s.own_part + s.pair_departure == pytest.approx(0.10 - 0.03)  # the window's mean d
    down = summarise(rows, alone, first=10, last=12, sign=-1, smooth_bins=3)
    assert down.peak == rows[10]  # the least rise is the largest fall
    assert down.own_part == pytest.approx((0.01 + 0.01 + 0.06) / 3)  # bins 8-10
    assert summarise(rows, {}, first=10, last=12, sign=+1, smooth_bins=3).own_part is None
    nothing = summarise(rows, alone, first=20, last=22, sign=+1, smooth_bins=3)
    assert nothing == type(nothing)(None, None, None)
