"""The demo's summary says when an intersection's mean speed comes from fewer lanes than its
counts (`speed_lanes` of traffic_intersection: a single loop gives no speed), and says
nothing when every lane has a speed or the row predates `speed_lanes`."""

from __future__ import annotations

import re

from urbanpulse.demo.summary import Crossing, Summary, render


def test_a_crossing_whose_speed_comes_from_some_lanes_says_how_many() -> None:
    summary = Summary(traffic={"city/x-1": Crossing(30, 30.0, 12.5, 41.0, 4, speed_lanes=3),
                               "city/x-2": Crossing(20, 20.0, 10.0, 38.0, 2, speed_lanes=2),
                               "city/x-3": Crossing(10, 10.0, 5.0, 35.0, 2)})
    lines = render(summary, 5.0, None).splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("traffic per intersection"))
    rows = [re.sub(r" +", " ", line.strip()) for line in lines[start + 1:start + 4]]
    assert rows == [
        "city/x-1 4 lanes 30 veh 30.0 veh/min occupancy 12.5 % speed 41.0 km/h (from 3 of 4 lanes)",
        "city/x-2 2 lanes 20 veh 20.0 veh/min occupancy 10.0 % speed 38.0 km/h",
        "city/x-3 2 lanes 10 veh 10.0 veh/min occupancy 5.0 % speed 35.0 km/h"]
