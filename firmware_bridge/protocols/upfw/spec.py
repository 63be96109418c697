"""The upfw entry of the protocol registry."""

from __future__ import annotations

from typing import Any

from firmware_bridge.protocols.registry import ProtocolSpec
from firmware_bridge.protocols.upfw import commands
from firmware_bridge.protocols.upfw.decoder import UpfwDecoder
from firmware_bridge.protocols.upfw.emulator import BAUDRATE, UpfwEmulator
from firmware_bridge.protocols.upfw.frames import IdentityQuery


def _record(frame: object) -> dict[str, Any] | None:
    as_record = getattr(frame, "as_record", None)
    if as_record is None or isinstance(frame, IdentityQuery):
        return None
    record: dict[str, Any] = as_record()
    return record


SPEC = ProtocolSpec(
    name="upfw",
    title="urbanpulse board protocol (loop detectors, bed load cells, door counters, kiosks)",
    baudrate=BAUDRATE,
    warmup_s=0.0,
    new_decoder=UpfwDecoder,
    new_emulator=UpfwEmulator,
    record=_record,
    probe_request=commands.identity_query(),
)
