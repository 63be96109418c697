"""What a sensor reports does not depend on the windows it is asked for in: the
lightweight generator's step, the demo's pin windows, the fault bench's 600-s step."""

from __future__ import annotations

import numpy as np

from urbanpulse.simulate import City, Simulation
from urbanpulse.simulate.traffic import LaneSensor

from .conftest import MONDAY

H = 3600.0


def test_loop_readings_do_not_depend_on_where_a_window_ends(hanoi: City) -> None:
    # Two vehicles less than MIN_GAP_S apart make one detection: a window ending
    # between them must still see the gap closed, or the occupancy of the interval
    # before the window's end depends on the window (seed 11 at 06:46, Kim Lien).
    sim = Simulation(hanoi, seed=11, start=MONDAY, events=())
    t0, t1 = 6 * H, 9 * H
    for x in hanoi.intersections:
        for lane in x.lanes:
            out = sim.output(x.site, x.node, lane.sensor)
            assert isinstance(out, LaneSensor)
            whole_t, whole = out.reports(t0, t1)
            parts = [out.reports(a, a + 60.0) for a in np.arange(t0, t1, 60.0).tolist()]
            assert np.concatenate([p[0] for p in parts]).tolist() == whole_t.tolist()
            assert [v for p in parts for v in p[1]] == whole, (x.site, lane.sensor)
