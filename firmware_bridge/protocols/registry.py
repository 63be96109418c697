"""What the rest of urbanpulse needs to know about each serial protocol."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from firmware_bridge.decoding import FrameDecoder
from firmware_bridge.errors import UnknownProtocolError

if TYPE_CHECKING:  # an edge node never needs the emulators in memory
    from firmware_bridge.emulator.pty_device import PtyEmulator


@dataclass(frozen=True)
class ProtocolSpec:
    """`new_decoder()` gives a fresh decoder of the device's output; `new_emulator(**kw)`
    an emulator (keyword arguments as its class takes them); `record(frame)` the JSON
    object `bridge decode` prints for a measurement frame, None for other frames (command
    replies, acks); `probe_request` is sent to a device that stays silent (polled
    devices), None if the device talks on its own; `warmup_s` is the datasheet warm-up
    during which readings are zeros or unreliable."""

    name: str
    title: str
    baudrate: int
    warmup_s: float
    new_decoder: Callable[[], FrameDecoder[object]]
    new_emulator: Callable[..., PtyEmulator]
    record: Callable[[object], dict[str, Any] | None]
    probe_request: bytes | None


_REGISTRY: dict[str, Callable[[], ProtocolSpec]] = {}


def register(name: str, factory: Callable[[], ProtocolSpec]) -> None:
    _REGISTRY[name] = factory


def protocol_names() -> list[str]:
    return list(_REGISTRY)


def get_protocol(name: str) -> ProtocolSpec:
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise UnknownProtocolError(name, protocol_names()) from None
    return factory()
