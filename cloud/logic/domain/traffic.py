"""Traffic per lane (a `traffic.loop` sensor) and per intersection (the node).

Per event-time window (1 minute into agg_1m, 1 hour into agg_1h), from the loop readings
of the window: a reading covers the `interval_s` before its `ts` and is stamped at the end
of it, so it counts in the window of ts - 1 ns (`cloud.logic.rollup.window_ts`; the minute
[12:00, 12:01) stamped 12:01:00 is in the 12:00 window):
- vehicles: the sum of `count`;
- flow_vpm: vehicles per minute of covered time, 60 * sum(count) / sum(interval_s), so a
  missing reading does not read as an empty road (an intersection's flow is the sum of
  its lanes' flows);
- occupancy_pct: time-weighted, sum(occupancy_pct * interval_s) / sum(interval_s) over
  the readings that carry it (for the intersection over all its lanes' readings, i.e. the
  mean lane occupancy); absent when none does (pulse-output loop cards send no on-time);
- speed_kmh: vehicle-weighted, sum(speed_kmh * count) / sum(count) over readings that
  carry a speed and saw a vehicle; absent when there is none.

Readings are kept per window keyed by (sensor, ts) and summed with math.fsum, which is
exactly rounded, so the result does not depend on arrival order: a late reading and the
recomputation it triggers give the same point as in-order processing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from cloud.logic.domain.common import NOT_MEASURING, WIDTHS, Horizon, Point
from cloud.logic.lines import float_text, float_texts, series_head
from urbanpulse.wire import Reading

KIND = "traffic.loop"

# count, occupancy_pct * interval_s (or None), interval_s, speed_kmh * count (or None)
Sample = tuple[float, float | None, float, float | None]


def _sums(samples: Iterable[Sample]) -> dict[str, float]:
    items = list(samples)
    vehicles = math.fsum(s[0] for s in items)
    covered = math.fsum(s[2] for s in items)
    out = {"vehicles": vehicles, "interval_s": covered, "flow_vpm": 60.0 * vehicles / covered}
    occupied = [s for s in items if s[1] is not None]
    if occupied:
        out["occupancy_pct"] = (math.fsum(s[1] for s in occupied if s[1] is not None)
                                / math.fsum(s[2] for s in occupied))
    counted = [s for s in items if s[3] is not None and s[0] > 0]
    if counted:
        out["speed_kmh"] = (math.fsum(s[3] for s in counted if s[3] is not None)
                            / math.fsum(s[0] for s in counted))
    return out


def _sums_text(items: list[Sample], flow: float | None = None) -> tuple[str, float]:
    """`line`'s fields of `_sums(items)`, and its flow; with `flow` given (an intersection's:
    the sum of its lanes' flows) that flow is written instead. A single sample's sums are
    its own values: fsum([x]) is x + 0.0 (which turns -0.0 into 0.0, as fsum does)."""
    occupancy: float | None
    if len(items) == 1:
        count, occupied, covered, speed = items[0]
        vehicles, covered = count + 0.0, covered + 0.0
        occupancy = None if occupied is None else (occupied + 0.0) / covered
        speed_sums = None if speed is None or not count > 0 else (speed + 0.0, vehicles)
    else:
        vehicles = math.fsum([s[0] for s in items])
        covered = math.fsum([s[2] for s in items])
        with_occupancy = [s for s in items if s[1] is not None]
        occupancy = None if not with_occupancy else (
            math.fsum([s[1] for s in with_occupancy if s[1] is not None])
            / (covered if len(with_occupancy) == len(items)
               else math.fsum([s[2] for s in with_occupancy])))
        counted = [s for s in items if s[3] is not None and s[0] > 0]
        speed_sums = (math.fsum([s[3] for s in counted if s[3] is not None]),
                      math.fsum([s[0] for s in counted])) if counted else None
    lane_flow = 60.0 * vehicles / covered
    written_flow = lane_flow if flow is None else flow
    texts = float_texts()  # each float's repr, cached: a lane's values repeat
    text = (f"vehicles={texts.get(vehicles) or float_text(vehicles)},"
            f"interval_s={texts.get(covered) or float_text(covered)},"
            f"flow_vpm={texts.get(written_flow) or float_text(written_flow)}")
    if occupancy is not None:
        text += f",occupancy_pct={texts.get(occupancy) or float_text(occupancy)}"
    if speed_sums is not None:
        speed = speed_sums[0] / speed_sums[1]
        text += f",speed_kmh={texts.get(speed) or float_text(speed)}"
    return text, lane_flow


class TrafficRollup(Horizon):
    """The open windows of one intersection (node). Picklable."""

    def __init__(self, horizon_ns: int) -> None:
        self.horizon_ns = horizon_ns
        self.newest_ns = 0
        self.too_late = 0
        # (rp, width) -> window start -> sensor -> ts -> sample
        self.windows: dict[tuple[str, int], dict[int, dict[str, dict[int, Sample]]]] = {
            w: {} for w in WIDTHS}

    def process(self, site: str, node: str, readings: Iterable[Reading]) -> list[Point]:
        touched: dict[tuple[str, int], set[int]] = {key: set() for key in self.windows}
        widths = [(key[1], self.windows[key], touched[key]) for key in self.windows]
        horizon_ns, kept = self.horizon_ns, self.kept_ns
        for r in readings:
            if r.kind != KIND or (r.flags and not NOT_MEASURING.isdisjoint(r.flags)):  # skipped(r)
                continue
            ts = r.ts_ns
            if ts < self.newest_ns - horizon_ns or ts < kept:  # before floor_ns()
                self.too_late += 1
                continue
            if ts > self.newest_ns:
                self.newest_ns = ts
            v = r.values
            count, interval = float(v["count"]), float(v["interval_s"])
            speed, occupancy = v.get("speed_kmh"), v.get("occupancy_pct")
            sample: Sample = (count, None if occupancy is None else float(occupancy) * interval,
                              interval, None if speed is None else float(speed) * count)
            sensor = r.sensor
            at = ts - 1  # its interval's last instant: window_ts(KIND, ts)
            for width, windows, starts in widths:
                start = at - at % width
                lanes = windows.get(start)
                if lanes is None:
                    lanes = windows[start] = {}
                lane = lanes.get(sensor)
                if lane is None:
                    lane = lanes[sensor] = {}
                lane[ts] = sample
                starts.add(start)
        out: list[Point] = []
        lane_heads: dict[str, str] = {}
        tags = {"site": site, "node": node}
        total_head = series_head("traffic_intersection", tags)
        for key in sorted(touched):
            rp = key[0]
            windows = self.windows[key]
            for start in sorted(touched[key]):
                lanes = windows[start]
                flows: list[float] = []
                for sensor in sorted(lanes):
                    head = lane_heads.get(sensor)
                    if head is None:
                        head = lane_heads[sensor] = series_head("traffic_lane", tags | {"sensor": sensor})
                    text, flow = _sums_text(list(lanes[sensor].values()))
                    flows.append(flow)
                    out.append((rp, f"{head} {text} {start}"))
                text, _ = _sums_text([s for lane in lanes.values() for s in lane.values()],
                                     math.fsum(flows))
                out.append((rp, f"{total_head} {text},lanes={len(lanes)}i {start}"))
        self._evict()
        return out

    def _evict(self) -> None:
        for (_rp, width), windows in self.windows.items():
            floor = self.newest_ns - self.horizon_ns - width
            for start in [s for s in windows if s < floor]:
                del windows[start]
