"""Commands the host sends to a PMS5003/PMS5003T (7 bytes: 42 4D CMD DATAH DATAL
LRCH LRCL, LRC = 16-bit sum of the first five bytes), and their parser for the
emulator."""

from __future__ import annotations

from dataclasses import dataclass

from firmware_bridge.framing import NEED_MORE, NOT_A_FRAME, FrameScanner
from firmware_bridge.protocols.pms5003 import wire
from firmware_bridge.protocols.pms5003.frames import Mode


def read_passive() -> bytes:
    """In passive mode, ask for one data frame."""
    return wire.encode_command(wire.CMD_READ, 0)


def set_mode(mode: Mode) -> bytes:
    """Active: a frame whenever the sensor likes (about every 1-2.3 s); passive: on
    request only. Answered by an ack frame."""
    return wire.encode_command(wire.CMD_MODE, int(mode))


def sleep() -> bytes:
    """Stop the fan and laser. Answered by an ack frame."""
    return wire.encode_command(wire.CMD_SLEEP, 0)


def wake() -> bytes:
    """Start again. No ack: frames resume, zeros until the fan has settled (~30 s)."""
    return wire.encode_command(wire.CMD_SLEEP, 1)


@dataclass(frozen=True, slots=True)
class Pms5003Command:
    command: int
    data: int


class Pms5003CommandDecoder(FrameScanner[Pms5003Command]):
    _sync = wire.START1

    def _length_at(self, buf: bytearray, i: int, available: int) -> int:
        if available < 3:
            return NEED_MORE
        if buf[i + 1] != wire.START2 or buf[i + 2] not in (
            wire.CMD_READ,
            wire.CMD_MODE,
            wire.CMD_SLEEP,
        ):
            return NOT_A_FRAME
        return wire.COMMAND_LEN

    def _check(self, buf: bytearray, i: int, length: int) -> bool | None:
        return (sum(buf[i : i + 5]) & 0xFFFF) == (buf[i + 5] << 8 | buf[i + 6])

    def _build(self, frame: bytes) -> Pms5003Command:
        return Pms5003Command(frame[2], frame[3] << 8 | frame[4])
