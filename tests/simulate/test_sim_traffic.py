from __future__ import annotations

import itertools

import numpy as np

from urbanpulse.simulate import City, PinTrack, Simulation
from urbanpulse.simulate.profiles import TRAFFIC
from urbanpulse.simulate.traffic import CLASSES, LaneSensor

from .conftest import MONDAY

LANE = ("kim-lien", "cabinet", "giai-phong-in")  # no event on it in the default city
INCIDENT = ("nga-tu-so", "cabinet", "nguyen-trai-in")  # incident 07:30-08:30 on day 1


def expected_per_hour(peak_vph: float, hours: int) -> np.ndarray:
    """The profile integrated hour by hour, straight from the table (the run starts on a
    Monday at local midnight, so week hour = hours since the start)."""
    fine = np.linspace(0, hours, hours * 360 + 1)
    rate = peak_vph * TRAFFIC.at(fine) / TRAFFIC.peak
    cum = np.concatenate([[0.0], np.cumsum((rate[1:] + rate[:-1]) / 2 * np.diff(fine))])
    return np.diff(cum[::360])


def test_arrivals_per_hour_follow_the_weekly_profile(day_sim: Simulation, hanoi: City) -> None:
    hours = 7 * 24
    passages = day_sim.passages(*LANE, 0, hours * 3600)
    observed = np.histogram(passages.t_on1, bins=np.arange(hours + 1) * 3600.0)[0]
    peak = hanoi.intersections[1].lanes[0].peak_vph
    expected = expected_per_hour(peak, hours)
    z = (observed - expected) / np.sqrt(expected)
    assert np.abs(z).max() < 5, z  # Poisson counts, 168 hours
    assert abs(observed.sum() - expected.sum()) < 4 * np.sqrt(expected.sum())
    monday = observed[:24]
    assert monday[8] > 8 * monday[3]
    assert monday[17] > 8 * monday[3]
    sunday = observed[6 * 24 : 7 * 24]
    assert sunday[8] < 0.85 * monday[8]  # no sharp morning rush at the weekend


def test_motorbikes_dominate_and_speed_falls_at_rush_hour(day_sim: Simulation) -> None:
    day = day_sim.passages(*LANE, 9 * 3600, 16 * 3600)
    share = np.bincount(day.vclass, minlength=len(CLASSES)) / len(day)
    assert abs(share[CLASSES.index("motorbike")] - 0.86) < 0.02
    assert share[CLASSES.index("truck")] < 0.015
    night = day_sim.passages(*LANE, 1 * 3600, 4 * 3600)
    rush = day_sim.passages(*LANE, 17 * 3600, 18 * 3600)
    assert rush.speed_kmh.mean() < 0.75 * night.speed_kmh.mean()
    motorbike = day.length_m[day.vclass == 0]
    assert 1.7 < motorbike.mean() < 2.1


def test_loop_two_sees_each_vehicle_spacing_over_speed_later(day_sim: Simulation,
                                                            hanoi: City) -> None:
    lane = hanoi.intersections[1].lanes[0]
    p = day_sim.passages(*LANE, 8 * 3600, 8 * 3600 + 600)
    v = p.speed_kmh / 3.6
    assert np.allclose(p.t_on2 - p.t_on1, lane.loop_spacing_m / v)
    assert np.allclose(p.t_off1 - p.t_on1, (p.length_m + lane.loop_length_m) / v)
    assert np.allclose(p.t_off2 - p.t_on2, p.t_off1 - p.t_on1)


def debounced(track: PinTrack, hold_s: float = 0.02) -> list[tuple[float, int]]:
    """What a driver with a 20 ms debounce sees: levels that last."""
    edges = track.edges
    kept = [(e.t, e.level) for i, e in enumerate(edges)
            if i + 1 == len(edges) or edges[i + 1].t - e.t > hold_s]
    level = track.initial
    out = []
    for t, lv in kept:
        if lv != level:
            out.append((t, lv))
            level = lv
    return out


def test_pin_edges_agree_with_the_lightweight_aggregates(day_sim: Simulation) -> None:
    t0, t1 = 17 * 3600.0, 18 * 3600.0
    tracks = day_sim.pin_tracks(*LANE, t0, t1)
    loop1 = tracks["loop1"]
    raw_rising = loop1.rising()
    edges = debounced(loop1)
    assert raw_rising > sum(1 for _, lv in edges if lv == 1)  # relay contacts bounce
    levels = [lv for _, lv in edges]
    assert all(a != b for a, b in itertools.pairwise(levels))
    ends = np.arange(t0 + 60, t1 + 1, 60.0)
    out = day_sim.output(*LANE)
    assert isinstance(out, LaneSensor)
    aggregates = out.aggregates(ends)
    assert sum(a["count"] for a in aggregates) == sum(1 for _, lv in edges if lv == 1)
    on = 0.0
    level, since = loop1.initial, t0
    for t, lv in edges:
        if level:
            on += t - since
        level, since = lv, t
    if level:
        on += t1 - since
    occupancy = np.mean([a["occupancy_pct"] for a in aggregates])
    assert abs(on / 3600 * 100 - occupancy) < 0.05
    assert set(tracks) == set(day_sim.sensor(*LANE).pins) == {"loop1", "loop2"}


def test_an_incident_raises_occupancy_and_lowers_speed_and_flow(hanoi: City) -> None:
    with_incident = Simulation(hanoi, seed=3, start=MONDAY)
    without = Simulation(hanoi, seed=3, start=MONDAY, events=())
    ends = np.arange(7.6 * 3600, 8.4 * 3600, 60.0)

    def summary(sim: Simulation) -> tuple[float, float, float]:
        out = sim.output(*INCIDENT)
        assert isinstance(out, LaneSensor)
        agg = out.aggregates(ends)
        speeds = [a["speed_kmh"] for a in agg if "speed_kmh" in a]
        return (float(np.mean([a["occupancy_pct"] for a in agg])), float(np.mean(speeds)),
                float(np.sum([a["count"] for a in agg])))

    occ_i, speed_i, count_i = summary(with_incident)
    occ_n, speed_n, count_n = summary(without)
    assert occ_i > 2 * occ_n
    assert speed_i < 0.3 * speed_n
    assert count_i < 0.8 * count_n
    # Outside the incident the two runs see the same vehicles.
    a = with_incident.passages(*INCIDENT, 10 * 3600, 11 * 3600)
    b = without.passages(*INCIDENT, 10 * 3600, 11 * 3600)
    assert np.array_equal(a.t_on1, b.t_on1)
