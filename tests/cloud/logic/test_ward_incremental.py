"""The ward rollup's counts kept up to date as the beds change, its eviction of only what
the floor has passed (`HospitalNodeRollup._tails`, `_seconds`, the queue floor swept) and its queue waits
kept per ticket (`_waits`), against the algorithm they replaced, kept here: a search in every
bed's readings for each window's end, a walk over every bed and ticket after each message,
and every ticket of an hour paired again at each queue message. Random messages of bed, door and
queue readings, late (some beyond the horizon), out of order, stamped alike, with the
horizon given anew, resumes from snapshots (this release's and the layouts of those before)
on the way: the same points, updates and state after every message."""

from __future__ import annotations

import bisect
import pickle
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.logic.domain.common import HOUR_NS, RP_1H, WIDTHS, window_start
from cloud.logic.domain.hospital import (
    GONE_NS,
    STALE_NS,
    HospitalNodeRollup,
    SiteUpdate,
    Ticket,
    WardSnapshot,
    hours_with_gaps,
    insort_unique,
)
from cloud.logic.lines import series_head
from tests.cloud.logic.domain_helpers import HOUR, MIN, T0, S
from urbanpulse.wire import Reading

BED, DOOR, QUEUE = "hospital.bed", "hospital.door", "hospital.queue"
STATE = ("beds", "bed_windows", "doors", "issues", "calls", "call_hours", "queue_kept_from",
         "newest_ns", "too_late", "horizon_ns", "kept_ns")
DERIVED = ("_tails", "_tail_counts", "_seconds", "_queue_swept")
QUEUE_COLUMNS = ("issued", "called", "called_in")  # the queue's pickled layout since the columns
BED_COLUMNS = ("bed_readings",)  # the beds' pickled layout since the columns


