"""What a sensor reports does not depend on the windows it is asked for in: the
lightweight generator's step, the demo's pin windows, the fault bench's 600-s step."""

from __future__ import annotations

import numpy as np

from urbanpulse.simulate import City, Simulation, make_event
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


def test_the_loop_reading_after_a_silence_averages_only_its_own_vehicles(hanoi: City) -> None:
    # The readings of a silence are left out: the first one after it must average the
    # speed and length of the vehicles of its own minute, not of every vehicle since the
    # last reading before the silence.
    lane = ("nga-tu-so", "cabinet", "lang-in")
    silence = make_event("silence", *lane, 8 * H + 40.5, 9 * H + 30.5, {})
    sim = Simulation(hanoi, seed=5, start=MONDAY, events=(silence,))
    out = sim.output(*lane)
    assert isinstance(out, LaneSensor)
    ends, values = out.reports(7 * H, 11 * H)
    after = int(np.searchsorted(ends, silence.end_s))
    assert ends[after] - ends[after - 1] > 3000  # the silence's readings are missing
    for end, v in zip(ends.tolist(), values, strict=True):
        p = sim.passages(*lane, end - 60.0, end)
        p = p.select(p.t_on1 >= silence.end_s) if end - 60.0 < silence.end_s else p
        if v["count"] and len(p):
            assert v["speed_kmh"] == round(float(p.speed_kmh.mean()), 1), end
            assert v["length_m"] == round(float(p.length_m.mean()), 2), end
