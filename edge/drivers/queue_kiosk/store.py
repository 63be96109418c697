"""The kiosk's ticket numbers on disk: one small JSON file per sensor, replaced
atomically (write, fsync, rename, fsync the directory) on every change."""

from __future__ import annotations

import json
import os
from pathlib import Path

from edge.drivers.queue_kiosk.logic import TicketState
from edge.errors import DriverError


class TicketStore:
    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> TicketState:
        """The saved state; a fresh one when there is no file yet. A damaged file is a
        DriverError: numbering from 1 again would pair new tickets with old calls."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return TicketState()
        except OSError as exc:
            raise DriverError(f"cannot read ticket state {self.path}: {exc}") from exc
        try:
            body = json.loads(raw)
            issued, called = body["issued"], body["called"]
        except (ValueError, TypeError, KeyError) as exc:
            raise DriverError(
                f"ticket state {self.path} is damaged ({exc}); fix or remove it (numbering "
                "then restarts at 1)") from exc
        if type(issued) is not int or type(called) is not int or not 0 <= called <= issued:
            raise DriverError(f"ticket state {self.path} is inconsistent: {body!r}; fix or "
                              "remove it (numbering then restarts at 1)")
        return TicketState(issued, called)

    def save(self, state: TicketState) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        data = json.dumps({"issued": state.issued, "called": state.called}).encode()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            raise DriverError(f"cannot save ticket state {self.path}: {exc}") from exc
