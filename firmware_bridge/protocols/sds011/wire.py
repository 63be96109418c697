"""Byte layout of SDS011 frames (datasheet: Laser Dust Sensor Control Protocol V1.3)."""

from __future__ import annotations

from firmware_bridge.errors import CommandError

HEAD = 0xAA
TAIL = 0xAB
DATA = 0xC0
REPLY = 0xC5
COMMAND = 0xB4
FRAME_LEN = 10
COMMAND_LEN = 19
BROADCAST_ID = "ffff"

CMD_REPORT_MODE = 0x02
CMD_QUERY_DATA = 0x04
CMD_SET_DEVICE_ID = 0x05
CMD_SLEEP_WORK = 0x06
CMD_FIRMWARE = 0x07
CMD_WORKING_PERIOD = 0x08


def checksum(data: bytes | bytearray) -> int:
    """Low byte of the sum of the bytes given (the data bytes of a frame)."""
    return sum(data) & 0xFF


def device_id_bytes(device_id: str) -> bytes:
    """'a160' -> b'\\xa1\\x60': the two ID bytes in the order they travel."""
    if len(device_id) != 4:
        raise CommandError(f"device id must be 4 hex digits, got {device_id!r}")
    try:
        return bytes.fromhex(device_id)
    except ValueError as exc:
        raise CommandError(f"device id must be 4 hex digits, got {device_id!r}") from exc


def device_id_str(id1: int, id2: int) -> str:
    return f"{id1:02x}{id2:02x}"


def encode_measurement(pm25: float, pm10: float, device_id: str) -> bytes:
    """A data frame AA C0 as the sensor sends it (values clamped to 0..999.9)."""
    p25 = min(max(round(pm25 * 10), 0), 9999)
    p10 = min(max(round(pm10 * 10), 0), 9999)
    body = bytes((p25 & 0xFF, p25 >> 8, p10 & 0xFF, p10 >> 8)) + device_id_bytes(device_id)
    return bytes((HEAD, DATA)) + body + bytes((checksum(body), TAIL))


def encode_reply(command: int, d1: int, d2: int, d3: int, device_id: str) -> bytes:
    """A reply frame AA C5 as the sensor sends it."""
    body = bytes((command, d1, d2, d3)) + device_id_bytes(device_id)
    return bytes((HEAD, REPLY)) + body + bytes((checksum(body), TAIL))
