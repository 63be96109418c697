"""Commands the host sends to an MH-Z19B (FF 01 CMD b3..b7 CS), and their parser for
the emulator. Only 'read CO2' is answered (datasheet), and 'get ABC status' on the
firmware that has it; the others have no reply."""

from __future__ import annotations

from dataclasses import dataclass

from firmware_bridge.errors import CommandError
from firmware_bridge.framing import NEED_MORE, NOT_A_FRAME, FrameScanner
from firmware_bridge.protocols.mhz19b import wire

RANGES_PPM = (2000, 5000, 10000)


def _command(cmd: int, b3: int = 0, b4: int = 0, b5: int = 0, b6: int = 0, b7: int = 0) -> bytes:
    return wire.seal(bytes((wire.START, wire.SENSOR, cmd, b3, b4, b5, b6, b7)))


def read_co2() -> bytes:
    return _command(wire.CMD_READ)


def zero_calibration() -> bytes:
    """Declare the present air to be 400 ppm. Only after 20 minutes in clean outdoor air."""
    return _command(wire.CMD_ZERO)


def span_calibration(span_ppm: int) -> bytes:
    """Declare the present gas to be `span_ppm` (zero calibration first; 1000 ppm or
    more recommended)."""
    if not 1 <= span_ppm <= 0xFFFF:
        raise CommandError(f"span must be 1..65535 ppm, got {span_ppm}")
    return _command(wire.CMD_SPAN, span_ppm >> 8, span_ppm & 0xFF)


def set_abc(enabled: bool) -> bytes:
    """Automatic baseline correction (every 24 h, assumes the lowest reading is 400
    ppm): on by default; turn it off indoors where air is never fresh."""
    return _command(wire.CMD_ABC, 0xA0 if enabled else 0x00)


def get_abc_status() -> bytes:
    """Ask whether ABC is on (0x7D: not in the V1.0 manual, answered by most firmware)."""
    return _command(wire.CMD_ABC_STATUS)


def set_range(range_ppm: int) -> bytes:
    if range_ppm not in RANGES_PPM:
        raise CommandError(f"range must be one of {RANGES_PPM} ppm, got {range_ppm}")
    return _command(wire.CMD_RANGE, 0, 0, 0, range_ppm >> 8, range_ppm & 0xFF)


@dataclass(frozen=True, slots=True)
class Mhz19bCommand:
    command: int
    args: bytes  # bytes 3..7


class Mhz19bCommandDecoder(FrameScanner[Mhz19bCommand]):
    _sync = wire.START

    def _length_at(self, buf: bytearray, i: int, available: int) -> int:
        if available < 2:
            return NEED_MORE
        return wire.PACKET_LEN if buf[i + 1] == wire.SENSOR else NOT_A_FRAME

    def _check(self, buf: bytearray, i: int, length: int) -> bool | None:
        return wire.checksum(buf[i : i + 9]) == buf[i + 8]

    def _build(self, frame: bytes) -> Mhz19bCommand:
        return Mhz19bCommand(frame[2], frame[3:8])
