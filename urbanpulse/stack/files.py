"""Small file helpers: private (0600) atomic writes and random secrets."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def write_file(path: Path, data: bytes | str, *, mode: int = 0o600) -> None:
    """Atomically replace `path`; the file never exists with wider permissions than `mode`."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, raw)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def ensure_secret(path: Path) -> str:
    """The password stored in `path`; a new random one (0600) if the file does not exist."""
    if path.is_file():
        value = path.read_text(encoding="utf-8").strip()
        if value:
            return value
    value = secrets.token_urlsafe(24)
    write_file(path, value + "\n")
    return value
