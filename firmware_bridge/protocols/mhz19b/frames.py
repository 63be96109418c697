"""Typed frames of the Winsen MH-Z19B: its answers to 'read CO2' and 'get ABC status'."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Mhz19bReading:
    """CO2 in ppm (bytes 2-3, big-endian); the module's internal temperature in °C
    (byte 4 minus 40, 1 °C steps; not in the datasheet, but every MH-Z19B sends it);
    byte 5, a status byte the datasheet leaves undocumented."""

    co2_ppm: int
    temperature_c: int
    status: int = 0

    @property
    def suspect_zero(self) -> bool:
        """0 ppm: what the module answers while it preheats (outdoor air is ~420)."""
        return self.co2_ppm == 0

    def as_record(self) -> dict[str, object]:
        return {"co2_ppm": self.co2_ppm, "temperature_c": self.temperature_c}


@dataclass(frozen=True, slots=True)
class Mhz19bAbcStatus:
    """The answer (FF 7D ... b7 CS) to 'get ABC status' (0x7D): not in the V1.0 manual, but
    answered by most firmware; b7 is 1 when automatic baseline correction is on."""

    enabled: bool


Mhz19bFrame = Mhz19bReading | Mhz19bAbcStatus
