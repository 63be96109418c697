"""What the domain rollups share: window arithmetic, readings to leave out, quantiles."""

from __future__ import annotations

import math
from collections.abc import Sequence

from cloud.logic.records import RP_1H, RP_1M, Point
from cloud.logic.rollup import HOUR_NS, MINUTE_NS, NO_FLOOR
from urbanpulse.wire import Reading

__all__ = ["HOUR_NS", "MINUTE_NS", "RP_1H", "RP_1M", "WIDTHS", "Horizon", "Point", "quantile",
           "skipped", "window_start"]

WIDTHS: tuple[tuple[str, int], ...] = ((RP_1M, MINUTE_NS), (RP_1H, HOUR_NS))

# A sensor warming up or calibrating reports placeholder values (zeros, for dust and CO2):
# written raw, kept out of the domain aggregates.
NOT_MEASURING = frozenset({"warmup", "calibrating"})


class Horizon:
    """What a domain rollup takes from `horizon_ns` behind its newest stamp (`newest_ns`), and
    a horizon given anew to a rollup resumed from a snapshot (`set_horizon`: the dataflow's
    `flow.aggregate_horizon_s` of this start). Raised, the rollup keeps the floor it had
    (`kept_ns`) until its newest has moved past it: it let go of what lay beyond the old
    horizon, so a reading there taken now would make a window or hour of itself alone and
    overwrite the whole one stored, where it is too late and replayed from the raw points."""

    horizon_ns: int
    newest_ns: int
    kept_ns: int = NO_FLOOR  # (a class default: not in the snapshots of rollups never raised)

    def floor_ns(self) -> int:
        """The oldest stamp the rollup takes: its newest less its horizon, or later."""
        return max(self.newest_ns - self.horizon_ns, self.kept_ns)

    def set_horizon(self, horizon_ns: int) -> None:
        if horizon_ns > self.horizon_ns and self.newest_ns:
            self.kept_ns = max(self.kept_ns, self.newest_ns - self.horizon_ns)
        self.horizon_ns = horizon_ns
        self._evict()  # lowered: what lies beyond it goes now, as it would have gone

    def _evict(self) -> None:
        raise NotImplementedError


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
