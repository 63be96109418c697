"""The kiosk's ticket numbers as text, kept by the agent (`DriverContext.state`) in the
same transaction as the readings they numbered. Nodes set up before that kept them in a
JSON file per sensor under the state directory; `load_legacy_file` reads it once."""

from __future__ import annotations

import json
from pathlib import Path

from edge.driver_state import damaged
from edge.drivers.queue_kiosk.logic import TicketState
from edge.errors import DriverError


def state_key(sensor_id: str) -> str:
    return f"queue_kiosk/{sensor_id}/tickets"


def legacy_path(state_dir: Path, sensor_id: str) -> Path:
    return state_dir / "queue_kiosk" / f"{sensor_id}.json"


def encode(state: TicketState) -> str:
    return json.dumps({"issued": state.issued, "called": state.called})


def decode(text: str | bytes, where: str) -> TicketState:
    """DriverError naming `where` (a legacy file) when damaged: numbering from 1 again
    would pair new tickets with old calls."""
    try:
        body = json.loads(text)
        issued, called = body["issued"], body["called"]
    except (ValueError, TypeError, KeyError) as exc:
        raise DriverError(f"ticket state {where} is damaged ({exc}); fix or remove it "
                          "(numbering then restarts at 1)") from exc
    if type(issued) is not int or type(called) is not int or not 0 <= called <= issued:
        raise DriverError(f"ticket state {where} is inconsistent: {body!r}; fix or remove it "
                          "(numbering then restarts at 1)")
    return TicketState(issued, called)


def decode_saved(text: str, key: str) -> TicketState:
    """`decode` of the state kept by the agent under `key`, its error naming the command
    that clears it."""
    try:
        return decode(text, repr(key))
    except DriverError as exc:
        raise damaged("kiosk ticket numbers", key,
                      f" ({exc.__cause__ or text!r}; numbering restarts at 1 once cleared)") from exc


def load_legacy_file(path: Path) -> TicketState | None:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise DriverError(f"cannot read ticket state {path}: {exc}") from exc
    return decode(raw, str(path))
