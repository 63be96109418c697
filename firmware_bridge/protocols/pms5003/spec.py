"""The PMS5003 and PMS5003T entries of the protocol registry."""

from __future__ import annotations

from typing import Any

from firmware_bridge.protocols.pms5003 import commands
from firmware_bridge.protocols.pms5003.decoder import Pms5003Decoder, Pms5003tDecoder
from firmware_bridge.protocols.pms5003.emulator import (
    BAUDRATE,
    WARMUP_S,
    Pms5003Emulator,
    Pms5003tEmulator,
)
from firmware_bridge.protocols.pms5003.frames import Pms5003Measurement, Pms5003tMeasurement
from firmware_bridge.protocols.registry import ProtocolSpec


def _record(frame: object) -> dict[str, Any] | None:
    if isinstance(frame, Pms5003Measurement | Pms5003tMeasurement):
        return frame.as_record()
    return None


SPEC = ProtocolSpec(
    name="pms5003",
    title="Plantower PMS5003 (PM1/PM2.5/PM10, particle counts)",
    baudrate=BAUDRATE,
    warmup_s=WARMUP_S,
    new_decoder=Pms5003Decoder,
    new_emulator=Pms5003Emulator,
    record=_record,
    probe_request=commands.read_passive(),
)

SPEC_T = ProtocolSpec(
    name="pms5003t",
    title="Plantower PMS5003T (PM, particle counts, temperature, humidity)",
    baudrate=BAUDRATE,
    warmup_s=WARMUP_S,
    new_decoder=Pms5003tDecoder,
    new_emulator=Pms5003tEmulator,
    record=_record,
    probe_request=commands.read_passive(),
)
