"""Config checks every serial driver shares: known keys, the port, positive numbers,
query timing."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from urbanpulse.config_fields import unknown_key
from urbanpulse.errors import ConfigError


def check_known(raw: Mapping[str, Any], known: set[str], key: str, driver: str) -> None:
    for k in raw:
        if k not in known:
            raise ConfigError(f"{key}.{k}", unknown_key(k, known, f" for {driver}"))


def serial_port(raw: Mapping[str, Any], key: str) -> str:
    port = raw.get("port")
    if not isinstance(port, str) or not port:
        raise ConfigError(f"{key}.port", "missing: the serial port, e.g. /dev/serial/by-id/usb-...")
    return port


def fixed_baudrate(raw: Mapping[str, Any], key: str, device: str, baudrate: int = 9600) -> None:
    if raw.get("baudrate", baudrate) != baudrate:
        raise ConfigError(f"{key}.baudrate", f"the {device} speaks {baudrate} baud only")


def number(raw: Mapping[str, Any], key: str, name: str, default: float, *, zero_ok: bool = False) -> float:
    value = raw.get(name, default)
    # nan passes every comparison test here as false and inf is a number: a silence timeout
    # of inf never fails a silent sensor, a warm-up of nan never flags
    if (type(value) not in (int, float) or not math.isfinite(value) or value < 0
            or (value == 0 and not zero_ok)):
        bound = ">= 0" if zero_ok else "> 0"
        raise ConfigError(f"{key}.{name}", f"must be a finite number {bound}, got {value!r}")
    return float(value)


def check_query_timing(key: str, query_interval_s: float, reply_timeout_s: float,
                       silence_timeout_s: float) -> None:
    """A polled sensor: the reply must come before the next query, and a silent sensor
    must miss at least one query before the driver declares it failed."""
    if reply_timeout_s >= query_interval_s:
        raise ConfigError(f"{key}.reply_timeout_s",
                          f"must be below query_interval_s ({query_interval_s:g})")
    if silence_timeout_s <= query_interval_s:
        raise ConfigError(f"{key}.silence_timeout_s",
                          f"must be above query_interval_s ({query_interval_s:g}): "
                          "a silent sensor must miss at least one query before it fails")


def default_of(params_class: type, name: str) -> Any:
    """A field's default in a params dataclass (slotted classes hide it from getattr)."""
    return params_class.__dataclass_fields__[name].default  # type: ignore[attr-defined]
