"""The paired-module city variant (urbanpulse/simulate/module_pairs.py): a second module
beside each air module, and the response differences that keep their ratio as unclean
as two real modules'."""

from __future__ import annotations

import numpy as np
import pytest

from urbanpulse.errors import ConfigError
from urbanpulse.simulate import City, Simulation
from urbanpulse.simulate.module_pairs import with_module_pairs

from .conftest import MONDAY

STATION = ("cau-giay", "aq-roadside")


def _bins(sim: Simulation, sensor: str, name: str, days: float, bin_s: float) -> np.ndarray:
    t, values = sim.output(*STATION, sensor).reports(0.0, days * 86_400)
    index = (t // bin_s).astype(int)
    n = int(days * 86_400 // bin_s)
    sums = np.bincount(index, np.array([v[name] for v in values]), n)
    means: np.ndarray = sums / np.bincount(index, None, n)
    return means


def test_every_air_module_gets_a_second_one_and_the_first_keeps_its_id(hanoi: City) -> None:
    paired = with_module_pairs(hanoi)
    for single, double in zip(hanoi.air_stations, paired.air_stations, strict=True):
        ids = [a.id for a in double.sensors]
        assert ids == [x for a in single.sensors for x in (a.id, a.id + "-b")]
        firsts = double.sensors[::2]
        assert [a.bias for a in firsts] == [a.bias for a in single.sensors]
        assert all(0.9 <= b.bias <= 1.1 for b in double.sensors[1::2])
    assert {a.wander_sd for s in hanoi.air_stations for a in s.sensors} == {0.0}
    with pytest.raises(ValueError, match="negative"):
        with_module_pairs(hanoi, -1.0)


@pytest.mark.parametrize(("sensor", "name"), [("pms5003", "pm25"), ("mhz19b", "co2")])
def test_the_pair_ratio_wanders_by_a_few_percent_and_the_weather_cancels(
        hanoi: City, sensor: str, name: str) -> None:
    sim = Simulation(with_module_pairs(hanoi), seed=2001, start=MONDAY, events=())
    a = _bins(sim, sensor, name, 2, 3600.0)
    b = _bins(sim, sensor + "-b", name, 2, 3600.0)
    ratio = np.log(a / b)
    level = np.log(a)
    if name == "pm25":  # PM moves by tens of percent with the air; the ratio by a few
        assert np.std(level) > 3 * np.std(ratio)
    assert 0.01 < np.std(ratio) < 0.06
    flat = Simulation(with_module_pairs(hanoi, 0.0), seed=2001, start=MONDAY, events=())
    clean = np.log(_bins(flat, sensor, name, 2, 3600.0) / _bins(flat, sensor + "-b", name,
                                                                 2, 3600.0))
    assert np.std(clean) < 0.5 * np.std(ratio)  # without the response differences


def test_the_city_file_takes_a_module_s_response_and_checks_it() -> None:
    base = """
[city]
name = "t"
utc_offset_hours = 7
[[district]]
id = "d"
name = "D"
[[air_station]]
site = "s"
node = "n"
name = "S"
district = "d"
[[air_station.sensor]]
id = "pm"
driver = "pms5003"
"""
    city = City.parse(base + "wander_sd = 0.03\nhumidity_coef = -0.001\noffset = 2\n")
    sensor = city.air_stations[0].sensors[0]
    assert (sensor.wander_sd, sensor.humidity_coef, sensor.offset) == (0.03, -0.001, 2.0)
    with pytest.raises(ConfigError, match="wander_sd"):
        City.parse(base + "wander_sd = -0.1\n")
