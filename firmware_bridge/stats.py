"""Counters every decoder keeps."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(slots=True)
class DecoderStats:
    """`frames`: valid frames decoded; `checksum_errors`: frames whose structure was right
    but whose checksum was wrong; `bytes_skipped`: bytes dropped while resynchronising
    (garbage, truncated frames, frames with a bad checksum); `malformed`: frames with a
    valid checksum whose content breaks the protocol (unknown type, bad field)."""

    frames: int = 0
    checksum_errors: int = 0
    bytes_skipped: int = 0
    malformed: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    def bad_input(self) -> dict[str, int]:
        """The counters of input that made no frame (every one but `frames`), for the edge
        node's heartbeat (edge/drivers/base.py `Counting`): the same names at every call."""
        return {"checksum_errors": self.checksum_errors, "bytes_skipped": self.bytes_skipped,
                "malformed": self.malformed}
