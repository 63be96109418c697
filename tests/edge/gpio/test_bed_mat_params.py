"""bed_mat's config: typed, validated at start-up, errors naming the exact key."""

import pytest

from edge.config import gpio_sensor_keys, parse_config
from edge.drivers.bed_mat.driver import parse_params
from urbanpulse.errors import ConfigError


def test_defaults() -> None:
    p = parse_params({"channel": 2}, "sensors[0]")
    assert (p.channel, p.spi_device, p.sample_hz) == (2, 0, 10.0)
    assert (p.settings.occupied_level, p.settings.free_level) == (0.25, 0.15)
    assert (p.settings.exit_tolerance_s, p.settings.heartbeat_s) == (10.0, 60.0)
    # supervised by the bias by default: an existing config without the keys stays valid
    assert (p.settings.supervision, p.settings.fault_below, p.settings.fault_above,
            p.settings.fault_delay_s) == ("bias", 0.02, 1.0, 1.0)
    off = parse_params({"channel": 2, "supervision": "none"}, "sensors[0]")
    assert off.settings.supervision == "none"


@pytest.mark.parametrize(("raw", "key", "why"), [
    ({}, "channel", "required"),
    ({"channel": 8}, "channel", "0..7"),
    ({"channel": 1.0}, "channel", "0..7"),
    ({"channel": 0, "spi_device": 2}, "spi_device", "CE0"),
    ({"channel": 0, "sample_hz": 0.5}, "sample_hz", r"\[1, 100\]"),
    ({"channel": 0, "occupied_level": 0.2, "free_level": 0.2}, "free_level", "below"),
    ({"channel": 0, "motion_tau_s": 0.2}, "motion_tau_s", "5 samples"),
    ({"channel": 0, "exit_tolerence_s": 5}, "exit_tolerence_s", "unknown"),
    ({"channel": 0, "supervision": "loopback"}, "supervision", "one of bias, none"),
    ({"channel": 0, "fault_below": 0.15}, "fault_below", "below free_level"),
    ({"channel": 0, "fault_below": 0}, "fault_below", r"\(0, 1\]"),
    ({"channel": 0, "fault_above": 0.25}, "fault_above", "above occupied_level"),
    ({"channel": 0, "fault_delay_s": 61}, "fault_delay_s", r"\[0, 60\]"),
    ({"channel": 0, "supervision": "none", "fault_delay_s": 2}, "fault_delay_s",
     "only with supervision"),
])
def test_bad_values_name_their_key(raw: dict, key: str, why: str) -> None:
    with pytest.raises(ConfigError, match=rf"^sensors\[3\]\.{key}: .*{why}"):
        parse_params(raw, "sensors[3]")


def _config(*sensors: dict) -> dict:
    return {"node": {"id": "n1", "site": "s1"},
            "mqtt": {"password_file": "/p", "host": "127.0.0.1", "tls": False},
            "sensors": [{"id": f"bed-{i}", **s} for i, s in enumerate(sensors)]}


def test_mats_share_the_adc_but_not_an_input() -> None:
    config = parse_config(_config({"driver": "bed_mat", "channel": 0},
                                  {"driver": "bed_mat", "channel": 1},
                                  {"driver": "bed_mat", "channel": 0, "spi_device": 1}))
    assert [s.driver for s in config.sensors] == ["bed_mat"] * 3
    with pytest.raises(ConfigError, match=r"^sensors\[1\]\.channel: MCP3008 input 0 on SPI0 "
                       r"CE0 is already used by sensors\[0\]\.channel"):
        parse_config(_config({"driver": "bed_mat", "channel": 0},
                             {"driver": "bed_mat", "channel": 0}))


def test_a_node_with_mats_needs_the_gpio_backend() -> None:
    config = parse_config(_config({"driver": "bed_mat", "channel": 5}))
    assert gpio_sensor_keys(config) == ["sensors[0].channel (sensor 'bed-0')"]


@pytest.mark.parametrize("pin", [7, 8, 9, 10, 11])
def test_the_spi_bus_pins_are_the_mats_whichever_sensor_comes_first(pin: int) -> None:
    mat = {"driver": "bed_mat", "channel": 0}
    pad = {"driver": "bed_pad", "pin": pin}
    with pytest.raises(ConfigError, match=rf"^sensors\[1\]\.pin: GPIO {pin} is already used by "
                       r"sensors\[0\]\.spi_device \(sensor 'bed-0', the SPI0 bus on GPIO 7-11\): "
                       r"the SPI0 bus's pins are its ADCs'"):
        parse_config(_config(mat, pad))
    with pytest.raises(ConfigError, match=rf"^sensors\[1\]\.spi_device: GPIO {pin} \(\w+ of the "
                       rf"SPI0 bus\) is already used by sensors\[0\]\.pin \(sensor 'bed-0'\): "
                       r"the SPI0 bus's pins are its ADCs'"):
        parse_config(_config(pad, mat))


def test_a_pad_beside_the_mats_off_the_bus_is_fine() -> None:
    config = parse_config(_config({"driver": "bed_mat", "channel": 0},
                                  {"driver": "bed_pad", "pin": 17},
                                  {"driver": "bed_mat", "channel": 1, "spi_device": 1}))
    assert [s.driver for s in config.sensors] == ["bed_mat", "bed_pad", "bed_mat"]
