"""Domain rollups rebuilt from the raw points InfluxDB holds: the way late data older than
the aggregation horizon gets into the ward, hospital, traffic and air aggregates.

The live rollups (cloud.logic.domain) count such a reading in `too_late` and leave it
out: its windows left memory long ago. Its raw point is written all the same, so the
windows it belongs to can be computed again from every raw point of their site: fresh
`DomainNode`/`HospitalSite` instances are run over the readings read back, in time order,
and only the points of windows starting within [start, end) are kept. Points are stamped
with their window start, so writing them overwrites the stored ones; a replay can run any
number of times (after a crash, twice for one hour) with the same result.

A replay is split by scope, each read on its own, so that a late traffic reading does not
read a hospital's beds:

| scope | kinds | read for | what a window in [start, end) needs from before `start` |
|---|---|---|---|
| traffic | traffic.loop | the node | nothing (a reading counts in the windows of its ts - 1 ns) |
| air | air.pm, air.co2 | the node | the 11 hourly means before: the NowCast spans 12 hours |
| beds | hospital.bed | the site | each bed's last state (its last valid reading before `start`) |
| doors | hospital.door | the site | nothing |
| queue | hospital.queue | the site | issues and calls of the 12 h before (`max_wait`) |

(A call pairs with the latest issue of its ticket before it, within max_wait.) The beds
are read an hour past the span's end too (`LOOKAHEAD_NS`): a ward's agg_1h row of an hour
without a bed reading between two hours with one is written only when the hour after it is
known to hold one, and its last hour may be such an hour.

A loop or door reading is stamped at the end of its interval and counts in the windows of
ts - 1 ns (`cloud.logic.rollup.window_ts`): the span's reads take in the raw points
stamped on its end (raw times up to end + 999 ns) and leave out those whose windows are
before its start, as they take the others by their stamps.

Hospital scopes are read for the whole site: the hospital totals sum its nodes. The
traffic and air scopes are read for one node when a node is named, else for all of the
site's. The rows are filtered here again, so a caller may hand over more than the queries
asked for (the plain tests hand over every raw point).

The doors count by the config's door roles (`flow.door_roles`), as the live rollups do:
the span carries them (`ReplaySpan.door_roles`, given by whoever runs it, no part of a
request's text), so a replay after a role change writes its hours with the new split.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from cloud.logic.domain.air import NOWCAST_HOURS
from cloud.logic.domain.common import HOUR_NS, NOT_MEASURING, Point
from cloud.logic.domain.door_roles import NO_DOOR_ROLES, DoorRoleMap
from cloud.logic.domain.hospital import SiteUpdate
from cloud.logic.domain.hospital_site import HospitalSite
from cloud.logic.domain.late import (
    BED_HEARTBEAT_MAX_NS,
    QUEUE_MAX_WAIT_NS,
    SCOPE_KINDS,
    SCOPE_OF_KIND,
    SITE_WIDE,
    Late,
    span_end,
    span_start,
)
from cloud.logic.domain.node import DomainNode
from cloud.logic.recompute import influx_literal, raw_times, row_values
from cloud.logic.rollup import INTERVAL_KINDS, OUT_OF_WINDOWS, window_ts
from urbanpulse.wire import KINDS, Reading, outside_range

DOMAIN_REPLAY = "__domain_replay__"  # pseudo retention policy of a replay request (the sink's)
# Flags of readings the live domain rollups never take: out of the windows (cloud.logic.node
# leaves them out before the rollups) and not measuring (the rollups skip them).
NOT_TAKEN = OUT_OF_WINDOWS | NOT_MEASURING

LOOKBACK_NS: dict[str, int] = {
    "traffic": 0,
    "air": (NOWCAST_HOURS - 1) * HOUR_NS,
    "beds": 0,  # plus each bed's last state: the last query of `ReplaySpan.queries`
    "doors": 0,
    "queue": QUEUE_MAX_WAIT_NS,
}
# How far past a span's end a replay reads, for windows within it: a ward's agg_1h row of an
# hour without a bed reading is written only when the hour after it holds one
# (`hospital.hours_with_gaps`), so the span's last hour needs the readings of the hour after.
LOOKAHEAD_NS: dict[str, int] = {"traffic": 0, "air": 0, "beds": HOUR_NS, "doors": 0, "queue": 0}
SpanKey = tuple[str, str, str]  # (scope, site, node)
# A bed's last raw points read back to find its last valid state (flagged and out-of-range
# readings do not count): a bed with this many invalid readings in a row before `start`
# is taken as unknown until its next reading.
LAST_STATE_ROWS = 10
# Those points are read in the hours before the span first (a bed reports at least hourly:
# BED_HEARTBEAT_MAX_NS), then further back only for the beds that need it: a query without
# a lower bound opens every shard the raw policy keeps (measured at 30 daily shards and 30
# beds: 33 ms against 2 ms).
LAST_STATE_WINDOW_NS = 2 * BED_HEARTBEAT_MAX_NS
# The fields the contract requires of each kind: a row without one (written by something
# other than this processor) is no reading the rollups can take.
REQUIRED = {kind: frozenset(name for name, f in spec.fields.items() if f.required)
            for kind, spec in KINDS.items()}


@dataclass(frozen=True, slots=True)
class ReplaySpan:
    """The windows of one scope starting within [start_ns, end_ns) (whole hours), of one
    site, or of one node of it (`node`; "" = every node; hospital scopes are site-wide).
    `door_roles`: those the doors count by (the config's `flow.door_roles`); not encoded
    in a request's text, not compared: whoever runs the replay gives them."""

    scope: str
    site: str
    node: str
    start_ns: int
    end_ns: int
    door_roles: DoorRoleMap = field(default=NO_DOOR_ROLES, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.scope not in SCOPE_KINDS:
            raise ValueError(f"scope must be one of {sorted(SCOPE_KINDS)}, got {self.scope!r}")
        if self.start_ns % HOUR_NS or self.end_ns % HOUR_NS or self.end_ns <= self.start_ns:
            raise ValueError(f"a replay spans whole hours, start before end: got "
                             f"[{self.start_ns}, {self.end_ns})")
        if self.scope in SITE_WIDE and self.node:
            raise ValueError(f"scope {self.scope} is site-wide: no node, got {self.node!r}")

    def encode(self) -> str:
        return "|".join((self.scope, self.site, self.node, str(self.start_ns), str(self.end_ns)))

    @property
    def key(self) -> SpanKey:
        """What spans of one replay read: (scope, site, node)."""
        return self.scope, self.site, self.node

    @classmethod
    def decode(cls, text: str) -> ReplaySpan:
        scope, site, node, start, end = text.split("|")
        return cls(scope, site, node, int(start), int(end))

    def chunks(self, hours: int) -> list[ReplaySpan]:
        """This span cut into spans of at most `hours` hours (each read with its own
        lookback, so memory stays bounded whatever the span)."""
        step = hours * HOUR_NS
        return [replace(self, start_ns=s, end_ns=min(s + step, self.end_ns))
                for s in range(self.start_ns, self.end_ns, step)]

    def queries(self) -> list[str]:
        """The InfluxQL statements whose rows `replay` needs."""
        where = f'"site" = {influx_literal(self.site)}'
        if self.node:
            where += f' AND "node" = {influx_literal(self.node)}'
        lo = self.start_ns - LOOKBACK_NS[self.scope]
        hi = self.end_ns + LOOKAHEAD_NS[self.scope]
        out = [f'SELECT * FROM "raw"."{KINDS[kind].measurement}" WHERE {where} '
               f"AND {raw_times(kind in INTERVAL_KINDS, lo, hi)}"
               for kind in SCOPE_KINDS[self.scope]]
        if self.scope == "beds":  # each bed's last points before the span, in the last hours
            out.append(f'SELECT * FROM "raw"."{KINDS["hospital.bed"].measurement}" WHERE {where} '
                       f"AND time >= {self.start_ns - LAST_STATE_WINDOW_NS} AND time < {self.start_ns} "
                       f'GROUP BY "node", "sensor" ORDER BY time DESC LIMIT {LAST_STATE_ROWS}')
        return out

    def beds_query(self) -> str:
        """The site's bed series (InfluxDB's index, no point read): every bed that may have
        a state from before the last-state window. The time condition is what confines
        InfluxDB 1.x to the raw policy's shards (those holding time before the window):
        without one it lists the series of every policy, a bed gone for years included."""
        return (f'SHOW SERIES FROM "raw"."{KINDS["hospital.bed"].measurement}" '
                f'WHERE "site" = {influx_literal(self.site)} '
                f"AND time < {self.start_ns - LAST_STATE_WINDOW_NS}")

    def older_states_query(self, beds: Iterable[tuple[str, str]]) -> str | None:
        """The last points before the last-state window of `beds` ((node, sensor)): those
        whose state the window did not give (a bed silent for hours, or only invalid
        readings); None if there are none."""
        which = " OR ".join(f'("node" = {influx_literal(n)} AND "sensor" = {influx_literal(b)})'
                            for n, b in sorted(beds))
        if not which:
            return None
        return (f'SELECT * FROM "raw"."{KINDS["hospital.bed"].measurement}" WHERE '
                f'"site" = {influx_literal(self.site)} AND ({which}) '
                f"AND time < {self.start_ns - LAST_STATE_WINDOW_NS} "
                f'GROUP BY "node", "sensor" ORDER BY time DESC LIMIT {LAST_STATE_ROWS}')


def coalesce(spans: Iterable[ReplaySpan]) -> list[ReplaySpan]:
    """Overlapping or adjacent spans of one scope, site and node merged into one."""
    by_key: dict[tuple[str, str, str], list[tuple[int, int]]] = defaultdict(list)
    for s in spans:
        by_key[(s.scope, s.site, s.node)].append((s.start_ns, s.end_ns))
    out: list[ReplaySpan] = []
    for (scope, site, node), ranges in sorted(by_key.items()):
        ranges.sort()
        lo, hi = ranges[0]
        for start, end in ranges[1:]:
            if start > hi:
                out.append(ReplaySpan(scope, site, node, lo, hi))
                lo = start
            hi = max(hi, end)
        out.append(ReplaySpan(scope, site, node, lo, hi))
    return out


def late_spans(site: str, node: str, late: Iterable[Late]) -> list[ReplaySpan]:
    """What to replay for late readings of a node, given as (scope, hour): each hour and
    the hours its readings reach into (cloud.logic.domain.late.BEFORE_NS and REACH_NS),
    coalesced."""
    return coalesce(ReplaySpan(scope, site, "" if scope in SITE_WIDE else node,
                               span_start(scope, hour), span_end(scope, hour))
                    for scope, hour in late)


def reading_of(row: Mapping[str, Any]) -> Reading | None:
    """The reading a raw point was written from (as `InfluxHTTP.query_points` gives it,
    epoch ns), or None if it never entered the domain rollups: flagged out of the windows
    (warming up, clock not synchronised) or calibrating (a placeholder value, which the
    rollups skip: a bed's last state before a span is its last reading they took), outside
    the contract's range, or without a field its kind requires.

    The raw point's time is the reading's ts (microseconds on the wire) plus its sequence
    number mod 1000 in ns (`cloud.logic.node.raw_time`): the ts is the time rounded down
    to the microsecond."""
    kind = row.get("kind")
    if not isinstance(kind, str) or kind not in SCOPE_OF_KIND:
        return None
    flags_text = row.get("flags")
    flags = tuple(str(flags_text).split(",")) if flags_text else ()
    if flags and not NOT_TAKEN.isdisjoint(flags):
        return None
    values = row_values(row)
    if not values or outside_range(kind, values) is not None or not REQUIRED[kind] <= values.keys():
        return None
    time = int(str(row["time"]))
    seq = row.get("seq")
    return Reading(str(row.get("sensor", "")), kind, time - time % 1000,
                   int(seq) if isinstance(seq, int | float) else 0, values, flags)


def replay(span: ReplaySpan, rows: Iterable[Mapping[str, Any]]) -> list[Point]:
    """The domain points of `span`'s windows, computed from the raw rows of its site."""
    kept = ReplayInput(span)
    for row in rows:
        kept.take(row)
    return kept.points()


class ReplayInput:
    """The readings a replay of `span` runs over, taken from raw rows one at a time (so a
    reader need not hold a whole answer's rows: only the readings that count stay). Taking
    a row again (a read retried) changes nothing."""

    def __init__(self, span: ReplaySpan) -> None:
        self.span = span
        self._kinds = SCOPE_KINDS[span.scope]
        self._lo = span.start_ns - LOOKBACK_NS[span.scope]
        self._hi = span.end_ns + LOOKAHEAD_NS[span.scope]
        self._by_node: dict[str, dict[tuple[str, int], Reading]] = defaultdict(dict)
        self._last_state: dict[tuple[str, str], tuple[int, Reading]] = {}  # beds: newest before
        self._before: dict[tuple[str, str], set[int]] = defaultdict(set)  # beds: raw times before

    def take(self, row: Mapping[str, Any]) -> None:
        span = self.span
        if row.get("site") != span.site or (span.node and row.get("node") != span.node):
            return
        time = int(str(row["time"]))
        if span.scope == "beds" and time < span.start_ns and row.get("kind") == "hospital.bed":
            self._before[(str(row.get("node", "")), str(row.get("sensor", "")))].add(time)
        r = reading_of(row)
        if r is None or r.kind not in self._kinds:
            return
        node = str(row.get("node", ""))
        if self._lo <= window_ts(r.kind, r.ts_ns) < self._hi:
            self._by_node[node][(r.sensor, time)] = r
        elif span.scope == "beds" and r.ts_ns < span.start_ns:
            key = (node, r.sensor)
            last = self._last_state.get(key)
            if last is None or _taken_before(last[1], r):
                self._last_state[key] = (time, r)

    def beds_without_state(self, series: Iterable[Mapping[str, Any]]) -> list[tuple[str, str]]:
        """Of the site's beds (`SHOW SERIES` rows), those whose last state the last-state
        window did not give: no valid reading among fewer than LAST_STATE_ROWS points."""
        out = []
        for row in series:
            tags = series_tags(str(row.get("key", "")))
            bed = (tags.get("node", ""), tags.get("sensor", ""))
            if (tags.get("site") == self.span.site and bed not in self._last_state
                    and len(self._before.get(bed, ())) < LAST_STATE_ROWS):
                out.append(bed)
        return out

    def take_older(self, row: Mapping[str, Any]) -> None:
        """A row of `ReplaySpan.older_states_query` (each bed's newest first): taken while
        its bed has fewer than LAST_STATE_ROWS points before the span, as one query of its
        last LAST_STATE_ROWS points would have given them."""
        bed = (str(row.get("node", "")), str(row.get("sensor", "")))
        seen = self._before[bed]
        if int(str(row["time"])) in seen or len(seen) < LAST_STATE_ROWS:
            self.take(row)

    def points(self) -> list[Point]:
        by_node = {node: dict(rs) for node, rs in self._by_node.items()}
        for (node, sensor), (time, r) in self._last_state.items():
            by_node.setdefault(node, {})[(sensor, time)] = r
        # In the order the live rollups took them: by stamp, then by number (the raw time,
        # stamp plus number mod 1000, orders 1000 before 999 of one stamp).
        return replay_readings(self.span.site, {node: sorted(rs.values(), key=lambda r: (r.ts_ns, r.seq))
                                                for node, rs in by_node.items()},
                               self.span.start_ns, self.span.end_ns, self.span.door_roles)


def series_tags(key: str) -> dict[str, str]:
    """The tags of a series key as `SHOW SERIES` gives it (measurement,tag=value,...; a
    backslash escapes a comma, an equals sign or a space)."""
    parts: list[str] = []
    current: list[str] = []
    chars = iter(key)
    for c in chars:
        if c == "\\":
            current.append(next(chars, ""))
        elif c == ",":
            parts.append("".join(current))
            current = []
        else:
            current.append(c)
    parts.append("".join(current))
    tags = {}
    for part in parts[1:]:
        name, _, value = part.partition("=")
        tags[name] = value
    return tags


def _taken_before(a: Reading, b: Reading) -> bool:
    return (a.ts_ns, a.seq) < (b.ts_ns, b.seq)


def replay_readings(site: str, readings: Mapping[str, list[Reading]], start_ns: int, end_ns: int,
                    door_roles: DoorRoleMap = NO_DOOR_ROLES) -> list[Point]:
    """Fresh rollups run over each node's readings (in time order, in one call: nothing is
    too late, nothing evicted before the end), the site's totals over all their updates;
    the points of windows starting within [start_ns, end_ns). The doors count by
    `door_roles`, as the live rollups do."""
    if not readings:
        return []
    oldest = min((r.ts_ns for rs in readings.values() for r in rs), default=start_ns)
    horizon_ns = max(end_ns, start_ns) - min(oldest, start_ns) + HOUR_NS
    points: list[Point] = []
    updates = []
    for node in sorted(readings):
        p, u = DomainNode(horizon_ns, door_roles.node(site, node)).process(site, node, readings[node])
        points += p
        updates += u
    if updates:
        points += HospitalSite(horizon_ns).process(site, updates)
    return [(rp, text) for rp, text in points if start_ns <= int(text.rsplit(" ", 1)[1]) < end_ns]


def site_step(state: HospitalSite, site: str, updates: Iterable[SiteUpdate]) -> list[Point]:
    """The dataflow's site step: `HospitalSite.process`, and the replay requests for the
    site-wide spans its windows reached again (after the points that reach them)."""
    points = state.process(site, updates)
    late = state.take_late()
    if late:
        points += replay_requests(site, "", late)
    return points


def replay_requests(site: str, node: str, late: Iterable[Late]) -> list[Point]:
    """The requests (points of the DOMAIN_REPLAY pseudo retention policy, for the sink) for
    what `DomainNode.take_late` hands over."""
    return [(DOMAIN_REPLAY, span.encode()) for span in late_spans(site, node, late)]
