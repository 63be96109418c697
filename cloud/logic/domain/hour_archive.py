"""A ward's bed readings, a node's door readings and its kiosks' tickets, of closed hours, kept
out of most of its snapshots.

A ward holds each bed's readings over the aggregation horizon (`BedReadings`, 6 h by
default): a late reading changes every window from its own on, so the readings before it
must be there. They were about 40 % of a 30-bed ward's snapshot bytes, pickled whole at
every snapshot of the node though only the newest hour's change. With a frozen store
(cloud/frozen_store.py), the readings of each closed hour are written once as a row (all
the ward's beds' readings of that hour), and a snapshot holds each bed's readings from its
last one before the first hour not archived (`archived_to`): the bed's state there, so that
the windows from there on need no row, and what a row lost costs is the hours before it.
The rows are made at the node's next record after a snapshot that found one due (a new
closed hour, or an archived hour a reading changed), so that an epoch's rows are written
in one transaction, as the detectors' checkpoints are (cloud/logic/detector_book.py).

In memory nothing changes: a resumed ward reads its rows back whole when it is given the
store (`HospitalNodeRollup.use_store`). Rows are never changed: an archived hour a late
reading changed is written again as a new row at the next record after a snapshot, the
snapshots until then holding the beds whole; a row no snapshot needs any more is let go and
deleted as the frozen windows' rows are (`NodeState.frozen_snapshot`).

The door readings and the kiosks' calls by hour go the same way, more simply: they are
already held by hour (`HospitalNodeRollup.doors`, `.called_in`), so each closed hour's
entries are a row, and a snapshot holds the hours from the first not archived (`HourRows`;
an ER gate's or an outpatient hall's 6 h of door readings were about half of its hospital
rollup's bytes, tuples pickled one by one; a laboratory's calls by hour 12 of its 78 KB).

The kiosks' tickets too (`HospitalNodeRollup.issued`, `.called`: each kiosk's (number,
stamp) pairs, sorted by number, over 18 h: the 12 h a call may answer an issue, before the
6 h horizon; 48 of a laboratory's 62 KB): a closed hour's pairs of every kiosk are a row, a
snapshot holds the pairs stamped from the first hour not archived (`Stamps.since`, kept up to
date as tickets come), and a resumed node merges the rows' pairs back (`merged_stamps`), from
the queue's floor on.

Pure functions over the beds and tickets; `HospitalNodeRollup` keeps the rows' ids and
decides when.
"""

from __future__ import annotations

import bisect
import contextlib
import pickle
from array import array
from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING, Any

from cloud.errors import CloudError
from cloud.logic.domain.common import HOUR_NS, window_start

if TYPE_CHECKING:
    from cloud.logic.domain.hospital import BedReadings, Stamps

# a bed's readings of one hour in a row: (stamps, seqs, flags), as the bed's columns hold them
Columns = tuple[Any, Any, Any]


class HourArchiveError(CloudError):
    """A row that is not what a node's hour archive writes (a foreign or damaged file)."""


def hour_rows(beds: Mapping[str, BedReadings], start: int, to: int, redo: Collection[int]
              ) -> dict[int, bytes]:
    """The rows to write: of each hour in [start, to) holding a reading, and of each hour
    of `redo` (archived hours changed since), every bed's readings of the hour, pickled
    as sensor -> (stamps, seqs, flags)."""
    hours: dict[int, dict[str, Columns]] = {}
    for sensor, bed in beds.items():
        stamps = bed.stamps
        spans = [(bisect.bisect_left(stamps, start), bisect.bisect_left(stamps, to))]
        spans += [(bisect.bisect_left(stamps, h), bisect.bisect_left(stamps, h + HOUR_NS))
                  for h in redo]
        for lo, hi in spans:
            k = lo
            while k < hi:
                hour = window_start(stamps[k], HOUR_NS)
                end = bisect.bisect_left(stamps, hour + HOUR_NS, k, hi)
                hours.setdefault(hour, {})[sensor] = (stamps[k:end], bed.seqs[k:end],
                                                       bed.flags[k:end])
                k = end
    return {hour: pickle.dumps(held, protocol=pickle.HIGHEST_PROTOCOL)
            for hour, held in sorted(hours.items())}


def cut_of(bed: BedReadings, archived_to: int) -> int:
    """Where the bed's readings a snapshot holds start: at its last reading before
    `archived_to` (its state there), or its first."""
    return max(0, bisect.bisect_left(bed.stamps, archived_to) - 1)


def oldest_needed(beds: Mapping[str, BedReadings], archived_to: int) -> int:
    """The hour of the oldest reading a row holds for a snapshot (`archived_to` if none):
    rows of hours before it are needed by none."""
    hours = [window_start(bed.stamps[0], HOUR_NS) for bed in beds.values()
             if cut_of(bed, archived_to) > 0]
    return min(hours, default=archived_to)


