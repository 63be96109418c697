"""Hospital rollups of one node (a ward, an entrance, a queue system), event time.

Beds (`hospital.bed`, one sensor per bed; the node is the ward): the state of a bed in a
window is its last reading before the window ends (last state by event time wins).
`ward_occupancy` (agg_1m and agg_1h, at each window that holds a bed reading, and at an
hour holding none between two that do: `hours_with_gaps`): beds (the beds counted:
occupied + available + faulty), occupied, available, faulty (fault = 1: cut cable, state
unknown), stale (beds whose last reading is older than `STALE_NS` at the window's end: a
pad removed or lost, counted in none of the others; one older than `GONE_NS`, a week, is
counted nowhere, not even stale: a pad taken out for good) and
occupancy_pct = occupied / (occupied + available) * 100. A late reading changes every
window from its own to the bed's next reading, so all windows from it on are re-emitted.

Doors (`hospital.door`): `count` people over the `interval_s` before `ts`, attributed to
the hour of the interval's last instant, ts - 1 ns (`cloud.logic.rollup.window_ts`: a
door's hour [09:00, 10:00) stamped 10:00:00 is the 09:00 hour). A door's role comes from
`DoorRoles`: an explicit sensor -> role map (the node's part of the cloud config's
`flow.door_roles`, `DoorRoleMap`), else sensor ids starting with an ER prefix ("er-") or with
the word "er" (`ER_WORDS`: `door-er`) are ER doors, the others visit doors; `ignore` doors
(a staff entrance) count nowhere.
`door_flow` (agg_1h): er_arrivals, visits, and faulty: the readings of ER and visit doors
with fault = 1 in the hour (a cut beam cable: such a reading's count means nothing, so an
hour with faulty > 0 is undercounted). Always written, 0 too (a rewrite keeps no field),
but for an hour holding readings that a processor from before the faults were kept took
(resumed from its snapshot: their faults are not known) and none faulty since: left out,
unknown, as on the hours that processor wrote (`door_faulty`). An hour's totals are kept as
its readings come (the exact partials of its counts, whose math.fsum is that of the counts:
`_DoorSums`, not pickled), so a door message does not sum its hour again.

Queue kiosks (`hospital.queue`): an issue (called = 0) of ticket N at t1 is paired with
the first call (called = 1) of N by the same sensor at t2 >= t1, before N's next issue and
within `max_wait_ns`; wait = t2 - t1, attributed to the hour of t2. Each kiosk sensor is
its own numbering (two kiosks of one hall both hand out ticket 1). Tickets restart daily: a
number issued again the next day starts a new pair, and an unanswered issue expires
after max_wait. `queue_wait` (agg_1h): n, median_s, p90_s, mean_s.

The per-hospital (site) totals need all of the site's nodes: `process` also returns
`SiteUpdate`s for `HospitalSite` (cloud.logic.domain.hospital_site), keyed by site.
"""

from __future__ import annotations

import bisect
import heapq
import math
from array import array
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cloud.frozen_store import FrozenRefs, note_lost
from cloud.logic.domain import hour_archive
from cloud.logic.domain.common import (
    HOUR_NS,
    NOT_MEASURING,
    RP_1H,
    WIDTHS,
    Horizon,
    Point,
    quantile,
    window_start,
)
from cloud.logic.domain.door_roles import DoorRoles
from cloud.logic.domain.late import BED_HEARTBEAT_MAX_NS, Late
from cloud.logic.lines import line, series_head
from cloud.logic.rollup import add_to_partials
from urbanpulse.wire import Reading

if TYPE_CHECKING:
    from cloud.frozen_store import FrozenStore

# A bed whose last reading is older than this at a window's end is `stale`: no bed the ward
# can count (a pad taken out, renamed, or lost by its node without a fault). A pad sends its
# state at least every heartbeat (at most 3600 s), a little after it is due; two heartbeats
# let one go missing (a node's agent restarting, a driver reopened) and the margin covers
# the timers' lateness. Fixed, not a setting: the live rollups, the replays from the raw
# points and `cloud recompute` must all count by the same rule.
STALE_NS = 2 * BED_HEARTBEAT_MAX_NS + 10 * 60 * 10**9
# A bed whose last reading is older than this at a window's end is gone: counted nowhere,
# not even stale. Without it a pad removed for good counted stale (and "Bed pads stale"
# fired) for as long as the processor ran, with no way to say it was removed; a week is
# long enough for the alert to have been seen and the pad found. Fixed, as STALE_NS.
GONE_NS = 7 * 24 * 3600 * 10**9
# a bed's state at a window's end, in `HospitalNodeRollup.wards_at`
_AVAILABLE, _OCCUPIED, _FAULTY, _STALE, _GONE = 0, 1, 2, 3, 4


# a bed reading's flags (`BedReadings.flags`): occupied, fault
_OCC, _FAULT = 1, 2
# flags -> the reading's state: _FAULTY, _OCCUPIED or _AVAILABLE
_STATE_OF = (_AVAILABLE, _OCCUPIED, _FAULTY, _FAULTY)

# HospitalNodeRollup's indexes derived from its beds, tickets and doors (`_build_indexes`):
# not in its snapshots
_DERIVED = ("_tails", "_tail_counts", "_seconds", "_queue_swept", "_waits", "_door_sums",
            "_recent")
# the pickled layout of the queue before the tickets were held in columns (`Stamps`)
_OLD_QUEUE = ("issues", "calls", "call_hours")
BedEntry = tuple[int, int, int, int]  # a bed reading as the tables held it: (ts, occupied, fault, seq)
# the dicts by hour whose closed hours are rows of the frozen store, and their archives
_ARCHIVE_OF = {"doors": "_door_hours", "called_in": "_call_hours"}
_WHAT = {"doors": "door hours", "called_in": "kiosk calls by hour"}
# hours whose waits per ticket `HospitalNodeRollup._waits` keeps: the last written (the hour
# live calls enter, the one before, and a few a late reading writes again)
WAITS_KEPT = 2

@dataclass(frozen=True, slots=True)
class WardSnapshot:
    site: str
    node: str
    rp: str
    start_ns: int
    beds: int
    occupied: int
    available: int
    faulty: int
    stale: int = 0


@dataclass(frozen=True, slots=True)
class DoorTotals:
    site: str
    node: str
    hour_ns: int
    er_arrivals: float
    visits: float
    # readings with fault = 1 (of ER and visit doors) in the hour; None: not known (the hour
    # holds readings taken before the faults were kept, and none taken since was faulty)
    faulty: int | None = 0


@dataclass(frozen=True, slots=True)
class WaitSamples:
    site: str
    node: str
    hour_ns: int
    waits_s: tuple[float, ...]  # sorted
    # the node's state may lack issues its calls answer (resumed from a snapshot of a
    # processor that let them go sooner: `HospitalNodeRollup.queue_kept_from`): the site
    # asks for the hour's replay from the raw points whenever it writes it
    partial: bool = False


@dataclass(frozen=True, slots=True)
class SiteReplayed:
    """(scope, hour)s of a node's hospital readings too late for its live rollups, so
    replayed from the raw points for the whole site: the site step keeps them, and asks
    for the replay again when it writes a hospital window they reach from its live state
    (another ward's update after the replay would otherwise be the last written)."""

    site: str
    node: str
    late: tuple[Late, ...]


