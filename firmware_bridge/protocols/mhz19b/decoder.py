"""Incremental decoder of what an MH-Z19B sends: answers to 'read CO2' (FF 86 ...) and to
'get ABC status' (FF 7D ...)."""

from __future__ import annotations

from firmware_bridge.framing import NEED_MORE, NOT_A_FRAME, FrameScanner
from firmware_bridge.protocols.mhz19b import wire
from firmware_bridge.protocols.mhz19b.frames import Mhz19bAbcStatus, Mhz19bFrame, Mhz19bReading


class Mhz19bDecoder(FrameScanner[Mhz19bFrame]):
    _sync = wire.START

    def _length_at(self, buf: bytearray, i: int, available: int) -> int:
        if available < 2:
            return NEED_MORE
        answers = (wire.CMD_READ, wire.CMD_ABC_STATUS)
        return wire.PACKET_LEN if buf[i + 1] in answers else NOT_A_FRAME

    def _check(self, buf: bytearray, i: int, length: int) -> bool | None:
        return ((0xFF - (sum(buf[i + 1 : i + 8]) & 0xFF) + 1) & 0xFF) == buf[i + 8]

    def _build(self, frame: bytes) -> Mhz19bFrame | None:
        if frame[1] == wire.CMD_ABC_STATUS:
            return Mhz19bAbcStatus(frame[7] == 1) if frame[7] in (0, 1) else None
        return Mhz19bReading(
            co2_ppm=frame[2] << 8 | frame[3],
            temperature_c=frame[4] - wire.TEMPERATURE_OFFSET,
            status=frame[5],
        )
