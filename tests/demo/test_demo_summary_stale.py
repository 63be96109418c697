"""The demo's summary says how many beds of a ward are stale (their pads not heard for over
2 h 10 min: docs/domain-rollups.md), which its occupied / beds leaves out."""

from __future__ import annotations

import re

from urbanpulse.demo.summary import Occupancy, Summary, render


def test_a_ward_with_a_stale_pad_says_so_and_the_others_say_nothing() -> None:
    summary = Summary(wards={"bach-mai/ward-a": Occupancy(3, 2, 200 / 3, stale=1),
                             "bach-mai/ward-b": Occupancy(4, 1, 25.0)})
    lines = render(summary, 5.0, None).splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("hospital wards"))
    rows = [re.sub(r" +", " ", line.strip()) for line in lines[start + 1:start + 3]]
    assert rows == ["bach-mai/ward-a 2 / 3 66.7 % 1 stale (pads not heard for over 2 h 10 min)",
                    "bach-mai/ward-b 1 / 4 25.0 %"]
