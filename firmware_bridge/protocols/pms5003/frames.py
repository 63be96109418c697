"""Typed frames of the Plantower PMS5003 and PMS5003T: what the sensor sends."""

from __future__ import annotations

from dataclasses import astuple, dataclass
from enum import IntEnum


class Mode(IntEnum):
    PASSIVE = 0
    ACTIVE = 1


@dataclass(frozen=True, slots=True)
class Pms5003Measurement:
    """A 32-byte data frame. Mass concentrations in µg/m³: `pm*_cf1` with the factory's
    standard particle (CF=1), `pm*` under atmospheric environment (use these outdoors).
    Counts `n*` are particles larger than the size (µm) in 0.1 L of air."""

    pm1_cf1: int
    pm25_cf1: int
    pm10_cf1: int
    pm1: int
    pm25: int
    pm10: int
    n0_3: int
    n0_5: int
    n1_0: int
    n2_5: int
    n5_0: int
    n10_0: int
    version: int = 0
    error_code: int = 0

    @property
    def suspect_zero(self) -> bool:
        """Every value zero: a sensor whose fan has just started, not clean air."""
        return not any(astuple(self)[:12])

    def as_record(self) -> dict[str, object]:
        return {
            "pm1": self.pm1,
            "pm25": self.pm25,
            "pm10": self.pm10,
            "pm1_cf1": self.pm1_cf1,
            "pm25_cf1": self.pm25_cf1,
            "pm10_cf1": self.pm10_cf1,
            "n0_3": self.n0_3,
            "n0_5": self.n0_5,
            "n1_0": self.n1_0,
            "n2_5": self.n2_5,
            "n5_0": self.n5_0,
            "n10_0": self.n10_0,
        }


@dataclass(frozen=True, slots=True)
class Pms5003tMeasurement:
    """The PMS5003T frame: as the PMS5003's, with temperature (°C, 0.1 resolution,
    signed) and relative humidity (%, 0.1 resolution) in words 11-12 where the PMS5003
    has the >5 µm and >10 µm counts."""

    pm1_cf1: int
    pm25_cf1: int
    pm10_cf1: int
    pm1: int
    pm25: int
    pm10: int
    n0_3: int
    n0_5: int
    n1_0: int
    n2_5: int
    temperature_c: float
    humidity_pct: float
    version: int = 0
    error_code: int = 0

    @property
    def suspect_zero(self) -> bool:
        """Every particle value zero (temperature and humidity aside)."""
        return not any(astuple(self)[:10])

    def as_record(self) -> dict[str, object]:
        return {
            "pm1": self.pm1,
            "pm25": self.pm25,
            "pm10": self.pm10,
            "pm1_cf1": self.pm1_cf1,
            "pm25_cf1": self.pm25_cf1,
            "pm10_cf1": self.pm10_cf1,
            "n0_3": self.n0_3,
            "n0_5": self.n0_5,
            "n1_0": self.n1_0,
            "n2_5": self.n2_5,
            "temperature_c": self.temperature_c,
            "humidity_pct": self.humidity_pct,
        }


@dataclass(frozen=True, slots=True)
class Pms5003Ack:
    """The 8-byte answer (42 4D 00 04 CMD DATA CS) to a mode change or sleep command."""

    command: int
    data: int


Pms5003Frame = Pms5003Measurement | Pms5003Ack
Pms5003tFrame = Pms5003tMeasurement | Pms5003Ack