class WalkingRollup(HospitalNodeRollup):
    """The rollup as it was at ee74ac2: each window's end searched in every bed, every
    bed and ticket walked after each message, an hour's waits paired anew; its queue held in
    the tables of tickets of then (`issues`, `calls`, `call_hours`: dicts of lists and sets,
    where the rollup now holds columns per kiosk sensor and gives those tables as copies);
    its beds held as the tables of then too (`beds`: sensor -> a list of (ts, occupied,
    fault, seq), where the rollup now holds columns per bed, `BedReadings`)."""

    def __init__(self, horizon_ns: int, max_wait_ns: int) -> None:
        super().__init__(horizon_ns, max_wait_ns=max_wait_ns)
        self._tables: tuple[dict[Ticket, list[int]], dict[Ticket, list[int]],
                            dict[int, set[Ticket]]] = ({}, {}, {})
        self._beds: dict[str, list[tuple[int, int, int, int]]] = {}

    def __setstate__(self, state: dict[str, object]) -> None:
        tables = state.get("issues"), state.get("calls"), state.get("call_hours")
        beds = state.get("beds")
        super().__setstate__(state)
        if tables[0] is not None:  # an old layout's, else its own (`_tables`)
            self._tables = tables  # type: ignore[assignment]
        if beds is not None:  # an old layout's (from before the seq was kept: number unknown)
            self._beds = {s: [(e[0], e[1], e[2], e[3] if len(e) > 3 else -1) for e in h]
                          for s, h in beds.items()}  # type: ignore[attr-defined]

    @property
    def beds(self) -> dict[str, list[tuple[int, int, int, int]]]:
        return self._beds

    def _add_bed(self, r: Reading) -> bool:  # the beds of then
        ts = r.ts_ns
        entry = (ts, int(r.values["occupied"]), int(r.values.get("fault", 0)), r.seq)
        history = self.beds.get(r.sensor)
        if history is None:
            self.beds[r.sensor] = [entry]
        elif ts > history[-1][0]:
            history.append(entry)
        else:
            i = bisect.bisect_left(history, (ts,))
            if i < len(history) and history[i][0] == ts:
                if r.seq >= history[i][3]:
                    history[i] = entry
            else:
                history.insert(i, entry)
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
        return new

    @property
    def issues(self) -> dict[Ticket, list[int]]:
        return self._tables[0]

    @property
    def calls(self) -> dict[Ticket, list[int]]:
        return self._tables[1]

    @property
    def call_hours(self) -> dict[int, set[Ticket]]:
        return self._tables[2]

    def _add_queue(self, r: Reading) -> set[int]:  # the queue of then
        ticket = (r.sensor, round(r.values["ticket"]))
        if r.values["called"]:
            calls = self.calls.setdefault(ticket, [])
            i = insort_unique(calls, r.ts_ns)
            hour = window_start(r.ts_ns, HOUR_NS)
            self.call_hours.setdefault(hour, set()).add(ticket)
            if i + 1 < len(calls):
                return {hour, window_start(calls[i + 1], HOUR_NS)}
            return {hour}
        insort_unique(self.issues.setdefault(ticket, []), r.ts_ns)
        calls = self.calls.get(ticket, [])
        lo = bisect.bisect_left(calls, r.ts_ns)
        hi = bisect.bisect_right(calls, r.ts_ns + self.max_wait_ns)
        return {window_start(t, HOUR_NS) for t in calls[lo:hi]}

    def pair(self, ticket: Ticket, issued_ns: int) -> int | None:
        issues = self.issues.get(ticket, [])
        i = bisect.bisect_right(issues, issued_ns)
        next_issue = issues[i] if i < len(issues) else None
        calls = self.calls.get(ticket, [])
        j = bisect.bisect_left(calls, issued_ns)
        if j == len(calls):
            return None
        call = calls[j]
        if call - issued_ns > self.max_wait_ns or (next_issue is not None and call >= next_issue):
            return None
        return call

    def ward_at(self, end_ns: int) -> tuple[int, int, int, int, int]:
        beds = occupied = faulty = stale = 0
        oldest = end_ns - STALE_NS
        for history in self.beds.values():
            i = bisect.bisect_left(history, (end_ns,))
            if i == 0:
                continue
            ts, occ, fault, _ = history[i - 1]
            if ts < end_ns - GONE_NS:  # (the rule of GONE_NS, since ee74ac2)
                continue
            if ts < oldest:
                stale += 1
                continue
            beds += 1
            if fault:
                faulty += 1
            elif occ:
                occupied += 1
        return beds, occupied, beds - occupied - faulty, faulty, stale

    def wards_at(self, ends: list[int]) -> list[tuple[int, int, int, int, int]]:
        return [self.ward_at(end) for end in ends]

    def _emit_beds(self, site: str, node: str, from_ns: int, new_hours: set[int],
                   points: list[tuple[str, str]], updates: list[SiteUpdate]) -> None:
        head = series_head("ward_occupancy", {"site": site, "node": node})
        for rp, width in WIDTHS:
            first = window_start(from_ns, width)
            windows = self.bed_windows[rp]
            i = bisect.bisect_left(windows, first)
            starts = windows[i:] if rp != RP_1H else hours_with_gaps(windows, i, first, new_hours)
            for start, (beds, occupied, available, faulty, stale) in zip(
                    starts, self.wards_at([s + width for s in starts]), strict=True):
                text = (f"{head} beds={beds}i,occupied={occupied}i,available={available}i,"
                        f"faulty={faulty}i,stale={stale}i")
                if occupied + available:
                    text += f",occupancy_pct={100.0 * occupied / (occupied + available)!r}"
                points.append((rp, f"{text} {start}"))
                updates.append(WardSnapshot(site, node, rp, start, beds, occupied, available, faulty,
                                            stale))

    def waits(self, hour: int) -> list[float]:  # every ticket of the hour paired again
        out: list[float] = []
        for ticket in self.call_hours.get(hour, ()):
            for issued in self.issues.get(ticket, ()):
                call = self.pair(ticket, issued)
                if call is not None and window_start(call, HOUR_NS) == hour:
                    out.append((call - issued) / 1e9)
        return out

    def _evict(self) -> None:
        floor = self.floor_ns()
        for history in self.beds.values():
            i = bisect.bisect_left(history, (floor,))
            if i > 1:
                del history[:i - 1]
        for rp, width in WIDTHS:
            starts = self.bed_windows[rp]
            old = bisect.bisect_left(starts, floor - width if rp != RP_1H
                                     else window_start(floor, HOUR_NS) - 2 * HOUR_NS)
            if old:
                del starts[:old]
        for hour in [h for h in self.doors if h < floor - HOUR_NS]:
            del self.doors[hour]
        queue_floor = window_start(floor, HOUR_NS) - self.max_wait_ns
        if self.queue_kept_from is not None and queue_floor >= self.queue_kept_from:
            self.queue_kept_from = None
        for times in (self.issues, self.calls):
            for ticket, stamps in list(times.items()):
                if stamps[0] >= queue_floor:
                    continue
                i = bisect.bisect_left(stamps, queue_floor)
                if i < len(stamps):
                    del stamps[:i]
                else:
                    del times[ticket]
        for hour in [h for h in self.call_hours if h < floor - HOUR_NS]:
            del self.call_hours[hour]


