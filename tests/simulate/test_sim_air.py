from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from urbanpulse.simulate import City, Simulation
from urbanpulse.simulate.air import CHUNK, WASHOUT_IN, WASHOUT_MIN

from .conftest import MONDAY

JANUARY = datetime(2026, 1, 4, 17, 0, tzinfo=UTC)  # Monday 5 January, 00:00 in Hanoi
JULY = datetime(2026, 7, 5, 17, 0, tzinfo=UTC)
STATION = ("hoan-kiem-lake", "aq-1")


def hourly_pm25(sim: Simulation, days: int) -> np.ndarray:
    t = np.arange(0, days * 86400, 300.0)
    pm = sim.stations[STATION].at(t).pm25
    hourly: np.ndarray = pm.reshape(days, 24, 12).mean(axis=2)
    return hourly


@pytest.fixture(scope="module")
def january(hanoi: City) -> Simulation:
    return Simulation(hanoi, seed=5, start=JANUARY, events=())


def test_pm25_has_hanoi_levels_and_a_diurnal_cycle(january: Simulation, hanoi: City) -> None:
    days = 28
    pm = hourly_pm25(january, days)
    assert 35 < pm.mean() < 130  # a Hanoi winter month
    by_hour = pm.mean(axis=0)
    # Lowest mid-afternoon, highest in the evening and night (shallow mixing layer).
    assert by_hour[13:17].mean() < 0.8 * by_hour[20:24].mean()
    assert by_hour[13:17].mean() < 0.8 * by_hour[0:6].mean()
    july = hourly_pm25(Simulation(hanoi, seed=5, start=JULY, events=()), days)
    assert july.mean() < 0.6 * pm.mean()


def test_rain_washes_particles_out(january: Simulation) -> None:
    rains = [e for e in january.ground_truth(28 * 86400) if e.type == "rain"]
    assert rains, "January in Hanoi has drizzle on several days"
    for rain in rains:
        if rain.end_s - rain.start_s < 3600:
            continue
        k = int((rain.start_s + 3600) // CHUNK)
        chunk = january.city_air.chunk(k)
        i = int(np.argmin(np.abs(chunk.t - (rain.start_s + 3600))))
        # An hour of rain (to within a grid minute) at a 30-minute washout time.
        assert chunk.washout[i] <= WASHOUT_MIN + (1 - WASHOUT_MIN) * np.exp(-3540 / WASHOUT_IN)
        assert chunk.washout[i] >= WASHOUT_MIN


def test_pollution_episodes_raise_pm_well_above_150(hanoi: City) -> None:
    for seed in range(40):
        sim = Simulation(hanoi, seed=seed, start=JANUARY, events=())
        episodes = [e for e in sim.city_air.context_until(20 * 86400)
                    if e.type == "pollution_episode"]
        if episodes:
            break
    else:
        pytest.fail("no stagnation episode in 40 Januaries")
    e = episodes[0]
    ramp = 0.25 * (e.end_s - e.start_s)
    t = np.arange(e.start_s + ramp, e.end_s - ramp, 600.0)
    chunk_t = np.concatenate([sim.city_air.chunk(int(k)).t for k in np.unique(t // CHUNK)])
    factors = np.concatenate([sim.city_air.chunk(int(k)).episode for k in np.unique(t // CHUNK)])
    plateau = factors[(chunk_t >= t[0]) & (chunk_t <= t[-1])]
    assert np.allclose(plateau, e.params["peak_factor"])
    pm = sim.stations[STATION].at(t).pm25
    assert pm.max() > 150


def test_a_pollution_spike_multiplies_the_station_pm(hanoi: City) -> None:
    # The default city has a spike (factor 5) at lang-ha 19:00-20:30 on day 1.
    spiked = Simulation(hanoi, seed=2, start=MONDAY)
    plain = Simulation(hanoi, seed=2, start=MONDAY, events=())
    peak = np.array([19.75 * 3600])
    ratio = spiked.stations[("lang-ha", "aq-1")].at(peak).pm25 / \
        plain.stations[("lang-ha", "aq-1")].at(peak).pm25
    assert ratio[0] == pytest.approx(5.0, rel=0.01)
    before = np.array([18.5 * 3600])
    assert spiked.stations[("lang-ha", "aq-1")].at(before).pm25[0] == \
        plain.stations[("lang-ha", "aq-1")].at(before).pm25[0]


def test_co2_outdoors_and_in_a_crowded_hall(day_sim: Simulation) -> None:
    outdoor = day_sim.serial_source("hoan-kiem-lake", "aq-1", "mhz19b")
    indoor = day_sim.serial_source("bach-mai", "opd-hall", "mhz19b")
    values = [outdoor(t) for t in np.arange(0, 86400, 900.0)]
    co2 = np.array([v["co2"] for v in values if v is not None])
    assert co2.size == 96
    assert co2.min() > 380
    assert co2.max() < 700
    nine = 9 * 3600.0  # Monday morning: the outpatient hall is full
    hall = indoor(nine)
    street = outdoor(nine)
    assert hall is not None
    assert street is not None
    assert hall["co2"] > street["co2"] + 400


def test_serial_sources_give_contract_fields_stable_within_a_second(day_sim: Simulation) -> None:
    sds = day_sim.serial_source("nga-tu-so", "aq-roadside", "sds011")
    pms = day_sim.serial_source("lang-ha", "aq-1", "pms5003")
    a = sds(1000.2)
    assert a is not None
    assert set(a) == {"pm25", "pm10"}
    assert a == sds(1000.9)
    assert sds.pm(1000.5) == (a["pm25"], a["pm10"])
    b = pms(1000.0)
    assert b is not None
    assert set(b) == {"pm1", "pm25", "pm10"}
    assert b["pm1"] <= b["pm25"] <= b["pm10"] * 1.2
    assert sds.at(day_sim.at(1000.5)) == a
