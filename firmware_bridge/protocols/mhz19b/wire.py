"""Byte layout of MH-Z19B packets (Winsen MH-Z19B user's manual V1.0): 9 bytes,
`FF` start, last byte = (0xFF - low byte of the sum of bytes 1..7) + 1, masked to 8 bits."""

from __future__ import annotations

START = 0xFF
SENSOR = 0x01  # byte 1 of a command: the sensor address
PACKET_LEN = 9

CMD_READ = 0x86
CMD_ZERO = 0x87
CMD_SPAN = 0x88
CMD_ABC = 0x79
CMD_ABC_STATUS = 0x7D  # not in the V1.0 manual; answered by most firmware since
CMD_RANGE = 0x99

TEMPERATURE_OFFSET = 40


def checksum(packet: bytes | bytearray) -> int:
    return (0xFF - (sum(packet[1:8]) & 0xFF) + 1) & 0xFF


def seal(first8: bytes) -> bytes:
    return first8 + bytes((checksum(first8),))


def encode_reading(co2_ppm: int, temperature_c: int, status: int = 0) -> bytes:
    co2 = min(max(co2_ppm, 0), 0xFFFF)
    temp = min(max(temperature_c + TEMPERATURE_OFFSET, 0), 0xFF)
    return seal(bytes((START, CMD_READ, co2 >> 8, co2 & 0xFF, temp, status, 0, 0)))


def encode_abc_status(enabled: bool) -> bytes:
    """The answer to 'get ABC status' as the MH-Z19 libraries read it: byte 7 is 1 (on) or 0."""
    return seal(bytes((START, CMD_ABC_STATUS, 0, 0, 0, 0, 0, int(enabled))))
