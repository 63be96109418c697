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
    DoorTotals,
    SiteUpdate,
    WaitSamples,
    WardSnapshot,
    door_faulty,
    occupancy_fields,
    ordered_wait_fields,
)
from cloud.logic.domain.late import Late, LateMarks
from cloud.logic.domain.site_sums import Ward, WindowSums
from cloud.logic.lines import line


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
        # hour -> every wait of `waits[hour]` in one sorted list, kept as nodes replace
        # theirs (not pickled: made again from `waits` when first needed)
        self._merged: dict[int, list[float]] = {}
        self.marks = LateMarks()  # (scope, hour)s replayed for the site
        self.late: list[Late] = []  # marks a window written since the last take_late reached
        # rp -> `wards[rp]` indexed, with the sums of the windows written (not pickled)
        self._sums = _window_sums(self.wards)
        self._evicted_at: int | None = None  # the floor of the last `_evict` (not pickled)

    def __getstate__(self) -> dict[str, object]:
        state = self.__dict__.copy()
        del state["_sums"], state["_evicted_at"], state["_merged"]
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
        self._sums = _window_sums(self.wards)
        self._evicted_at = None
        self._merged = {}

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
                self._sums[u.rp].put(u.node, u.start_ns,
                                     (u.beds, u.occupied, u.available, u.faulty, u.stale))
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
                hour_waits = self.waits.setdefault(u.hour_ns, {})
                merged = self._merged.get(u.hour_ns)
                if merged is not None and not _replace_sorted(merged, hour_waits.get(u.node, ()), u.waits_s):
                    del self._merged[u.hour_ns]  # (made again from `waits` at the write)
                hour_waits[u.node] = u.waits_s
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
            sums = self._sums[rp]
            starts = sums.since(ward_from[rp])
            held = bisect.bisect_left(starts, floor - width)
            if held:  # (the ward's snapshots are kept: its state before the held windows)
                self.late += sorted({("beds", s - s % HOUR_NS) for s in starts[:held]})
                del starts[:held]
                if not starts:
                    continue
            for start in starts:
                out.append((rp, line("hospital_occupancy", tags,
                                     occupancy_fields(*sums.total(start)), start)))
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
            merged = self._merged.get(hour)
            if merged is None:
                merged = self._merged[hour] = sorted(
                    w for node_waits in self.waits[hour].values() for w in node_waits)
            out.append((RP_1H, line("hospital_wait", tags, ordered_wait_fields(merged), hour)))
            if self.partial_waits.get(hour):
                self.late.append(("queue", hour))
        if self.marks:  # only after late readings: the live path pays nothing otherwise
            if flow_hours:
                written.append(("doors", min(flow_hours), max(flow_hours) + HOUR_NS))
            if wait_hours:
                written.append(("queue", min(wait_hours), max(wait_hours) + HOUR_NS))
            self.late += self.marks.reached(written)
            self.marks.evict({"hospital": self.floor_ns()})
        # Only when there is something to let go: the floor moved, or a ward's snapshot came
        # from before it (the rest is let go as its floor passes)
        floor = self.floor_ns()
        if floor != self._evicted_at or any(
                first < floor - width for rp, width in WIDTHS
                if (first := ward_from.get(rp)) is not None):
            self._evict()
        return out

    def take_late(self) -> list[Late]:
        """(scope, hour start) to rebuild from the raw points again (site-wide) since the
        last call: replayed hours that a window written since reached."""
        late, self.late = self.late, []
        return sorted(set(late)) if late else late

    def _evict(self) -> None:
        floor = self._evicted_at = self.floor_ns()
        for rp, width in WIDTHS:
            self._sums[rp].evict(floor - width)
        for table in (self.flow, self.waits, self.partial_waits, self._merged):
            for hour in [h for h in table if h < floor - HOUR_NS]:
                del table[hour]


def _window_sums(wards: dict[str, dict[str, dict[int, Ward]]]) -> dict[str, WindowSums]:
    return {rp: WindowSums(nodes) for rp, nodes in wards.items()}


def _replace_sorted(merged: list[float], old: tuple[float, ...], new: tuple[float, ...]) -> bool:
    """A node's sorted waits `old` replaced by `new` in the sorted `merged`: the values only
    one of them holds removed or inserted (a node's hour gains a wait or two a message; the
    site's hour holds every queue's). False, `merged` then spoilt, when a value to remove is
    not there (no such state is made here; the caller makes the list again)."""
    i = j = 0
    while i < len(old) or j < len(new):
        if j == len(new) or (i < len(old) and old[i] < new[j]):
            at = bisect.bisect_left(merged, old[i])
            if at == len(merged) or merged[at] != old[i]:
                return False
            del merged[at]
            i += 1
        elif i == len(old) or new[j] < old[i]:
            bisect.insort(merged, new[j])
            j += 1
        elif old[i] == new[j]:
            i += 1
            j += 1
        else:  # unordered (NaN): not to be kept this way
            return False
    return True