def live_part(beds: Mapping[str, BedReadings], archived_to: int
              ) -> tuple[dict[str, Columns], list[int]]:
    """What a snapshot holds of the beds: each bed's readings from `cut_of` (its columns:
    `BedReadings.columns`), and each bed's first reading's stamp (the readings the rows hold
    before it were let go)."""
    live: dict[str, Columns] = {}
    first: list[int] = []
    for sensor, bed in beds.items():
        first.append(bed.stamps[0])
        live[sensor] = bed.columns(cut_of(bed, archived_to))
    return live, first


def read_row(data: bytes, row: int) -> dict[Any, Any]:
    """A row's beds (sensor -> their columns) or door entries, unpickled."""
    try:
        held = pickle.loads(data)
    except Exception as exc:  # a damaged row: whatever unpickling it raises
        raise HourArchiveError(f"hour archive row {row} could not be read: {exc!r}") from exc
    if not isinstance(held, dict):
        raise HourArchiveError(f"hour archive row {row} holds a {type(held).__name__}")
    return held


def restored(live: Mapping[str, BedReadings], first: list[int], rows: list[dict[str, Columns]]
             ) -> dict[str, BedReadings]:
    """The beds whole from what a snapshot held (`live_part`) and its rows' readings, in
    hour order: each bed's row readings from its first stamp to its live part's first."""
    if len(first) != len(live):
        raise HourArchiveError(f"a ward's snapshot holds {len(live)} beds and {len(first)} "
                              "first stamps")
    out: dict[str, BedReadings] = {}
    for (sensor, part), since in zip(live.items(), first, strict=True):
        until = part.stamps[0]
        stamps: list[int] = []
        seqs: list[int] = []
        flags = bytearray()
        for held in rows:
            columns = held.get(sensor)
            if columns is None:
                continue
            s, q, f = columns
            lo, hi = bisect.bisect_left(s, since), bisect.bisect_left(s, until)
            stamps += s[lo:hi]
            seqs += q[lo:hi]
            flags += f[lo:hi]
        if not stamps:
            out[sensor] = part
            continue
        stamps += part.stamps
        seqs += part.seqs
        bed = type(part)()
        bed.stamps, bed.seqs, bed.flags = stamps, seqs, flags + part.flags
        if type(part.stamps) is array and type(part.seqs) is array:
            # (a row of a bed whose columns turned to lists since may hold what no int64 can)
            with contextlib.suppress(OverflowError):
                bed.stamps, bed.seqs = array("q", stamps), array("q", seqs)
        out[sensor] = bed
    return out


# What makes the rows due (`HourRows.archive`): given where the archive ends (None: nothing
# archived) and where it is to end, and the archived hours changed since, each hour's row
RowsOf = Callable[[int | None, int, set[int]], dict[int, bytes]]


class HourRows:
    """The closed hours of some readings by hour (a ward's beds, a node's door readings, its
    kiosks' calls by hour) as rows of the frozen store: hour -> its row's id for the hours
    before `to` (None: none archived), the archived hours changed since (`dirty`: a snapshot
    then holds the readings whole), and `out`: a snapshot of a dict by hour holding the
    hours from `to` only, until its rows are read back (set in the pickled copy only)."""

    __slots__ = ("dirty", "out", "rows", "to")

    def __init__(self) -> None:
        self.rows: dict[int, int] = {}
        self.to: int | None = None
        self.dirty: set[int] = set()
        self.out = False

    def __getstate__(self) -> tuple[dict[int, int], int | None, set[int], bool]:
        return self.rows, self.to, self.dirty, self.out

    def __setstate__(self, state: tuple[dict[int, int], int | None, set[int], bool]) -> None:
        self.rows, self.to, self.dirty, self.out = state

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HourRows) and self.__getstate__() == other.__getstate__()

    __hash__ = None  # type: ignore[assignment]  # (mutable)

    def touched(self, hour: int) -> None:
        """An entry of `hour` changed: its row, if archived, is out of date."""
        to = self.to
        if to is not None and hour < to:
            self.dirty.add(hour)

    def due(self, held: Collection[object], newest_hour: int) -> bool:
        """Whether rows are due: an archived hour changed, or an hour closed not archived."""
        return bool(self.dirty) or (bool(held) and (self.to is None or newest_hour > self.to))

    def held_out(self) -> HourRows | None:
        """What a snapshot holds of this when it holds the readings from `to` only: a copy
        marked `out`; None when it must hold them whole (nothing archived, or an archived
        hour changed since)."""
        to = self.to
        if self.out or to is None or self.dirty or not self.rows:
            return None
        copy = HourRows()
        copy.rows, copy.to, copy.out = dict(self.rows), to, True
        return copy

    def pickled(self, held: Mapping[int, Any]) -> tuple[dict[int, Any], HourRows] | None:
        """What a snapshot holds instead of `held` (a dict by hour) and of this: the hours
        from `to`, and `held_out`; None when it must hold `held` whole."""
        copy = self.held_out()
        if copy is None or copy.to is None:
            return None
        to = copy.to
        return {hour: entries for hour, entries in held.items() if hour >= to}, copy

    def archive(self, rows_of: RowsOf, newest_hour: int, put: Callable[[bytes], int],
                let_go: Callable[[int], None]) -> int:
        """Each closed hour not archived yet and each archived one changed since written as
        a row (`rows_of`; the rows they replace, and those of changed hours that hold
        nothing now, let go); where the archive ends now."""
        rows, start = self.rows, self.to
        to = newest_hour if start is None else max(newest_hour, start)
        made = rows_of(start, to, self.dirty)
        for hour in self.dirty | made.keys():
            old = rows.pop(hour, None)
            if old is not None:
                let_go(old)
        for hour, data in made.items():
            rows[hour] = put(data)
        self.dirty.clear()
        self.to = to
        return to

    def trim(self, needed: int, let_go: Callable[[int], None]) -> None:
        """The rows of the hours before `needed` let go: no snapshot needs them."""
        for hour in [h for h in self.rows if h < needed]:
            let_go(self.rows.pop(hour))

    def dropped(self, hour: int, let_go: Callable[[int], None]) -> None:
        """The dict let go of `hour` (past the horizon): its row too."""
        ref = self.rows.pop(hour, None)
        if ref is not None:
            let_go(ref)

    def release(self, let_go: Callable[[int], None]) -> None:
        """Every row let go, nothing archived (a store that does not write)."""
        for ref in self.rows.values():
            let_go(ref)
        self.rows, self.to, self.dirty = {}, None, set()


