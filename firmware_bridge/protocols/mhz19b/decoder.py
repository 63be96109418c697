"""Incremental decoder of what an MH-Z19B sends: answers to 'read CO2' (FF 86 ...) and to
'get ABC status' (FF 7D ...).

The packet has no tail byte and an 8-bit checksum, so a cut answer followed by a whole
one (`FF 86 HH LL` + `FF 86 ...`) passes the checksum as one packet once in 256 cuts: a
CO2 value that was never measured, and the whole answer after it lost. So a packet that
has another answer's start inside it is taken only if the packet starting there is not
a valid one. The decoder waits for that packet's bytes (answers come one per query, each
in one piece), and for the byte after a packet whose checksum byte is `FF`: such an
answer (one in 256) is decoded with the next one, a query later."""

from __future__ import annotations

from firmware_bridge.framing import NEED_MORE, NOT_A_FRAME, FrameScanner
from firmware_bridge.protocols.mhz19b import wire
from firmware_bridge.protocols.mhz19b.frames import Mhz19bAbcStatus, Mhz19bFrame, Mhz19bReading

_ANSWERS = (wire.CMD_READ, wire.CMD_ABC_STATUS)
_LEN = wire.PACKET_LEN


def _valid(buf: bytearray, i: int) -> bool:
    return ((0xFF - (sum(buf[i + 1 : i + 8]) & 0xFF) + 1) & 0xFF) == buf[i + 8]


def _inner_start(buf: bytearray, i: int, n: int) -> int:
    """Where another answer starts inside the packet at `i` (its 9 bytes are there; `n`
    bytes in all), at its checksum byte included; -1 if nowhere, UNKNOWN if the byte after
    the packet is needed to tell."""
    j = buf.find(wire.START, i + 1, i + _LEN)
    while j >= 0:
        if j + 1 >= n:
            return UNKNOWN
        if buf[j + 1] in _ANSWERS:
            return j
        j = buf.find(wire.START, j + 1, i + _LEN)
    return -1


UNKNOWN = -2


class Mhz19bDecoder(FrameScanner[Mhz19bFrame]):
    _sync = wire.START

    def _length_at(self, buf: bytearray, i: int, available: int) -> int:
        if available < 2:
            return NEED_MORE
        if buf[i + 1] not in _ANSWERS:
            return NOT_A_FRAME
        if available >= _LEN and not self._at_end:
            j = _inner_start(buf, i, i + available)
            if j == UNKNOWN or (j >= 0 and available < j - i + _LEN):
                return NEED_MORE  # the answer that may start inside, whole, decides
        return _LEN

    def _check(self, buf: bytearray, i: int, length: int) -> bool | None:
        if not _valid(buf, i):
            return False
        j = _inner_start(buf, i, len(buf))
        if j >= 0 and len(buf) < j + _LEN:  # the end of input: no answer starts there
            return True
        # A cut answer and the whole one that began inside it: the cut one is what fails.
        return not (j >= 0 and _valid(buf, j))

    def _build(self, frame: bytes) -> Mhz19bFrame | None:
        if frame[1] == wire.CMD_ABC_STATUS:
            return Mhz19bAbcStatus(frame[7] == 1) if frame[7] in (0, 1) else None
        return Mhz19bReading(
            co2_ppm=frame[2] << 8 | frame[3],
            temperature_c=frame[4] - wire.TEMPERATURE_OFFSET,
            status=frame[5],
        )
