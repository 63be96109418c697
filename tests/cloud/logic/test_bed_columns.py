"""The wards' bed readings held in columns per bed (`hospital.BedReadings`: stamps and seqs
in two int64 arrays, occupied and fault a byte): a snapshot of the release before (a list of
(ts, occupied, fault, seq) tuples per bed, or (ts, occupied, fault) before the seq was kept)
resumes mid-stream and goes on as if never stopped, a reading costs a few tens of bytes,
and stamps or seqs past int64 still count. The points against the tables of before, message
by message: test_ward_incremental.py."""

from __future__ import annotations

import pickle
import random
import sys
from array import array

from cloud.logic.domain.hospital import HospitalNodeRollup
from tests.cloud.logic.domain_helpers import HOUR, MIN, T0, S, select
from urbanpulse.wire import Reading

BED = "hospital.bed"


def _ward(seed: int, hours: int) -> list[list[Reading]]:
    """Eight pads, each sending its state every 1-6 min (sometimes faulty), in messages of a
    minute; some readings sent again, some 10-50 min late, some pairs stamped alike."""
    rng = random.Random(seed)
    events: list[tuple[int, Reading]] = []
    seq = 0
    for b in range(8):
        ts = T0 + rng.randrange(60) * S
        occupied = 0
        while ts < T0 + hours * HOUR:
            seq += 1
            if rng.random() < 0.1:
                occupied = 1 - occupied
            values = {"occupied": float(occupied)}
            if rng.random() < 0.05:
                values["fault"] = 1.0
            r = Reading(f"bed-{b}", BED, ts, seq, values, ())
            sent = ts + (rng.choice([10, 20, 50]) * MIN if rng.random() < 0.05 else 0)
            events.append((sent, r))
            if rng.random() < 0.03:
                events.append((sent + MIN, r))  # the same reading again
            if rng.random() < 0.03:  # another stamped alike, numbered later or earlier
                other = Reading(r.sensor, BED, ts, seq + rng.choice([1000, -1000]),
                                {"occupied": float(1 - occupied)}, ())
                events.append((sent + rng.choice([0, MIN, 30 * MIN]), other))
            ts += rng.randrange(60, 360) * S
    events.sort(key=lambda e: e[0])
    messages: dict[int, list[Reading]] = {}
    for sent, r in events:
        messages.setdefault(sent // MIN, []).append(r)
    return [messages[m] for m in sorted(messages)]


def _old_snapshot(roll: HospitalNodeRollup, numbered: bool) -> bytes:
    """The state as the release before the columns pickled it: its __getstate__ gave its
    __dict__ less the derived indexes, the beds as `beds` (sensor -> sorted tuples)."""
    state = {k: v for k, v in roll.__getstate__().items() if k != "bed_readings"}
    beds = roll.beds
    state["beds"] = beds if numbered else {s: [e[:3] for e in h] for s, h in beds.items()}
    assert all(type(h) is list and type(h[0]) is tuple for h in beds.values())
    return pickle.dumps(state)


def test_a_snapshot_of_the_tables_of_bed_readings_resumes_and_goes_on_the_same() -> None:
    messages = _ward(3, 8)
    whole = HospitalNodeRollup(3 * HOUR)
    roll = HospitalNodeRollup(3 * HOUR)
    got: list[tuple[str, str]] = []
    for i, m in enumerate(messages):
        if i in (len(messages) // 3, 2 * len(messages) // 3):
            old = _old_snapshot(roll, numbered=True)
            roll = HospitalNodeRollup.__new__(HospitalNodeRollup)
            roll.__setstate__(pickle.loads(old))
            assert "beds" not in vars(roll)
            assert all(type(b.stamps) is array and type(b.seqs) is array
                       for b in roll.bed_readings.values())
            assert roll.beds == whole.beds
        points, updates = roll.process("s", "w", m)
        assert (points, updates) == whole.process("s", "w", m), i
        got += points
    assert roll.beds == whole.beds
    wards = select(got, "agg_1m", "ward_occupancy", site="s", node="w")
    assert len(wards) > 400
    assert any(int(str(f["faulty"])) for f in wards.values())
    # and this release's own snapshot: the columns, pickled as bytes
    again = pickle.loads(pickle.dumps(roll))
    assert again.beds == roll.beds
    assert again.process("s", "w", messages[-1]) == roll.process("s", "w", messages[-1])


def test_a_snapshot_from_before_the_seq_was_kept_resumes_with_numbers_unknown() -> None:
    """(ts, occupied, fault): number -1, so that any reading stamped alike replaces it."""
    messages = _ward(4, 2)
    roll = HospitalNodeRollup(3 * HOUR)
    for m in messages[:60]:
        roll.process("s", "w", m)
    old = HospitalNodeRollup.__new__(HospitalNodeRollup)
    old.__setstate__(pickle.loads(_old_snapshot(roll, numbered=False)))
    assert {s: [e[:3] for e in h] for s, h in old.beds.items()} == {
        s: [e[:3] for e in h] for s, h in roll.beds.items()}
    assert all(seq == -1 for bed in old.bed_readings.values() for seq in bed.seqs)
    ts = old.bed_readings["bed-0"].stamps[-1]
    old.process("s", "w", [Reading("bed-0", BED, ts, 0, {"occupied": 1.0, "fault": 1.0}, ())])
    assert old.beds["bed-0"][-1] == (ts, 1, 1, 0)


def test_a_bed_reading_costs_a_few_tens_of_bytes() -> None:
    """A tuple (ts, occupied, fault, seq) with its boxed stamp and seq held ~150 bytes in
    memory; the columns 17 bytes a reading, pickled as the arrays' bytes."""
    roll = HospitalNodeRollup(6 * HOUR)
    for m in _ward(5, 6):
        roll.process("s", "w", m)
    beds = roll.bed_readings.values()
    readings = sum(len(b.stamps) for b in beds)
    assert readings > 800
    memory = sum(sys.getsizeof(b) + sys.getsizeof(b.stamps) + sys.getsizeof(b.seqs)
                 + sys.getsizeof(b.flags) for b in beds)
    assert memory / readings < 30, memory / readings
    pickled = len(pickle.dumps(roll.bed_readings, protocol=pickle.HIGHEST_PROTOCOL))
    assert pickled / readings < 20, pickled / readings


def test_stamps_and_seqs_past_int64_still_count() -> None:
    """An int64 array cannot hold them: that bed's columns turn into lists, same order."""
    big = 2**64
    roll = HospitalNodeRollup(2 * HOUR)
    roll.process("s", "w", [Reading("a", BED, T0 + MIN, 3, {"occupied": 1.0}, ()),
                            Reading("a", BED, T0 + MIN, big, {"occupied": 0.0}, ()),
                            Reading("a", BED, T0 + MIN, 7, {"occupied": 1.0}, ())])
    assert type(roll.bed_readings["a"].seqs) is list
    assert roll.beds["a"] == [(T0 + MIN, 0, 0, big)]
    far = big * 10**9 - big * 10**9 % MIN  # a stamp past int64, at a minute's start
    points = roll.process("s", "w", [Reading("b", BED, far + S, 1, {"occupied": 1.0}, ()),
                                     Reading("c", BED, far + 2 * S, 2, {"occupied": 0.0}, ())])[0]
    assert type(roll.bed_readings["b"].stamps) is list
    assert select(points, "agg_1m", "ward_occupancy", site="s", node="w")[far] == {
        "beds": 2, "occupied": 1, "available": 1, "faulty": 0, "stale": 0, "occupancy_pct": 50.0}
    resumed = pickle.loads(pickle.dumps(roll))
    assert resumed.beds == roll.beds
    assert resumed.ward_at(far + MIN) == roll.ward_at(far + MIN) == (2, 1, 1, 0, 0)


def test_a_snapshot_holds_the_beds_columns_as_bytes_and_one_holding_the_objects_resumes() -> None:
    """Since session 25 a ward's snapshot holds each bed's columns as their bytes (the arrays
    took a reduce each); a snapshot of the code before held the `BedReadings` objects: both
    resume the same beds and go on as the ward never stopped."""
    roll = HospitalNodeRollup(6 * HOUR)
    messages = _ward(11, 4)
    half = len(messages) // 2
    for m in messages[:half]:
        roll.process("s", "w", m)
    state = roll.__getstate__()
    assert state["bed_readings"]
    assert all(type(c) is bytes for held in state["bed_readings"].values() for c in held)
    before = {**state, "bed_readings": dict(roll.bed_readings)}
    snapshots = [pickle.dumps(held, protocol=pickle.HIGHEST_PROTOCOL) for held in (state, before)]
    beds = roll.beds
    later = [roll.process("s", "w", m) for m in messages[half:]]
    for snapshot in snapshots:
        resumed = HospitalNodeRollup.__new__(HospitalNodeRollup)
        resumed.__setstate__(pickle.loads(snapshot))
        assert resumed.beds == beds
        assert all(type(b.stamps) is array and type(b.seqs) is array
                   for b in resumed.bed_readings.values())
        assert [resumed.process("s", "w", m) for m in messages[half:]] == later
