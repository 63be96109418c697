"""Which sequence numbers of one sensor have been seen: duplicates, gaps and late arrivals.

The seen numbers are kept as sorted, disjoint half-open ranges. A sensor that delivers in
order needs one range; gaps add ranges. Past `max_ranges`, the oldest gap is given up
(merged): its numbers count as missing, and should one still arrive it is treated as a
duplicate (its raw point is still written; it is not added to an aggregate twice).

`newest_ns` is the newest stamp of a reading taken as new, `newest_seq` that reading's
number (-1 both while none is known: readings flagged `clock_unsynced` leave them as they
are, their stamps say nothing). A redelivery carries the stamp it had, and a node numbers
its readings in the order it stamps them, so a number at or below `newest_seq` with a stamp
newer than `newest_ns` is neither a redelivery nor a gap filled late: the sensor's
numbering started again (a node that lost its state: a replaced SD card, a wiped state
directory). (A number above `newest_seq` but below the highest seen is a gap filled late:
the readings above it may carry unsynchronised stamps, sent first as the fresh ones.)
`restart` keeps the numbers seen so far in `previous` (oldest first, up to
`MAX_NUMBERINGS_BACK`), for the readings stamped before the restart that still come,
redelivered or late: `numbering_of` finds a reading's numbering by its stamp. An unnamed
reading never grows an earlier numbering's newest stamp, so each one's stamps lie before
the next one's.
`span_key` names the numbering in the ledger's spans (None: the sensor's first).

A node that names its numbering (the batch's `numbering` id, made with its outbox) says
outright which numbering a reading belongs to: `numbering` is the id the sensor's numbers
came with (None: unnamed, from an older agent), and `named` finds a reading's numbering by
it. The stamps still decide for readings that come unnamed, and among numberings that
share a name (a state restored from an old copy keeps its name). A numbering dropped past
`MAX_NUMBERINGS_BACK` leaves its name in `forgotten` (up to `MAX_FORGOTTEN_NAMES`): its
late readings cannot be checked any more, but they are not taken for a new numbering.
"""

from __future__ import annotations

import bisect
import math
from typing import Any

# The newest stamp of ranges pickled before it was kept: unknown, so nothing is taken for
# a restart until the node state sets it (NodeState.__setstate__).
NEWEST_UNKNOWN = 2**63 - 1
MAX_NUMBERINGS_BACK = 8  # a node losing its state more often than this in a horizon is broken
MAX_FORGOTTEN_NAMES = 64  # names of numberings dropped past MAX_NUMBERINGS_BACK, kept


_TUPLE_LAYOUT = "seqs-2"  # the first item of a pickled SeqRanges's tuple (`__getstate__`)


