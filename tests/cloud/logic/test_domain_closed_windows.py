"""The domain rollups hold their closed windows compact (traffic: an hour window as pickled
bytes, a minute window taken from its hour's samples), open one again for a late reading,
and load the snapshots taken before they did so, with the same points as before."""

from __future__ import annotations

import pickle

from cloud.logic.domain.air import AirRollup
from cloud.logic.domain.common import WIDTHS
from cloud.logic.domain.traffic import KIND, TrafficRollup
from tests.cloud.logic.domain_helpers import HOUR, MIN, T0, S, rd
from tests.cloud.logic.test_air_incremental import _Reference as _AirReference
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
    assert type(new.windows[hour][T0]) is dict  # written by this message: kept open
    on = _minutes(181, 182)[0]
    assert new.process("hn", "x1", on) == ref.process("hn", "x1", on)
    assert type(new.windows[hour][T0]) is bytes  # not by the next: closed again
    assert new.held_windows() == ref.windows
    resumed = pickle.loads(pickle.dumps(new, protocol=pickle.HIGHEST_PROTOCOL))
    tail = [_loop("loop-1", T0 + 40 * MIN + 7 * S, 3)] + _minutes(182, 185)[0]
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
    for msg in _minutes(122, 130):
        assert resumed.process("hn", "x1", msg) == ref.process("hn", "x1", msg)
    minute, hour = WIDTHS
    assert type(resumed.windows[hour][T0]) is bytes
    assert len(resumed.windows[minute]) <= 2
    assert len(pickle.dumps(resumed)) < len(pickle.dumps(ref))
    assert resumed.held_windows() == ref.windows


def _air(m: int) -> list[Reading]:
    """A station's message of minute m: PM and CO2, every 5 minutes."""
    ts = T0 + m * MIN + 3 * S
    return [rd("pm-1", "air.pm", ts, pm25=10.0 + m % 17 * 0.3, pm10=20.0 + m % 5),
            rd("co2-1", "air.co2", ts, co2=400.0 + m % 9)]


def test_closed_air_hours_are_compact_and_a_late_reading_opens_them() -> None:
    new, ref = AirRollup(6 * HOUR), _AirReference(6 * HOUR)
    messages = [_air(m) for m in range(0, 14 * 60, 5)]
    late = messages.pop(7)  # 00:35, held back
    for msg in messages:
        assert new.process("hn", "st1", msg) == ref.process("hn", "st1", msg)
    frozen = [h for h, fields in new.open.items() if isinstance(fields, tuple)]
    assert len(frozen) == len(new.open) - 1  # all but the newest hour
    assert new.held_open() == ref.open
    # 13 h late: beyond the horizon, too late; then one late within it, into a closed hour
    assert new.process("hn", "st1", late) == ref.process("hn", "st1", late)
    within = [rd("pm-1", "air.pm", T0 + 9 * HOUR + 31 * MIN, pm25=80.0, pm10=90.0)]
    points = new.process("hn", "st1", within)
    assert points == ref.process("hn", "st1", within)
    assert len(points) == 5  # its hour and the 4 held after it, their NowCast changed
    assert new.held_open() == ref.open
    assert new.closed == ref.closed
    resumed = pickle.loads(pickle.dumps(new, protocol=pickle.HIGHEST_PROTOCOL))
    for msg in [_air(m) for m in range(14 * 60, 15 * 60, 5)]:
        assert resumed.process("hn", "st1", msg) == ref.process("hn", "st1", msg)


def test_an_air_snapshot_from_before_compact_hours_resumes_alike() -> None:
    ref = _AirReference(6 * HOUR)
    for m in range(0, 8 * 60, 5):
        ref.process("hn", "st1", _air(m))
    old_state = pickle.loads(pickle.dumps(ref.__getstate__(), protocol=pickle.HIGHEST_PROTOCOL))
    assert all(type(f) is dict for f in old_state["open"].values())
    resumed = AirRollup.__new__(AirRollup)
    resumed.__setstate__(old_state)
    late = [rd("pm-1", "air.pm", T0 + 3 * HOUR + 2 * MIN, pm25=55.5, pm10=60.0)]
    assert resumed.process("hn", "st1", late) == ref.process("hn", "st1", late)
    assert sum(isinstance(f, tuple) for f in resumed.open.values()) == len(resumed.open) - 2
    for m in range(8 * 60, 9 * 60, 5):
        assert resumed.process("hn", "st1", _air(m)) == ref.process("hn", "st1", _air(m))
    assert sum(isinstance(f, tuple) for f in resumed.open.values()) == len(resumed.open) - 1
    assert resumed.held_open() == ref.open
    assert resumed.closed == ref.closed
