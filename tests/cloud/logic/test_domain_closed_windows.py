"""The domain rollups hold their closed windows compact (traffic: an hour window as pickled
bytes, a minute window taken from its hour's samples), open one again for a late reading,
and load the snapshots taken before they did so, with the same points as before."""

from __future__ import annotations

import pickle

from cloud.logic.domain.common import WIDTHS
from cloud.logic.domain.traffic import KIND, TrafficRollup
from tests.cloud.logic.domain_helpers import HOUR, MIN, T0, S, rd
from tests.cloud.logic.test_traffic_incremental import _Reference
from urbanpulse.wire import Reading

LANES = ("loop-1", "loop-2", "loop-3")


def _loop(sensor: str, ts: int, n: int) -> Reading:
    return rd(sensor, KIND, ts, count=n % 7, occupancy_pct=0.1 * (n % 13), interval_s=60,
              speed_kmh=30.0 + n % 11)


def _minutes(first: int, last: int) -> list[list[Reading]]:
    """A message a minute, each lane's reading of the minute ended (stamped at its end)."""
    return [[_loop(s, T0 + m * MIN, m * 3 + i) for i, s in enumerate(LANES)]
            for m in range(first, last)]


def test_closed_traffic_windows_are_compact_and_a_late_reading_opens_them() -> None:
    new, ref = TrafficRollup(6 * HOUR), _Reference(6 * HOUR)
    messages = _minutes(1, 3 * 60 + 1)
    late = messages.pop(30)  # the minute 00:29-00:30, held back
    for msg in messages:
        assert new.process("hn", "x1", msg) == ref.process("hn", "x1", msg)
    minute, hour = WIDTHS
    assert [type(w) for _, w in sorted(new.windows[hour].items())] == [bytes, bytes, dict]
    assert len(new.windows[minute]) <= 2  # the open minutes only
    assert new.held_windows() == ref.windows
    # late by 2.5 hours: its minute and hour opened again, the same points as if held open
    assert new.process("hn", "x1", late) == ref.process("hn", "x1", late)
    # and another, into the same hour, after they were closed again
    again = [_loop("loop-4", T0 + 20 * MIN, 5)]
    assert new.process("hn", "x1", again) == ref.process("hn", "x1", again)
    assert type(new.windows[hour][T0]) is bytes
    assert new.held_windows() == ref.windows
    resumed = pickle.loads(pickle.dumps(new, protocol=pickle.HIGHEST_PROTOCOL))
    tail = [_loop("loop-1", T0 + 40 * MIN + 7 * S, 3)] + _minutes(181, 185)[0]
    assert resumed.process("hn", "x1", tail) == ref.process("hn", "x1", tail)


def test_a_traffic_snapshot_from_before_compact_windows_resumes_alike() -> None:
    """A snapshot of the release before (every window held open, minute windows too),
    loaded by this one: the closed windows are made compact at its next message, and the
    points are the same, late readings into them included."""
    ref = _Reference(6 * HOUR)
    for msg in _minutes(1, 2 * 60 + 1):
        ref.process("hn", "x1", msg)
    old_state = pickle.loads(pickle.dumps(ref.__dict__, protocol=pickle.HIGHEST_PROTOCOL))
    assert all(type(w) is dict for windows in old_state["windows"].values() for w in windows.values())
    resumed = TrafficRollup.__new__(TrafficRollup)
    resumed.__setstate__(old_state)
    assert resumed.held_windows() == ref.windows
    late = [_loop("loop-2", T0 + 10 * MIN, 99), _loop("loop-1", T0 + 121 * MIN, 1)]
    assert resumed.process("hn", "x1", late) == ref.process("hn", "x1", late)
    minute, hour = WIDTHS
    assert type(resumed.windows[hour][T0]) is bytes
    assert len(resumed.windows[minute]) <= 2
    assert len(pickle.dumps(resumed)) < len(pickle.dumps(ref))
    for msg in _minutes(122, 130):
        assert resumed.process("hn", "x1", msg) == ref.process("hn", "x1", msg)
    assert resumed.held_windows() == ref.windows
