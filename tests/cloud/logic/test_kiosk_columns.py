"""The kiosk queues' tickets held in columns per kiosk sensor (`hospital.Stamps`: ticket
numbers and stamps in two int64 arrays, the tickets called per hour as sorted arrays of
numbers): a snapshot of the release before (tables of tickets: dicts of lists and sets)
resumes and goes on as if never stopped, a ticket costs a few tens of bytes in memory, and
numbers past int64 still pair. The points against the tables of before, message by
message: test_ward_incremental.py."""

from __future__ import annotations

import pickle
import random
import sys
from array import array

from cloud.logic.domain.hospital import HospitalNodeRollup, WaitSamples
from tests.cloud.logic.domain_helpers import HOUR, MIN, T0, S, rd, select
from urbanpulse.wire import Reading

QUEUE = "hospital.queue"


def _kiosks(seed: int, hours: int) -> list[list[Reading]]:
    """Two kiosks, a ticket issued every 40 s each and called 2-30 min later, in messages of
    a minute; some events sent again, some 10-50 min late."""
    rng = random.Random(seed)
    events: list[tuple[int, Reading]] = []
    for k, sensor in enumerate(("kiosk-a", "kiosk-b")):
        for n in range(hours * 90):
            issued = T0 + n * 40 * S + k * 7 * S
            called = issued + rng.randrange(2 * 60, 30 * 60) * S
            ticket = 1 + n % 500  # numbers restart
            for ts, flag in ((issued, 0), (called, 1)):
                r = rd(sensor, QUEUE, ts, ticket=ticket, called=flag)
                sent = ts + (rng.choice([10, 20, 50]) * MIN if rng.random() < 0.05 else 0)
                events.append((sent, r))
                if rng.random() < 0.03:
                    events.append((sent + MIN, r))  # the same event again
    events.sort(key=lambda e: e[0])
    messages: dict[int, list[Reading]] = {}
    for sent, r in events:
        messages.setdefault(sent // MIN, []).append(r)
    return [messages[m] for m in sorted(messages)]


def _old_snapshot(roll: HospitalNodeRollup) -> dict[str, object]:
    """The state as the release before the columns pickled it: its __getstate__ gave its
    __dict__ less the derived indexes, the queue as `issues`, `calls` ((sensor, ticket) ->
    sorted stamps) and `call_hours` (hour -> set of (sensor, ticket))."""
    state = {k: v for k, v in roll.__getstate__().items() if k not in ("issued", "called", "called_in")}
    state.update(issues=roll.issues, calls=roll.calls, call_hours=roll.call_hours)
    assert all(type(v) is list for v in state["issues"].values())  # type: ignore[attr-defined]
    return state


def test_a_snapshot_of_the_tables_of_tickets_resumes_and_goes_on_the_same() -> None:
    messages = _kiosks(3, 8)
    whole = HospitalNodeRollup(3 * HOUR, max_wait_ns=HOUR)
    expected: list[tuple[str, str]] = []
    expected_updates = []
    for m in messages:
        points, updates = whole.process("s", "lab", m)
        expected += points
        expected_updates += [u for u in updates if isinstance(u, WaitSamples)]
    cut = len(messages) // 2
    roll = HospitalNodeRollup(3 * HOUR, max_wait_ns=HOUR)
    got: list[tuple[str, str]] = []
    got_updates = []
    for i, m in enumerate(messages):
        if i == cut:
            old = pickle.dumps(_old_snapshot(roll))
            roll = HospitalNodeRollup.__new__(HospitalNodeRollup)
            roll.__setstate__(pickle.loads(old))
            assert not any(name in vars(roll) for name in ("issues", "calls", "call_hours"))
            assert all(type(c.stamps) is array for c in roll.issued.values())
        points, updates = roll.process("s", "lab", m)
        got += points
        got_updates += [u for u in updates if isinstance(u, WaitSamples)]
    assert got == expected
    assert got_updates == expected_updates
    assert (roll.issues, roll.calls, roll.call_hours) == (whole.issues, whole.calls, whole.call_hours)
    waits = select(got, "agg_1h", "queue_wait", site="s", node="lab")
    assert len(waits) >= 8
    assert all(int(str(f["n"])) > 100 for f in list(waits.values())[1:-1])
    # and this release's own snapshot: the columns, pickled as int64 bytes
    again = pickle.loads(pickle.dumps(roll))
    assert (again.issues, again.calls, again.call_hours) == (roll.issues, roll.calls, roll.call_hours)


def test_a_ticket_costs_a_few_tens_of_bytes() -> None:
    """Tables of tickets held ~500 bytes a ticket (a tuple key, a list and a boxed stamp in
    `issues` and `calls`, a tuple in a set of `call_hours`); the columns 16 bytes a stamp."""
    roll = HospitalNodeRollup(6 * HOUR, max_wait_ns=12 * HOUR)
    for m in _kiosks(5, 6):
        roll.process("s", "lab", m)
    tickets = len(roll.issues)
    assert tickets > 500
    held = [*roll.issued.values(), *roll.called.values()]
    size = sum(sys.getsizeof(c) + sys.getsizeof(c.numbers) + sys.getsizeof(c.stamps) for c in held)
    size += sum(sys.getsizeof(h) + sum(sys.getsizeof(a) for a in h.values())
                for h in roll.called_in.values()) + sys.getsizeof(roll.called_in)
    assert size / tickets < 60, size / tickets


def test_ticket_numbers_and_stamps_past_int64_still_pair() -> None:
    """An int64 array cannot hold them: that kiosk's columns turn into lists, same order."""
    roll = HospitalNodeRollup(2 * HOUR)
    huge = 2**70
    points = roll.process("s", "q", [rd("k", QUEUE, T0 + MIN, ticket=3, called=0),
                                     rd("k", QUEUE, T0 + 2 * MIN, ticket=float(huge), called=0),
                                     rd("k", QUEUE, T0 + 5 * MIN, ticket=float(huge), called=1),
                                     rd("k", QUEUE, T0 + 6 * MIN, ticket=3, called=1)])[0]
    assert type(roll.issued["k"].numbers) is list
    assert roll.issues == {("k", 3): [T0 + MIN], ("k", huge): [T0 + 2 * MIN]}
    assert select(points, "agg_1h", "queue_wait", site="s", node="q")[T0] == {
        "n": 2, "median_s": 240.0, "p90_s": 288.0, "mean_s": 240.0}
    resumed = pickle.loads(pickle.dumps(roll))
    assert resumed.issues == roll.issues