SiteUpdate = WardSnapshot | DoorTotals | WaitSamples | SiteReplayed


def occupancy_fields(beds: int, occupied: int, available: int, faulty: int, stale: int
                     ) -> dict[str, float | int | str | bool]:
    fields: dict[str, float | int | str | bool] = {
        "beds": beds, "occupied": occupied, "available": available, "faulty": faulty,
        "stale": stale}
    if occupied + available:
        fields["occupancy_pct"] = 100.0 * occupied / (occupied + available)
    return fields


def wait_fields(waits: list[float]) -> dict[str, float | int | str | bool]:
    return ordered_wait_fields(sorted(waits))


def ordered_wait_fields(ordered: list[float]) -> dict[str, float | int | str | bool]:
    """`wait_fields` of waits already sorted."""
    fields: dict[str, float | int | str | bool] = {"n": len(ordered)}
    if ordered:
        fields.update(median_s=quantile(ordered, 0.5), p90_s=quantile(ordered, 0.9),
                      mean_s=math.fsum(ordered) / len(ordered))
    return fields


def door_faulty(faults: Iterable[int | None]) -> int | None:
    """An hour's `faulty` from its door readings' faults (None: not known, a reading taken
    by a processor from before the faults were kept, resumed from its snapshot): their sum,
    the least there were when some are not known; None when none known is faulty and some
    are not known, so that the point leaves `faulty` out (unknown, as on the hours that
    processor wrote) rather than say that no reading of the hour was faulty."""
    total, unknown = 0, False
    for fault in faults:
        if fault is None:
            unknown = True
        else:
            total += fault
    return None if unknown and not total else total


_SAFE = 1e300  # door counts summed into partials: no partial sum can overflow
DoorEntry = tuple[str, float, int | None]  # (role, count, fault) of a door reading


class _DoorSums:
    """An hour's `door_flow` totals, kept as its door readings come (`HospitalNodeRollup`,
    not pickled): the exact partials of its ER and visit counts (`add_to_partials`: math.fsum
    of them is that of the counts), the faults of its ER and visit readings and how many are
    not known (`door_faulty`). `exact` is False once a count was not safely summed so
    (infinite, nan, huge, -0.0, whose zero sum fsum may sign otherwise) or a fault not an
    int: the totals are then taken from the readings (`totals`)."""

    __slots__ = ("er", "exact", "faulty", "unknown", "visits")

    def __init__(self, entries: Iterable[DoorEntry]) -> None:
        self.er: list[float] = []
        self.visits: list[float] = []
        self.faulty = self.unknown = 0
        self.exact = True
        for entry in entries:
            self.add(entry, 1)

    def add(self, entry: DoorEntry, sign: int) -> None:
        """Adds a reading's entry (sign 1), or takes one added before away (sign -1)."""
        role, count, fault = entry
        if role == "ignore" or not self.exact:
            return
        if fault is None:
            self.unknown += sign
        elif type(fault) is int:
            self.faulty += sign * fault
        else:
            self.exact = False
        if not -_SAFE < count < _SAFE or (count == 0 and math.copysign(1.0, count) < 0):
            self.exact = False
        elif role == "er":
            add_to_partials(self.er, count if sign > 0 else -count)
        elif role == "visit":
            add_to_partials(self.visits, count if sign > 0 else -count)

    def totals(self, entries: Iterable[DoorEntry]) -> tuple[float, float, int | None]:
        """(er_arrivals, visits, faulty) of the hour, whose readings' entries are `entries`."""
        if not self.exact:
            entries = list(entries)
            return (math.fsum(c for role, c, _ in entries if role == "er"),
                    math.fsum(c for role, c, _ in entries if role == "visit"),
                    door_faulty([fault for role, _, fault in entries if role != "ignore"]))
        faulty = None if self.unknown and not self.faulty else self.faulty
        return math.fsum(self.er), math.fsum(self.visits), faulty


Ticket = tuple[str, int]  # (kiosk sensor, ticket number)
_LOW, _HIGH = -2**63, 2**63 - 1  # what an array('q') holds


class Stamps:
    """One kiosk sensor's issues (or calls): its (ticket number, stamp) pairs, sorted and
    unique, in two arrays of the same length (a pair costs 16 bytes, not a tuple key, a
    list and a boxed stamp: ~500 bytes a ticket in dicts). A ticket's stamps are the run of
    its number (`span`). Numbers or stamps an int64 cannot hold turn the arrays into lists
    (same order, same searches)."""

    __slots__ = ("numbers", "stamps")

    def __init__(self) -> None:
        self.numbers: array[int] | list[int] = array("q")
        self.stamps: array[int] | list[int] = array("q")

    def __getstate__(self) -> tuple[array[int] | list[int], array[int] | list[int]]:
        return self.numbers, self.stamps

    def __setstate__(self, state: tuple[array[int] | list[int], array[int] | list[int]]) -> None:
        self.numbers, self.stamps = state

    def span(self, number: int) -> tuple[int, int]:
        """[lo, hi): the indexes of the ticket's stamps."""
        numbers = self.numbers
        lo = bisect.bisect_left(numbers, number)
        return lo, bisect.bisect_right(numbers, number, lo)

    def add(self, number: int, ts: int) -> tuple[int, int]:
        """The pair in unless it is there: (its index, the end of its ticket's span)."""
        lo, hi = self.span(number)
        stamps = self.stamps
        i = bisect.bisect_left(stamps, ts, lo, hi)
        if i == hi or stamps[i] != ts:
            if not (_LOW <= number <= _HIGH and _LOW <= ts <= _HIGH) and type(stamps) is array:
                stamps = list(stamps)
                self.numbers, self.stamps = list(self.numbers), stamps
            self.numbers.insert(i, number)
            stamps.insert(i, ts)
            hi += 1
        return i, hi

    def before(self, floor: int) -> list[int]:
        """The numbers holding a stamp before `floor`, in order, each once."""
        out: list[int] = []
        for number, ts in zip(self.numbers, self.stamps, strict=True):
            if ts < floor and (not out or out[-1] != number):
                out.append(number)
        return out

    def since(self, floor: int) -> Stamps:
        """A new column of the pairs stamped from `floor` on."""
        keep = [i for i, ts in enumerate(self.stamps) if ts >= floor]
        numbers, stamps = [self.numbers[i] for i in keep], [self.stamps[i] for i in keep]
        out = Stamps()
        if type(self.stamps) is array:
            out.numbers, out.stamps = array("q", numbers), array("q", stamps)
        else:
            out.numbers, out.stamps = numbers, stamps
        return out

    def drop_before(self, floor: int) -> None:
        kept = self.since(floor)
        self.numbers, self.stamps = kept.numbers, kept.stamps

    def tickets(self, sensor: str) -> dict[Ticket, list[int]]:
        out: dict[Ticket, list[int]] = {}
        for number, ts in zip(self.numbers, self.stamps, strict=True):
            out.setdefault((sensor, number), []).append(ts)
        return out


