"""The MH-Z19B entry of the protocol registry."""

from __future__ import annotations

from typing import Any

from firmware_bridge.protocols.mhz19b import commands
from firmware_bridge.protocols.mhz19b.decoder import Mhz19bDecoder
from firmware_bridge.protocols.mhz19b.emulator import BAUDRATE, WARMUP_S, Mhz19bEmulator
from firmware_bridge.protocols.mhz19b.frames import Mhz19bReading
from firmware_bridge.protocols.registry import ProtocolSpec


def _record(frame: object) -> dict[str, Any] | None:
    return frame.as_record() if isinstance(frame, Mhz19bReading) else None


SPEC = ProtocolSpec(
    name="mhz19b",
    title="Winsen MH-Z19B (CO2)",
    baudrate=BAUDRATE,
    warmup_s=WARMUP_S,
    new_decoder=Mhz19bDecoder,
    new_emulator=Mhz19bEmulator,
    record=_record,
    probe_request=commands.read_co2(),
)
