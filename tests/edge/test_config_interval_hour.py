"""`interval_s` of the counting drivers (door_counter, traffic_loop, upfw with
loop_readings = "vehicles") must divide an hour exactly. Their intervals end on multiples
of `interval_s` counted from the epoch and the cloud counts each in the hour it ends in:
with 2400 s they end at 00:40, 01:20, 02:00, ..., so the hours alternate 40 and 80 minutes
of counts and hourly visits, ER arrivals and vehicles are off by up to 2x (0.1..3600 s was
allowed). Refused by `check-config` (`parse_config`), naming the key and the nearest
values that divide an hour."""

from __future__ import annotations

from typing import Any

import pytest

from edge.config import parse_config
from urbanpulse.errors import ConfigError
from urbanpulse.hour_intervals import hour_divisors_near

DRIVERS: dict[str, dict[str, Any]] = {
    "door_counter": {"id": "door-er", "driver": "door_counter", "pin": 17},
    "traffic_loop": {"id": "lane-1", "driver": "traffic_loop", "pin": 17},
    "upfw": {"id": "loops", "driver": "upfw", "port": "/dev/ttyUSB0",
             "loop_readings": "vehicles"},
}


def _config(driver: str, interval_s: Any) -> Any:
    return parse_config({"node": {"id": "n1", "site": "s1"},
                         "mqtt": {"password_file": "/p", "ca_file": "/ca", "host": "broker"},
                         "sensors": [{**DRIVERS[driver], "interval_s": interval_s}]})


def _interval(driver: str, interval_s: Any) -> float:
    params = _config(driver, interval_s).sensors[0].params
    return float(params.interval_s)


@pytest.mark.parametrize("driver", sorted(DRIVERS))
@pytest.mark.parametrize(("value", "near"), [
    (2400, "1800, 3600"), (2400.0, "1800, 3600"), (7, "6.25, 7.2"), (45.5, "45, 48"),
    (0.7, "0.64, 0.72"), (1000, "900, 1200"), (3599.9, "1800, 3600"),
])
def test_an_interval_that_does_not_divide_an_hour_is_refused_naming_the_key(
        driver: str, value: float, near: str) -> None:
    if driver == "upfw" and value < 1:
        pytest.skip("upfw's interval_s is 1..3600 s")
    with pytest.raises(ConfigError) as info:
        _config(driver, value)
    assert info.value.key == "sensors[0].interval_s"
    assert "divide an hour" in str(info.value)
    assert f"nearest: {near}" in str(info.value)


@pytest.mark.parametrize("driver", sorted(DRIVERS))
@pytest.mark.parametrize("value", [0.1, 0.2, 0.25, 0.3, 0.5, 0.75, 1, 2.0, 7.5, 10, 45, 60.0,
                                   300, 900, 1200, 1800, 3600, 3600.0, 14.0625])
def test_intervals_that_divide_an_hour_pass(driver: str, value: float) -> None:
    if driver == "upfw" and value < 1:
        pytest.skip("upfw's interval_s is 1..3600 s")
    assert _interval(driver, value) == value


def test_the_nearest_values_are_those_a_config_can_hold() -> None:
    assert hour_divisors_near(2400) == (1800.0, 3600.0)
    assert hour_divisors_near(0.05) == (0.1,)  # below the least allowed: the least
    assert hour_divisors_near(5000) == (3600.0,)
    assert hour_divisors_near(0.11) == (0.1, 0.12)
