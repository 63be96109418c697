"""Readings too late for a node's live domain rollups, and the windows they reach.

A reading older than the horizon is left out of the live rollups and counted in
`too_late`; its raw point is written all the same, and `cloud.logic.domain_replay`
rebuilds the windows it belongs to from the raw points. This module says which windows
those are (per scope: a kind, or the two air kinds, read and rebuilt together), and keeps
the marks that make a replay happen again while the live rollups may still write one of
those windows without the late reading (a reading taken later into the same hour, an air
hour whose NowCast spans a replayed hour): the replay's points must be the last written.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence

from cloud.logic.domain.air import NOWCAST_HOURS
from cloud.logic.domain.common import HOUR_NS, skipped
from cloud.logic.rollup import window_ts
from urbanpulse.wire import Reading

QUEUE_MAX_WAIT_NS = 12 * HOUR_NS  # HospitalNodeRollup's default max_wait_ns, which the flow uses
SCOPE_KINDS: dict[str, tuple[str, ...]] = {
    "traffic": ("traffic.loop",),
    "air": ("air.pm", "air.co2"),
    "beds": ("hospital.bed",),
    "doors": ("hospital.door",),
    "queue": ("hospital.queue",),
}
SCOPE_OF_KIND = {kind: scope for scope, kinds in SCOPE_KINDS.items() for kind in kinds}
FAMILY_OF_SCOPE = {"traffic": "traffic", "air": "air", "beds": "hospital", "doors": "hospital",
                   "queue": "hospital"}
SITE_WIDE = frozenset({"beds", "doors", "queue"})  # the hospital totals sum the site's nodes
# A bed reports at least this often (its heartbeat: the edge's bed_pad heartbeat_s and upfw
# bed_heartbeat_s allow at most 3600 s), so its state lasts at most this long unreported.
BED_HEARTBEAT_MAX_NS = HOUR_NS
# How far a late reading reaches past its own hour: an air mean enters the NowCast of the 11
# hours after it, a bed's state holds every window up to its next reading, an issued ticket
# pairs with a call up to max_wait later.
REACH_NS: dict[str, int] = {"traffic": 0, "air": (NOWCAST_HOURS - 1) * HOUR_NS,
                            "beds": BED_HEARTBEAT_MAX_NS, "doors": 0, "queue": QUEUE_MAX_WAIT_NS}
# How far before its own hour a late reading reaches: a ward's agg_1h row is written for an
# hour without a bed reading between two hours with one (`hospital.hours_with_gaps`), so a
# bed reading in an hour that held none makes the hour before it such a row.
BEFORE_NS: dict[str, int] = {"traffic": 0, "air": 0, "beds": HOUR_NS, "doors": 0, "queue": 0}

Late = tuple[str, int]  # (scope, hour start)


def _hour(ts_ns: int) -> int:
    return ts_ns - ts_ns % HOUR_NS


def span_start(scope: str, hour: int) -> int:
    """The start of the windows a late reading of `scope` in `hour` changes."""
    return hour - BEFORE_NS[scope]


def span_end(scope: str, hour: int) -> int:
    """The end of the windows a late reading of `scope` in `hour` changes."""
    return hour + HOUR_NS + REACH_NS[scope]


def late_of(readings: Iterable[Reading], family: str, floor_ns: int,
            lost: Collection[int] = ()) -> set[Late]:
    """(scope, hour) of the readings of `family` ("traffic", "air", "hospital") stamped
    before `floor_ns` (the rollup's newest minus its horizon), or in one of the `lost`
    hours (held closed in the frozen store, and not found there): the hour whose windows the
    reading belongs to (`window_ts`: a loop or door reading stamped on the hour is the hour
    before's)."""
    out = set()
    for r in readings:
        if r.kind not in SCOPE_OF_KIND or FAMILY_OF_SCOPE[SCOPE_OF_KIND[r.kind]] != family \
                or skipped(r):
            continue
        hour = _hour(window_ts(r.kind, r.ts_ns))
        if r.ts_ns < floor_ns or hour in lost:
            out.add((SCOPE_OF_KIND[r.kind], hour))
    return out


class LateMarks:
    """The (scope, hour)s replayed for a node, kept while its live rollups can still write
    a window they reach. Picklable."""

    def __init__(self) -> None:
        self.ends: dict[Late, int] = {}

    def __bool__(self) -> bool:
        return bool(self.ends)

    def add(self, late: Iterable[Late]) -> None:
        for scope, hour in late:
            self.ends[(scope, hour)] = span_end(scope, hour)

    def touched(self, readings: Sequence[Reading]) -> list[Late]:
        """The marks whose windows these readings (just taken by the live rollups) may have
        written again: a reading writes windows from its own on (that of `window_ts`), so a
        mark is touched by a reading of its scope whose windows begin before the mark's end
        (a loop or door reading stamped on the end itself: its interval is within). A bed
        reading writes from the hour before its own (`BEFORE_NS`): the gap it closes, whose
        row is the beds' state at its end, which a replayed reading may have set."""
        low: dict[str, int] = {}
        for r in readings:
            scope = SCOPE_OF_KIND.get(r.kind)
            if scope is not None:
                at = window_ts(r.kind, r.ts_ns) - BEFORE_NS[scope]
                if scope not in low or at < low[scope]:
                    low[scope] = at
        return sorted(mark for mark, end in self.ends.items()
                      if mark[0] in low and low[mark[0]] < end)

    def reached(self, written: Iterable[tuple[str, int, int]]) -> list[Late]:
        """The marks that windows written within [start, end) of a scope overlap."""
        return sorted({mark for scope, start, end in written for mark, mark_end in self.ends.items()
                       if mark[0] == scope and start < mark_end and mark[1] < end})

    def evict(self, floors: dict[str, int]) -> None:
        """Drop the marks no live reading can reach any more: every reading the rollups of
        a family take is stamped at or after its floor (newest minus horizon), and writes
        no window starting before that floor's hour."""
        for mark in [m for m, end in self.ends.items()
                     if end <= floors[FAMILY_OF_SCOPE[m[0]]] - HOUR_NS]:
            del self.ends[mark]
