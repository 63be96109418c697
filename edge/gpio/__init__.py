"""GPIO inputs for the edge agent: the gpiozero pin factory choice, our own debounce and
timing (gpiozero's MockFactory ignores bounce_time and has no virtual clock), and the
plumbing that carries pin edges from gpiozero's threads onto the asyncio loop.

The pure logic (debounce, counters, state machines) takes monotonic timestamps from an
injectable clock and never imports gpiozero; only `factory` and `inputs` touch it, lazily.
"""

from edge.gpio.debounce import Debouncer, Edge
from edge.gpio.errors import GpioBackendUnavailable, GpioError
from edge.gpio.factory import (
    BACKENDS,
    ENV_BACKEND,
    SharedPinFactory,
    make_pin_factory,
    resolve_backend,
    validate_backend,
)

__all__ = [
    "BACKENDS",
    "ENV_BACKEND",
    "Debouncer",
    "Edge",
    "GpioBackendUnavailable",
    "GpioError",
    "SharedPinFactory",
    "make_pin_factory",
    "resolve_backend",
    "validate_backend",
]
