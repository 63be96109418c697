"""Incremental decoder of upfw sentences."""

from __future__ import annotations

from functools import reduce
from operator import xor

from firmware_bridge.framing import BufferedDecoder
from firmware_bridge.protocols.upfw.frames import UpfwFrame
from firmware_bridge.protocols.upfw.wire import MAX_SENTENCE, parse_body

_HEX = b"0123456789ABCDEFabcdef"


class UpfwDecoder(BufferedDecoder):
    """Resynchronises on `$` like the binary decoders: a candidate that fails is left
    by one byte and the scan goes on (to the next `$`)."""

    def feed(self, data: bytes | bytearray | memoryview) -> list[UpfwFrame]:
        buf = self._buf
        buf += data
        n = len(buf)
        stats = self.stats
        out: list[UpfwFrame] = []
        i = 0
        while i < n:
            start = buf.find(b"$", i)
            if start < 0:
                stats.bytes_skipped += n - i
                i = n
                break
            stats.bytes_skipped += start - i
            i = start
            end = buf.find(b"\n", i + 1, i + MAX_SENTENCE)
            restart = buf.find(b"$", i + 1, n if end < 0 else end)
            if restart >= 0:
                stats.bytes_skipped += restart - i
                i = restart
                continue
            if end < 0:
                if n - i >= MAX_SENTENCE:
                    stats.bytes_skipped += 1
                    i += 1
                    continue
                break
            frame = self._sentence(bytes(buf[i : end + 1]))
            if frame is None:
                stats.bytes_skipped += 1
                i += 1
                continue
            out.append(frame)
            stats.frames += 1
            i = end + 1
        if i:
            del buf[:i]
        return out

    def _sentence(self, line: bytes) -> UpfwFrame | None:
        stop = len(line) - (2 if line.endswith(b"\r\n") else 1)
        star = stop - 3
        if star < 1 or line[star] != 0x2A:  # "*"
            return None
        hh = line[star + 1 : stop]
        if hh[0] not in _HEX or hh[1] not in _HEX:
            return None
        body = line[1:star]
        if reduce(xor, body, 0) != int(hh, 16):
            self.stats.checksum_errors += 1
            return None
        try:
            text = body.decode("ascii")
        except UnicodeDecodeError:
            self.stats.malformed += 1
            return None
        frame = parse_body(text)
        if frame is None:
            self.stats.malformed += 1
        return frame
