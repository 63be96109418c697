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
    assert params.pins == (16, 20, 21, 26, 19, 13)
    assert params.counters == (4, 5, 6)
    assert params.supervision_lines == ("cable", "ready")
    assert params.whole_level is True  # pull-up, active low: the pair ties the pin to GND


def test_supervision_is_optional_and_each_line_on_its_own() -> None:
    bare = parse_params({"issue_pin": 2, "call_pins": [3]}, "s")
    assert (bare.pins, bare.supervision_lines) == ((2, 3), ())
    ready = parse_params({"issue_pin": 2, "call_pins": [3], "ready_pin": 5}, "s")
    assert (ready.pins, ready.supervision_lines) == ((2, 3, 5), ("ready",))
    loop = parse_params({"issue_pin": 12, "call_pins": [13], "supervision": "loopback",
                         "supervision_pin": 6, "pull": "down"}, "s")
    assert (loop.pins, loop.supervision_lines, loop.whole_level) == ((12, 13, 6), ("cable",), True)


def test_counters_default_to_their_position() -> None:
    assert parse_params({"issue_pin": 2, "call_pins": [3, 4]}, "s").counters == (1, 2)


@pytest.mark.parametrize(
    ("raw", "key", "reason"),
    [
        ({"call_pins": [3]}, "s.issue_pin", "required"),
        ({"issue_pin": 2}, "s.call_pins", "required"),
        ({"issue_pin": 2, "call_pins": []}, "s.call_pins", "1..16"),
        ({"issue_pin": 2, "call_pins": 3}, "s.call_pins", "list"),
        ({"issue_pin": 2, "call_pins": [3, 40]}, "s.call_pins[1]", "2..27"),
        ({"issue_pin": 2, "call_pins": [3, 2]}, "s.call_pins[1]", "issue_pin"),
        # the Pi's I2C lines have pull-ups fixed on the board (gpiozero: PinFixedPull)
        ({"issue_pin": 4, "call_pins": [5, 3], "pull": "down"}, "s.call_pins[1]",
         "GPIO 3 (I2C SCL) has a pull-up resistor fixed"),
        ({"issue_pin": 2, "call_pins": [5], "pull": "off", "active_state": "high"}, "s.issue_pin",
         "cannot be read with pull = \"off\""),
        ({"issue_pin": 2, "call_pins": [3, 4], "counter_numbers": [1]},
         "s.counter_numbers", "one number per call pin"),
        ({"issue_pin": 2, "call_pins": [3, 4], "counter_numbers": [1, 1]},
         "s.counter_numbers", "repeat"),
        ({"issue_pin": 2, "call_pins": [3], "counter_numbers": [1001]},
         "s.counter_numbers", "[0, 1000]"),
        ({"issue_pin": 2, "call_pins": [3], "first_ticket": 100}, "s.first_ticket",
         "unknown key"),
        ({"issue_pin": 2, "call_pins": [3], "supervision_pin": 5}, "s.supervision_pin",
         "only used with supervision"),
        ({"issue_pin": 2, "call_pins": [3], "supervision": "loopback"}, "s.supervision_pin",
         "required"),
        ({"issue_pin": 2, "call_pins": [3], "supervision": "relay"}, "s.supervision", "loopback"),
        ({"issue_pin": 2, "call_pins": [3], "fault_delay_s": 2}, "s.fault_delay_s",
         "only used with supervision or a ready_pin"),
        ({"issue_pin": 2, "call_pins": [3], "ready_pin": 3}, "s.ready_pin", "call_pins[0]"),
        ({"issue_pin": 2, "call_pins": [3], "ready_pin": 5, "fault_delay_s": 61},
         "s.fault_delay_s", "60"),
    ],
)
def test_bad_values_name_the_key(raw: dict[str, object], key: str, reason: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_params(raw, "s")
    assert err.value.key == key
    assert reason in err.value.reason
