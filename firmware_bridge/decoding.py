"""The interface every protocol decoder offers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar

from firmware_bridge.stats import DecoderStats

F_co = TypeVar("F_co", covariant=True)


class FrameDecoder(Protocol[F_co]):
    """Pure and incremental: bytes in, in any chunking; typed frames out; never raises
    on line noise; counts what it decoded and what it dropped."""

    stats: DecoderStats

    @property
    def buffered(self) -> int: ...

    def feed(self, data: bytes) -> Sequence[F_co]: ...

    def finish(self) -> Sequence[F_co]:
        """End of input: the frames that waited for bytes that will not come; the rest of
        the buffer is counted as skipped."""
        ...
