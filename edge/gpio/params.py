"""Validation helpers shared by the GPIO drivers' parse_params (no I/O).

Every error is a ConfigError naming the exact key (`<sensor key>.<field>`). Unknown keys
are errors too: a misspelt `exit_tolerence_s` must not silently fall back to a default.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from urbanpulse.config_fields import unknown_key
from urbanpulse.errors import ConfigError
from urbanpulse.hour_intervals import check_divides_hour

# BCM numbers of the 40-pin header's GPIOs a sensor may use, the same on every Pi since the
# B+: 2..27. BCM 0 and 1 (ID_SD, ID_SC, header pins 27 and 28) are the I2C bus of the HAT's ID
# EEPROM, which the firmware reads at boot: a sensor there is refused.
MIN_BCM_PIN = 2
MAX_BCM_PIN = 27
HAT_ID_PINS = {0: "ID_SD", 1: "ID_SC"}
PULLS = ("up", "down", "off")
ACTIVE_STATES = ("low", "high")
# Keys of a [[sensors]] table that belong to the agent, not to the driver.
AGENT_KEYS = frozenset({"id", "driver"})

# A counting interval (`interval_s`: door_counter, traffic_loop, upfw vehicles) ends on
# multiples of itself from the epoch, and the cloud counts each in the hour it ends in: it
# must divide an hour, or the hours hold unequal time (2400 s: 40 and 80 minutes).

Pull = Literal["up", "down", "off"]
# BCM 2 and 3 (I2C SDA and SCL) have 1.8 kOhm pull-ups to 3.3 V on the board: no pull-down
# or floating input there (gpiozero refuses to set one: PinFixedPull).
FIXED_PULL_UP = {2: "I2C SDA", 3: "I2C SCL"}


@dataclass(frozen=True, slots=True)
class InputWiring:
    """How the sensor's pins are wired: the internal pull resistor and the level the pin
    reads when the signal is on (contact closed, vehicle present, beam broken)."""

    pull: Pull = "up"
    active_high: bool = False

    def gpiozero_args(self) -> tuple[bool | None, bool | None, bool]:
        """(pull_up, active_state, invert) for gpiozero.DigitalInputDevice.

        gpiozero fixes the active level when a pull is set (pull-up means active low);
        the other combination is read through gpiozero's default and inverted by us.
        """
        if self.pull == "off":
            return None, self.active_high, False
        pull_up = self.pull == "up"
        gpiozero_active_high = not pull_up
        return pull_up, None, gpiozero_active_high != self.active_high


class Fields:
    """Reads one sensor table's fields, remembering which keys were used."""

    def __init__(self, raw: Mapping[str, Any], key: str) -> None:
        if not isinstance(raw, Mapping):
            raise ConfigError(key, f"must be a table, got {type(raw).__name__}")
        self.raw = raw
        self.key = key
        self._used: set[str] = set(AGENT_KEYS)

    def error(self, name: str, reason: str) -> ConfigError:
        return ConfigError(f"{self.key}.{name}", reason)

    def has(self, name: str) -> bool:
        return name in self.raw

    def _get(self, name: str) -> Any:
        self._used.add(name)
        return self.raw.get(name)

    def value(self, name: str) -> Any:
        """The raw value of `name` (None when absent), for a driver's own checks."""
        return self._get(name)

    def pin(self, name: str) -> int:
        value = self._get(name)
        if value is None:
            raise self.error(name, f"required (a BCM GPIO number {MIN_BCM_PIN}..{MAX_BCM_PIN})")
        return self._check_pin(name, value)

    def optional_pin(self, name: str) -> int | None:
        value = self._get(name)
        return None if value is None else self._check_pin(name, value)

    def pin_list(self, name: str, *, min_len: int = 1, max_len: int = 16) -> tuple[int, ...]:
        value = self._get(name)
        if value is None:
            raise self.error(name, f"required (a list of BCM GPIO numbers {MIN_BCM_PIN}..{MAX_BCM_PIN})")
        if not isinstance(value, list) or not min_len <= len(value) <= max_len:
            raise self.error(name, f"must be a list of {min_len}..{max_len} BCM GPIO numbers")
        return tuple(self._check_pin(f"{name}[{i}]", v) for i, v in enumerate(value))

    def _check_pin(self, name: str, value: Any) -> int:
        if type(value) is int and value in HAT_ID_PINS:
            raise self.error(name, f"GPIO {value} ({HAT_ID_PINS[value]}) is the I2C bus of the HAT "
                             "ID EEPROM, which the Pi's firmware reads at boot (a sensor there can "
                             f"keep a HAT from being found): use GPIO {MIN_BCM_PIN}..{MAX_BCM_PIN}")
        if type(value) is not int or not MIN_BCM_PIN <= value <= MAX_BCM_PIN:
            raise self.error(name, f"must be a BCM GPIO number {MIN_BCM_PIN}..{MAX_BCM_PIN}, "
                             f"got {value!r}")
        return value

    def number(self, name: str, default: float | None, low: float, high: float,
               *, low_inclusive: bool = True) -> float:
        value = self._get(name)
        if value is None:
            if default is None:
                raise self.error(name, "required")
            return default
        return self._check_number(name, value, low, high, low_inclusive)

    def optional_number(self, name: str, low: float, high: float,
                        *, low_inclusive: bool = True) -> float | None:
        value = self._get(name)
        if value is None:
            return None
        return self._check_number(name, value, low, high, low_inclusive)

    def _check_number(self, name: str, value: Any, low: float, high: float,
                      low_inclusive: bool) -> float:
        if type(value) not in (int, float) or not math.isfinite(value):
            raise self.error(name, f"must be a number, got {value!r}")
        above = value >= low if low_inclusive else value > low
        if not above or value > high:
            bracket = "[" if low_inclusive else "("
            raise self.error(name, f"must be in {bracket}{low:g}, {high:g}], got {value!r}")
        return float(value)

    def interval(self, name: str, default: float, low: float, high: float) -> float:
        """A counting interval: a number in [low, high] that divides an hour exactly."""
        value = self.number(name, default, low, high)
        check_divides_hour(f"{self.key}.{name}", value, low, high)
        return value

    def integer_list(self, name: str, low: int, high: int) -> tuple[int, ...] | None:
        value = self._get(name)
        if value is None:
            return None
        if not isinstance(value, list) or not all(
                type(v) is int and low <= v <= high for v in value):
            raise self.error(name, f"must be a list of integers in [{low}, {high}]")
        return tuple(value)

    def choice(self, name: str, options: Iterable[str], default: str) -> str:
        value = self._get(name)
        allowed = tuple(options)
        if value is None:
            return default
        if not isinstance(value, str) or value not in allowed:
            raise self.error(name, f"must be one of {', '.join(allowed)}, got {value!r}")
        return value

    def wiring(self, pins: Mapping[str, int | None] | None = None) -> InputWiring:
        """`pull` (up | down | off, default up) and `active_state` (low | high; default
        low with a pull-up, high with a pull-down, required with no pull). `pins`: the
        inputs wired so (a pin with a fixed pull-up takes no other pull)."""
        pull = self.choice("pull", PULLS, "up")
        if pull != "up":
            for name, pin in (pins or {}).items():
                if pin in FIXED_PULL_UP:
                    raise self.error(name, f"GPIO {pin} ({FIXED_PULL_UP[pin]}) has a pull-up "
                                     f"resistor fixed on the Pi's board: it cannot be read with "
                                     f"pull = \"{pull}\"; use another pin")
        default_active = {"up": "low", "down": "high", "off": ""}[pull]
        if pull == "off" and self.raw.get("active_state") is None:
            raise self.error("active_state", "required when pull = \"off\" (low or high)")
        active = self.choice("active_state", ACTIVE_STATES, default_active)
        checked: Pull = "up" if pull == "up" else "down" if pull == "down" else "off"
        return InputWiring(pull=checked, active_high=active == "high")

    def distinct_pins(self, named: Mapping[str, int | None]) -> None:
        seen: dict[int, str] = {}
        for name, pin in named.items():
            if pin is None:
                continue
            if pin in seen:
                raise self.error(name, f"GPIO {pin} is already used by {seen[pin]}")
            seen[pin] = name

    def finish(self) -> None:
        """Reject keys no one read."""
        unknown = sorted(set(self.raw) - self._used)
        if unknown:
            raise self.error(unknown[0], unknown_key(unknown[0], self._used, " for this driver"))

