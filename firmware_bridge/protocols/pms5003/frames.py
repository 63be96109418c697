"""Typed frames of the Plantower PMS5003 and PMS5003T: what the sensor sends."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar


class Mode(IntEnum):
    PASSIVE = 0
    ACTIVE = 1


# The words both models send first, in the order `as_record` lists them.
_SHARED = ("pm1", "pm25", "pm10", "pm1_cf1", "pm25_cf1", "pm10_cf1", "n0_3", "n0_5", "n1_0", "n2_5")


@dataclass(frozen=True, slots=True)
class _ParticleFrame:
    """Data words 1-10, the same on both models. Mass concentrations in µg/m³:
    `pm*_cf1` with the factory's standard particle (CF=1), `pm*` under atmospheric
    environment (use these outdoors). Counts `n*` are particles larger than the size (µm)
    in 0.1 L of air."""

    PARTICLES: ClassVar[tuple[str, ...]] = _SHARED
    RECORD: ClassVar[tuple[str, ...]] = _SHARED

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

    @property
    def suspect_zero(self) -> bool:
        """Every particle value zero: a sensor whose fan has just started, not clean air."""
        return not any(getattr(self, name) for name in self.PARTICLES)

    def as_record(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in self.RECORD}


@dataclass(frozen=True, slots=True)
class Pms5003Measurement(_ParticleFrame):
    """A 32-byte PMS5003 data frame: words 11-12 count particles > 5 µm and > 10 µm."""

    PARTICLES: ClassVar[tuple[str, ...]] = (*_SHARED, "n5_0", "n10_0")
    RECORD: ClassVar[tuple[str, ...]] = PARTICLES

    n5_0: int
    n10_0: int
    version: int = 0
    error_code: int = 0


@dataclass(frozen=True, slots=True)
class Pms5003tMeasurement(_ParticleFrame):
    """The PMS5003T frame: as the PMS5003's, with temperature (°C, 0.1 resolution,
    signed) and relative humidity (%, 0.1 resolution) in words 11-12 where the PMS5003
    has the >5 µm and >10 µm counts."""

    RECORD: ClassVar[tuple[str, ...]] = (*_SHARED, "temperature_c", "humidity_pct")

    temperature_c: float
    humidity_pct: float
    version: int = 0
    error_code: int = 0


@dataclass(frozen=True, slots=True)
class Pms5003Ack:
    """The 8-byte answer (42 4D 00 04 CMD DATA CS) to a mode change or sleep command."""

    command: int
    data: int


Pms5003Frame = Pms5003Measurement | Pms5003Ack
Pms5003tFrame = Pms5003tMeasurement | Pms5003Ack
