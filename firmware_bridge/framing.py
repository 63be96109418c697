"""The resynchronising scanner shared by the binary decoders.

A frame starts with a sync byte. The scanner jumps to the next sync byte with
`bytearray.find` (so pure garbage costs little), asks the protocol how long a frame
starting there is, and checks it; on any failure it drops exactly one byte and scans
again, because sync bytes also occur inside payloads and checksums."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Generic, TypeVar

from firmware_bridge.stats import DecoderStats

F = TypeVar("F")

NEED_MORE = -1
NOT_A_FRAME = 0


class BufferedDecoder:
    """The buffer and counters every incremental decoder keeps between chunks."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self.stats = DecoderStats()

    @property
    def buffered(self) -> int:
        """Bytes held while waiting for the rest of a possible frame."""
        return len(self._buf)

    def finish(self) -> list[Any]:
        """End of input: the frames only the end could decide (see FrameScanner); whatever
        is still buffered then was a truncated frame."""
        self.stats.bytes_skipped += len(self._buf)
        self._buf.clear()
        return []


class FrameScanner(BufferedDecoder, ABC, Generic[F]):
    """Incremental decoder: `feed` any chunk, get the frames it completes."""

    _sync: int
    # True while `finish` decodes what is left: no byte will follow the buffer.
    _at_end = False

    def finish(self) -> list[F]:
        """End of input: decode what waited only for bytes that will not come (a frame
        whose next byte would have told it from a cut one, see the MH-Z19B decoder); what
        is still buffered then was a truncated frame."""
        self._at_end = True
        try:
            frames = self.feed(b"")
        finally:
            self._at_end = False
        super().finish()
        return frames

    def feed(self, data: bytes | bytearray | memoryview) -> list[F]:
        buf = self._buf
        buf += data
        n = len(buf)
        i = 0
        out: list[F] = []
        stats = self.stats
        sync = self._sync
        while i < n:
            j = buf.find(sync, i)
            if j < 0:
                stats.bytes_skipped += n - i
                i = n
                break
            stats.bytes_skipped += j - i
            i = j
            length = self._length_at(buf, i, n - i)
            if length == NEED_MORE:
                break
            if length == NOT_A_FRAME:
                stats.bytes_skipped += 1
                i += 1
                continue
            if n - i < length:
                break
            verdict = self._check(buf, i, length)
            if verdict is None:
                stats.bytes_skipped += 1
                i += 1
                continue
            if not verdict:
                stats.checksum_errors += 1
                stats.bytes_skipped += 1
                i += 1
                continue
            frame = self._build(bytes(buf[i : i + length]))
            if frame is None:
                stats.malformed += 1
                stats.bytes_skipped += 1
                i += 1
                continue
            out.append(frame)
            stats.frames += 1
            i += length
        if i:
            del buf[:i]
        return out

    @abstractmethod
    def _length_at(self, buf: bytearray, i: int, available: int) -> int:
        """Length of the frame whose sync byte is at `i`, NOT_A_FRAME if the header is
        wrong, NEED_MORE if `available` bytes cannot tell yet."""

    @abstractmethod
    def _check(self, buf: bytearray, i: int, length: int) -> bool | None:
        """True if the checksum is right, False if it is wrong, None if the frame's
        structure (its tail) is wrong: then it was no frame at all."""

    @abstractmethod
    def _build(self, frame: bytes) -> F | None:
        """The typed frame, or None if its content breaks the protocol."""
