"""Bytes on disk: what `du` counts (allocated blocks), so sparse and preallocated files count
for what they hold."""

from __future__ import annotations

from pathlib import Path


def disk_bytes(path: Path) -> int:
    """Allocated bytes of `path`, or of every file under it."""
    if path.is_file():
        return path.stat().st_blocks * 512
    return sum(p.stat().st_blocks * 512 for p in path.rglob("*") if p.is_file())


def total_bytes(paths: list[Path]) -> int:
    return sum(disk_bytes(p) for p in paths if p.exists())