def _state(roll: HospitalNodeRollup) -> dict[str, object]:
    return {name: getattr(roll, name) for name in STATE}


def _assert_indexes(roll: HospitalNodeRollup) -> None:
    """The incremental indexes hold what they must (extra heap entries are allowed)."""
    tails = sorted((h[-1][0], s) for s, h in roll.beds.items() if h)
    assert roll._tails == tails
    counts = [0, 0, 0]
    for h in roll.beds.values():
        if h:
            counts[2 if h[-1][2] else 1 if h[-1][1] else 0] += 1
    assert roll._tail_counts == counts
    seconds = set(roll._seconds)
    assert all((h[1][0], s) in seconds for s, h in roll.beds.items() if len(h) > 1)
    swept = roll._queue_swept  # no stamp before the queue floor last let go from
    assert swept is None or all(stamps[0] >= swept for times in (roll.issues, roll.calls)
                                for stamps in times.values())
    for columns in (roll.issued, roll.called):  # each kiosk's (number, stamp) pairs sorted, unique
        for column in columns.values():
            pairs = list(zip(column.numbers, column.stamps, strict=True))
            assert pairs
            assert pairs == sorted(set(pairs))
    for bed in roll.bed_readings.values():  # each bed's stamps sorted, unique; columns of one length
        assert list(bed.stamps) == sorted(set(bed.stamps))
        assert len(bed.stamps) == len(bed.seqs) == len(bed.flags)
        assert set(bed.flags) <= {0, 1, 2, 3}
    for by_sensor in roll.called_in.values():
        assert all(list(numbers) == sorted(set(numbers)) for numbers in by_sensor.values())


def _old_layout(roll: HospitalNodeRollup, rng: random.Random) -> dict[str, object]:
    """The rollup's state as a release from before the indexes pickled it, sometimes from
    before the bed numbers (3-tuples) or the queue's kept-from were kept."""
    state = {k: v for k, v in roll.__dict__.items() if k not in DERIVED + QUEUE_COLUMNS + BED_COLUMNS}
    state.update(issues=roll.issues, calls=roll.calls, call_hours=roll.call_hours, beds=roll.beds)
    if rng.random() < 0.3:
        state["beds"] = {s: [(ts, occ, fault) for ts, occ, fault, _ in h] for s, h in roll.beds.items()}
    if rng.random() < 0.3:
        del state["queue_kept_from"]
    return pickle.loads(pickle.dumps(state))


def _resume(state: dict[str, object], cls: type[HospitalNodeRollup]) -> HospitalNodeRollup:
    roll = cls.__new__(cls)
    roll.__setstate__(pickle.loads(pickle.dumps(state)))
    return roll