class BedReadings:
    """One bed's readings, sorted by stamp, one per stamp, in columns of the same length:
    stamps and seqs in int64 arrays, each reading's occupied and fault as one byte of
    `flags` (`_OCC | _FAULT`): 17 bytes a reading, where a tuple (ts, occupied, fault, seq)
    cost ~150 in memory, and pickled as the arrays' bytes. Stamps or seqs an int64 cannot
    hold turn both into lists (same order, same searches)."""

    __slots__ = ("flags", "seqs", "stamps")

    def __init__(self) -> None:
        self.stamps: array[int] | list[int] = array("q")
        self.seqs: array[int] | list[int] = array("q")
        self.flags = bytearray()

    def __getstate__(self) -> tuple[array[int] | list[int], array[int] | list[int], bytearray]:
        return self.stamps, self.seqs, self.flags

    def __setstate__(self, state: tuple[array[int] | list[int], array[int] | list[int],
                                        bytearray]) -> None:
        self.stamps, self.seqs, self.flags = state

    def columns(self, cut: int = 0) -> hour_archive.Columns:
        """Its readings from index `cut` on as a node's snapshot holds them: the columns'
        bytes (lists where an int64 cannot hold them), which pickle as they are, where the
        arrays took a reduce each (30 beds' arrays: most of a ward's hospital pickling)."""
        stamps, seqs, flags = self.stamps, self.seqs, self.flags
        if cut:
            stamps, seqs, flags = stamps[cut:], seqs[cut:], flags[cut:]
        if type(stamps) is array and type(seqs) is array:
            return stamps.tobytes(), seqs.tobytes(), bytes(flags)
        return list(stamps), list(seqs), bytes(flags)

    @classmethod
    def from_columns(cls, columns: hour_archive.Columns) -> BedReadings:
        stamps, seqs, flags = columns
        bed = cls()
        if type(stamps) is bytes:
            bed.stamps, bed.seqs = array("q", stamps), array("q", seqs)
        else:
            bed.stamps, bed.seqs = stamps, seqs
        bed.flags = bytearray(flags)
        return bed

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BedReadings) and self.entries() == other.entries()

    __hash__ = None  # type: ignore[assignment]  # (mutable)

    @classmethod
    def from_entries(cls, history: Iterable[tuple[int, ...]]) -> BedReadings:
        """From a bed's readings as the tables held them: (ts, occupied, fault, seq), sorted
        by ts; (ts, occupied, fault) before the seq was kept: number unknown (-1), so that a
        reading stamped alike replaces it, as it did then."""
        bed = cls()
        for e in history:
            bed.insert(len(bed.stamps), e[0], bed_flags(e[1], e[2]), e[3] if len(e) > 3 else -1)
        return bed

    def entries(self) -> list[BedEntry]:
        return [(ts, f & _OCC, f >> 1, seq)
                for ts, f, seq in zip(self.stamps, self.flags, self.seqs, strict=True)]

    def _fits(self, ts: int, seq: int) -> None:
        if not (_LOW <= ts <= _HIGH and _LOW <= seq <= _HIGH) and type(self.stamps) is array:
            self.stamps, self.seqs = list(self.stamps), list(self.seqs)

    def insert(self, i: int, ts: int, flags: int, seq: int) -> None:
        self._fits(ts, seq)
        self.stamps.insert(i, ts)
        self.seqs.insert(i, seq)
        self.flags.insert(i, flags)

    def replace(self, i: int, flags: int, seq: int) -> None:
        """The reading at `i` replaced by one stamped alike."""
        self._fits(0, seq)
        self.seqs[i] = seq
        self.flags[i] = flags

    def drop_first(self, n: int) -> None:
        del self.stamps[:n], self.seqs[:n], self.flags[:n]


def bed_flags(occupied: int, fault: int) -> int:
    """A bed reading's `BedReadings.flags`."""
    return (_OCC if occupied else 0) | (_FAULT if fault else 0)


def add_number(numbers: array[int] | list[int], number: int) -> array[int] | list[int]:
    """`number` into the sorted unique `numbers` (an array, a list past int64); the sequence."""
    i = bisect.bisect_left(numbers, number)
    if i == len(numbers) or numbers[i] != number:
        if not _LOW <= number <= _HIGH and type(numbers) is array:
            numbers = list(numbers)
        numbers.insert(i, number)
    return numbers


