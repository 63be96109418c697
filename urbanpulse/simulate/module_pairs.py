"""A city whose air stations carry two modules of each air sensor, as a PurpleAir
station carries two laser counters (channels A and B): the redundancy the drift rule
needs (cloud/detect/pair_drift.py).

`with_module_pairs(city)` adds beside each air module `<id>` a second one `<id>-b` of
the same driver (the ids by which the drift rule knows a pair: its `second_suffix`)
and gives both the response differences two real modules have, so that their ratio
is not cleaner than in the field:

* a constant gain of the second module against the first, 0.9 to 1.1 (unit-to-unit
  spread of low-cost PM and NDIR modules; learnt by the rule, not a fault);
* a slow wander of each module's log gain, sd `WANDER_SD` (2 %) over periods of 6 to
  48 h (laser and photodiode ageing with temperature, fan speed, the particle mix
  changing between traffic hours and night): the pair's log ratio then wanders with an
  sd of about 3 % over a day;
* each module's humidity sensitivity differing from the other's by up to
  2 x `HUMIDITY_COEF` (0.15 % per %RH each): two units of one make swell particles'
  signals differently at high humidity, so the ratio moves by a few percent between a
  dry afternoon and a humid night, and steps when rain sets in;
* NDIR modules: an additive offset of up to +-`CO2_OFFSET_PPM` (20 ppm; the MH-Z19B's
  data sheet allows +-(50 ppm + 5 %)), so their ratio changes with the CO2 level.

The sizes are argued in docs/anomaly-detection.md ("Drift"); the bench can scale them
(`scale`) to check that the rule does not rest on them. The first module keeps its id,
bias and readings' randomness (its values change only by its own wander and humidity
response), so faults planned on the city without pairs apply unchanged.
"""

from __future__ import annotations

from dataclasses import replace

from urbanpulse.simulate.city import AirSensor, AirStation, City
from urbanpulse.simulate.randomness import key_hash

SECOND = "-b"
WANDER_SD = 0.02
HUMIDITY_COEF = 0.0015
CO2_OFFSET_PPM = 20.0
BIAS_SPREAD = 0.1


def _uniform(*key: str) -> float:
    """A stable draw in [-1, 1) for a module (the same city gives the same modules)."""
    return key_hash(0, "module", *key) / 2**63 - 1.0


def _module(station: AirStation, sensor: AirSensor, sensor_id: str, bias: float,
            scale: float) -> AirSensor:
    key = (station.site, station.node, sensor_id)
    offset = CO2_OFFSET_PPM * _uniform(*key, "offset") if sensor.driver == "mhz19b" else 0.0
    return replace(sensor, id=sensor_id, bias=bias, wander_sd=WANDER_SD * scale,
                   humidity_coef=HUMIDITY_COEF * scale * _uniform(*key, "humidity"),
                   offset=offset * scale)


def with_module_pairs(city: City, scale: float = 1.0) -> City:
    """`city` with a second module beside every air module; `scale` multiplies the
    modules' response differences (wander, humidity, offset; 1 = the argued sizes)."""
    if scale < 0:
        raise ValueError("scale must not be negative")
    stations: list[AirStation] = []
    for st in city.air_stations:
        modules: list[AirSensor] = []
        for a in st.sensors:
            second = a.id + SECOND
            bias = a.bias * (1 + BIAS_SPREAD * _uniform(st.site, st.node, second, "bias"))
            modules += [_module(st, a, a.id, a.bias, scale),
                        _module(st, a, second, bias, scale)]
        stations.append(replace(st, sensors=tuple(modules)))
    return replace(city, air_stations=tuple(stations))