def _messages(rng: random.Random, n: int) -> list[list[Reading]]:
    beds = [f"b{i}" for i in range(rng.randint(1, 6))]
    kiosks = ["k1", "k2"]
    clock = T0 + rng.randrange(3600) * S  # whole seconds: some at a window's end
    seq = 0
    out: list[list[Reading]] = []
    for _ in range(n):
        clock += rng.choice([0, S, 20 * S, MIN, 5 * MIN, 30 * MIN, 2 * HOUR])
        message = []
        for _ in range(rng.choice([1, 1, 1, 2, 3, 6])):
            seq += 1
            late = rng.choice([0, 0, 0, 0, 10 * S, 2 * MIN, 40 * MIN, 3 * HOUR, 5 * HOUR])
            ts = clock - late - rng.randrange(30) * S
            kind = rng.choice([BED, BED, BED, BED, DOOR, QUEUE])
            if kind == BED:
                sensor = rng.choice(beds)
                values = {"occupied": float(rng.random() < 0.5)}
                if rng.random() < 0.15:
                    values["fault"] = 1.0
                if rng.random() < 0.1 and message:  # stamped like the one before
                    ts = message[-1].ts_ns
                message.append(Reading(sensor, BED, ts, rng.choice([seq, seq, seq - 5]), values, ()))
            elif kind == DOOR:
                message.append(Reading(rng.choice(["door-er", "door-main"]), DOOR, ts, seq,
                                       {"count": float(rng.randrange(5)), "interval_s": 60.0,
                                        "fault": float(rng.random() < 0.1)}, ()))
            else:
                message.append(Reading(rng.choice(kiosks), QUEUE, ts, seq,
                                       {"ticket": float(rng.randrange(1, 6)),
                                        "called": float(rng.random() < 0.5)}, ()))
        out.append(message)
    return out


@settings(max_examples=80, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_the_incremental_ward_gives_what_the_walk_over_every_bed_gave(seed: int) -> None:
    rng = random.Random(seed)
    horizon = rng.choice([HOUR, 3 * HOUR, 6 * HOUR])
    max_wait = rng.choice([HOUR, 2 * HOUR, 12 * HOUR])
    new = HospitalNodeRollup(horizon, max_wait_ns=max_wait)
    old: HospitalNodeRollup = WalkingRollup(horizon, max_wait_ns=max_wait)
    for message in _messages(rng, 150):
        assert new.process("s", "w1", message) == old.process("s", "w1", message)
        assert _state(new) == _state(old)
        _assert_indexes(new)
        newest = new.newest_ns
        for end in (newest, newest + 1, newest + MIN, newest + STALE_NS, newest + STALE_NS + 1,
                    newest + rng.randrange(5 * HOUR), newest - rng.randrange(2 * HOUR)):
            assert new.ward_at(end) == old.ward_at(end)
        ends = sorted({newest - rng.randrange(3 * HOUR) + rng.randrange(4 * HOUR) for _ in range(6)})
        assert new.wards_at(ends) == old.wards_at(ends)
        event = rng.random()
        if event < 0.05:
            h = rng.choice([HOUR, 2 * HOUR, 4 * HOUR, 8 * HOUR])
            new.set_horizon(h)
            old.set_horizon(h)
            assert _state(new) == _state(old)
            _assert_indexes(new)
        elif event < 0.1:  # this release's snapshot: the indexes are not in it
            snapshot = pickle.dumps(new)
            assert not any(name.encode() in snapshot for name in DERIVED)
            new = pickle.loads(snapshot)
            old = pickle.loads(pickle.dumps(old))
            _assert_indexes(new)
        elif event < 0.15:  # a snapshot of an earlier release
            state = _old_layout(new, rng)
            new, old = _resume(state, HospitalNodeRollup), _resume(state, WalkingRollup)
            assert _state(new) == _state(old)
            _assert_indexes(new)
