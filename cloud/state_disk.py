"""Free space on the state disk (state.dir: the journals and the recovery store).

The ingest stops committing, and so stops taking messages from the broker, while less
than `state.min_free_bytes` is free, so that the recovery store on the same disk keeps
room for its snapshots and the processor room to trim the journal; the processor reports
the free bytes in its `processor` point (cloud.health).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from urbanpulse.clock import Clock

StatVfs = Callable[[Path], os.statvfs_result]

CHECK_EVERY_S = 1.0  # statvfs at most this often


def free_bytes(path: Path, statvfs: StatVfs = os.statvfs) -> int:
    """Bytes an unprivileged process may still write on `path`'s filesystem (OSError if it
    cannot be looked at)."""
    st = statvfs(path)
    return st.f_bavail * st.f_frsize


class FreeSpaceFloor:
    """Whether `path`'s filesystem has fallen below `min_free_bytes`, looked at no more
    than once a CHECK_EVERY_S. `reusable` adds space that is free inside a file (a
    journal's free pages, left by the processor's trim): SQLite reuses it before it asks
    the filesystem for more, and a trim never gives it back to the filesystem."""

    def __init__(self, path: Path, min_free_bytes: int, clock: Clock,
                 reusable: Callable[[], int] = lambda: 0, statvfs: StatVfs = os.statvfs) -> None:
        self.path = path
        self.min_free_bytes = min_free_bytes
        self.clock = clock
        self.reusable = reusable
        self.statvfs = statvfs
        self._checked_at: float | None = None
        self._shortage: str | None = None

    def shortage(self) -> str | None:
        """None while there is room, else why not (for the log)."""
        if self.min_free_bytes <= 0:
            return None
        now = self.clock.monotonic()
        if self._checked_at is not None and now - self._checked_at < CHECK_EVERY_S:
            return self._shortage
        self._checked_at = now
        try:
            free = free_bytes(self.path, self.statvfs) + self.reusable()
        except OSError as exc:
            self._shortage = f"cannot look at the free space of {self.path}: {exc.strerror}"
            return self._shortage
        self._shortage = None if free >= self.min_free_bytes else (
            f"{free} bytes free on the state disk ({self.path}), below state.min_free_bytes "
            f"= {self.min_free_bytes}")
        return self._shortage
