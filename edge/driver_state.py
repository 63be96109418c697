"""The agent's `StateKeeper` for counting drivers: state staged by a driver waits for the
agent's next commit, which writes it with the readings emitted after it (edge.outbox).

Drivers key their state `<driver>/<sensor id>/<what>` (`upfw/kiosk/queues`,
`queue_kiosk/opd-1/tickets`): `sensor_of` reads the sensor id back, by which a technician
lists or clears one driver's state (`urbanpulse edge driver-state`, with the agent
stopped: `clear`)."""

from __future__ import annotations

import json
from pathlib import Path

from edge.errors import DriverError, DriverStateError
from edge.outbox import Outbox, clear_states, read_states

VIEW_CHARS = 100  # `view`'s length at most


class StagedState:
    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self._staged: dict[str, str] = {}

    def load(self, key: str) -> str | None:
        """Staged state first (a driver restarted before the next commit), then committed."""
        staged = self._staged.get(key)
        return staged if staged is not None else self.outbox.load_state(key)

    def stage(self, key: str, value: str) -> None:
        self._staged[key] = value

    def take(self) -> dict[str, str]:
        """What the next commit writes; staged state is handed over once."""
        staged, self._staged = self._staged, {}
        return staged

    def give_back(self, taken: dict[str, str]) -> None:
        """State `take` handed to a commit that failed: staged again for the next one,
        under what was staged since (newer)."""
        self._staged = {**taken, **self._staged}


def sensor_of(key: str) -> str | None:
    """The sensor id (the driver's `id` in the node config) whose state `key` is; None for
    a key not of the form `<driver>/<sensor id>/<what>`."""
    parts = key.split("/")
    return parts[1] if len(parts) == 3 and parts[1] else None


def selects(key: str, *, driver: str | None, exact: str | None) -> bool:
    """Whether `key` is the driver's (`driver`, a sensor id) or the key `exact`; every key
    when neither is given."""
    if exact is not None:
        return key == exact
    return driver is None or sensor_of(key) == driver


def saved(outbox_path: Path) -> dict[str, str]:
    """The drivers' saved state in the outbox at `outbox_path` as last committed (key ->
    text), read only (beside a running agent too); {} when there is no outbox."""
    return read_states(outbox_path) if outbox_path.exists() else {}


def clear(outbox_path: Path, *, driver: str | None = None, key: str | None = None) -> dict[str, str]:
    """Deletes one driver's saved state (every key of the sensor id `driver`), or the one
    `key`, from the outbox at `outbox_path`, and returns what it deleted; the readings not
    yet sent stay. Refused while the agent runs (OutboxInUseError: it holds the outbox
    open). DriverStateError when there is no such state: nothing deleted."""
    if (driver is None) == (key is None):
        raise DriverStateError("name the state to clear: a driver (its sensor id) or a key")
    asked = f"driver {driver!r}" if key is None else f"key {key!r}"
    if not outbox_path.exists():
        raise DriverStateError(f"no saved state for {asked}: there is no outbox at {outbox_path}")
    cleared = clear_states(outbox_path, lambda k: selects(k, driver=driver, exact=key))
    if not cleared:
        keys = ", ".join(read_states(outbox_path)) or "none"
        raise DriverStateError(f"no saved state for {asked} in {outbox_path} (saved keys: {keys})")
    return cleared


def view(text: str, width: int = VIEW_CHARS) -> str:
    """A short view of a saved value: compact JSON (as is when not JSON), cut at `width`
    characters with its full length said."""
    try:
        short = json.dumps(json.loads(text), separators=(",", ":"), ensure_ascii=False)
    except ValueError:
        short = text
    return short if len(short) <= width else f"{short[:width - 1]}… ({len(text)} chars)"


def damaged(what: str, key: str, detail: str) -> DriverError:
    """The error for a driver's saved state that cannot be read, naming its key and the
    command that clears it (edge/cli.py `driver-state`)."""
    return DriverError(f"{what} {key!r} are damaged{detail}; clear them with the agent stopped: "
                       f"urbanpulse edge driver-state --config FILE --key {key} --clear")
