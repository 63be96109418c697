"""Incremental decoders of what a PMS5003 or PMS5003T sends."""

from __future__ import annotations

import struct
from typing import TypeVar

from firmware_bridge.framing import NEED_MORE, NOT_A_FRAME, FrameScanner
from firmware_bridge.protocols.pms5003 import wire
from firmware_bridge.protocols.pms5003.frames import (
    Pms5003Ack,
    Pms5003Frame,
    Pms5003Measurement,
    Pms5003tFrame,
    Pms5003tMeasurement,
)

_WORDS = struct.Struct(">13H")
F = TypeVar("F")


class _PmsScanner(FrameScanner[F]):
    """Frames `42 4D LL LL ...` with a 16-bit sum; only the lengths the sensor uses."""

    _sync = wire.START1

    def _length_at(self, buf: bytearray, i: int, available: int) -> int:
        if available < 4:
            if available >= 2 and buf[i + 1] != wire.START2:
                return NOT_A_FRAME
            return NEED_MORE
        if buf[i + 1] != wire.START2 or buf[i + 2] != 0:
            return NOT_A_FRAME
        length = buf[i + 3]
        if length == wire.DATA_LENGTH:
            return wire.FRAME_LEN
        if length == wire.ACK_LENGTH:
            return wire.ACK_LEN
        return NOT_A_FRAME

    def _check(self, buf: bytearray, i: int, length: int) -> bool | None:
        end = i + length - 2
        return (sum(buf[i:end]) & 0xFFFF) == (buf[end] << 8 | buf[end + 1])


class Pms5003Decoder(_PmsScanner[Pms5003Frame]):
    def _build(self, frame: bytes) -> Pms5003Frame:
        if len(frame) == wire.ACK_LEN:
            return Pms5003Ack(frame[4], frame[5])
        w: tuple[int, ...] = _WORDS.unpack_from(frame, 4)
        return Pms5003Measurement(
            pm1_cf1=w[0], pm25_cf1=w[1], pm10_cf1=w[2], pm1=w[3], pm25=w[4], pm10=w[5],
            n0_3=w[6], n0_5=w[7], n1_0=w[8], n2_5=w[9], n5_0=w[10], n10_0=w[11],
            version=w[12] >> 8, error_code=w[12] & 0xFF,
        )  # fmt: skip


class Pms5003tDecoder(_PmsScanner[Pms5003tFrame]):
    def _build(self, frame: bytes) -> Pms5003tFrame:
        if len(frame) == wire.ACK_LEN:
            return Pms5003Ack(frame[4], frame[5])
        w: tuple[int, ...] = _WORDS.unpack_from(frame, 4)
        temperature = (w[10] - 0x10000 if w[10] & 0x8000 else w[10]) / 10
        return Pms5003tMeasurement(
            pm1_cf1=w[0], pm25_cf1=w[1], pm10_cf1=w[2], pm1=w[3], pm25=w[4], pm10=w[5],
            n0_3=w[6], n0_5=w[7], n1_0=w[8], n2_5=w[9],
            temperature_c=temperature, humidity_pct=w[11] / 10,
            version=w[12] >> 8, error_code=w[12] & 0xFF,
        )  # fmt: skip