class SeqRanges:
    __slots__ = ("forgotten", "given_up", "last_given_up", "max_ranges", "newest_ns", "newest_seq",
                 "numbering", "previous", "ranges", "span_key")

    def __init__(self, max_ranges: int = 64, span_key: str | None = None,
                 numbering: str | None = None) -> None:
        self.ranges: list[list[int]] = []
        self.max_ranges = max_ranges
        self.given_up = 0
        self.newest_ns = -1
        self.newest_seq = -1
        self.previous: list[SeqRanges] = []  # the numberings before restarts, oldest first
        self.span_key = span_key
        self.numbering = numbering
        self.forgotten: tuple[str, ...] = ()  # names of numberings dropped from `previous`
        # The gap the last `add` gave up, as (the number just above it, its size), for the
        # caller to take (the ledger charges it to the hour of that number); else None.
        self.last_given_up: tuple[int, int] | None = None

    def __getstate__(self) -> tuple[object, ...]:
        # Its values in a tuple, not Python's (None, dict of its slots): a dict made
        # and pickled per numbering was most of a ward's sequence ranges' snapshot CPU.
        return (_TUPLE_LAYOUT, self.ranges, self.max_ranges, self.given_up, self.newest_ns,
                self.newest_seq, [p.__getstate__() for p in self.previous], self.span_key,
                self.numbering, self.forgotten, self.last_given_up)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        if state[0] == _TUPLE_LAYOUT:
            (_, self.ranges, self.max_ranges, self.given_up, self.newest_ns, self.newest_seq,
             previous, self.span_key, self.numbering, self.forgotten, self.last_given_up) = state
            self.previous = [_numbering(p) for p in previous]
            return
        self._set_slots(state)  # (None, slots) before session 25

    def _set_slots(self, state: tuple[None, dict[str, Any]]) -> None:
        self.newest_ns = NEWEST_UNKNOWN
        self.last_given_up = None
        self.previous = []
        self.span_key = None
        self.numbering = None
        self.forgotten = ()
        for name, value in state[1].items():
            setattr(self, name, value)
        if "newest_seq" not in state[1]:
            # Pickled before it was kept: the highest number seen, as the rule then read.
            self.newest_seq = self.ranges[-1][1] - 1 if self.ranges else -1

    def named(self, numbering: str, ts_ns: int) -> SeqRanges | None:
        """The numbering named `numbering` that a reading stamped `ts_ns` belongs to, None if
        no numbering kept has that name. A name repeats when a state restored from an old
        copy numbered again under it (a restart only the stamps told): among the numberings
        of one name, the stamp decides as for unnamed readings (`numbering_of`)."""
        last = None
        for before in self.previous:
            if before.numbering == numbering:
                if ts_ns <= before.newest_ns:
                    return before
                last = before
        return self if self.numbering == numbering else last

    def starts_again(self, seq: int, ts_ns: int) -> bool:
        """`seq` at or below the highest seen, stamped after every reading taken: no
        redelivery (it would carry a stamp seen) and no gap filled late (numbers follow the
        stamps), so the numbering started again. (The caller leaves out stamps its node says
        are not synchronised: they tell nothing of the kind.)"""
        return ts_ns > self.newest_ns and seq <= self.newest_seq

    def numbering_of(self, ts_ns: int) -> SeqRanges:
        """The numbering a reading stamped `ts_ns` belongs to: the oldest one whose newest
        stamp is not before it, else this one."""
        for before in self.previous:
            if ts_ns <= before.newest_ns:
                return before
        return self

    def restart(self, seq: int | None, span_key: str, numbering: str | None = None) -> None:
        """The numbering started again, at `seq` (None: nothing seen of it yet), named
        `numbering`: the numbers seen so far join `previous` (past MAX_NUMBERINGS_BACK, the
        oldest is forgotten), and the newest stamp starts afresh (a new card's clock may lag
        the old one's)."""
        before = SeqRanges(self.max_ranges, self.span_key, self.numbering)
        before.ranges, before.given_up, before.newest_ns = self.ranges, self.given_up, self.newest_ns
        before.newest_seq = self.newest_seq
        kept = [*self.previous, before]
        dropped = [old.numbering for old in kept[:-MAX_NUMBERINGS_BACK] if old.numbering is not None]
        if dropped:
            self.forgotten = (*self.forgotten, *dropped)[-MAX_FORGOTTEN_NAMES:]
        self.previous = kept[-MAX_NUMBERINGS_BACK:]
        self.ranges = [] if seq is None else [[seq, seq + 1]]
        self.given_up = 0
        self.newest_ns = self.newest_seq = -1
        self.span_key = span_key
        self.numbering = numbering

    def add(self, seq: int) -> bool:
        """Record `seq`; True if it is new, False if it was seen before."""
        r = self.ranges
        # The last range starting at or before seq: in order, the last one without a search;
        # else by bisection ([a, b] <= [seq, inf] iff a <= seq).
        i = len(r) - 1 if r and seq >= r[-1][0] else bisect.bisect_right(r, [seq, math.inf]) - 1
        if i >= 0 and seq < r[i][1]:
            return False
        joins_left = i >= 0 and r[i][1] == seq
        joins_right = i + 1 < len(r) and r[i + 1][0] == seq + 1
        if joins_left and joins_right:
            r[i][1] = r[i + 1][1]
            del r[i + 1]
        elif joins_left:
            r[i][1] = seq + 1
        elif joins_right:
            r[i + 1][0] = seq
        else:
            r.insert(i + 1, [seq, seq + 1])
            if len(r) > self.max_ranges:
                self.last_given_up = (r[1][0], r[1][0] - r[0][1])
                self.given_up += r[1][0] - r[0][1]
                r[0][1] = r[1][1]
                del r[1]
        return True

    @property
    def expected(self) -> int:
        """How many readings the sensor produced between the first and last seen."""
        return self.ranges[-1][1] - self.ranges[0][0] if self.ranges else 0

    @property
    def seen(self) -> int:
        return sum(b - a for a, b in self.ranges) - self.given_up

    @property
    def missing(self) -> int:
        return self.expected - self.seen


def _numbering(held: SeqRanges | tuple[Any, ...]) -> SeqRanges:
    """A numbering from its `__getstate__` tuple (or a snapshot's object)."""
    if type(held) is tuple:
        seqs = SeqRanges.__new__(SeqRanges)
        seqs.__setstate__(held)
        return seqs
    assert isinstance(held, SeqRanges)
    return held


def numberings_state(seqs: dict[str, SeqRanges]) -> dict[str, tuple[object, ...]]:
    """A node's numberings by sensor as the tuples they pickle as (a snapshot holds them so:
    no reduce of pickle's own for each)."""
    return {sensor: held.__getstate__() for sensor, held in seqs.items()}


def numberings_of(held: dict[str, Any]) -> dict[str, SeqRanges]:
    """The numberings of `numberings_state`, or of a snapshot that held them as objects."""
    return {sensor: _numbering(state) for sensor, state in held.items()}
