"""queue_kiosk parse_params: every bad value names its exact key; the sample parses."""

import tomllib
from pathlib import Path

import pytest

import edge.drivers.queue_kiosk
from edge.drivers.queue_kiosk.driver import parse_params
from urbanpulse.errors import ConfigError

SAMPLE = Path(edge.drivers.queue_kiosk.__file__).parent / "sample.toml"


def test_sample_parses() -> None:
    sensors = tomllib.loads(SAMPLE.read_text())["sensors"]
    params = parse_params(sensors[0], "sensors[0]")
    assert params.pins == (16, 20, 21, 26)
    assert params.counters == (4, 5, 6)


def test_counters_default_to_their_position() -> None:
    assert parse_params({"issue_pin": 2, "call_pins": [3, 4]}, "s").counters == (1, 2)


@pytest.mark.parametrize(
    ("raw", "key", "reason"),
    [
        ({"call_pins": [3]}, "s.issue_pin", "required"),
        ({"issue_pin": 2}, "s.call_pins", "required"),
        ({"issue_pin": 2, "call_pins": []}, "s.call_pins", "1..16"),
        ({"issue_pin": 2, "call_pins": 3}, "s.call_pins", "list"),
        ({"issue_pin": 2, "call_pins": [3, 40]}, "s.call_pins[1]", "0..27"),
        ({"issue_pin": 2, "call_pins": [3, 2]}, "s.call_pins[1]", "issue_pin"),
        ({"issue_pin": 2, "call_pins": [3, 4], "counter_numbers": [1]},
         "s.counter_numbers", "one number per call pin"),
        ({"issue_pin": 2, "call_pins": [3, 4], "counter_numbers": [1, 1]},
         "s.counter_numbers", "repeat"),
        ({"issue_pin": 2, "call_pins": [3], "counter_numbers": [1001]},
         "s.counter_numbers", "[0, 1000]"),
        ({"issue_pin": 2, "call_pins": [3], "first_ticket": 100}, "s.first_ticket",
         "unknown key"),
    ],
)
def test_bad_values_name_the_key(raw: dict[str, object], key: str, reason: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_params(raw, "s")
    assert err.value.key == key
    assert reason in err.value.reason
