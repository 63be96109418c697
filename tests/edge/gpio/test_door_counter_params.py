"""door_counter parse_params: every bad value names its exact key; the sample parses."""

import tomllib
from pathlib import Path

import pytest

import edge.drivers.door_counter
from edge.drivers.door_counter.driver import parse_params
from urbanpulse.errors import ConfigError

SAMPLE = Path(edge.drivers.door_counter.__file__).parent / "sample.toml"


def test_sample_parses() -> None:
    sensors = tomllib.loads(SAMPLE.read_text())["sensors"]
    params = parse_params(sensors[0], "sensors[0]")
    assert params.pins == (5, 6, 13)
    assert params.interval_s == 300.0
    assert params.whole_level is True
    assert (params.test_pin, params.test_active_high) == (19, True)
    assert (params.self_test_every_s, params.self_test_s) == (300.0, 0.2)
    assert params.blocked_after_s == 60.0


def test_self_test_defaults_and_polarity() -> None:
    plain = parse_params({"pin": 5}, "s")
    assert (plain.test_pin, plain.blocked_after_s) == (None, 60.0)
    tested = parse_params({"pin": 5, "test_pin": 7, "test_active_state": "low",
                           "self_test_every_s": 60, "self_test_s": 0.05,
                           "blocked_after_s": 120}, "s")
    assert (tested.test_pin, tested.test_active_high) == (7, False)
    assert (tested.self_test_every_s, tested.self_test_s, tested.blocked_after_s) == \
        (60.0, 0.05, 120.0)
    assert 7 not in tested.pins, "an output, not one of the inputs"


def test_the_loopback_level_follows_the_pull() -> None:
    # tied to ground against a pull-up: reads low, the active level of active-low beams
    assert parse_params({"pin": 5}, "s").whole_level is True
    assert parse_params({"pin": 5, "active_state": "high"}, "s").whole_level is False
    # tied to 3.3 V against a pull-down
    assert parse_params({"pin": 5, "pull": "down"}, "s").whole_level is True
    assert parse_params({"pin": 5, "pull": "down", "active_state": "low"}, "s").whole_level \
        is False


@pytest.mark.parametrize(
    ("raw", "key", "reason"),
    [
        ({}, "s.pin", "required"),
        ({"pin": 5, "inner_pin": 5}, "s.inner_pin", "already"),
        ({"pin": 5, "inner_pin": -1}, "s.inner_pin", "2..27"),
        ({"pin": 5, "interval_s": 7200}, "s.interval_s", "[0.1, 3600]"),
        ({"pin": 5, "debounce_s": True}, "s.debounce_s", "number"),
        ({"pin": 5, "pull": "off", "active_state": "dark"}, "s.active_state", "low, high"),
        ({"pin": 5, "direction": "in"}, "s.direction", "unknown key"),
        ({"pin": 5, "supervision": "loopback"}, "s.supervision_pin", "required"),
        ({"pin": 5, "supervision_pin": 6}, "s.supervision_pin", "only used with"),
        ({"pin": 5, "fault_delay_s": 2}, "s.fault_delay_s", "only used with"),
        ({"pin": 5, "supervision": "loopback", "supervision_pin": 5}, "s.supervision_pin",
         "already"),
        ({"pin": 5, "supervision": "changeover", "supervision_pin": 6}, "s.supervision",
         "none, loopback"),
        ({"pin": 5, "test_pin": 5}, "s.test_pin", "already"),
        ({"pin": 5, "supervision": "loopback", "supervision_pin": 6, "test_pin": 6},
         "s.test_pin", "already"),
        ({"pin": 5, "self_test_every_s": 60}, "s.self_test_every_s", "only used with"),
        ({"pin": 5, "test_active_state": "low"}, "s.test_active_state", "only used with"),
        ({"pin": 5, "test_pin": 7, "self_test_every_s": 5}, "s.self_test_every_s",
         "[10, 86400]"),
        ({"pin": 5, "test_pin": 7, "self_test_s": 3}, "s.self_test_s", "[0.005, 2]"),
        ({"pin": 5, "test_pin": 7, "test_active_state": "off"}, "s.test_active_state",
         "low, high"),
        ({"pin": 5, "blocked_after_s": 1}, "s.blocked_after_s", "[5, 86400]"),
    ],
)
def test_bad_values_name_the_key(raw: dict[str, object], key: str, reason: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_params(raw, "s")
    assert err.value.key == key
    assert reason in err.value.reason
