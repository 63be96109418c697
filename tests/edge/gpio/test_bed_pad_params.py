"""bed_pad parse_params: every bad value names its exact key; the sample parses."""

import tomllib
from pathlib import Path

import pytest

import edge.drivers.bed_pad
from edge.drivers.bed_pad.driver import parse_params
from urbanpulse.errors import ConfigError

SAMPLE = Path(edge.drivers.bed_pad.__file__).parent / "sample.toml"


def test_sample_parses() -> None:
    sensors = tomllib.loads(SAMPLE.read_text())["sensors"]
    params = parse_params(sensors[0], "sensors[0]")
    assert params.pins == (22, 23)
    assert params.supervision == "loopback"
    assert params.occupied_when_closed
    assert params.exit_tolerance_s == 15.0


def test_defaults() -> None:
    params = parse_params({"pin": 22}, "s")
    assert (params.supervision, params.exit_tolerance_s, params.heartbeat_s) == (
        "none", 10.0, 60.0)
    assert params.pins == (22,)


@pytest.mark.parametrize(
    ("raw", "key", "reason"),
    [
        ({}, "s.pin", "required"),
        ({"pin": 22, "supervision": "eol"}, "s.supervision", "none, loopback, changeover"),
        ({"pin": 22, "supervision": "loopback"}, "s.supervision_pin", "required"),
        ({"pin": 22, "supervision_pin": 23}, "s.supervision_pin", "only used"),
        ({"pin": 22, "fault_delay_s": 2}, "s.fault_delay_s", "only used"),
        ({"pin": 22, "supervision": "changeover", "supervision_pin": 22},
         "s.supervision_pin", "already"),
        ({"pin": 22, "occupied_when": "pressed"}, "s.occupied_when", "closed, open"),
        ({"pin": 22, "exit_tolerance_s": -1}, "s.exit_tolerance_s", "[0, 3600]"),
        ({"pin": 22, "exit_tolerance_s": float("nan")}, "s.exit_tolerance_s", "number"),
        ({"pin": 22, "heartbeat_s": 0}, "s.heartbeat_s", "[0.1, 3600]"),
        ({"pin": 22, "exit_tolerence_s": 5}, "s.exit_tolerence_s", "unknown key"),
    ],
)
def test_bad_values_name_the_key(raw: dict[str, object], key: str, reason: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_params(raw, "s")
    assert err.value.key == key
    assert reason in err.value.reason
