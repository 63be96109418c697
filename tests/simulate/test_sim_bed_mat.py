"""The simulator's bed mats (Ward.mats): load and motion as edge/drivers/bed_mat reports
them, and the faults as a mat shows them (a stuck mat exactly flat, pulses seen under a
patient too)."""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np

from urbanpulse.simulate import City, Simulation
from urbanpulse.simulate.city import DEFAULT_CITY
from urbanpulse.simulate.city_file import parse_city
from urbanpulse.simulate.events import make_event
from urbanpulse.wire.kinds import outside_range
from urbanpulse.wire.values import reading_problem

HOURS = 12 * 3600.0


def _sim(*events):  # the first ward's first bed
    city = City.load().with_mats()
    h = city.hospitals[0]
    w = h.wards[0]
    return Simulation(city, seed=3, events=tuple(events)), h.site, w.node, w.bed_ids[0]


def test_a_clean_mat_reads_load_with_occupied_and_never_exactly_flat() -> None:
    sim, site, node, _ = _sim()
    occupied: list[float] = []
    free: list[float] = []
    for bed in sim.city.hospitals[0].wards[0].bed_ids[:8]:
        _, values = sim.output(site, node, bed).reports(0.0, HOURS)
        for v in values:
            assert reading_problem("hospital.bed", v) is None
            assert outside_range("hospital.bed", v) is None
            (occupied if v["occupied"] else free).append(v["load"])
        motions = [v["motion"] for v in values]
        assert min(motions) > 0
        assert all(a != b for a, b in itertools.pairwise(motions))
    assert np.median(occupied) > 0.3
    assert np.median(free) < 0.1


def test_stuck_holds_the_level_exactly_without_motion_and_spikes_are_glitches() -> None:
    probe, site, node, bed = _sim()
    stuck = make_event("stuck", site, node, bed, 2 * 3600.0, 4 * 3600.0, {})
    spikes = make_event("spikes", site, node, bed, 6 * 3600.0, 8 * 3600.0,
                        {"rate_per_h": 30.0, "factor": 6.0})
    sim = Simulation(probe.city, seed=3, events=(stuck, spikes))
    times, values = sim.output(site, node, bed).reports(0.0, HOURS)
    held = [v for t, v in zip(times.tolist(), values, strict=True) if 2 * 3600 <= t < 4 * 3600]
    assert len(held) >= 10
    assert {(v["load"], v["motion"]) for v in held} == {(held[0]["load"], 0.0)}
    pulses = sum(v.get("glitches", 0) for t, v in zip(times.tolist(), values, strict=True)
                 if 6 * 3600 <= t < 8 * 3600 + 600)
    assert pulses >= 30  # about 30 an hour, occupied or not
    clean = Simulation(replace(probe.city), seed=3, events=()).output(site, node, bed)
    assert sum(v.get("glitches", 0) for v in clean.reports(0.0, HOURS)[1]) == 0


def test_the_city_file_takes_mats_per_ward() -> None:
    ward = ('[[hospital]]\nsite = "h1"\nname = "H"\ndistrict = "dong-da"\n'
            '[[hospital.ward]]\nnode = "w1"\nname = "W"\nbeds = 2\nmats = true\n')
    city = parse_city(DEFAULT_CITY.read_text() + "\n" + ward)
    wards = [w for h in city.hospitals for w in h.wards]
    assert [w.mats for w in wards if w.node == "w1"] == [True]
    assert not any(w.mats for w in wards if w.node != "w1")
    spec = next(s for n in city.nodes if n.node == "w1" for s in n.sensors)
    assert spec.params["mat"] == 1.0


def test_a_cut_mat_reads_0_with_the_supervision_fault_and_occupied_frozen() -> None:
    probe, site, node, bed = _sim()
    cut = make_event("cut_cable", site, node, bed, 3 * 3600.0, 5 * 3600.0, {})
    sim = Simulation(probe.city, seed=3, events=(cut,))
    times, values = sim.output(site, node, bed).reports(0.0, HOURS)
    during = [v for t, v in zip(times.tolist(), values, strict=True) if 3 * 3600 <= t < 5 * 3600]
    outside = [v for t, v in zip(times.tolist(), values, strict=True)
               if not 3 * 3600 <= t < 5 * 3600]
    assert len(during) >= 10
    assert {(v["load"], v["motion"], v["fault"]) for v in during} == {(0.0, 0.0, 1)}
    assert len({v["occupied"] for v in during}) == 1  # frozen at the cut
    assert all("fault" not in v for v in outside)
    assert all(reading_problem("hospital.bed", v) is None for v in during)
    # a live empty mat (no body in the reading: motion the ADC's noise) reads its bias, about
    # 0.05 of full scale, above the driver's fault_below (0.02)
    empty = [v["load"] for v in outside if not v["occupied"] and v["motion"] < 0.002]
    assert empty
    assert all(0.04 < load < 0.06 for load in empty)
