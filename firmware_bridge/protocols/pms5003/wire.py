"""Byte layout of PMS5003 frames (Plantower PMS5003 data manual V2.3, appendix)."""

from __future__ import annotations

import struct

from firmware_bridge.protocols.pms5003.frames import Pms5003Measurement, Pms5003tMeasurement

START1 = 0x42
START2 = 0x4D
DATA_LENGTH = 28  # 13 data words + the check word
ACK_LENGTH = 4
FRAME_LEN = 4 + DATA_LENGTH
ACK_LEN = 4 + ACK_LENGTH
COMMAND_LEN = 7

CMD_READ = 0xE2
CMD_MODE = 0xE1
CMD_SLEEP = 0xE4

_DATA = struct.Struct(">2sH13H")


def checksum(data: bytes | bytearray) -> int:
    """16-bit sum of every byte before the check word."""
    return sum(data) & 0xFFFF


def _seal(body: bytes) -> bytes:
    return body + checksum(body).to_bytes(2, "big")


def encode_measurement(m: Pms5003Measurement | Pms5003tMeasurement) -> bytes:
    if isinstance(m, Pms5003Measurement):
        w11, w12 = m.n5_0, m.n10_0
    else:
        w11 = round(m.temperature_c * 10) & 0xFFFF
        w12 = round(m.humidity_pct * 10)
    words = (
        m.pm1_cf1, m.pm25_cf1, m.pm10_cf1, m.pm1, m.pm25, m.pm10,
        m.n0_3, m.n0_5, m.n1_0, m.n2_5, w11, w12,
        (m.version << 8) | m.error_code,
    )  # fmt: skip
    clamped = tuple(min(max(int(w), 0), 0xFFFF) for w in words)
    return _seal(_DATA.pack(b"BM", DATA_LENGTH, *clamped))


def encode_ack(command: int, data: int) -> bytes:
    return _seal(bytes((START1, START2, 0, ACK_LENGTH, command, data)))


def encode_command(command: int, data: int) -> bytes:
    return _seal(bytes((START1, START2, command, data >> 8, data & 0xFF)))
