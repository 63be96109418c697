"""ReplayInput takes a replay's raw rows one at a time (the sink hands it each answer's
rows as they are read, so no whole answer is held as dicts): the same points as `replay`
over a list, and a row taken again (a read retried after a cut answer) changes nothing."""

from __future__ import annotations

from typing import Any

from cloud.logic.domain_replay import ReplayInput, ReplaySpan, replay, series_tags
from tests.cloud.logic.domain_helpers import HOUR, MIN, T0

BEDS = ReplaySpan("beds", "s", "", T0 + 2 * HOUR, T0 + 3 * HOUR)


def _rows() -> list[dict[str, Any]]:
    rows = []
    for i in range(0, 3 * 60, 10):  # two beds of a ward, from an hour before the span's lookback
        t = T0 + i * MIN
        for bed, occupied in (("bed-1", float(i >= 130)), ("bed-2", 1.0)):
            rows.append({"time": t + i % 1000, "site": "s", "node": "ward", "sensor": bed,
                         "kind": "hospital.bed", "seq": i, "occupied": occupied})
    return rows


def test_rows_taken_one_at_a_time_and_again_give_the_points_of_the_list() -> None:
    rows = _rows()
    expected = replay(BEDS, rows)
    assert any(line.startswith("ward_occupancy") for _, line in expected)
    kept = ReplayInput(BEDS)
    for row in rows:
        kept.take(row)
    for row in rows[: len(rows) // 2]:  # a read retried: its first rows come again
        kept.take(dict(row))
    assert kept.points() == expected
    assert kept.points() == expected  # reading the points changes nothing


def test_series_keys_give_their_tags_escapes_and_all() -> None:
    assert series_tags("hospital_bed,kind=hospital.bed,node=w\\,1,sensor=b\\ 1\\=x,site=s") == \
        {"kind": "hospital.bed", "node": "w,1", "sensor": "b 1=x", "site": "s"}


def _bed_row(bed: str, t: int, occupied: float, warmup: bool = False) -> dict[str, Any]:
    row: dict[str, Any] = {"time": t, "site": "s", "node": "ward", "sensor": bed, "kind": "hospital.bed",
                           "seq": t // MIN % 1000, "occupied": occupied}
    if warmup:
        row["flags"] = "warmup"
    return row


def _hour_occupancy(window_invalid: int) -> str:
    """bed-x: `window_invalid` invalid points in the last-state window, then (older, newest
    first) one invalid point and a valid occupied one; bed-2 free, read in the span."""
    kept = ReplayInput(BEDS)
    start = BEDS.start_ns
    kept.take(_bed_row("bed-2", start + 5 * MIN, 0.0))
    for i in range(window_invalid):
        kept.take(_bed_row("bed-x", start - (i + 1) * MIN, 0.0, warmup=True))
    assert kept.beds_without_state([{"key": "hospital_bed,node=ward,sensor=bed-x,site=s"},
                                    {"key": "hospital_bed,node=ward,sensor=bed-2,site=s"},
                                    {"key": "hospital_bed,node=ward,sensor=bed-9,site=other"}]) == \
        [("ward", "bed-x"), ("ward", "bed-2")]  # (bed-2 has no point before the span at all)
    kept.take_older(_bed_row("bed-x", start - 3 * HOUR, 0.0, warmup=True))
    kept.take_older(_bed_row("bed-x", start - 4 * HOUR, 1.0))
    [hour] = [ln for rp, ln in kept.points() if ln.startswith("ward_occupancy") and rp == "agg_1h"]
    return hour


def test_older_points_are_taken_up_to_a_bed_s_last_ten_as_one_query_would_give_them() -> None:
    # 8 + 2 older: the valid one (4 h before the span: stale there) is among the last 10
    assert "beds=1i,occupied=0i,available=1i,faulty=0i,stale=1i" in _hour_occupancy(8)
    # 9 + 1: it is the 11th, as a LIMIT 10 leaves it: bed-x unknown
    assert "beds=1i,occupied=0i,available=1i,faulty=0i,stale=0i" in _hour_occupancy(9)
