"""The SDS011 entry of the protocol registry."""

from __future__ import annotations

from typing import Any

from firmware_bridge.protocols.registry import ProtocolSpec
from firmware_bridge.protocols.sds011 import commands
from firmware_bridge.protocols.sds011.decoder import Sds011Decoder
from firmware_bridge.protocols.sds011.emulator import BAUDRATE, WARMUP_S, Sds011Emulator
from firmware_bridge.protocols.sds011.frames import Sds011Measurement


def _record(frame: object) -> dict[str, Any] | None:
    return frame.as_record() if isinstance(frame, Sds011Measurement) else None


SPEC = ProtocolSpec(
    name="sds011",
    title="Nova Fitness SDS011 (PM2.5/PM10)",
    baudrate=BAUDRATE,
    warmup_s=WARMUP_S,
    new_decoder=Sds011Decoder,
    new_emulator=Sds011Emulator,
    record=_record,
    probe_request=commands.query_data(),
)
