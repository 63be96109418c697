"""The door hours' kept totals (`HospitalNodeRollup._door_sums`) give, byte for byte, what the
rollup gave when it summed every door reading of an hour at each door message (the release
before, `SummingRollup` below, its `process` verbatim): on random messages of door readings
(ER, visit and ignored doors, counts of every size, zeros, -0.0, faults) with bed readings
moving the newest stamp, late (some beyond the horizon), shuffled, repeated (the same reading
again, or another of the same stamp), through evictions, door roles and horizons given anew and
snapshots (this release's, and the layout from before the faults and numbers were kept): the
same points, site updates and state after every message."""

from __future__ import annotations

import math
import pickle
import random
from collections.abc import Iterable

import pytest

from cloud.logic.domain.common import HOUR_NS, NOT_MEASURING, RP_1H, Point
from cloud.logic.domain.door_roles import DoorRoles
from cloud.logic.domain.hospital import (
    DoorTotals,
    HospitalNodeRollup,
    SiteUpdate,
    WaitSamples,
    _DoorSums,
    door_faulty,
    wait_fields,
)
from cloud.logic.lines import line
from tests.cloud.logic.domain_helpers import HOUR, MIN, T0, S
from urbanpulse.wire import Reading

DOOR, BED = "hospital.door", "hospital.bed"
SENSORS = ("er-1", "door-er", "main-1", "main-2", "staff")


class SummingRollup(HospitalNodeRollup):
    """The rollup as it was at fad9311: an hour's door counts and faults summed anew from
    all its readings at each message (`process` verbatim)."""

    def process(self, site: str, node: str, readings: Iterable[Reading],
                redo_doors: Iterable[int] = ()) -> tuple[list[Point], list[SiteUpdate]]:
        """`redo_doors`: door hours to write again whatever the readings (`set_roles`)."""
        bed_from: int | None = None
        new_hours: set[int] = set()  # hours holding their first bed reading
        door_hours: set[int] = set(redo_doors)
        wait_hours: set[int] = set()
        horizon_ns, kept = self.horizon_ns, self.kept_ns
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
                doors = self.doors.get(hour)
                if doors is None:
                    doors = self.doors[hour] = {}
                values = r.values
                doors[(r.sensor, ts, r.seq)] = (self.roles.role(r.sensor), float(values["count"]),
                                                1 if values.get("fault") else 0)
                door_hours.add(hour)
            elif kind == "hospital.queue":
                wait_hours |= self._add_queue(r)
        points: list[Point] = []
        updates: list[SiteUpdate] = []
        if bed_from is not None:
            self._emit_beds(site, node, bed_from, new_hours, points, updates)
        for hour in sorted(door_hours):
            entries = self.doors[hour].values()
            er = math.fsum(c for role, c, _ in entries if role == "er")
            visits = math.fsum(c for role, c, _ in entries if role == "visit")
            faulty = door_faulty([fault for role, _, fault in entries if role != "ignore"])
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


def _count(rng: random.Random) -> float:
    kind = rng.random()
    if kind < 0.6:
        return float(rng.randint(0, 12))  # as door counters report them
    if kind < 0.75:
        return rng.uniform(0, 1) * 10.0 ** rng.randint(-30, 8)  # far apart: many partials
    if kind < 0.85:
        return rng.choice([0.0] * 6 + [-0.0, 1e-310, 5e-324])  # zeros, subnormals
    return rng.choice([0.1, 0.2, 0.3, 2.0**-40, 1.0, 3.0, 2.5])  # rounding-prone


