"""Incremental decoder of the byte stream an SDS011 sends."""

from __future__ import annotations

from firmware_bridge.framing import NEED_MORE, NOT_A_FRAME, FrameScanner
from firmware_bridge.protocols.sds011 import wire
from firmware_bridge.protocols.sds011.frames import (
    ReportMode,
    Sds011DeviceIdReply,
    Sds011FirmwareReply,
    Sds011Frame,
    Sds011Measurement,
    Sds011ReportModeReply,
    Sds011UnknownReply,
    Sds011WorkingPeriodReply,
    Sds011WorkStateReply,
    WorkState,
)


class Sds011Decoder(FrameScanner[Sds011Frame]):
    """Data frames (AA C0) and command replies (AA C5), 10 bytes each."""

    _sync = wire.HEAD

    def _length_at(self, buf: bytearray, i: int, available: int) -> int:
        if available < 2:
            return NEED_MORE
        kind = buf[i + 1]
        return wire.FRAME_LEN if kind in (wire.DATA, wire.REPLY) else NOT_A_FRAME

    def _check(self, buf: bytearray, i: int, length: int) -> bool | None:
        if buf[i + 9] != wire.TAIL:
            return None
        return (sum(buf[i + 2 : i + 8]) & 0xFF) == buf[i + 8]

    def _build(self, frame: bytes) -> Sds011Frame | None:
        device_id = f"{frame[6]:02x}{frame[7]:02x}"
        if frame[1] == wire.DATA:
            return Sds011Measurement(
                pm25=(frame[2] | frame[3] << 8) / 10,
                pm10=(frame[4] | frame[5] << 8) / 10,
                device_id=device_id,
            )
        return _reply(frame[2], frame[3], frame[4], frame[5], device_id)


def _reply(command: int, d1: int, d2: int, d3: int, device_id: str) -> Sds011Frame | None:
    if command == wire.CMD_REPORT_MODE:
        if d1 > 1 or d2 > 1:
            return None
        return Sds011ReportModeReply(bool(d1), ReportMode(d2), device_id)
    if command == wire.CMD_SLEEP_WORK:
        if d1 > 1 or d2 > 1:
            return None
        return Sds011WorkStateReply(bool(d1), WorkState(d2), device_id)
    if command == wire.CMD_WORKING_PERIOD:
        if d1 > 1 or d2 > 30:
            return None
        return Sds011WorkingPeriodReply(bool(d1), d2, device_id)
    if command == wire.CMD_SET_DEVICE_ID:
        return Sds011DeviceIdReply(device_id)
    if command == wire.CMD_FIRMWARE:
        if not (1 <= d2 <= 12 and 1 <= d3 <= 31):
            return None
        return Sds011FirmwareReply(2000 + d1, d2, d3, device_id)
    return Sds011UnknownReply(command, bytes((d1, d2, d3)), device_id)
