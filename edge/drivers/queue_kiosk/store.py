"""The kiosk's ticket numbers on disk: one small JSON file per sensor, replaced
atomically (edge.state_file) on every change."""

from __future__ import annotations

import json
from pathlib import Path

from edge.drivers.queue_kiosk.logic import TicketState
from edge.errors import DriverError
from edge.state_file import write_atomically


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
        data = json.dumps({"issued": state.issued, "called": state.called}).encode()
        try:
            write_atomically(self.path, data)
        except OSError as exc:
            raise DriverError(f"cannot save ticket state {self.path}: {exc}") from exc
