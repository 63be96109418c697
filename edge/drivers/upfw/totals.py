"""A door board's totals as text, kept by the agent (`DriverContext.state`) in the same
transaction as the counts they produced, so that a driver or agent restart counts the
people who passed meanwhile instead of taking the board's next totals as a new baseline,
and a crash can neither lose a count nor count it twice."""

from __future__ import annotations

import json

from edge.driver_state import damaged
from edge.drivers.upfw.mapping import U32, DoorTotals


def state_key(sensor_id: str) -> str:
    return f"upfw/{sensor_id}/doors"


def encode(totals: DoorTotals) -> str:
    return json.dumps({"device_id": totals.device_id, "last": list(totals.last),
                       "doors": {str(door): list(pair) for door, pair in sorted(totals.doors.items())}})


def decode(text: str, key: str) -> DoorTotals:
    """DriverError naming the key if the text is damaged: counting from a wrong total
    would invent or lose people."""
    try:
        body = json.loads(text)
        device = body["device_id"]
        seq, t_ms = body["last"]
        doors = {int(door): (entered, at) for door, (entered, at) in body["doors"].items()}
    except (ValueError, TypeError, KeyError, AttributeError) as exc:  # AttributeError: no table
        raise damaged("door totals", key, f" ({exc})") from exc
    numbers = [seq, t_ms, *(n for pair in doors.values() for n in pair)]
    if not (device is None or isinstance(device, str)) or not all(
            type(n) is int and 0 <= n <= U32 for n in numbers):
        raise damaged("door totals", key, f" (inconsistent: {body!r})")
    return DoorTotals(device, (seq, t_ms), doors)
