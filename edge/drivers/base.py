"""What every driver implements, and how the agent finds a driver by name.

A driver folder `edge/drivers/<name>/` holds `driver.py` with two functions:

    def parse_params(raw: Mapping[str, Any], key: str) -> Params
        Validate the driver's keys of one `[[sensors]]` table (everything but `id` and
        `driver`). No I/O. Raise ConfigError(f"{key}.<field>", reason) on a bad value.

    def build(sensor_id: str, params: Params, ctx: DriverContext) -> Driver
        Make the driver. No I/O here either: ports and pins are opened in `run`.

`Driver.run(emit)` runs until cancelled; it raises DriverError (or any error) when the
device fails, and the agent restarts it with backoff. `emit` is called on the event loop's
thread; drivers fed by other threads (gpiozero callbacks) hop with
`loop.call_soon_threadsafe`.

Optionally a driver is `Supervised`: it has `supervision()`, what it knows of its own
wiring that its readings cannot carry, which the agent puts in the node's heartbeat; and
`Counting`: it has `bad_input()`, its counts of the input it could not use (every driver
in the tree is), which the agent puts there too.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from urbanpulse.clock import Clock, SystemClock

DRIVERS = ("sds011", "pms5003", "mhz19b", "upfw", "traffic_loop", "bed_pad", "door_counter",
           "queue_kiosk", "bed_mat")


@dataclass(frozen=True, slots=True)
class Sample:
    """One reading as a driver sees it; the agent adds the sequence number."""

    sensor: str
    kind: str
    values: Mapping[str, float]
    ts: datetime
    flags: tuple[str, ...] = ()


Emit = Callable[[Sample], None]


class PinFactoryProvider(Protocol):
    def __call__(self) -> Any:
        """The gpiozero pin factory to use (real backend, or MockFactory in tests)."""
        ...


class StateKeeper(Protocol):
    """Where a counting driver keeps what it must remember across restarts (door totals,
    ticket numbers), committed atomically with the readings (the agent's outbox)."""

    def load(self, key: str) -> str | None:
        """The latest state under `key`: staged or committed; None if there is none."""
        ...

    def stage(self, key: str, value: str) -> None:
        """Replace the state under `key`. It is committed in the same transaction as the
        samples emitted after it (stage, then emit, with no await in between)."""
        ...


@dataclass(frozen=True)
class DriverContext:
    clock: Clock = field(default_factory=SystemClock)
    pin_factory: PinFactoryProvider | None = None
    state_dir: Path | None = None
    state: StateKeeper | None = None


class Driver(Protocol):
    sensor_id: str

    async def run(self, emit: Emit) -> None: ...

    def describe(self) -> dict[str, Any]:
        """A small JSON-able description of the driver's state for the node status."""
        ...


@runtime_checkable
class Supervised(Protocol):
    """A driver that watches its own wiring (queue_kiosk, door_counter)."""

    def supervision(self) -> Mapping[str, str | bool] | None:
        """For the node's heartbeat (`health()["drivers"][id]["supervision"]`): states by
        name, such as {"cable": "ok" | "cut", "ready": bool}; None when it has nothing to
        say (not running). Called at every heartbeat (from the MQTT publisher's thread) and
        state write: quick, no I/O.
        Raises DriverError when it cannot tell; the agent reports any EdgeError, and the
        ValueError, ArithmeticError or LookupError of a logic fault, in the driver's
        entry (`supervision_error`) and the heartbeat goes on."""
        ...


@runtime_checkable
class Counting(Protocol):
    """A driver that counts the input it could not use: corrupt or malformed frames and the
    bytes skipped to resynchronise, messages it ignores, pulses too short to be real. A
    corrupt frame is counted and skipped; these counts are how a technician sees it."""

    def bad_input(self) -> Mapping[str, int]:
        """For the node's heartbeat (`health()["drivers"][id]["bad_input"]`) and `edge
        status`: counters since the driver was built, by name, the same names at every call
        (0 included, so that a count's absence means the driver does not count it), ints
        only: the heartbeat stays small. The agent sums them over the driver's restarts
        (each builds a new driver). Called at every heartbeat (from the MQTT publisher's
        thread) and when the driver's run ends: quick, no I/O. Like `supervision()`, a
        failure (EdgeError, or a logic fault's ValueError, ArithmeticError or LookupError)
        is reported in the driver's entry (`bad_input_error`) and the heartbeat goes on."""
        ...


@dataclass(frozen=True)
class DriverModule:
    name: str
    parse_params: Callable[[Mapping[str, Any], str], Any]
    build: Callable[[str, Any, DriverContext], Driver]


def load_driver(name: str) -> DriverModule:
    """Import `edge.drivers.<name>.driver`; raises KeyError for an unknown name."""
    if name not in DRIVERS:
        raise KeyError(name)
    module = importlib.import_module(f"edge.drivers.{name}.driver")
    return DriverModule(name, module.parse_params, module.build)
