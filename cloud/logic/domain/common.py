"""What the domain rollups share: window arithmetic, readings to leave out, quantiles."""

from __future__ import annotations

import math
from collections.abc import Sequence

from cloud.logic.records import RP_1H, RP_1M, Point
from cloud.logic.rollup import HOUR_NS, MINUTE_NS
from urbanpulse.wire import Reading

__all__ = ["HOUR_NS", "MINUTE_NS", "RP_1H", "RP_1M", "WIDTHS", "Point", "quantile", "skipped",
           "window_start"]

WIDTHS: tuple[tuple[str, int], ...] = ((RP_1M, MINUTE_NS), (RP_1H, HOUR_NS))

# A sensor warming up or calibrating reports placeholder values (zeros, for dust and CO2):
# written raw, kept out of the domain aggregates.
NOT_MEASURING = frozenset({"warmup", "calibrating"})


def window_start(ts_ns: int, width_ns: int) -> int:
    return ts_ns - ts_ns % width_ns


def skipped(r: Reading) -> bool:
    return bool(r.flags) and not NOT_MEASURING.isdisjoint(r.flags)


def quantile(ordered: Sequence[float], q: float) -> float:
    """The q-quantile of sorted values, interpolating linearly between order statistics
    (Hyndman-Fan type 7, numpy's default): position h = (n - 1) q."""
    if not ordered:
        raise ValueError("quantile of no values")
    h = (len(ordered) - 1) * q
    lo = math.floor(h)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (h - lo) * (ordered[hi] - ordered[lo])
