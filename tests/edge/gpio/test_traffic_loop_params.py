"""traffic_loop parse_params: every bad value names its exact key; the sample parses."""

import tomllib
from pathlib import Path

import pytest

import edge.drivers.traffic_loop
from edge.drivers.traffic_loop.driver import parse_params
from edge.gpio.params import InputWiring
from urbanpulse.errors import ConfigError

SAMPLE = Path(edge.drivers.traffic_loop.__file__).parent / "sample.toml"


def test_sample_parses_into_a_loop_pair() -> None:
    sensors = tomllib.loads(SAMPLE.read_text())["sensors"]
    assert [s["driver"] for s in sensors] == ["traffic_loop"]
    params = parse_params(sensors[0], "sensors[0]")
    assert params.pins == (17, 27)
    assert params.wiring == InputWiring(pull="up", active_high=False)
    assert params.pair is not None
    assert (params.pair.distance_m, params.pair.loop_length_m) == (5.0, 2.0)


def test_defaults() -> None:
    params = parse_params({"pin": 4}, "s")
    assert (params.output, params.interval_s, params.debounce_s, params.pair) == (
        "presence", 60.0, 0.02, None)


@pytest.mark.parametrize(
    ("raw", "key", "reason"),
    [
        ({}, "s.pin", "required"),
        ({"pin": 28}, "s.pin", "2..27"),
        ({"pin": True}, "s.pin", "BCM"),
        ({"pin": "GPIO17"}, "s.pin", "BCM"),
        ({"pin": 4, "downstream_pin": 4, "loop_distance_m": 5}, "s.downstream_pin", "already"),
        ({"pin": 4, "output": "analog"}, "s.output", "presence, pulse"),
        ({"pin": 4, "pull": "strong"}, "s.pull", "up, down, off"),
        ({"pin": 4, "pull": "off"}, "s.active_state", "required"),
        ({"pin": 4, "interval_s": 0}, "s.interval_s", "[0.1, 3600]"),
        ({"pin": 4, "interval_s": "60"}, "s.interval_s", "number"),
        ({"pin": 4, "debounce_s": -1}, "s.debounce_s", "[0, 0.5]"),
        ({"pin": 4, "output": "pulse", "debounce_s": 0.08}, "s.debounce_s", "pulse"),
        ({"pin": 4, "loop_distance_m": 5}, "s.loop_distance_m", "downstream_pin"),
        ({"pin": 4, "downstream_pin": 5}, "s.loop_distance_m", "required"),
        ({"pin": 4, "downstream_pin": 5, "loop_distance_m": 0}, "s.loop_distance_m", "(0, 100]"),
        ({"pin": 4, "downstream_pin": 5, "loop_distance_m": 5, "output": "pulse",
          "loop_length_m": 2}, "s.loop_length_m", "presence"),
        ({"pin": 4, "downstream_pin": 5, "loop_distance_m": 5, "min_speed_kmh": 90,
          "max_speed_kmh": 80}, "s.min_speed_kmh", "below"),
        ({"pin": 4, "exit_tolerance_s": 3}, "s.exit_tolerance_s", "unknown key"),
    ],
)
def test_bad_values_name_the_key(raw: dict[str, object], key: str, reason: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_params(raw, "s")
    assert err.value.key == key
    assert reason in err.value.reason


def test_pulse_pair_without_length_is_valid() -> None:
    params = parse_params({"pin": 4, "downstream_pin": 5, "loop_distance_m": 4,
                           "output": "pulse", "debounce_s": 0.01}, "s")
    assert params.output == "pulse"
    assert params.pair is not None
    assert params.pair.loop_length_m is None


def test_wiring_to_gpiozero_arguments() -> None:
    # (pull_up, active_state, invert)
    assert InputWiring("up", active_high=False).gpiozero_args() == (True, None, False)
    assert InputWiring("up", active_high=True).gpiozero_args() == (True, None, True)
    assert InputWiring("down", active_high=True).gpiozero_args() == (False, None, False)
    assert InputWiring("down", active_high=False).gpiozero_args() == (False, None, True)
    assert InputWiring("off", active_high=False).gpiozero_args() == (None, False, False)
