"""The sensors: SDS011 emulators on pseudo-terminals, in the benchmark's own process, so
the agent's CPU counts only the agent. Each reports every `period_s` (the real sensor's
1 s made shorter); together they make the reading rate."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from firmware_bridge.protocols.sds011.emulator import Sds011Emulator


def _varying(offset: int) -> Callable[[], tuple[float, float]]:
    counter = itertools.count(offset)

    def values() -> tuple[float, float]:
        n = next(counter)
        return 12.0 + n % 60 / 4, 20.0 + n % 90 / 3

    return values


@contextmanager
def sds011_sensors(count: int, period_s: float, *, paced: bool = True
                   ) -> Iterator[list[Sds011Emulator]]:
    """`count` running emulators, each with its own pty; stopped on exit. Paced: bytes
    leave at 9600 baud, one at a time, as from a bare UART; unpaced: each frame is written
    whole, as a USB-serial adapter hands over a buffered frame."""
    emulators: list[Sds011Emulator] = []
    try:
        for i in range(count):
            emu = Sds011Emulator(_varying(i * 7), device_id=f"{0xa100 + i:04x}", period_s=period_s,
                                 warmup_s=0.0, seed=i, pace=paced)
            emu.start()
            emulators.append(emu)
        yield emulators
    finally:
        for emu in emulators:
            emu.stop()


def sensors_toml(emulators: list[Sds011Emulator], silence_timeout_s: float = 10.0) -> str:
    """One [[sensors]] table per emulator; `silence_timeout_s` is the driver's (a silent
    sensor past it is restarted), raised for sensors that are meant to stay silent."""
    return "".join(f"""
[[sensors]]
id = "pm-{i:02d}"
driver = "sds011"
port = "{emu.port}"
silence_timeout_s = {silence_timeout_s}
warmup_s = 0
""" for i, emu in enumerate(emulators))
