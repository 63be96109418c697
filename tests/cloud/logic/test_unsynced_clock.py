"""A reading stamped by a clock its node knows is not synchronised yet (`clock_unsynced`: a
Raspberry Pi without RTC boots on the time it shut down at, until NTP answers) is stored
raw, flagged, and kept out of everything computed by time: windows, rollups, the fault
rules, the drift step, and windows rebuilt from raw points."""

from __future__ import annotations

from cloud.logic.node import NodeState
from cloud.logic.recompute import Recompute
from cloud.logic.records import RP_1H, RP_1M, RP_RAW, NodeData
from urbanpulse.wire import Reading

MINUTE_NS = 60 * 10**9
HOUR_NS = 60 * MINUTE_NS
T0 = 1_795_000_000_000_000_000 - 1_795_000_000_000_000_000 % HOUR_NS


def _pm(seq: int, minute: int, pm25: float, flags: tuple[str, ...] = ()) -> Reading:
    return Reading("pm-1", "air.pm", T0 + minute * MINUTE_NS, seq, {"pm25": pm25, "pm10": 20.0}, flags)


def test_a_reading_of_an_unsynchronised_clock_is_stored_raw_and_in_no_window() -> None:
    state = NodeState(6 * HOUR_NS, detect=True)
    readings = [_pm(0, 1, 10.0), _pm(1, 1, 900.0, ("clock_unsynced",)), _pm(2, 2, 12.0)]
    points = state.process(NodeData("hn/n1", "hn", "n1", T0 + 3 * MINUTE_NS, readings))
    raw = [t for rp, t in points if rp == RP_RAW and t.startswith("air_pm,")]
    assert len(raw) == 3
    assert 'flags="clock_unsynced"' in raw[1]
    [minute] = [t for rp, t in points if rp == RP_1M and t.endswith(f" {T0 + MINUTE_NS}")]
    assert "count=1i" in minute  # the flagged reading's 900 is not in it
    assert "pm25_max=10.0" in minute
    [hour] = [t for rp, t in points if rp == RP_1H and t.startswith("air_pm,")]
    assert "count=2i" in hour
    assert [r.seq for r in state.take_measured()] == [0, 2]  # the rollups and the drift step
    assert not [t for _, t in points if t.startswith("events,")]  # nor in the rules


def test_a_window_rebuilt_from_raw_points_leaves_them_out_too() -> None:
    rebuild = Recompute(RP_1M, "air_pm", "hn", "n1", "pm-1", "air.pm", MINUTE_NS, T0)
    rows: list[dict[str, object]] = [
        {"time": T0 + 1, "pm25": 10.0, "pm10": 20.0, "seq": 0},
        {"time": T0 + 2, "pm25": 900.0, "pm10": 20.0, "seq": 1, "flags": "backlog,clock_unsynced"},
        {"time": T0 + 3, "pm25": 0.0, "pm10": 0.0, "seq": 2, "flags": "warmup"}]
    text = rebuild.rebuild(rows)
    assert text is not None
    assert "count=1i" in text
    assert "pm25_max=10.0" in text