class HospitalNodeRollup(FrozenRefs, Horizon):
    """Beds, doors and queue of one node. Picklable. With a frozen store (`use_store`), its
    beds' readings of closed hours are rows of the store (cloud/logic/domain/hour_archive.py)."""

    def __init__(self, horizon_ns: int, roles: DoorRoles | None = None,
                 max_wait_ns: int = 12 * HOUR_NS) -> None:
        self.horizon_ns = horizon_ns
        self.roles = roles or DoorRoles()
        self.max_wait_ns = max_wait_ns
        self.newest_ns = 0
        self.too_late = 0
        # beds: sensor -> its readings (`BedReadings`), one per stamp: of two readings stamped
        # alike, the one numbered later (as a replay, which takes them by stamp then number),
        # whatever their order of arrival (`beds` gives them as tables of tuples)
        self.bed_readings: dict[str, BedReadings] = {}
        # rp -> the starts of the windows holding bed readings, sorted
        self.bed_windows: dict[str, list[int]] = {rp: [] for rp, _ in WIDTHS}
        # doors: hour -> (sensor, ts, seq) -> (role, count, fault); two counts of one stamp are
        # two (snapshots from before the seq was kept hold (sensor, ts) keys); fault None: not
        # known (taken by a processor from before the faults were kept, `door_faulty`)
        self.doors: dict[int, dict[tuple[str, int] | tuple[str, int, int],
                                   tuple[str, float, int | None]]] = {}
        # queue: kiosk sensor -> its issues / calls (`Stamps`); hour -> kiosk sensor -> the
        # numbers of its tickets called in the hour, sorted (`issues`, `calls` and
        # `call_hours` give them as tables of tickets)
        self.issued: dict[str, Stamps] = {}
        self.called: dict[str, Stamps] = {}
        self.called_in: dict[int, dict[str, array[int] | list[int]]] = {}
        # issues before this stamp may have been let go (None: none the hours within the
        # horizon need): a snapshot of a processor from before 9199e63 let them go from the
        # floor minus max_wait, not from the floor's hour, so the floor's hour, rewritten by a
        # reading taken late, would lack the waits of its calls answering them
        self.queue_kept_from: int | None = None
        # The beds' readings of closed hours are rows of the frozen store (hour_archive.py),
        # and so are the closed hours of `doors` and of `called_in` (each an hour's entries,
        # pickled); whether rows are due at the next record (found at a snapshot)
        self._bed_hours = hour_archive.HourRows()
        self._door_hours = hour_archive.HourRows()
        self._call_hours = hour_archive.HourRows()
        # and so are the kiosks' issues and calls of closed hours (`issued`, `called`: a
        # snapshot holds those stamped from `_ticket_hours.to` on)
        self._ticket_hours = hour_archive.HourRows()
        self._rows_due = False
        # Resumed from a snapshot holding the beds' readings since `_bed_hours.to` only: each
        # bed's first stamp, until the rows are read back (`use_store`); else None
        self._beds_first: list[int] | None = None
        self.store: FrozenStore | None = None  # not pickled: `use_store`
        self.gone: array[int] | None = None
        self._build_indexes()

    def _build_indexes(self) -> None:
        """What `ward_at` and `_evict` keep up to date as the beds change, so that a message
        costs a few searches, not a walk over every bed (derived from `beds`, not pickled):
        each bed's last reading, (ts, sensor) sorted, and the counts of their states (a
        ward's state at a window's end after every bed's last reading); the beds whose second
        reading may lie before the floor, a heap of (its ts, sensor), one at least per bed
        holding two or more (its others out of date, dropped when they come up); the queue
        floor the tickets' stamps were last let go from (`_evict`)."""
        self._tails: list[tuple[int, str]] = []
        self._tail_counts = [0, 0, 0]  # by state: _AVAILABLE, _OCCUPIED, _FAULTY
        self._seconds: list[tuple[int, str]] = []
        for sensor, bed in self.bed_readings.items():
            stamps = bed.stamps
            if stamps:
                self._tails.append((stamps[-1], sensor))
                self._tail_counts[_STATE_OF[bed.flags[-1]]] += 1
            if len(stamps) > 1:
                self._seconds.append((stamps[1], sensor))
        self._tails.sort()
        heapq.heapify(self._seconds)
        self._queue_swept: int | None = None
        # hour -> (kiosk sensor -> ticket number -> its waits in that hour: one a float, else
        # a tuple; the (sensor, number)s to pair again: forgotten or newly called), of the
        # `WAITS_KEPT` hours written last (in that order), for `waits`: a ticket's waits
        # depend on its own issues and calls only, so a reading or an eviction drops its
        # ticket's alone
        self._waits: dict[int, tuple[dict[str, dict[int, float | tuple[float, ...]]],
                                     set[tuple[str, int]]]] = {}
        # hour -> its door totals (`_DoorSums`), made when a message writes the hour
        self._door_sums: dict[int, _DoorSums] = {}
        self._recent_tickets()

    def _recent_tickets(self) -> None:
        """`_recent`: of `issued` and `called`, the pairs stamped from `_ticket_hours.to` on
        (empty while nothing is archived), what a snapshot holds of them: kept as tickets
        come, so that a snapshot does not filter 18 h of pairs to find the last hour's. Not
        swept with the queue: a queue floor past `to` lets go every row (`trim`), and the
        snapshots hold the queue whole until the next archive makes this anew."""
        to = self._ticket_hours.to
        self._recent: dict[str, dict[str, Stamps]] = {
            name: ({} if to is None else
                   {s: c.since(to) for s, c in getattr(self, name).items()})
            for name in hour_archive.TICKETS}

    def __getstate__(self) -> dict[str, object]:
        state = self.__dict__.copy()  # as pickled before the derived indexes were kept
        for name in _DERIVED:
            state.pop(name, None)
        state.pop("store", None)
        state.pop("gone", None)
        to = self._bed_hours.to
        if (self._beds_first is None and to is not None and not self._bed_hours.dirty
                and self.bed_readings):
            state["bed_readings"], state["_beds_first"] = hour_archive.live_part(
                self.bed_readings, to)
        else:
            if self._beds_first is None:
                state.pop("_beds_first", None)
            state["bed_readings"] = {sensor: bed.columns()
                                     for sensor, bed in self.bed_readings.items()}
        for name, archive in self._hourly():
            part = archive.pickled(getattr(self, name))
            if part is not None:
                state[name], state[_ARCHIVE_OF[name]] = part
        out = self._ticket_hours.held_out()
        if out is not None:
            for name, recent in self._recent.items():
                # (every kiosk, in order: one with none since is an empty column)
                state[name] = {s: recent.get(s) or Stamps() for s in getattr(self, name)}
            state["_ticket_hours"] = out
        return state

    def _hourly(self) -> tuple[tuple[str, hour_archive.HourRows], ...]:
        """The dicts by hour whose closed hours are rows, with their archives."""
        return ("doors", self._door_hours), ("called_in", self._call_hours)

    def __setstate__(self, state: dict[str, object]) -> None:
        # snapshots from before the bed archive hold none of it
        self.__dict__.update({"_bed_hours": hour_archive.HourRows(),
                              "_door_hours": hour_archive.HourRows(),
                              "_call_hours": hour_archive.HourRows(),
                              "_ticket_hours": hour_archive.HourRows(),
                              "_rows_due": False, "_beds_first": None})
        self.__dict__.update(state)
        self.store = None
        self.gone = None
        if "issues" in state:  # snapshots from before the tickets were held in columns
            self._queue_from_tables(state["issues"], state["calls"], state["call_hours"])  # type: ignore[arg-type]
            for name in _OLD_QUEUE:
                del self.__dict__[name]
        # snapshots from before the window starts were kept sorted hold sets
        self.bed_windows = {rp: sorted(starts) for rp, starts in self.bed_windows.items()}
        if "queue_kept_from" not in state:  # its queue was let go by the rule of before 9199e63
            self.queue_kept_from = self.newest_ns - self.horizon_ns - self.max_wait_ns
        if "beds" in state:  # snapshots from before the bed readings were held in columns
            tables: dict[str, list[tuple[int, ...]]] = self.__dict__.pop("beds")
            self.bed_readings = {sensor: BedReadings.from_entries(history)
                                 for sensor, history in tables.items()}
        else:  # (the columns' bytes since session 25; objects before)
            held: dict[str, Any] = self.bed_readings
            self.bed_readings = {sensor: bed if type(bed) is BedReadings
                                 else BedReadings.from_columns(bed) for sensor, bed in held.items()}
        # snapshots from before a door's fault was kept hold (role, count): its fault is not
        # known (None), which the hour's `faulty` must not take for 0 (`door_faulty`); their
        # roles are taken again (those from before ER_WORDS made `door-er` a visit door)
        role = self.roles.role
        for entries in self.doors.values():
            for key, e in entries.items():
                entries[key] = (role(key[0]), e[1], e[2] if len(e) > 2 else None)
        self._build_indexes()  # (rebuilt whatever the state holds of them: a copy of a __dict__)

    def use_store(self, store: FrozenStore | None, gone: array[int] | None) -> None:
        """The beds' readings and the door readings of closed hours are written into
        `store` (if it writes) and, for a node resumed from a snapshot that holds their rows'
        ids, read back from it now."""
        super().use_store(store, gone)
        self._restore()

    def _restore(self) -> None:
        """What a snapshot held in rows read back (if it held some)."""
        if self._beds_first is not None:
            self._restore_beds()
        for name, archive in self._hourly():
            if archive.out:
                self._restore_hours(name, archive)
        if self._ticket_hours.out:
            self._restore_tickets()

    def note_snapshot(self) -> None:
        """A snapshot of the node is being taken (`NodeState.frozen_snapshot`): whether rows
        are due at the next record (a closed hour not archived, an archived hour changed)."""
        store = self.store
        held = [(self.bed_readings, self._bed_hours),
                *((getattr(self, name), a) for name, a in self._hourly()),
                (self.issued or self.called, self._ticket_hours)]
        if store is None or self._beds_first is not None or any(a.out for _, a in held):
            return
        hour = window_start(self.newest_ns, HOUR_NS)
        if not store.writes:  # rows of a start that wrote them: let go, inline again
            self._rows_due = any(a.to is not None for _, a in held)
        else:
            self._rows_due = any(a.due(entries, hour) for entries, a in held)

    def _archive(self) -> None:
        """The rows due: each closed hour not archived yet and each archived hour changed
        since, written anew (the rows they replace let go), and the bed rows no snapshot
        needs any more let go; with a store that does not write, every row let go."""
        self._rows_due = False
        store = self.store
        hour = window_start(self.newest_ns, HOUR_NS)
        beds = self.bed_readings
        if store is None or not store.writes:
            for archive in (self._bed_hours, self._door_hours, self._call_hours,
                            self._ticket_hours):
                archive.release(self.let_go)
            self._recent_tickets()
            return
        for name, archive in self._hourly():
            archive.archive(hour_archive.entry_rows(getattr(self, name)), hour, store.put,
                            self.let_go)
        self._ticket_hours.archive(hour_archive.ticket_rows(self.issued, self.called), hour,
                                   store.put, self.let_go)
        self._recent_tickets()
        to = self._bed_hours.archive(
            lambda start, to, redo: hour_archive.hour_rows(
                beds, _LOW if start is None else start, to, redo),
            hour, store.put, self.let_go)
        self._bed_hours.trim(hour_archive.oldest_needed(beds, to), self.let_go)

    def _restore_hours(self, name: str, archive: hour_archive.HourRows) -> None:
        """The dict `name` whole again from the rows of a snapshot that held its hours from
        `archive.to` only. A row missing or damaged: the hours before are let go and their
        readings too late from now on, replayed from the raw points (logged)."""
        archive.out = False
        restored = self._read_rows(archive.rows, f"a node's {_WHAT[name]} before {archive.to}",
                                   archive.to)
        if restored is not None:
            setattr(self, name, {**restored, **getattr(self, name)})
        else:
            archive.rows = {}

    def _read_rows(self, rows: dict[int, int], what: str, to: int | None
                   ) -> dict[int, dict[Any, Any]] | None:
        """The rows by hour, read; None if one is missing or damaged: then logged, every row
        let go, and the readings before `to` too late from now on (replayed from the raw
        points)."""
        out: dict[int, dict[Any, Any]] = {}
        missing: str | None = None
        for hour, ref in sorted(rows.items()):
            data = self.fetch(ref)
            if data is None:
                missing = f"row {ref}, hour {hour}"
                break
            try:
                out[hour] = hour_archive.read_row(data, ref)
            except hour_archive.HourArchiveError as exc:
                missing = str(exc)
                break
        if missing is None:
            return out
        note_lost(self.store, f"{what} ({missing})",
                  "the readings before then are too late, replayed from the raw points")
        for ref in rows.values():
            self.let_go(ref)
        if to is not None:
            self.kept_ns = max(self.kept_ns, to)
        return None

    def _restore_beds(self) -> None:
        """The beds whole again from the rows of a snapshot that held their readings since
        `_bed_hours.to` only. A row missing or damaged: the beds keep what the snapshot held
        (each its state there and its readings since), and the readings before it are too
        late from now on, replayed from the raw points (logged)."""
        first, self._beds_first = self._beds_first, None
        if first is None:
            return
        archive = self._bed_hours
        held = self._read_rows(archive.rows, f"a ward's bed readings before {archive.to}",
                               archive.to)
        if held is not None:
            self.bed_readings = hour_archive.restored(
                self.bed_readings, first, [held[hour] for hour in sorted(held)])
        else:
            archive.rows = {}
        self._build_indexes()

    def _restore_tickets(self) -> None:
        """The kiosks' issues and calls whole again from the rows of a snapshot that held
        those stamped from `_ticket_hours.to` only. A row missing or damaged: the tickets
        before are let go and the readings before it too late (as `_read_rows`)."""
        archive = self._ticket_hours
        archive.out = False
        held = self._read_rows(archive.rows, f"a node's kiosk tickets before {archive.to}",
                               archive.to)
        if held is None:
            archive.rows = {}
            for held_columns in (self.issued, self.called):
                for sensor in [s for s, column in held_columns.items() if not column.stamps]:
                    del held_columns[sensor]
            return
        floor = self._queue_floor()
        for name in hour_archive.TICKETS:
            found: dict[str, list[hour_archive.Pairs]] = {}
            for hour in sorted(held):
                for sensor, pairs in held[hour][name].items():
                    found.setdefault(sensor, []).append(pairs)
            columns: dict[str, Stamps] = getattr(self, name)
            for sensor, rows in found.items():
                live = columns.get(sensor)
                columns[sensor] = hour_archive.merged_stamps(
                    Stamps() if live is None else live, rows, floor)

    def _queue_floor(self) -> int:
        """The issues and calls before this stamp are let go: a reading at the floor
        rewrites its whole hour, whose calls answer issues up to max_wait before the hour's
        start (not before the floor, up to an hour later)."""
        return window_start(self.floor_ns(), HOUR_NS) - self.max_wait_ns

    def _queue_from_tables(self, issues: dict[Ticket, list[int]], calls: dict[Ticket, list[int]],
                           call_hours: dict[int, set[Ticket]]) -> None:
        """The queue from the tables of tickets an earlier release pickled."""
        self.issued, self.called = {}, {}
        for tables, held in ((self.issued, issues), (self.called, calls)):
            for (sensor, number), times in sorted(held.items()):
                column = tables.get(sensor)
                if column is None:
                    column = tables[sensor] = Stamps()
                for ts in times:
                    column.add(number, ts)
        self.called_in = {}
        for hour, tickets in call_hours.items():
            by_sensor: dict[str, array[int] | list[int]] = {}
            for sensor, number in tickets:
                by_sensor[sensor] = add_number(by_sensor.get(sensor, array("q")), number)
            self.called_in[hour] = by_sensor

    @property
    def beds(self) -> dict[str, list[BedEntry]]:
        """sensor -> its readings (ts, occupied, fault, seq), sorted (a copy: the beds as the
        releases before the columns held them; occupied and fault 0 or 1)."""
        return {sensor: bed.entries() for sensor, bed in self.bed_readings.items()}

    @property
    def issues(self) -> dict[Ticket, list[int]]:
        """(sensor, ticket) -> its issue times, sorted (a copy: the queue's tickets as the
        releases before the columns held them)."""
        return {t: v for sensor, column in self.issued.items() for t, v in column.tickets(sensor).items()}

    @property
    def calls(self) -> dict[Ticket, list[int]]:
        """(sensor, ticket) -> its call times, sorted (a copy)."""
        return {t: v for sensor, column in self.called.items() for t, v in column.tickets(sensor).items()}

    @property
    def call_hours(self) -> dict[int, set[Ticket]]:
        """hour -> the tickets called in it (a copy)."""
        return {hour: {(sensor, n) for sensor, numbers in by_sensor.items() for n in numbers}
                for hour, by_sensor in self.called_in.items()}

    def set_roles(self, roles: DoorRoles) -> list[int]:
        """Door roles given anew (the node's part of `flow.door_roles`, at every start): the
        door readings held take them. Returns the hours whose split they changed, for
        `process(redo_doors=...)` to write again (with their site totals); a role changed
        does not wait for a reading of the hour. Older hours keep the split they were
        written with until replayed (`urbanpulse cloud recompute`)."""
        if roles == self.roles:
            return []
        self.roles = roles
        changed = []
        for hour, entries in self.doors.items():
            moved = False
            for key, (was, count, fault) in entries.items():
                role = roles.role(key[0])
                if role != was:
                    entries[key] = (role, count, fault)
                    moved = True
            if moved:
                changed.append(hour)
                self._door_hours.touched(hour)
                self._door_sums.pop(hour, None)
        return sorted(changed)

    def process(self, site: str, node: str, readings: Iterable[Reading],
                redo_doors: Iterable[int] = ()) -> tuple[list[Point], list[SiteUpdate]]:
        """`redo_doors`: door hours to write again whatever the readings (`set_roles`)."""
        self._restore()  # (resumed and never given a store: rows unread, held lost)
        if self._rows_due:
            self._archive()
        bed_from: int | None = None
        new_hours: set[int] = set()  # hours holding their first bed reading
        door_hours: set[int] = set(redo_doors)
        wait_hours: set[int] = set()
        horizon_ns, kept = self.horizon_ns, self.kept_ns
        door_sums = self._door_sums
        door_rows = self._door_hours
        for r in readings:
            kind = r.kind
            if not kind.startswith("hospital."):
                continue
            flags = r.flags
            if flags and not NOT_MEASURING.isdisjoint(flags):  # skipped(r)
                continue
            ts = r.ts_ns
            if ts < self.newest_ns - horizon_ns or ts < kept:  # before floor_ns()
                self.too_late += 1
                continue
            if ts > self.newest_ns:
                self.newest_ns = ts
            if kind == "hospital.bed":
                if self._add_bed(r):
                    new_hours.add(ts - ts % HOUR_NS)
                if bed_from is None or ts < bed_from:
                    bed_from = ts
            elif kind == "hospital.door":
                at = ts - 1  # its interval's last instant: window_ts(kind, ts)
                hour = at - at % HOUR_NS
                door_rows.touched(hour)  # (its row, if archived, out of date now)
                doors = self.doors.get(hour)
                if doors is None:
                    doors = self.doors[hour] = {}
                values = r.values
                key = (r.sensor, ts, r.seq)
                entry = (self.roles.role(r.sensor), float(values["count"]),
                         1 if values.get("fault") else 0)
                old = doors.get(key)
                doors[key] = entry
                door_hours.add(hour)
                sums = door_sums.get(hour)
                if sums is not None:  # (the same reading again: it replaces itself)
                    if old is not None:
                        sums.add(old, -1)
                    sums.add(entry, 1)
            elif kind == "hospital.queue":
                wait_hours |= self._add_queue(r)
        points: list[Point] = []
        updates: list[SiteUpdate] = []
        if bed_from is not None:
            self._emit_beds(site, node, bed_from, new_hours, points, updates)
        for hour in sorted(door_hours):
            entries = self.doors[hour].values()
            sums = door_sums.get(hour)
            if sums is None:
                sums = door_sums[hour] = _DoorSums(entries)
            er, visits, faulty = sums.totals(entries)
            fields: dict[str, float | int] = {"er_arrivals": er, "visits": visits}
            if faulty is not None:
                fields["faulty"] = faulty
            points.append((RP_1H, line("door_flow", {"site": site, "node": node}, fields, hour)))
            updates.append(DoorTotals(site, node, hour, er, visits, faulty))
        kept_from = self.queue_kept_from
        for hour in sorted(wait_hours):
            waits = sorted(self.waits(hour))
            points.append((RP_1H, line("queue_wait", {"site": site, "node": node},
                                       wait_fields(waits), hour)))
            # its calls answer issues from max_wait before its start
            partial = kept_from is not None and hour - self.max_wait_ns < kept_from
            updates.append(WaitSamples(site, node, hour, tuple(waits), partial))
        self._evict()
        return points, updates

    # beds

    def _add_bed(self, r: Reading) -> bool:
        """Takes the reading; whether its hour held no bed reading before."""
        ts = r.ts_ns
        self._bed_hours.touched(ts - ts % HOUR_NS)  # (its row, if archived, out of date now)
        sensor = r.sensor
        values = r.values
        # bed_flags(...), written directly
        flags = ((_OCC if int(values["occupied"]) else 0)
                 | (_FAULT if int(values.get("fault", 0)) else 0))
        seq = r.seq
        bed = self.bed_readings.get(sensor)
        if bed is None:
            bed = self.bed_readings[sensor] = BedReadings()
            bed.insert(0, ts, flags, seq)
            self._new_tail(sensor, None, 0, ts, flags)
            return self._add_bed_windows(ts)
        stamps = bed.stamps
        n = len(stamps)
        last = stamps[-1]
        if ts > last:  # in order: the common case
            self._new_tail(sensor, last, bed.flags[-1], ts, flags)
            if (_LOW <= seq <= _HIGH and ts <= _HIGH) or type(stamps) is list:  # (ts > last >= _LOW)
                stamps.append(ts)
                bed.seqs.append(seq)
                bed.flags.append(flags)
            else:
                bed.insert(n, ts, flags, seq)
            if n == 1:
                heapq.heappush(self._seconds, (ts, sensor))
        else:
            i = bisect.bisect_left(stamps, ts)
            if stamps[i] == ts:  # (i < n: ts <= the last stamp)
                if seq >= bed.seqs[i]:  # else numbered before the reading kept: not the state
                    if i == n - 1:
                        self._new_tail(sensor, ts, bed.flags[i], ts, flags)
                    bed.replace(i, flags, seq)
            else:
                bed.insert(i, ts, flags, seq)
                if i < 2:
                    heapq.heappush(self._seconds, (bed.stamps[1], sensor))
        return self._add_bed_windows(ts)

    def _add_bed_windows(self, ts: int) -> bool:
        """The bed reading's windows in `bed_windows`; whether its hour held none before."""
        new = False
        for rp, width in WIDTHS:
            start = ts - ts % width
            starts = self.bed_windows[rp]
            if not starts or start > starts[-1]:
                starts.append(start)
                new = True
            elif start != starts[-1]:
                held = len(starts)
                insort_unique(starts, start)
                new = len(starts) != held
        return new  # of the hour: the last of WIDTHS

    def _new_tail(self, sensor: str, was_ts: int | None, was_flags: int, ts: int, flags: int
                  ) -> None:
        """The bed's last reading is now (ts, flags) (was (was_ts, was_flags); None: the bed
        had none): `_tails`, `_tail_counts`."""
        tails, counts = self._tails, self._tail_counts
        if was_ts is not None:
            del tails[bisect.bisect_left(tails, (was_ts, sensor))]
            counts[_STATE_OF[was_flags]] -= 1
        tail = (ts, sensor)
        if not tails or tail > tails[-1]:
            tails.append(tail)
        else:
            bisect.insort(tails, tail)
        counts[_STATE_OF[flags]] += 1

    def ward_at(self, end_ns: int) -> tuple[int, int, int, int, int]:
        """(beds, occupied, available, faulty, stale) from each bed's last reading before
        end_ns: stale when that reading is more than STALE_NS before end_ns, counted in
        none of the others (beds = occupied + available + faulty). After every bed's last
        reading (a window of the newest readings, the common case): from the counts kept of
        those (`_tails`), less the stale ones."""
        tails = self._tails
        if tails and end_ns <= tails[-1][0]:
            return self._ward_at_walk(end_ns)
        stale = bisect.bisect_left(tails, (end_ns - STALE_NS,))  # last reading before it
        counts = list(self._tail_counts)
        beds = self.bed_readings
        for _, sensor in tails[:stale]:
            counts[_STATE_OF[beds[sensor].flags[-1]]] -= 1
        available, occupied, faulty = counts
        gone = bisect.bisect_left(tails, (end_ns - GONE_NS,), 0, stale)
        return available + occupied + faulty, occupied, available, faulty, stale - gone

    def _ward_at_walk(self, end_ns: int) -> tuple[int, int, int, int, int]:
        """`ward_at` by a search in each bed's readings."""
        beds = occupied = faulty = stale = 0
        oldest = end_ns - STALE_NS  # a last reading before it is stale
        gone = end_ns - GONE_NS  # and before this, gone
        for bed in self.bed_readings.values():
            stamps = bed.stamps
            i = bisect.bisect_left(stamps, end_ns)
            if i == 0:
                continue
            ts = stamps[i - 1]
            if ts < gone:
                continue
            if ts < oldest:
                stale += 1
                continue
            beds += 1
            flags = bed.flags[i - 1]
            if flags & _FAULT:
                faulty += 1
            elif flags & _OCC:
                occupied += 1
        return beds, occupied, beds - occupied - faulty, faulty, stale

    def wards_at(self, ends: list[int]) -> list[tuple[int, int, int, int, int]]:
        """`ward_at` of each of the ascending `ends`. Many windows: one sweep over the bed
        readings between the first and the last end instead of a search per bed and end.
        A reading followed by none for more than STALE_NS makes its bed stale at its stamp
        plus STALE_NS, and for more than GONE_NS gone at its stamp plus GONE_NS: changes of
        the sweep like a reading's."""
        if len(ends) < 4:
            return [self.ward_at(end) for end in ends]
        first, last = ends[0], ends[-1]
        limit = STALE_NS
        counts = [0, 0, 0, 0, 0]  # by state: _AVAILABLE, _OCCUPIED, _FAULTY, _STALE, _GONE
        states: list[int] = []  # per bed: the state of its last change (-1: no reading yet)
        changes: list[tuple[int, int, int]] = []  # (ts, bed, state)
        for b, bed in enumerate(self.bed_readings.values()):
            stamps, flags = bed.stamps, bed.flags
            i = bisect.bisect_left(stamps, first)
            j = bisect.bisect_left(stamps, last, i)
            if i == 0:
                state = -1
            else:
                ts = stamps[i - 1]
                state = (_GONE if ts + GONE_NS < first else _STALE if ts + limit < first
                         else _STATE_OF[flags[i - 1]])
                counts[state] += 1
            states.append(state)
            changes += [(ts, b, _STATE_OF[f]) for ts, f in zip(stamps[i:j], flags[i:j], strict=True)]
            # the readings whose stale (gone) time falls in [first, last): stamped in
            # [first - limit, last - limit), followed by none within the limit
            for after, to in ((limit, _STALE), (GONE_NS, _GONE)):
                lo = bisect.bisect_left(stamps, first - after, 0, i)
                hi = bisect.bisect_left(stamps, last - after, lo, j)
                if lo < hi:
                    n = len(stamps)
                    changes += [(ts + after, b, to) for k, ts in enumerate(stamps[lo:hi], lo)
                                if k + 1 == n or stamps[k + 1] > ts + after]
        changes.sort()
        out = [(counts[0] + counts[1] + counts[2], counts[1], counts[0], counts[2], counts[3])]
        k, n = 0, len(changes)
        for end in ends[1:]:
            while k < n and changes[k][0] < end:
                _, b, state = changes[k]
                k += 1
                before = states[b]
                if before >= 0:
                    counts[before] -= 1
                counts[state] += 1
                states[b] = state
            out.append((counts[0] + counts[1] + counts[2], counts[1], counts[0], counts[2], counts[3]))
        return out

    def _emit_beds(self, site: str, node: str, from_ns: int, new_hours: set[int],
                   points: list[Point], updates: list[SiteUpdate]) -> None:
        head = series_head("ward_occupancy", {"site": site, "node": node})
        for rp, width in WIDTHS:
            first = window_start(from_ns, width)
            windows = self.bed_windows[rp]  # (holding first: a reading of this message's is in it)
            if rp == RP_1H:
                starts = hours_with_gaps(windows, bisect.bisect_left(windows, first), first, new_hours)
            elif windows[-1] == first:  # the newest window alone: a message of readings in order
                starts = [first]
            else:
                starts = windows[bisect.bisect_left(windows, first):]
            wards = ([self.ward_at(first + width)] if starts == [first]
                     else self.wards_at([s + width for s in starts]))
            for start, (beds, occupied, available, faulty, stale) in zip(starts, wards, strict=True):
                # line(..., occupancy_fields(...), start), written directly
                text = (f"{head} beds={beds}i,occupied={occupied}i,available={available}i,"
                        f"faulty={faulty}i,stale={stale}i")
                if occupied + available:
                    text += f",occupancy_pct={100.0 * occupied / (occupied + available)!r}"
                points.append((rp, f"{text} {start}"))
                updates.append(WardSnapshot(site, node, rp, start, beds, occupied, available, faulty,
                                            stale))

    # queue

    def _add_queue(self, r: Reading) -> set[int]:
        """The hours whose waits the reading may change."""
        sensor, number, ts = r.sensor, round(r.values["ticket"]), r.ts_ns
        self._forget_waits(sensor, number)
        if r.values["called"]:
            calls = self.called.get(sensor)
            if calls is None:
                calls = self.called[sensor] = Stamps()
            i, hi = calls.add(number, ts)
            hour = ts - ts % HOUR_NS
            self._call_hours.touched(hour)
            self._add_recent("called", sensor, number, ts)
            by_sensor = self.called_in.get(hour)
            if by_sensor is None:
                by_sensor = self.called_in[hour] = {}
            numbers = by_sensor.get(sensor)
            by_sensor[sensor] = add_number(array("q") if numbers is None else numbers, number)
            held = self._waits.get(hour)
            if held is not None:  # (called anew in the hour, or again: paired again)
                held[1].add((sensor, number))
            if i + 1 < hi:
                # An issue answered by the next call (a repeat, in order) is answered by
                # this one now: the next call's hour loses that wait.
                return {hour, window_start(calls.stamps[i + 1], HOUR_NS)}
            return {hour}
        issues = self.issued.get(sensor)
        if issues is None:
            issues = self.issued[sensor] = Stamps()
        issues.add(number, ts)
        self._add_recent("issued", sensor, number, ts)
        calls = self.called.get(sensor)
        if calls is None:
            return set()
        lo, hi = calls.span(number)
        stamps = calls.stamps
        lo = bisect.bisect_left(stamps, ts, lo, hi)
        hi = bisect.bisect_right(stamps, ts + self.max_wait_ns, lo, hi)
        return {window_start(t, HOUR_NS) for t in stamps[lo:hi]}

    def _add_recent(self, name: str, sensor: str, number: int, ts: int) -> None:
        """An issue (call) added: to `_recent` if stamped since the archive's end, else its
        hour's row is out of date."""
        to = self._ticket_hours.to
        if to is None:
            return
        if ts < to:
            self._ticket_hours.touched(ts - ts % HOUR_NS)
            return
        recent = self._recent[name]
        column = recent.get(sensor)
        if column is None:
            column = recent[sensor] = Stamps()
        column.add(number, ts)

    def pair(self, ticket: Ticket, issued_ns: int) -> int | None:
        """The call answering the issue of `ticket` (sensor, number) at `issued_ns`, if any."""
        sensor, number = ticket
        issues, calls = self.issued.get(sensor), self.called.get(sensor)
        if calls is None:
            return None
        next_issue = None
        if issues is not None:
            lo, hi = issues.span(number)
            i = bisect.bisect_right(issues.stamps, issued_ns, lo, hi)
            next_issue = issues.stamps[i] if i < hi else None
        lo, hi = calls.span(number)
        j = bisect.bisect_left(calls.stamps, issued_ns, lo, hi)
        if j == hi:
            return None
        call = calls.stamps[j]
        if call - issued_ns > self.max_wait_ns or (next_issue is not None and call >= next_issue):
            return None
        return call

    def _ticket_waits(self, sensor: str, number: int, hour: int) -> list[float]:
        """The waits (s) of the ticket's calls in the hour: each issue paired (`pair`)."""
        waits: list[float] = []
        issues, calls = self.issued.get(sensor), self.called.get(sensor)
        if issues is None or calls is None:
            return waits
        lo, hi = issues.span(number)
        issued = issues.stamps[lo:hi]
        clo, chi = calls.span(number)
        stamps, max_wait = calls.stamps, self.max_wait_ns
        for k, t in enumerate(issued):
            j = bisect.bisect_left(stamps, t, clo, chi)
            if j == chi:
                break  # (no call after this issue: none after the later ones either)
            call = stamps[j]
            if (call - t > max_wait or (k + 1 < len(issued) and call >= issued[k + 1])
                    or call - call % HOUR_NS != hour):
                continue
            waits.append((call - t) / 1e9)
        return waits

    def _entry(self, sensor: str, number: int, hour: int) -> float | tuple[float, ...]:
        found = self._ticket_waits(sensor, number, hour)
        return found[0] if len(found) == 1 else tuple(found)

    def waits(self, hour: int) -> list[float]:
        """Waits (s) of the tickets called in the hour starting at `hour` (in no order)."""
        by_sensor = self.called_in.get(hour, {})
        held = self._waits.pop(hour, None)
        if held is None:
            known = {sensor: {n: self._entry(sensor, n, hour) for n in numbers}
                     for sensor, numbers in by_sensor.items()}
            held = (known, set())
        else:
            known, redo = held
            for sensor, number in redo:
                numbers = by_sensor.get(sensor)
                if numbers is not None:
                    i = bisect.bisect_left(numbers, number)
                    if i < len(numbers) and numbers[i] == number:
                        cache = known.get(sensor)
                        if cache is None:
                            cache = known[sensor] = {}
                        cache[number] = self._entry(sensor, number, hour)
            redo.clear()
        self._waits[hour] = held  # (written last: kept longest)
        out: list[float] = []
        for cache in known.values():
            for waits in cache.values():
                if type(waits) is float:
                    out.append(waits)
                else:
                    out.extend(waits)  # type: ignore[arg-type]
        return out

    def _forget_waits(self, sensor: str, number: int) -> None:
        for known, redo in self._waits.values():
            cache = known.get(sensor)
            if cache is not None and cache.pop(number, None) is not None:
                redo.add((sensor, number))

    def _evict(self) -> None:
        floor = self.floor_ns()
        # Keep each bed's last state before the floor: it is the bed's state at the floor. The
        # beds holding more before it are those whose second reading is before it (`_seconds`).
        seconds = self._seconds
        while seconds and seconds[0][0] < floor:
            ts, sensor = heapq.heappop(seconds)
            bed = self.bed_readings.get(sensor)
            if bed is None:  # (the bed gone)
                continue
            stamps = bed.stamps
            if len(stamps) > 1 and stamps[1] == ts:  # else out of date
                bed.drop_first(bisect.bisect_left(stamps, floor) - 1)
                stamps = bed.stamps
                if len(stamps) > 1:
                    heapq.heappush(seconds, (stamps[1], sensor))
        # A bed gone at the floor is gone at every window still written: let go.
        tails, counts = self._tails, self._tail_counts
        gone = bisect.bisect_left(tails, (floor - GONE_NS,))
        if gone:
            for _, sensor in tails[:gone]:
                counts[_STATE_OF[self.bed_readings.pop(sensor).flags[-1]]] -= 1
            del tails[:gone]
        for rp, width in WIDTHS:
            starts = self.bed_windows[rp]
            # an hour 2 h before the floor's stays: the hour after it is a gap that a reading
            # taken late in the floor's hour closes (`hours_with_gaps`)
            oldest = floor - width if rp != RP_1H else window_start(floor, HOUR_NS) - 2 * HOUR_NS
            if starts and starts[0] < oldest:
                del starts[:bisect.bisect_left(starts, oldest)]
        for hour in [h for h in self.doors if h < floor - HOUR_NS]:
            del self.doors[hour]
            self._door_sums.pop(hour, None)
            self._door_hours.dropped(hour, self.let_go)
        queue_floor = self._queue_floor()
        if self.queue_kept_from is not None and queue_floor >= self.queue_kept_from:
            self.queue_kept_from = None  # no hour it can still write lacks an issue
        if queue_floor != self._queue_swept:  # it moves by whole hours: once an hour
            self._queue_swept = queue_floor
            for columns in (self.issued, self.called):
                for sensor, column in list(columns.items()):
                    numbers = column.before(queue_floor)
                    if not numbers:
                        continue
                    for number in numbers:
                        self._forget_waits(sensor, number)
                    column.drop_before(queue_floor)
                    if not column.stamps:
                        del columns[sensor]
            self._ticket_hours.trim(window_start(queue_floor, HOUR_NS), self.let_go)
        called_in = self.called_in
        for hour in [h for h in called_in if h < floor - HOUR_NS]:
            del called_in[hour]
            self._call_hours.dropped(hour, self.let_go)
        waits = self._waits
        for hour in [h for h in waits if h not in called_in]:
            del waits[hour]
        while len(waits) > WAITS_KEPT:
            del waits[next(iter(waits))]


def hours_with_gaps(windows: list[int], i: int, first: int, new: set[int]) -> list[int]:
    """The hours to write from `first` (`windows[i]` on: the hours holding bed readings),
    with each hour between two of them that holds none. A pad sends its state at least
    every heartbeat (at most 3600 s), a little after it is due (a timer firing late, a
    board reporting every few seconds): 00:59:59 then 02:00:00.3 leave 01:00 without a
    reading, whose state at its end is known. Two empty hours are a silent ward, not a
    late heartbeat: not written. The hour before `first` is written only when `first`
    holds its first reading (the gap is new; its state, before `first`, has not changed)."""
    out: list[int] = []
    prev = windows[i - 1] if i else None
    for start in windows[i:]:
        if prev == start - 2 * HOUR_NS and (start > first or start in new):
            out.append(start - HOUR_NS)
        out.append(start)
        prev = start
    return out


def insort_unique(values: list[int], value: int) -> int:
    """`value` into the sorted `values` unless it is there; its index."""
    i = bisect.bisect_left(values, value)
    if i == len(values) or values[i] != value:
        values.insert(i, value)
    return i
