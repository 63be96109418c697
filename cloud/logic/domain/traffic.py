"""Traffic per lane (a `traffic.loop` sensor) and per intersection (the node).

Per event-time window (1 minute into agg_1m, 1 hour into agg_1h), from the loop readings
whose `ts` falls in the window (a reading covers the `interval_s` before its `ts`):
- vehicles: the sum of `count`;
- flow_vpm: vehicles per minute of covered time, 60 * sum(count) / sum(interval_s), so a
  missing reading does not read as an empty road (an intersection's flow is the sum of
  its lanes' flows);
- occupancy_pct: time-weighted, sum(occupancy_pct * interval_s) / sum(interval_s) (for
  the intersection over all its lanes' readings, i.e. the mean lane occupancy);
- speed_kmh: vehicle-weighted, sum(speed_kmh * count) / sum(count) over readings that
  carry a speed and saw a vehicle; absent when there is none.

Readings are kept per window keyed by (sensor, ts) and summed with math.fsum, which is
exactly rounded, so the result does not depend on arrival order: a late reading and the
recomputation it triggers give the same point as in-order processing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from cloud.logic.domain.common import WIDTHS, Point, skipped, window_start
from cloud.logic.lines import line
from urbanpulse.wire import Reading

KIND = "traffic.loop"

# count, occupancy_pct * interval_s, interval_s, speed_kmh * count (or None)
Sample = tuple[float, float, float, float | None]


def _sums(samples: Iterable[Sample]) -> dict[str, float]:
    items = list(samples)
    vehicles = math.fsum(s[0] for s in items)
    covered = math.fsum(s[2] for s in items)
    out = {"vehicles": vehicles, "interval_s": covered,
           "flow_vpm": 60.0 * vehicles / covered,
           "occupancy_pct": math.fsum(s[1] for s in items) / covered}
    counted = [s for s in items if s[3] is not None and s[0] > 0]
    if counted:
        out["speed_kmh"] = (math.fsum(s[3] for s in counted if s[3] is not None)
                            / math.fsum(s[0] for s in counted))
    return out


class TrafficRollup:
    """The open windows of one intersection (node). Picklable."""

    def __init__(self, horizon_ns: int) -> None:
        self.horizon_ns = horizon_ns
        self.newest_ns = 0
        self.too_late = 0
        # (rp, width) -> window start -> sensor -> ts -> sample
        self.windows: dict[tuple[str, int], dict[int, dict[str, dict[int, Sample]]]] = {
            w: {} for w in WIDTHS}

    def process(self, site: str, node: str, readings: Iterable[Reading]) -> list[Point]:
        touched: set[tuple[str, int, int]] = set()
        for r in readings:
            if r.kind != KIND or skipped(r):
                continue
            if r.ts_ns < self.newest_ns - self.horizon_ns:
                self.too_late += 1
                continue
            self.newest_ns = max(self.newest_ns, r.ts_ns)
            v = r.values
            count, interval = float(v["count"]), float(v["interval_s"])
            speed = v.get("speed_kmh")
            sample: Sample = (count, float(v["occupancy_pct"]) * interval, interval,
                              None if speed is None else float(speed) * count)
            for (rp, width), windows in self.windows.items():
                start = window_start(r.ts_ns, width)
                windows.setdefault(start, {}).setdefault(r.sensor, {})[r.ts_ns] = sample
                touched.add((rp, width, start))
        out: list[Point] = []
        for rp, width, start in sorted(touched):
            lanes = self.windows[(rp, width)][start]
            flows: list[float] = []
            for sensor in sorted(lanes):
                fields = _sums(lanes[sensor].values())
                flows.append(fields["flow_vpm"])
                out.append((rp, line("traffic_lane", {"site": site, "node": node, "sensor": sensor},
                                     fields, start)))
            total: dict[str, float | int] = dict(
                _sums(s for lane in lanes.values() for s in lane.values()))
            total["flow_vpm"] = math.fsum(flows)
            total["lanes"] = len(lanes)
            out.append((rp, line("traffic_intersection", {"site": site, "node": node}, total, start)))
        self._evict()
        return out

    def _evict(self) -> None:
        for (_rp, width), windows in self.windows.items():
            floor = self.newest_ns - self.horizon_ns - width
            for start in [s for s in windows if s < floor]:
                del windows[start]
