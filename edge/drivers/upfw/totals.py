"""A door board's totals on disk, so that a driver restart (an unplugged adapter, the
agent restarted by systemd) counts the people who passed meanwhile instead of taking the
board's next totals as a new baseline."""

from __future__ import annotations

import json
from pathlib import Path

from edge.drivers.upfw.mapping import U32, DoorTotals
from edge.errors import DriverError
from edge.state_file import write_atomically


class DoorStore:
    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> DoorTotals | None:
        """The saved totals; None when there are none yet. A damaged file is a DriverError
        that names it: counting from a wrong total would invent or lose people."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise DriverError(f"cannot read door totals {self.path}: {exc}") from exc
        try:
            body = json.loads(raw)
            device = body["device_id"]
            seq, t_ms = body["last"]
            doors = {int(door): (entered, at) for door, (entered, at) in body["doors"].items()}
        except (ValueError, TypeError, KeyError) as exc:
            raise DriverError(f"door totals {self.path} are damaged ({exc}); remove the file "
                              "(each door then starts from a new baseline)") from exc
        numbers = [seq, t_ms, *(n for pair in doors.values() for n in pair)]
        if not (device is None or isinstance(device, str)) or not all(
                type(n) is int and 0 <= n <= U32 for n in numbers):
            raise DriverError(f"door totals {self.path} are inconsistent: {body!r}; remove the "
                              "file (each door then starts from a new baseline)")
        return DoorTotals(device, (seq, t_ms), doors)

    def save(self, totals: DoorTotals) -> None:
        body = {"device_id": totals.device_id, "last": list(totals.last),
                "doors": {str(door): list(pair) for door, pair in sorted(totals.doors.items())}}
        try:
            write_atomically(self.path, json.dumps(body).encode())
        except OSError as exc:
            raise DriverError(f"cannot save door totals {self.path}: {exc}") from exc
