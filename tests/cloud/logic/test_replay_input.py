"""ReplayInput takes a replay's raw rows one at a time (the sink hands it each answer's
rows as they are read, so no whole answer is held as dicts): the same points as `replay`
over a list, and a row taken again (a read retried after a cut answer) changes nothing."""

from __future__ import annotations

from typing import Any

from cloud.logic.domain_replay import ReplayInput, ReplaySpan, replay
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
