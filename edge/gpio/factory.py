"""Which gpiozero pin factory drives the pins, chosen by config or environment.

Backends:
- `lgpio`: the only one that works on a Raspberry Pi 5 (its GPIO sits behind the RP1
  chip); also serves the Pi 3 and 4.
- `rpigpio`: RPi.GPIO, for older Pis where lgpio is not installed; refused on a Pi 5.
- `mock`: gpiozero's MockFactory, for tests, the demo and the simulator.
- `auto`: lgpio if its module is installed, else RPi.GPIO (not on a Pi 5).

The environment variable URBANPULSE_GPIO_BACKEND, when set, overrides the config (to run
a production config against mock pins). A backend module is looked up with
`importlib.util.find_spec` before anything imports it, so a missing library gives a clear
GpioBackendUnavailable instead of an ImportError from deep inside gpiozero.
"""

from __future__ import annotations

import importlib.util
import os
import re
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from edge.gpio.errors import GpioBackendUnavailable
from urbanpulse.errors import ConfigError

BACKENDS = ("auto", "lgpio", "rpigpio", "mock")
ENV_BACKEND = "URBANPULSE_GPIO_BACKEND"
BOARD_MODEL_PATH = Path("/proc/device-tree/model")

_PI5 = re.compile(r"Raspberry Pi (5|500|Compute Module 5)\b")
# The Python module each backend needs, looked up without importing it.
_BACKEND_MODULE = {"lgpio": "lgpio", "rpigpio": "RPi.GPIO", "mock": "gpiozero"}


def validate_backend(value: object, key: str) -> str:
    """Check a configured backend name (no I/O, no import)."""
    if not isinstance(value, str) or value not in BACKENDS:
        raise ConfigError(key, f"must be one of {', '.join(BACKENDS)}, got {value!r}")
    return value


def read_board_model(path: Path = BOARD_MODEL_PATH) -> str | None:
    """The board's model string from the device tree, or None off a Pi."""
    try:
        return path.read_bytes().rstrip(b"\x00\n").decode("ascii", "replace")
    except OSError:
        return None


def is_pi5(board_model: str | None) -> bool:
    return board_model is not None and _PI5.search(board_model) is not None


def module_available(module: str) -> bool:
    """Whether `module` can be imported, without importing it (only its parent package)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def resolve_backend(
    configured: str,
    *,
    env: Mapping[str, str] | None = None,
    board_model: str | None = None,
    available: Callable[[str], bool] = module_available,
) -> str:
    """The concrete backend to use: `lgpio`, `rpigpio` or `mock`.

    Raises GpioBackendUnavailable when the choice cannot work here. `board_model` is the
    device-tree model string (read_board_model()), None off a Pi.
    """
    environ = os.environ if env is None else env
    override = environ.get(ENV_BACKEND)
    name = configured
    if override:
        if override not in BACKENDS:
            raise GpioBackendUnavailable(
                f"{ENV_BACKEND}={override!r} is not one of {', '.join(BACKENDS)}")
        name = override
    if name == "auto":
        if available(_BACKEND_MODULE["lgpio"]):
            return "lgpio"
        if available(_BACKEND_MODULE["rpigpio"]) and not is_pi5(board_model):
            return "rpigpio"
        raise GpioBackendUnavailable(
            "no GPIO backend found: install lgpio (pip install lgpio, or Debian's "
            "python3-lgpio on Python 3.13), or RPi.GPIO on a Pi older than the Pi 5")
    if name == "rpigpio" and is_pi5(board_model):
        raise GpioBackendUnavailable(
            f"RPi.GPIO does not work on a {board_model} (its GPIO sits behind the RP1 "
            "chip); use backend = \"lgpio\"")
    if name not in _BACKEND_MODULE:
        raise GpioBackendUnavailable(f"unknown GPIO backend {name!r}")
    if not available(_BACKEND_MODULE[name]):
        raise GpioBackendUnavailable(
            f"GPIO backend {name!r} needs the Python module {_BACKEND_MODULE[name]!r}, "
            "which is not installed")
    return name


def make_pin_factory(
    configured: str,
    *,
    env: Mapping[str, str] | None = None,
    board_model: str | None = None,
    available: Callable[[str], bool] = module_available,
) -> Any:
    """Create the gpiozero pin factory for `configured` (see resolve_backend).

    Opens the GPIO chip for the real backends: call it when the agent starts its drivers,
    not while validating config. `board_model` defaults to the device tree's.
    """
    model = read_board_model() if board_model is None else board_model
    name = resolve_backend(configured, env=env, board_model=model, available=available)
    try:
        if name == "mock":
            from gpiozero.pins.mock import MockFactory

            return MockFactory()
        if name == "lgpio":
            from gpiozero.pins.lgpio import LGPIOFactory

            return LGPIOFactory()
        from gpiozero.pins.rpigpio import RPiGPIOFactory

        return RPiGPIOFactory()
    except Exception as exc:  # lgpio.error, RuntimeError from RPi.GPIO, OSError, ...
        raise GpioBackendUnavailable(
            f"GPIO backend {name!r} failed to start: {type(exc).__name__}: {exc}") from exc


class SharedPinFactory:
    """A DriverContext.pin_factory provider: one factory for all drivers of a node, made
    on first use (the first GPIO driver's run), closed by the agent at shutdown."""

    def __init__(self, configured: str, *, env: Mapping[str, str] | None = None,
                 board_model: str | None = None) -> None:
        self.configured = configured
        self._env = env
        self._board_model = board_model
        self._factory: Any = None
        self._lock = threading.Lock()

    def __call__(self) -> Any:
        with self._lock:
            if self._factory is None:
                self._factory = make_pin_factory(
                    self.configured, env=self._env, board_model=self._board_model)
            return self._factory

    def close(self) -> None:
        with self._lock:
            factory, self._factory = self._factory, None
        if factory is not None:
            factory.close()
