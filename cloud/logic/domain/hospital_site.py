"""Per-hospital (site) totals from the `SiteUpdate`s of the site's nodes.

The dataflow keys this by site. Each update replaces that node's earlier update for the
same window, so a re-emitted (corrected) node window corrects the site window too.

- `hospital_occupancy` (agg_1m, agg_1h): a ward that sent no snapshot for a window has not
  changed since its last one, so the site's window sums each ward's latest snapshot at or
  before the window start. Emitted at every window that holds a ward snapshot. A ward
  whose latest snapshot is `STALE_NS` or more before the window (a ward node switched off,
  decommissioned, or whose pads all fell silent) has every bed stale by the window's end
  (each bed's last reading is older than the limit: `HospitalNodeRollup.ward_at`): it
  counts in `stale` alone, no longer with the state it last sent; and once it is `GONE_NS`
  (a week) or more before, nowhere (a ward closed for good, as a pad removed for good).
- `hospital_flow` (agg_1h): er_arrivals, visits and faulty (door readings with fault = 1:
  the hour is undercounted) summed over the site's door nodes.
- `hospital_wait` (agg_1h): n, median_s, p90_s, mean_s over the waits of all its queues.

Late hospital readings (older than a node's horizon) are left out of the live rollups and
their windows replayed from the raw points for the whole site (cloud.logic.domain_replay).
The replayed ward's live snapshots here stay as they were, so a window the site writes
again later from them (on another ward's update) would overwrite the replay's total: the
site keeps the replayed (scope, hour)s it is told of (`SiteReplayed`) while its live
windows can reach them, and `take_late` gives those such a window touched, to replay again.
A node's update for a window older than what the site still holds of its other nodes (a
backlog drained oldest first, hours behind them) writes no total, which would be that
node's alone: `take_late` gives its hour, to replay site-wide.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable

from cloud.logic.domain.common import HOUR_NS, RP_1H, WIDTHS, Horizon, Point
from cloud.logic.domain.hospital import (
    GONE_NS,
    STALE_NS,
    DoorTotals,
    SiteUpdate,
    WaitSamples,
    WardSnapshot,
    door_faulty,
    occupancy_fields,
    wait_fields,
)
from cloud.logic.domain.late import Late, LateMarks
from cloud.logic.lines import line

Ward = tuple[int, int, int, int, int]  # a ward snapshot's (beds, occupied, available, faulty, stale)


class HospitalSite(Horizon):
    """The state of one site. Picklable."""

    def __init__(self, horizon_ns: int) -> None:
        self.horizon_ns = horizon_ns
        self.newest_ns = 0
        # rp -> node -> window start -> (beds, occupied, available, faulty, stale)
        self.wards: dict[str, dict[str, dict[int, Ward]]] = {
            rp: {} for rp, _ in WIDTHS}
        # hour -> node -> (er, visits, faulty); faulty None: not known (`door_faulty`)
        self.flow: dict[int, dict[str, tuple[float, float, int | None]]] = {}
        self.waits: dict[int, dict[str, tuple[float, ...]]] = {}
        # hour -> the nodes whose waits in it may lack some (`WaitSamples.partial`): each
        # write of the hour asks for its replay from the raw points
        self.partial_waits: dict[int, set[str]] = {}
        self.marks = LateMarks()  # (scope, hour)s replayed for the site
        self.late: list[Late] = []  # marks a window written since the last take_late reached
        # rp -> node -> its snapshot starts, sorted: `wards` in order, so that a message
        # costs a search per ward, not a sort of every window the horizon holds (not pickled)
        self._starts: dict[str, dict[str, list[int]]] = _sorted_starts(self.wards)

    def __getstate__(self) -> dict[str, object]:
        state = self.__dict__.copy()
        del state["_starts"]
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self.__dict__.setdefault("marks", LateMarks())  # a snapshot from before they were kept
        self.__dict__.setdefault("late", [])
        self.__dict__.setdefault("partial_waits", {})
        for rp_wards in self.wards.values():  # from before the stale beds were counted: none
            for snaps in rp_wards.values():
                for start, ward in snaps.items():
                    if len(ward) < 5:
                        snaps[start] = (*ward, 0)
        for nodes in self.flow.values():  # from before the faulty door readings were kept
            for node, totals in nodes.items():
                if len(totals) < 3:
                    nodes[node] = (totals[0], totals[1], None)  # not known: not 0
        self._starts = _sorted_starts(self.wards)

    def process(self, site: str, updates: Iterable[SiteUpdate]) -> list[Point]:
        ward_from: dict[str, int] = {}
        flow_hours: set[int] = set()
        wait_hours: set[int] = set()
        # What the site still holds of every node (`_evict`): a window before it is one whose
        # other nodes' parts were let go, so a total written now would be the updating node's
        # alone (a node whose backlog comes oldest first, hours behind the others): it is
        # not written, and the site-wide replay is asked for instead.
        floor = self.floor_ns()
        for u in updates:
            if isinstance(u, WardSnapshot):
                snaps = self.wards[u.rp].setdefault(u.node, {})
                if u.start_ns not in snaps:
                    keys = self._starts[u.rp].setdefault(u.node, [])
                    if not keys or u.start_ns > keys[-1]:
                        keys.append(u.start_ns)
                    else:
                        bisect.insort(keys, u.start_ns)
                snaps[u.start_ns] = (u.beds, u.occupied, u.available, u.faulty, u.stale)
                ward_from[u.rp] = min(ward_from.get(u.rp, u.start_ns), u.start_ns)
                self.newest_ns = max(self.newest_ns, u.start_ns)
            elif isinstance(u, DoorTotals):
                if u.hour_ns < floor - HOUR_NS:
                    self.late.append(("doors", u.hour_ns))
                    continue
                self.flow.setdefault(u.hour_ns, {})[u.node] = (u.er_arrivals, u.visits, u.faulty)
                flow_hours.add(u.hour_ns)
                self.newest_ns = max(self.newest_ns, u.hour_ns)
            elif isinstance(u, WaitSamples):
                if u.hour_ns < floor - HOUR_NS:
                    self.late.append(("queue", u.hour_ns))
                    continue
                self.waits.setdefault(u.hour_ns, {})[u.node] = u.waits_s
                if u.partial:
                    self.partial_waits.setdefault(u.hour_ns, set()).add(u.node)
                elif self.partial_waits:
                    self.partial_waits.get(u.hour_ns, set()).discard(u.node)
                wait_hours.add(u.hour_ns)
                self.newest_ns = max(self.newest_ns, u.hour_ns)
            else:
                self.marks.add(u.late)
        out: list[Point] = []
        written: list[tuple[str, int, int]] = []  # (scope, start, end) of the windows written
        tags = {"site": site}
        for rp, width in WIDTHS:
            if rp not in ward_from:
                continue
            wards, sorted_starts = self.wards[rp], self._starts[rp]
            since = ward_from[rp]
            starts = sorted({s for keys in sorted_starts.values()
                             for s in keys[bisect.bisect_left(keys, since):]})
            held = bisect.bisect_left(starts, floor - width)
            if held:  # (the ward's snapshots are kept: its state before the held windows)
                self.late += sorted({("beds", s - s % HOUR_NS) for s in starts[:held]})
                del starts[:held]
                if not starts:
                    continue
            ordered = [(sorted_starts[node], snaps) for node, snaps in wards.items()]
            for start in starts:
                n_beds = n_occupied = n_available = n_faulty = n_stale = 0
                silent_before = start - STALE_NS  # a ward's latest snapshot at or before it
                gone_before = start - GONE_NS
                for keys, snaps in ordered:
                    i = bisect.bisect_right(keys, start)
                    if i:
                        at = keys[i - 1]
                        b, o, a, f, st = snaps[at]
                        if at <= gone_before:
                            continue
                        if at > silent_before:
                            n_beds += b
                            n_occupied += o
                            n_available += a
                            n_faulty += f
                            n_stale += st
                        else:  # silent for the limit: every bed stale
                            n_stale += b + st
                out.append((rp, line("hospital_occupancy", tags, occupancy_fields(
                    n_beds, n_occupied, n_available, n_faulty, n_stale), start)))
            if self.marks:
                written.append(("beds", starts[0], starts[-1] + width))
        for hour in sorted(flow_hours):
            nodes = self.flow[hour].values()
            fields: dict[str, float | int] = {"er_arrivals": math.fsum(er for er, _, _ in nodes),
                                              "visits": math.fsum(v for _, v, _ in nodes)}
            faulty = door_faulty(f for _, _, f in nodes)
            if faulty is not None:
                fields["faulty"] = faulty
            out.append((RP_1H, line("hospital_flow", tags, fields, hour)))
        for hour in sorted(wait_hours):
            waits = [w for node_waits in self.waits[hour].values() for w in node_waits]
            out.append((RP_1H, line("hospital_wait", tags, wait_fields(waits), hour)))
            if self.partial_waits.get(hour):
                self.late.append(("queue", hour))
        if self.marks:  # only after late readings: the live path pays nothing otherwise
            if flow_hours:
                written.append(("doors", min(flow_hours), max(flow_hours) + HOUR_NS))
            if wait_hours:
                written.append(("queue", min(wait_hours), max(wait_hours) + HOUR_NS))
            self.late += self.marks.reached(written)
            self.marks.evict({"hospital": self.floor_ns()})
        self._evict()
        return out

    def take_late(self) -> list[Late]:
        """(scope, hour start) to rebuild from the raw points again (site-wide) since the
        last call: replayed hours that a window written since reached."""
        late, self.late = self.late, []
        return sorted(set(late)) if late else late

    def _evict(self) -> None:
        floor = self.floor_ns()
        for rp, width in WIDTHS:
            sorted_starts = self._starts[rp]
            for node, snaps in self.wards[rp].items():
                keys = sorted_starts[node]
                old = bisect.bisect_left(keys, floor - width)
                if old > 1:  # the last one stays: the ward's state since then
                    for s in keys[:old - 1]:
                        del snaps[s]
                    del keys[:old - 1]
        for table in (self.flow, self.waits, self.partial_waits):
            for hour in [h for h in table if h < floor - HOUR_NS]:
                del table[hour]


def _sorted_starts(wards: dict[str, dict[str, dict[int, Ward]]]) -> dict[str, dict[str, list[int]]]:
    return {rp: {node: sorted(snaps) for node, snaps in nodes.items()} for rp, nodes in wards.items()}


def latest_at(snaps: dict[int, Ward], start: int) -> Ward | None:
    """A ward's latest snapshot at or before `start` (what `process` sums per window)."""
    keys = sorted(snaps)
    i = bisect.bisect_right(keys, start)
    return snaps[keys[i - 1]] if i else None
