"""Typed frames of the Nova Fitness SDS011: what the sensor sends to the host."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class ReportMode(IntEnum):
    ACTIVE = 0
    QUERY = 1


class WorkState(IntEnum):
    SLEEP = 0
    WORK = 1


@dataclass(frozen=True, slots=True)
class Sds011Measurement:
    """A data frame (AA C0): PM2.5 and PM10 in µg/m³, resolution 0.1."""

    pm25: float
    pm10: float
    device_id: str

    @property
    def suspect_zero(self) -> bool:
        """Both values exactly zero: what the sensor sends while its fan and laser warm
        up. Real air is never that clean; treat as 'no reading yet', not as clean air."""
        return self.pm25 == 0.0 and self.pm10 == 0.0

    def as_record(self) -> dict[str, object]:
        return {"pm25": self.pm25, "pm10": self.pm10, "device_id": self.device_id}


@dataclass(frozen=True, slots=True)
class Sds011ReportModeReply:
    """Reply (AA C5 02) to a query or a change of the reporting mode."""

    is_set: bool
    mode: ReportMode
    device_id: str


@dataclass(frozen=True, slots=True)
class Sds011WorkStateReply:
    """Reply (AA C5 06) to a query or a change of sleep/work state."""

    is_set: bool
    state: WorkState
    device_id: str


@dataclass(frozen=True, slots=True)
class Sds011WorkingPeriodReply:
    """Reply (AA C5 08): 0 = continuous (a frame per second), 1-30 = one measurement
    every n minutes (30 s of work, then sleep)."""

    is_set: bool
    minutes: int
    device_id: str


@dataclass(frozen=True, slots=True)
class Sds011DeviceIdReply:
    """Reply (AA C5 05) to 'set device id'; `device_id` is the new id."""

    device_id: str


@dataclass(frozen=True, slots=True)
class Sds011FirmwareReply:
    """Reply (AA C5 07): the firmware version is its build date."""

    year: int
    month: int
    day: int
    device_id: str

    @property
    def version(self) -> str:
        return f"{self.year:04d}-{self.month:02d}-{self.day:02d}"


@dataclass(frozen=True, slots=True)
class Sds011UnknownReply:
    """A well-formed reply (AA C5) to a command this module does not know."""

    command: int
    payload: bytes
    device_id: str


Sds011Reply = (
    Sds011ReportModeReply
    | Sds011WorkStateReply
    | Sds011WorkingPeriodReply
    | Sds011DeviceIdReply
    | Sds011FirmwareReply
    | Sds011UnknownReply
)
Sds011Frame = Sds011Measurement | Sds011Reply
