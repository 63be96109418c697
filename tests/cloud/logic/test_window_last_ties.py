"""A per-sensor window's `<field>_last` among readings of one stamp: the one numbered
highest, live as rebuilt. A rebuild from the raw points (late data) takes a sensor's readings
by stamp, then sequence number; the live window took, of equal stamps, the one that came
last. Two readings of one stamp (kiosk events in one microsecond, a node whose clock
stepped back) arriving out of sequence order (a batch sent again, a backlog after the fresh
readings) wrote one `_last` live and another once the window was rebuilt."""

from __future__ import annotations

import itertools
import pickle

import pytest

from cloud.logic.node import NodeState
from cloud.logic.recompute import Recompute
from cloud.logic.records import RP_1H, RP_1M, RP_RAW, NodeData, Point
from cloud.logic.rollup import HOUR_NS, MINUTE_NS, SensorRollup, Window
from tests.cloud.logic.domain_helpers import parse
from urbanpulse.wire import Reading

T0 = 1_795_000_000 * 10**9 - 1_795_000_000 * 10**9 % HOUR_NS  # an hour's start
S = 10**9
AT = T0 + 10 * MINUTE_NS + 123_456_000  # the one stamp
# Kiosk events of one stamp: numbered 7, 5, 1000 and 999 (999 and 1000: their raw times, the
# stamp plus the number mod 1000 ns, are the other way round); the one numbered 5 alone
# names no counter (an optional field): of those naming one, 1000 is the highest.
TIED = [
    Reading("kiosk-1", "hospital.queue", AT, 7, {"ticket": 17.0, "called": 1.0, "counter": 2.0}),
    Reading("kiosk-1", "hospital.queue", AT, 5, {"ticket": 15.0, "called": 0.0}),
    Reading("kiosk-1", "hospital.queue", AT, 1000, {"ticket": 20.0, "called": 1.0, "counter": 4.0}),
    Reading("kiosk-1", "hospital.queue", AT, 999, {"ticket": 19.0, "called": 0.0, "counter": 3.0}),
]
BEFORE = Reading("kiosk-1", "hospital.queue", AT - 5 * S, 4, {"ticket": 14.0, "called": 0.0})


def _windows(points: list[Point]) -> dict[tuple[str, int], str]:
    """The last line written per (policy, start) of the kiosk's windows."""
    last: dict[tuple[str, int], str] = {}
    for rp, text in points:
        if rp in (RP_1M, RP_1H) and text.startswith("hospital_queue,"):
            last[(rp, int(text.rsplit(" ", 1)[1]))] = text
    return last


def _rows(points: list[Point]) -> list[dict[str, object]]:
    """The raw points as InfluxDB gives them back (epoch ns)."""
    rows = []
    for rp, text in points:
        if rp == RP_RAW:
            _name, tags, fields, time = parse(text)
            rows.append({**tags, **fields, "time": time})
    return rows


def _live(messages: list[list[Reading]], snapshot: bool = False) -> list[Point]:
    state = NodeState(6 * HOUR_NS, detect=False)
    out: list[Point] = []
    for k, readings in enumerate(messages):
        if snapshot:
            state = pickle.loads(pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))
        out += state.process(NodeData("hn/opd", "hn", "opd", AT + S + k * S, readings))
    return out


def _rebuilt(points: list[Point]) -> dict[tuple[str, int], str]:
    out = {}
    for rp, width in ((RP_1M, MINUTE_NS), (RP_1H, HOUR_NS)):
        start = AT - AT % width
        ask = Recompute(rp, "hospital_queue", "hn", "opd", "kiosk-1", "hospital.queue", width, start)
        text = ask.rebuild(_rows(points))
        assert text is not None
        out[(rp, start)] = text
    return out


@pytest.mark.parametrize("order", list(itertools.permutations(range(4))))
@pytest.mark.parametrize("how", ["one message", "a message each", "a snapshot between"])
def test_the_live_window_takes_the_last_of_one_stamp_as_its_rebuild(order: tuple[int, ...],
                                                                    how: str) -> None:
    tied = [TIED[i] for i in order]
    if how == "one message":
        points = _live([[BEFORE, *tied]])
    else:  # the first of the stamp makes the minute's window: it is held as it came
        points = _live([[BEFORE], *[[r] for r in tied]], snapshot=how == "a snapshot between")
    live, rebuilt = _windows(points), _rebuilt(points)
    assert {key: live[key] for key in rebuilt} == rebuilt
    fields = parse(live[(RP_1M, AT - AT % MINUTE_NS)])[2]
    assert (fields["ticket_last"], fields["called_last"], fields["counter_last"]) == (20.0, 1.0, 4.0)


def test_a_held_reading_and_one_added_after_it_of_one_stamp() -> None:
    """A window's first reading is kept as it came (`hold`) until a second comes: its number
    goes with it, into a snapshot too."""
    for first, second in ((TIED[0], TIED[1]), (TIED[1], TIED[0])):
        window = Window(0, 0, {})
        window.hold(first.ts_ns, first.values, first.seq)
        window = pickle.loads(pickle.dumps(window))
        window.add(second.ts_ns, second.values, second.seq)
        assert window.as_fields()["ticket_last"] == 17.0


def test_a_window_from_a_snapshot_before_the_numbers_were_kept_takes_the_later_arrival() -> None:
    """A rollup pickled before the last reading's number was kept (its fields' lists one
    item shorter; a held reading without its number) resumes its windows: of equal stamps
    the reading that comes after the snapshot is the last, as the window took them then."""
    rollup = SensorRollup(MINUTE_NS, HOUR_NS)
    held, added = rollup.window(AT), rollup.window(AT + MINUTE_NS)
    assert held is not None
    assert added is not None
    held.hold(AT, {"ticket": 17.0})
    added.add(AT + MINUTE_NS, {"ticket": 30.0})
    added.add(AT + MINUTE_NS, {"ticket": 31.0})
    state = rollup.__getstate__()
    old_windows = []
    for start, count, fields, *first in state[7]:
        old_fields = {name: a[:6] + a[7:] for name, a in fields.items()}  # without the number
        old_windows.append((start, count, old_fields, *[f[:2] for f in first]))
    old = SensorRollup.__new__(SensorRollup)
    old.__setstate__(("rollup-2", *state[1:7], old_windows))
    for ts, ticket in ((AT, 16.0), (AT + MINUTE_NS, 29.0)):
        window = old.window(ts)
        assert window is not None
        window.add(ts, {"ticket": ticket}, 1)
    assert [w.as_fields()["ticket_last"] for w in old.windows.values()] == [16.0, 29.0]
    assert [w.as_fields()["ticket_mean"] for w in old.windows.values()] == [16.5, 30.0]
