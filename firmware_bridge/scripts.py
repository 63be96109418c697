"""Emulator value scripts: JSON lines replayed in a loop, one line per report.

- sds011: `{"pm25": 35.2, "pm10": 61.0}`
- pms5003: `{"pm25": 35, "pm10": 61}` or every key `bridge decode` prints
- pms5003t: as pms5003 plus `"temperature_c"` and `"humidity_pct"`
- mhz19b: `{"co2_ppm": 820}`
- upfw: the records `bridge decode --protocol upfw` prints (`"type"` and its fields;
  `seq` and `t_ms` are ignored, the emulator numbers and stamps)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from firmware_bridge.errors import BridgeError
from firmware_bridge.protocols.pms5003.emulator import reading, reading_t
from firmware_bridge.protocols.pms5003.frames import Pms5003Measurement, Pms5003tMeasurement
from firmware_bridge.protocols.upfw import frames as upfw


class ScriptError(BridgeError):
    def __init__(self, path: Path, line: int, reason: str) -> None:
        super().__init__(f"{path}:{line}: {reason}")


_UPFW_TYPES: dict[str, type[upfw.BoardMessage]] = {
    "hello": upfw.Hello,
    "loop_vehicle": upfw.LoopVehicle,
    "loop_interval": upfw.LoopInterval,
    "bed_weight": upfw.BedWeight,
    "door_count": upfw.DoorCount,
    "ticket_issued": upfw.TicketIssued,
    "ticket_served": upfw.TicketServed,
    "status": upfw.Status,
}


def _upfw_message(row: dict[str, Any]) -> upfw.BoardMessage:
    kind = _UPFW_TYPES[row.pop("type")]
    row |= {"seq": 0, "t_ms": 0}
    if kind is upfw.Hello:
        row["kind"] = upfw.DeviceKind(str(row["kind"]).upper())
    if kind is upfw.Status:
        row["code"] = upfw.StatusCode(row["code"])
    return kind(**row)


def _convert(protocol: str, row: dict[str, Any]) -> Any:
    if protocol == "sds011":
        return (float(row["pm25"]), float(row["pm10"]))
    if protocol == "pms5003":
        return Pms5003Measurement(**row) if len(row) > 2 else reading(row["pm25"], row["pm10"])
    if protocol == "pms5003t":
        if len(row) > 4:
            return Pms5003tMeasurement(**row)
        return reading_t(row["pm25"], row["pm10"], row["temperature_c"], row["humidity_pct"])
    if protocol == "mhz19b":
        return float(row["co2_ppm"])
    return _upfw_message(row)


def emulator_values(protocol: str, path: Path) -> Callable[[], Any]:
    """The `values` (or, for upfw, `source`) callback replaying `path`."""
    rows: list[Any] = []
    with path.open() as stream:
        for number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                if not isinstance(row, dict):
                    raise TypeError("not a JSON object")
                rows.append(_convert(protocol, row))
            except (ValueError, KeyError, TypeError) as exc:
                raise ScriptError(path, number, f"bad value line: {exc!r}") from exc
    if not rows:
        raise ScriptError(path, 0, "no values")
    cycle = itertools.cycle(rows)
    if protocol == "upfw":

        def source() -> Sequence[Any]:
            return [next(cycle)]

        return source
    return lambda: next(cycle)