def _stream(rng: random.Random, hours: int) -> list[Reading]:
    """Door readings of a few doors over `hours` hours with gaps, and bed readings, in time
    order; some repeated (the same number: sent again; or another one of the same stamp)."""
    out: list[Reading] = []
    seq = 0
    gaps = {h for h in range(hours) if rng.random() < 0.15}
    for h in range(hours):
        if h in gaps:
            continue
        for _ in range(rng.choice([1, 2, 5, 20, 60])):
            ts = T0 + h * HOUR + rng.randrange(HOUR // MIN + 1) * MIN + rng.choice([0, 0, 1, 7 * S])
            seq += 1
            flags: tuple[str, ...] = (rng.choice(sorted(NOT_MEASURING)),) if rng.random() < 0.03 else ()
            if rng.random() < 0.1:
                out.append(Reading("bed-1", BED, ts, seq, {"occupied": rng.randint(0, 1)}, flags))
                continue
            values: dict[str, float] = {"count": _count(rng), "interval_s": 60.0}
            if rng.random() < 0.1:
                values["fault"] = 1
            sensor = rng.choice(SENSORS)
            out.append(Reading(sensor, DOOR, ts, seq, values, flags))
            if rng.random() < 0.07:  # the same reading again, perhaps another of its stamp
                again = seq if rng.random() < 0.6 else seq + 1
                seq += 1
                other = values if rng.random() < 0.3 else {**values, "count": _count(rng)}
                out.append(Reading(sensor, DOOR, ts, again, other, flags))
    out.sort(key=lambda r: r.ts_ns)
    return out


def _arrival(rng: random.Random, readings: list[Reading]) -> list[list[Reading]]:
    """Messages: mostly in order, some readings held back (late, perhaps too late), some
    messages shuffled."""
    held: list[tuple[int, Reading]] = []
    order: list[Reading] = []
    for i, r in enumerate(readings):
        if rng.random() < 0.08:
            held.append((i + rng.randint(1, 300), r))
        else:
            order.append(r)
        for item in [x for x in held if x[0] <= i]:
            held.remove(item)
            order.append(item[1])
    order += [r for _, r in held]
    messages: list[list[Reading]] = []
    i = 0
    while i < len(order):
        n = rng.choice([1, 1, 1, 2, 3, 5, 30])
        msg = order[i:i + n]
        if rng.random() < 0.2:
            rng.shuffle(msg)
        messages.append(msg)
        i += n
    return messages


def _roles(rng: random.Random) -> DoorRoles:
    return DoorRoles({s: rng.choice(["er", "visit", "ignore"]) for s in SENSORS if rng.random() < 0.5})


def _as_before_faults(state: dict[str, object]) -> dict[str, object]:
    """A snapshot's state as a processor from before the faults and the numbers were kept
    pickled it: (sensor, ts) keys, (role, count) entries."""
    doors = state["doors"]
    assert isinstance(doors, dict)
    return {**state, "doors": {hour: {(k[0], k[1]): (e[0], e[1]) for k, e in entries.items()}
                               for hour, entries in doors.items()}}


def _resumed(rollup: HospitalNodeRollup, state: dict[str, object]) -> HospitalNodeRollup:
    again = type(rollup).__new__(type(rollup))
    again.__setstate__(pickle.loads(pickle.dumps(state)))
    return again


@pytest.mark.parametrize("seed", range(20))
def test_random_streams_give_the_released_points(seed: int) -> None:
    rng = random.Random(seed)
    horizon = rng.choice([HOUR, 3 * HOUR, 20 * HOUR])
    roles = _roles(rng)
    messages = _arrival(rng, _stream(rng, rng.randint(4, 24)))
    new: HospitalNodeRollup = HospitalNodeRollup(horizon, roles)
    ref: HospitalNodeRollup = SummingRollup(horizon, roles)
    written = 0
    redo: list[int] = []
    for i, msg in enumerate(messages):
        got = new.process("hn", "ed", msg, redo)
        assert got == ref.process("hn", "ed", msg, redo), (seed, i)
        written += sum(1 for _, p in got[0] if p.startswith("door_flow,"))
        assert new.__getstate__() == ref.__getstate__()
        assert new._door_sums.keys() <= new.doors.keys()
        redo = []
        event = rng.random()
        if event < 0.03:  # a snapshot of this release, resumed
            new = pickle.loads(pickle.dumps(new, protocol=pickle.HIGHEST_PROTOCOL))
            assert new._door_sums == {}
        elif event < 0.05:  # a snapshot from before the faults and numbers were kept
            state = _as_before_faults(ref.__getstate__())
            new, ref = _resumed(new, state), _resumed(ref, state)
        elif event < 0.09:  # door roles given anew (at a start): their hours written again
            roles = _roles(rng)
            redo = new.set_roles(roles)
            assert ref.set_roles(roles) == redo
        elif event < 0.11:  # a horizon given anew at a start
            given = rng.choice([HOUR, 2 * HOUR, 30 * HOUR])
            new.set_horizon(given)
            ref.set_horizon(given)
    assert written > len(messages) // 2


def test_door_sums_are_fsum_of_the_counts() -> None:
    """Kept partials, entries taken away and others put in their place: the totals are
    those the counts and faults give (math.fsum, `door_faulty`)."""
    rng = random.Random(4)
    for _ in range(500):
        entries: dict[int, tuple[str, float, int | None]] = {}
        sums = _DoorSums([])
        for _ in range(rng.randint(1, 60)):
            key = rng.randrange(20)
            entry = (rng.choice(["er", "visit", "ignore"]), _count(rng) * rng.choice([1, -1]),
                     rng.choice([0, 0, 1, None]))
            old = entries.get(key)
            entries[key] = entry
            if old is not None:
                sums.add(old, -1)
            sums.add(entry, 1)
            values = list(entries.values())
            assert sums.totals(values) == (
                math.fsum(c for role, c, _ in values if role == "er"),
                math.fsum(c for role, c, _ in values if role == "visit"),
                door_faulty([f for role, _, f in values if role != "ignore"]))
            assert sums.totals(values) == _DoorSums(values).totals(values)


def test_counts_not_summed_in_partials_give_what_fsum_gave(monkeypatch: pytest.MonkeyPatch) -> None:
    """Infinite, huge and -0.0 counts, and a math.fsum that keeps the sign of a sum of -0.0s
    (as IEEE addition does; CPython's 3.11 gives 0.0): an hour holding one sums its counts,
    as the release before did, whatever fsum does with them; an overflow raises as it did."""
    fsum = math.fsum

    def signed_fsum(terms: Iterable[float]) -> float:
        items = list(terms)
        total = fsum(items)
        if items and all(x == 0 and math.copysign(1.0, x) < 0 for x in items):
            return -0.0
        return total

    monkeypatch.setattr(math, "fsum", signed_fsum)

    def door(ts: int, count: float, sensor: str = "er-1") -> Reading:
        return Reading(sensor, DOOR, ts, ts, {"count": count, "interval_s": 60.0}, ())

    new: HospitalNodeRollup = HospitalNodeRollup(6 * HOUR)
    ref: HospitalNodeRollup = SummingRollup(6 * HOUR)
    outputs: list[tuple[list[Point], list[SiteUpdate]]] = []
    for r in (door(T0 + MIN, 1.0), door(T0 + 2 * MIN, -0.0), door(T0 + MIN, -0.0),
              door(T0 + HOUR + MIN, math.inf, "main-1"), door(T0 + HOUR + 2 * MIN, 2.0, "main-1"),
              door(T0 + 2 * HOUR + MIN, 1e308), door(T0 + 2 * HOUR + 2 * MIN, 1e305)):
        got = new.process("hn", "ed", [r])
        assert got == ref.process("hn", "ed", [r])
        outputs.append(got)
    assert "er_arrivals=-0.0," in outputs[2][0][0][1]  # (its 1.0 replaced by -0.0)
    assert "visits=inf," in outputs[4][0][0][1]
    overflow = door(T0 + 2 * HOUR + 3 * MIN, 1e308)
    with pytest.raises(OverflowError) as raised_new:
        new.process("hn", "ed", [overflow])
    with pytest.raises(OverflowError) as raised_ref:
        ref.process("hn", "ed", [overflow])
    assert str(raised_new.value) == str(raised_ref.value)
    assert isinstance(outputs[-1][1][0], DoorTotals)
