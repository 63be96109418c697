"""Two sensors on one GPIO pin or one serial port: refused by the config parser, naming the
key and the sensor that already holds the pin or port. Before, `check-config` and the
agent's start-up took them, and at run time the second driver failed at every restart for
ever (`DriverError cannot open GPIO (17,): GPIOPinInUse`; a second serial driver: port
busy), its sensor read nothing."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from edge.config import parse_config
from urbanpulse.cli import main
from urbanpulse.errors import ConfigError

# One valid table per driver, every GPIO it can claim on pins 20-27 and none on 17.
GPIO_TABLES: dict[str, dict[str, Any]] = {
    "bed_pad": {"driver": "bed_pad", "pin": 20, "supervision": "loopback",
                "supervision_pin": 21},
    "door_counter": {"driver": "door_counter", "pin": 20, "inner_pin": 21,
                     "supervision": "loopback", "supervision_pin": 22, "test_pin": 23},
    "queue_kiosk": {"driver": "queue_kiosk", "issue_pin": 20, "call_pins": [21, 22],
                    "supervision": "loopback", "supervision_pin": 23, "ready_pin": 24},
    "traffic_loop": {"driver": "traffic_loop", "pin": 20, "downstream_pin": 21,
                     "loop_distance_m": 4.0},
}
# Every key of every GPIO driver that names a pin it opens (as input or as output).
PIN_KEYS = [("bed_pad", "pin"), ("bed_pad", "supervision_pin"),
            ("door_counter", "pin"), ("door_counter", "inner_pin"),
            ("door_counter", "supervision_pin"), ("door_counter", "test_pin"),
            ("queue_kiosk", "issue_pin"), ("queue_kiosk", "call_pins[1]"),
            ("queue_kiosk", "supervision_pin"), ("queue_kiosk", "ready_pin"),
            ("traffic_loop", "pin"), ("traffic_loop", "downstream_pin")]
SERIAL_DRIVERS = ("sds011", "pms5003", "mhz19b", "upfw")


def _raw(*sensors: dict[str, Any]) -> dict[str, Any]:
    return {"node": {"id": "n1", "site": "s1"},
            "mqtt": {"password_file": "/p", "host": "127.0.0.1", "tls": False},
            "sensors": [{"id": f"s-{i}", **s} for i, s in enumerate(sensors)]}


def _with_pin(driver: str, key: str, pin: int) -> dict[str, Any]:
    table = {k: list(v) if isinstance(v, list) else v for k, v in GPIO_TABLES[driver].items()}
    if key.startswith("call_pins["):
        table["call_pins"][int(key[len("call_pins["):-1])] = pin
    else:
        table[key] = pin
    return table


@pytest.mark.parametrize(("driver", "key"), PIN_KEYS)
def test_a_pin_a_sensor_already_uses_is_refused_naming_both(driver: str, key: str) -> None:
    # the later sensor's pin is named whatever key it holds the pin under, in or out
    first = {"driver": "bed_pad", "pin": 17}
    named = re.escape(key)
    with pytest.raises(ConfigError, match=rf"^sensors\[1\]\.{named}: GPIO 17 "
                                          r"is already used by sensors\[0\]\.pin \(sensor 's-0'\)"):
        parse_config(_raw(first, _with_pin(driver, key, 17)))
    # and the earlier sensor's key is named, whatever it is
    with pytest.raises(ConfigError, match=rf"^sensors\[1\]\.pin: GPIO 17 is already used by "
                                          rf"sensors\[0\]\.{named} "
                                          r"\(sensor 's-0'\)"):
        parse_config(_raw(_with_pin(driver, key, 17), {"driver": "traffic_loop", "pin": 17}))


def test_a_test_output_on_another_sensors_input_is_refused() -> None:
    """door_counter's test_pin is an output: on a pin another sensor reads it is a clash
    all the same (gpiozero opens one device per pin), not a shared wire."""
    door = _with_pin("door_counter", "test_pin", 5)
    with pytest.raises(ConfigError, match=r"^sensors\[1\]\.test_pin: GPIO 5 is already used by "
                                          r"sensors\[0\]\.pin \(sensor 's-0'\)"):
        parse_config(_raw({"driver": "traffic_loop", "pin": 5}, door))


def test_the_same_supervision_pin_on_two_sensors_is_refused() -> None:
    """A loopback pair is one sensor's: each cable's spare pair goes to its own pin."""
    a = {"driver": "bed_pad", "pin": 5, "supervision": "loopback", "supervision_pin": 13}
    b = {"driver": "bed_pad", "pin": 6, "supervision": "loopback", "supervision_pin": 13}
    with pytest.raises(ConfigError, match=r"^sensors\[1\]\.supervision_pin: GPIO 13 is already "
                                          r"used by sensors\[0\]\.supervision_pin"):
        parse_config(_raw(a, b))


def test_gpio_sensors_on_distinct_pins_pass() -> None:
    sensors = [{"driver": "bed_pad", "pin": 5, "supervision": "loopback", "supervision_pin": 6},
               {"driver": "bed_pad", "pin": 7, "supervision": "loopback", "supervision_pin": 8},
               {"driver": "traffic_loop", "pin": 9},
               {"driver": "door_counter", "pin": 10, "test_pin": 11},
               {"driver": "queue_kiosk", "issue_pin": 12, "call_pins": [13, 16]},
               {"driver": "sds011", "port": "/dev/ttyUSB0"},
               {"driver": "pms5003", "port": "/dev/ttyUSB1"}]
    assert len(parse_config(_raw(*sensors)).sensors) == 7


@pytest.mark.parametrize("first", SERIAL_DRIVERS)
@pytest.mark.parametrize("second", SERIAL_DRIVERS)
def test_a_serial_port_a_sensor_already_uses_is_refused(first: str, second: str) -> None:
    with pytest.raises(ConfigError, match=r"^sensors\[2\]\.port: serial port '/dev/ttyUSB0' is "
                                          r"already used by sensors\[0\]\.port \(sensor 's-0'\)"):
        parse_config(_raw({"driver": first, "port": "/dev/ttyUSB0"},
                          {"driver": "traffic_loop", "pin": 17},
                          {"driver": second, "port": "/dev/ttyUSB0"}))


def test_a_port_written_another_way_is_the_same_port() -> None:
    with pytest.raises(ConfigError, match=r"^sensors\[1\]\.port: serial port '/dev/./ttyUSB0' "
                                          r"\(/dev/ttyUSB0\) is already used by sensors\[0\]\.port"):
        parse_config(_raw({"driver": "sds011", "port": "/dev/ttyUSB0"},
                          {"driver": "sds011", "port": "/dev/./ttyUSB0"}))


def test_check_config_refuses_a_shared_pin(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "node.toml"
    path.write_text('[node]\nid = "n1"\nsite = "s1"\n[mqtt]\nhost = "127.0.0.1"\ntls = false\n'
                    'password_file = "/p"\n'
                    '[[sensors]]\nid = "bed-01"\ndriver = "bed_pad"\npin = 17\n'
                    '[[sensors]]\nid = "bed-02"\ndriver = "bed_pad"\npin = 17\n',
                    encoding="utf-8")
    assert main(["edge", "check-config", str(path)]) == 2
    assert capsys.readouterr().err == ("config error: sensors[1].pin: GPIO 17 is already used "
                                       "by sensors[0].pin (sensor 'bed-01'): one sensor's "
                                       "only (a second driver could never open it)\n")


UART = "the built-in UART's pins are one sensor's"


@pytest.mark.parametrize("port", ["/dev/serial0", "/dev/ttyAMA0", "/dev/ttyS0"])
@pytest.mark.parametrize("driver", SERIAL_DRIVERS)
def test_a_gpio_sensor_on_the_builtin_uarts_pins_is_refused(port: str, driver: str) -> None:
    """BCM 14 (TXD) and 15 (RXD) are the built-in UART's: a GPIO device on them takes them
    from the UART, or reads its bytes as pulses."""
    with pytest.raises(ConfigError, match=(
            rf"^sensors\[1\]\.pin: GPIO 15 is already used by sensors\[0\]\.port \(sensor 's-0', "
            rf"the built-in UART '{port}' on GPIO 14 and 15\): {UART}")):
        parse_config(_raw({"driver": driver, "port": port}, {"driver": "bed_pad", "pin": 15}))
    with pytest.raises(ConfigError, match=(
            rf"^sensors\[1\]\.port: GPIO 14 \(TXD of the built-in UART '{port}'\) is already used "
            rf"by sensors\[0\]\.supervision_pin \(sensor 's-0'\): {UART}")):
        parse_config(_raw({"driver": "bed_pad", "pin": 5, "supervision": "loopback",
                           "supervision_pin": 14}, {"driver": driver, "port": port}))


def test_two_names_of_the_builtin_uart_are_refused() -> None:
    """/dev/serial0 is a link to ttyAMA0 or ttyS0, whichever is on GPIO 14 and 15: two
    sensors on two of the three names are two on one UART."""
    with pytest.raises(ConfigError, match=(
            r"^sensors\[1\]\.port: GPIO 14 \(TXD of the built-in UART '/dev/ttyS0'\) is already "
            r"used by sensors\[0\]\.port \(sensor 's-0', the built-in UART '/dev/serial0' on GPIO "
            r"14 and 15\): " + UART)):
        parse_config(_raw({"driver": "sds011", "port": "/dev/serial0"},
                          {"driver": "mhz19b", "port": "/dev/ttyS0"}))


def test_a_usb_serial_sensor_leaves_bcm_14_and_15_free() -> None:
    config = parse_config(_raw({"driver": "sds011", "port": "/dev/ttyUSB0"},
                               {"driver": "bed_pad", "pin": 14},
                               {"driver": "traffic_loop", "pin": 15},
                               {"driver": "pms5003", "port": "/dev/ttyAMA1"}))
    assert len(config.sensors) == 4