def entry_rows(held: Mapping[int, Any]) -> RowsOf:
    """`HourRows.archive`'s rows of a dict by hour: each hour's entries, pickled."""
    def rows_of(start: int | None, to: int, redo: set[int]) -> dict[int, bytes]:
        due = {h for h in held if h < to and (start is None or h >= start)} | redo
        return {hour: pickle.dumps(held[hour], protocol=pickle.HIGHEST_PROTOCOL)
                for hour in sorted(due) if hour in held}
    return rows_of


# A kiosk's issues (or calls) of one hour in a row: (numbers, stamps), as its `Stamps` holds
# them (sorted by number, then stamp); a row holds both, by sensor, under these names.
Pairs = tuple[Any, Any]
TICKETS = ("issued", "called")


def ticket_rows(issued: Mapping[str, Stamps], called: Mapping[str, Stamps]) -> RowsOf:
    """`HourRows.archive`'s rows of the kiosks' tickets: of each hour, each kiosk's issues
    and calls stamped in it, pickled as {"issued": sensor -> Pairs, "called": ...}."""
    def rows_of(start: int | None, to: int, redo: set[int]) -> dict[int, bytes]:
        hours: dict[int, dict[str, dict[str, Pairs]]] = {}
        for name, held in zip(TICKETS, (issued, called), strict=True):
            for sensor, column in held.items():
                by_hour: dict[int, tuple[list[int], list[int]]] = {}
                for number, ts in zip(column.numbers, column.stamps, strict=True):
                    hour = ts - ts % HOUR_NS
                    if ((start is None or ts >= start) and ts < to) or hour in redo:
                        pairs = by_hour.get(hour)
                        if pairs is None:
                            pairs = by_hour[hour] = ([], [])
                        pairs[0].append(number)
                        pairs[1].append(ts)
                as_array = type(column.stamps) is array
                for hour, (numbers, stamps) in by_hour.items():
                    row = hours.setdefault(hour, {n: {} for n in TICKETS})
                    row[name][sensor] = ((array("q", numbers), array("q", stamps)) if as_array
                                         else (numbers, stamps))
        return {hour: pickle.dumps(row, protocol=pickle.HIGHEST_PROTOCOL)
                for hour, row in sorted(hours.items())}
    return rows_of


def merged_stamps(live: Stamps, rows: list[Pairs], floor: int) -> Stamps:
    """A kiosk's issues (calls) whole again: what a snapshot held (`Stamps.since`) and the
    pairs its rows hold stamped from `floor` on (the queue's floor: those before were let
    go), sorted by number, then stamp."""
    pairs = [(n, ts) for numbers, stamps in rows for n, ts in zip(numbers, stamps, strict=True)
             if ts >= floor]
    if not pairs:
        return live
    pairs += zip(live.numbers, live.stamps, strict=True)
    pairs.sort()
    numbers, stamps = [n for n, _ in pairs], [ts for _, ts in pairs]
    out = type(live)()
    out.numbers, out.stamps = numbers, stamps
    if type(live.stamps) is array:
        # (a row of a kiosk whose columns turned to lists since may hold what no int64 can)
        with contextlib.suppress(OverflowError):
            out.numbers, out.stamps = array("q", numbers), array("q", stamps)
    return out
