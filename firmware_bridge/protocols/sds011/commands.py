"""Commands the host sends to an SDS011 (19 bytes: AA B4 CMD D1..D12 ID1 ID2 CS AB), and
their incremental parser, which the emulator uses to hear them.

`device_id=None` addresses every sensor on the line (ID FFFF)."""

from __future__ import annotations

from dataclasses import dataclass

from firmware_bridge.errors import CommandError
from firmware_bridge.framing import NEED_MORE, NOT_A_FRAME, FrameScanner
from firmware_bridge.protocols.sds011 import wire
from firmware_bridge.protocols.sds011.frames import ReportMode, WorkState

QUERY = 0
SET = 1


def build(command: int, data: bytes = b"", device_id: str | None = None) -> bytes:
    """Any command: `data` fills D1.. (at most 12 bytes, the rest is zero)."""
    if len(data) > 12:
        raise CommandError(f"SDS011 commands carry at most 12 data bytes, got {len(data)}")
    target = wire.device_id_bytes(device_id if device_id is not None else wire.BROADCAST_ID)
    body = bytes((command,)) + data.ljust(12, b"\x00") + target
    return bytes((wire.HEAD, wire.COMMAND)) + body + bytes((wire.checksum(body), wire.TAIL))


def query_data(device_id: str | None = None) -> bytes:
    """Ask for a measurement (query reporting mode); the answer is a data frame."""
    return build(wire.CMD_QUERY_DATA, device_id=device_id)


def set_report_mode(mode: ReportMode, device_id: str | None = None) -> bytes:
    return build(wire.CMD_REPORT_MODE, bytes((SET, mode)), device_id)


def get_report_mode(device_id: str | None = None) -> bytes:
    return build(wire.CMD_REPORT_MODE, bytes((QUERY,)), device_id)


def set_work_state(state: WorkState, device_id: str | None = None) -> bytes:
    """Sleep (fan and laser off) or work."""
    return build(wire.CMD_SLEEP_WORK, bytes((SET, state)), device_id)


def get_work_state(device_id: str | None = None) -> bytes:
    return build(wire.CMD_SLEEP_WORK, bytes((QUERY,)), device_id)


def set_working_period(minutes: int, device_id: str | None = None) -> bytes:
    """0 = continuous; 1-30 = work 30 s then sleep, one measurement every n minutes."""
    if not 0 <= minutes <= 30:
        raise CommandError(f"working period must be 0..30 minutes, got {minutes}")
    return build(wire.CMD_WORKING_PERIOD, bytes((SET, minutes)), device_id)


def get_working_period(device_id: str | None = None) -> bytes:
    return build(wire.CMD_WORKING_PERIOD, bytes((QUERY,)), device_id)


def set_device_id(new_id: str, device_id: str | None = None) -> bytes:
    """Give the sensor a new 2-byte id (kept across power cycles)."""
    new = wire.device_id_bytes(new_id)
    if new_id.lower() == wire.BROADCAST_ID:
        raise CommandError("ffff is the broadcast id and cannot be given to a sensor")
    return build(wire.CMD_SET_DEVICE_ID, bytes(10) + new, device_id)


def get_firmware_version(device_id: str | None = None) -> bytes:
    return build(wire.CMD_FIRMWARE, device_id=device_id)


@dataclass(frozen=True, slots=True)
class Sds011Command:
    """A command as the sensor hears it."""

    command: int
    data: bytes
    target: str

    def addresses(self, device_id: str) -> bool:
        return self.target in (wire.BROADCAST_ID, device_id)


class Sds011CommandDecoder(FrameScanner[Sds011Command]):
    _sync = wire.HEAD

    def _length_at(self, buf: bytearray, i: int, available: int) -> int:
        if available < 2:
            return NEED_MORE
        return wire.COMMAND_LEN if buf[i + 1] == wire.COMMAND else NOT_A_FRAME

    def _check(self, buf: bytearray, i: int, length: int) -> bool | None:
        if buf[i + 18] != wire.TAIL:
            return None
        return (sum(buf[i + 2 : i + 17]) & 0xFF) == buf[i + 17]

    def _build(self, frame: bytes) -> Sds011Command:
        return Sds011Command(frame[2], frame[3:15], wire.device_id_str(frame[15], frame[16]))
